#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_machine
short_description: Set the tags and the device value of machines in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Adds or removes machine tags (C(machineTags)) and sets the device value (C(deviceValue)) of one machine, by id or
    by name, or of a list of machines by id.
  - Reads the machines first and writes only what differs, so a re-run changes nothing.
  - "One machine: one C(POST /api/machines/{id}/tags) call per tag added or removed, and
    C(POST /api/machines/{id}/setDeviceValue) when the device value differs. The module does not use
    C(PATCH /api/machines/{id}): the API documents its tag semantics ambiguously (it both only appends and replaces)."
  - "A list of machines: their current tags are read with C($filter=id eq .. or ..), 50 ids a call (from 500 ids on,
    with one listing of every machine instead); then one C(POST /api/machines/AddOrRemoveTagForMultipleMachines) call
    per tag and action, with only the machines that need it, at most 500 machine ids a call (the API's limit); and one
    C(setDeviceValue) call per machine whose device value differs."
  - All input is validated before the first API call. A machine id the API does not know fails the task before any write.
  - When a write fails after an earlier one went through, the task fails with C(changed=true) and the machines already
    changed in RV(updated_ids), for one machine as for a list.
  - Needs the WindowsDefenderATP application permission C(Machine.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.machine_target
attributes:
  check_mode:
    support: full
    description: Reads the machines and reports what would change, without writing.
  diff_mode:
    support: full
    description: Per machine id that changes, its C(machineTags) and C(deviceValue) before and after.
options:
  machine_ids:
    description:
      - The device ids (40 hexadecimal characters each) of several machines to change the same way. Repeated ids are
        changed once; ids are compared case-insensitively.
      - Exactly one of O(machine_id), O(machine_name) and O(machine_ids) is required.
    type: list
    elements: str
  tags:
    description:
      - Machine tags to add (O(state=present)) or remove (O(state=absent)).
      - Tags are compared exactly (case-sensitively), as the API's own tag lookups are.
      - With O(purge_tags=true), the machines end up with exactly these tags; V([]) then removes every tag.
      - A tag that is empty, holds a control character (such as CR, LF or NUL) or is longer than 200 characters fails
        the task before any API call.
    type: list
    elements: str
  state:
    description: Whether the O(tags) should be on the machines or not.
    type: str
    choices: [present, absent]
    default: present
  purge_tags:
    description:
      - With O(state=present), also remove every tag that is not in O(tags). Needs O(tags); O(tags=[]) with
        O(purge_tags=true) removes every tag.
    type: bool
    default: false
  device_value:
    description:
      - The device value to set, as the API spells it. V(High) raises the priority of the machine's alerts.
    type: str
    choices: [Normal, Low, High]
notes:
  - "The API's limits: 100 calls a minute and 1,500 an hour for each of these endpoints; the shared client waits when
    the API answers HTTP 429."
  - "O(tags) or O(device_value) is required. Each tag change is one API call for one machine; use O(machine_ids) to
    tag many machines with few calls."
seealso:
  - module: defender.endpoint.mde_machine_info
'''

EXAMPLES = r'''
- name: Mark a machine as high-value and tag it
  defender.endpoint.mde_machine:
    machine_name: ws-00000.contoso.local
    tags: [Finance, Quarantine-Candidate]
    device_value: High
  register: marked

- name: Remove a tag from that machine, by id
  defender.endpoint.mde_machine:
    machine_id: "{{ marked.machine.id }}"
    tags: [Quarantine-Candidate]
    state: absent

- name: Find the Linux machines
  defender.endpoint.mde_machine_info:
    os_platform: [Linux]
  register: linux

- name: Tag them for the next patch wave, in bulk
  defender.endpoint.mde_machine:
    machine_ids: "{{ linux.machines | map(attribute='id') | list }}"
    tags: [patch-wave-1]
  register: tagged

- name: Leave exactly one tag on a machine
  defender.endpoint.mde_machine:
    machine_name: srv-00011.contoso.local
    tags: [Servers]
    purge_tags: true
'''

RETURN = r'''
machine:
  description:
    - The Machine entity, as the API returns it (camelCase keys), after the change.
    - In check mode, the machine as read with the planned tags and device value set.
  returned: when O(machine_id) or O(machine_name) is given
  type: dict
  sample:
    id: 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
    computerDnsName: mymachine1.contoso.com
    osPlatform: Windows10
    healthStatus: Active
    onboardingStatus: Onboarded
    deviceValue: High
    machineTags: [test tag 1, test tag 2]
machines:
  description:
    - The Machine entities of O(machine_ids), in their order, as the API returns them after the change.
    - In check mode, the machines as read with the planned tags and device value set.
  returned: when O(machine_ids) is given
  type: list
  elements: dict
updated_ids:
  description:
    - The ids of the machines that were (in check mode, would be) changed.
    - When a write call for a list fails part way, the task fails and this lists the machines that the calls before
      it had already changed.
  returned: always
  type: list
  elements: str
  sample: [1e5bc9d7e413ddd7902c2932e418702b84d0cc07]
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options

PERMISSION = "Machine.ReadWrite.All"


def read_current(ctx, single):
    p = ctx.params
    if single:
        return [mu.find_machine(ctx.client, machine_id=p["machine_id"], machine_name=p["machine_name"])]
    ids = odata.unique(mu.check_machine_ids(p["machine_ids"]))
    found = mu.read_by_ids(ctx.client, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        ctx.fail_json(msg="%d of the %d machine ids are not in Defender for Endpoint; nothing was changed: %s "
                      "(missing_ids lists them all)." % (len(missing), len(ids), odata.summary(missing)),
                      missing_ids=missing)
    return [found[i] for i in ids]


def plan(ctx, current):
    """Per machine: (machine, tags to add, tags to remove, device value to set or None)."""
    p = ctx.params
    plans = []
    for machine in current:
        add, remove = ([], []) if p["tags"] is None else mu.plan_tags(machine.get("machineTags"), p["tags"],
                                                                      p["state"], p["purge_tags"])
        value = p["device_value"] if p["device_value"] and machine.get("deviceValue") != p["device_value"] else None
        plans.append((machine, add, remove, value))
    return plans


def planned_entity(machine, add, remove, value):
    after = dict(machine)
    if add or remove:
        after["machineTags"] = mu.tags_after(machine.get("machineTags"), add, remove)
    if value:
        after["deviceValue"] = value
    return after


def managed_fields(ctx, machine):
    fields = {}
    if ctx.params["tags"] is not None:
        fields["machineTags"] = list(machine.get("machineTags") or [])
    if ctx.params["device_value"]:
        fields["deviceValue"] = machine.get("deviceValue")
    return fields


def write_single(ctx, machine, add, remove, value):
    """The /tags and setDeviceValue calls for one machine; returns the machine as the last answer shows it.

    A call that fails after an earlier one changed the machine fails the task as the list form does
    (``fail_partway``): changed, with the machine in ``updated_ids``.
    """
    latest = machine
    done = []
    # Each write is reconciled when its answer is lost: the machine is read back before it is sent again.
    try:
        for action, tags in (("Remove", remove), ("Add", add)):
            for tag in tags:
                answer = mu.machines_in(mu.change_tag(ctx.client, machine["id"], tag, action))
                latest = answer[0] if answer else latest
                done[:] = [machine["id"]]
        if value:
            answer = mu.machines_in(mu.set_device_value(ctx.client, machine["id"], value))
            latest = answer[0] if answer else latest
    except MDEError as e:
        ctx.fail_partway(e, done, 1, "machines")
    return latest


def write_many(ctx, plans):
    """Bulk tag calls and per-machine setDeviceValue calls; returns {lower id: machine as the API answered}."""
    answered = {}
    touched = []  # ids of machines a finished call changed, in the order first changed

    def changed(ids):
        known = set(i.lower() for i in touched)
        touched.extend(i for i in ids if i.lower() not in known)

    tag_plans = [(m["id"], add, remove) for m, add, remove, _value in plans if add or remove]
    try:
        for body in mu.bulk_calls(tag_plans, ctx.params["tags"]):
            for machine in mu.machines_in(mu.change_tags_of_many(ctx.client, body)):
                answered[machine["id"].lower()] = machine
            changed(body["MachineIds"])
        for machine, _add, _remove, value in plans:
            if value:
                for fresh in mu.machines_in(mu.set_device_value(ctx.client, machine["id"], value)):
                    answered[fresh["id"].lower()] = fresh
                changed([machine["id"]])
    except MDEError as e:
        ctx.fail_partway(e, touched, len(plans), "machines")
    return answered


def run(ctx):
    single = ctx.params["machine_ids"] is None
    current = read_current(ctx, single)
    plans = [pl for pl in plan(ctx, current) if pl[1] or pl[2] or pl[3]]
    updated_ids = [m["id"] for m, _a, _r, _v in plans]
    diff = dict(before={}, after={})
    planned = {}
    for machine, add, remove, value in plans:
        after = planned_entity(machine, add, remove, value)
        planned[machine["id"].lower()] = after
        diff["before"][machine["id"]] = managed_fields(ctx, machine)
        diff["after"][machine["id"]] = managed_fields(ctx, after)
    result = dict(changed=bool(plans), updated_ids=updated_ids, diff=diff)

    if not plans or ctx.check_mode:
        entities = [planned.get(m["id"].lower(), m) for m in current]
    elif single:
        entities = [write_single(ctx, *plans[0])]
    else:
        answered = write_many(ctx, plans)
        # Machines the bulk answer did not include (the API documents "updated machines" but not their form)
        # are read again, so the returned entities are the API's own after the change.
        unanswered = [m["id"] for m, add, remove, _v in plans if m["id"].lower() not in answered]
        if unanswered:
            answered.update(mu.read_by_ids(ctx.client, unanswered))
        entities = [answered.get(m["id"].lower(), m) for m in current]
    if single:
        result["machine"] = entities[0]
    else:
        result["machines"] = entities
    return result


ARGUMENT_SPEC = options.module_spec(options.MACHINE_TARGET, dict(
    machine_ids=dict(type="list", elements="str"),
    tags=dict(type="list", elements="str"),
    state=dict(type="str", default="present", choices=list(mu.STATES)),
    purge_tags=dict(type="bool", default=False),
    device_value=dict(type="str", choices=list(mu.DEVICE_VALUES)),
))
# The machine target or a list of machines, exactly one; something to do; purge_tags replaces tags (tags: [] with
# purge_tags: true removes every tag).
SPEC_OPTIONS = options.spec_rules(options.exactly_one_of("machine_id", "machine_name", "machine_ids"), dict(
    required_one_of=[["tags", "device_value"]],
    required_if=[["purge_tags", True, ["tags"]]],
))


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(options.MACHINE_TARGET.check, p)
    ctx.checked(mu.validate, p["machine_ids"], p["tags"], p["state"], p["purge_tags"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
