#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_machine_action_cancel
short_description: Cancel pending machine actions in Microsoft Defender for Endpoint
version_added: 0.2.0
description:
  - Cancels one machine action by id (O(action_id)), or every pending action on a machine (O(machine_id) or
    O(machine_name), optionally of some types only), with C(POST /api/machineactions/{id}/cancel).
  - B(Idempotent.) Only actions that are C(Pending) or C(InProgress) are cancelled. An action that is already final
    (C(Succeeded), C(Failed), C(TimeOut), C(Cancelled)) is returned as it is, listed in RV(final_ids), with
    C(changed) false; that is not an error. An action that becomes final between the read and the cancel is reported
    the same way.
  - A cancel whose answer is lost is reconciled by reading the action back.
  - Needs C(Machine.Read.All) (or C(Machine.ReadWrite.All)) to read actions and any one of the action permissions
    (C(Machine.Isolate), C(Machine.RestrictExecution), C(Machine.Scan), C(Machine.CollectForensics),
    C(Machine.Offboard), C(Machine.StopAndQuarantine), C(Machine.LiveResponse)) to cancel.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.machine_target
attributes:
  check_mode:
    support: full
    description: The actions are read; nothing is cancelled.
  diff_mode:
    support: full
    description: The status of each action to cancel, before and after.
options:
  action_id:
    description:
      - The id (a GUID) of the machine action to cancel.
      - Exactly one of O(action_id), O(machine_id) and O(machine_name) is required.
    type: str
  type:
    description: With O(machine_id) or O(machine_name), only actions of these types.
    type: list
    elements: str
    choices:
      - Isolate
      - Unisolate
      - RestrictCodeExecution
      - UnrestrictCodeExecution
      - RunAntiVirusScan
      - CollectInvestigationPackage
      - StopAndQuarantineFile
      - Offboard
      - LiveResponse
  comment:
    description:
      - The comment recorded with the cancellation (C(Comment)).
      - Defaults to C(Cancelled by Ansible (defender.endpoint.mde_machine_action_cancel)).
    type: str
seealso:
  - module: defender.endpoint.mde_machine_action
  - module: defender.endpoint.mde_machine_action_info
  - name: Cancel machine action API
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/cancel-machine-action
'''

EXAMPLES = r'''
- name: Cancel an isolation that has not taken effect yet
  defender.endpoint.mde_machine_action_cancel:
    action_id: 5382f7ea-7557-4ab7-9782-d50480024a4e
    comment: "Incident 4711: false positive"

- name: Cancel every pending scan on a machine
  defender.endpoint.mde_machine_action_cancel:
    machine_name: ws-00001
    type: [RunAntiVirusScan]
'''

RETURN = r'''
machine_actions:
  description:
    - The MachineAction entities considered (camelCase keys), as the cancel returned them or, for those not
      cancelled, as they were read.
  returned: always
  type: list
  elements: dict
cancelled_ids:
  description: The ids of the actions cancelled (in check mode, that would be cancelled).
  returned: always
  type: list
  elements: str
final_ids:
  description: The ids of the actions that were already final and so were left as they are.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options

DEFAULT_COMMENT = "Cancelled by Ansible (defender.endpoint.mde_machine_action_cancel)"


def cancel(client, action_id, comment):
    """``POST /api/machineactions/{id}/cancel``; reading back, the action is Cancelled when it took effect."""

    def reconcile():
        action = ma.read(client, action_id)
        return action if action.get("status") == "Cancelled" else None

    return ma.entity(client.post(ma.path(action_id, "/cancel"), json={"Comment": comment}, reconcile=reconcile))


def run(ctx):
    p = ctx.params
    if p["action_id"]:
        action_id = ma.check_action_id(p["action_id"])
        try:
            candidates = [ma.read(ctx.client, action_id)]
        except MDEError as e:
            if e.status == 404:
                ctx.fail_json(msg="No machine action with id %s in Defender for Endpoint." % action_id, **e.to_dict())
            raise
    else:
        machine = mu.find_machine(ctx.client, machine_id=p["machine_id"], machine_name=p["machine_name"])
        candidates = list(ctx.client.list("/api/machineactions", odata_filter=ma.machine_filter(
            machine["id"], p["type"], ma.ACTIVE_STATUSES)))
    result = dict(changed=False, machine_actions=[], cancelled_ids=[], final_ids=[],
                  diff=dict(before={}, after={}))
    done = []
    for action in candidates:
        if action.get("status") not in ma.ACTIVE_STATUSES:
            result["final_ids"].append(action["id"])
            result["machine_actions"].append(action)
            continue
        result["diff"]["before"][action["id"]] = action.get("status")
        result["diff"]["after"][action["id"]] = "Cancelled"
        if ctx.check_mode:
            result["cancelled_ids"].append(action["id"])
            result["machine_actions"].append(action)
            continue
        try:
            cancelled = cancel(ctx.client, action["id"], p["comment"] or DEFAULT_COMMENT)
        except MDEError as e:
            if e.status != 400:
                if done:
                    ctx.fail_partway(e, done, len(candidates), "machine actions")
                raise
            # Refused: it has become final since it was read (the API cancels only pending actions).
            now = ma.read(ctx.client, action["id"])
            if now.get("status") in ma.ACTIVE_STATUSES:
                raise
            del result["diff"]["before"][action["id"]], result["diff"]["after"][action["id"]]
            result["final_ids"].append(action["id"])
            result["machine_actions"].append(now)
            continue
        done.append(action["id"])
        result["cancelled_ids"].append(action["id"])
        result["machine_actions"].append(cancelled)
    result["changed"] = bool(result["cancelled_ids"])
    return result


ARGUMENT_SPEC = options.module_spec(dict(action_id=dict(type="str")), options.MACHINE_TARGET, dict(
    type=dict(type="list", elements="str", choices=list(ma.ACTION_TYPES)),
    comment=dict(type="str"),
))
# The machine target, or an action by id: exactly one of the three.
SPEC_OPTIONS = options.spec_rules(options.exactly_one_of("action_id", "machine_id", "machine_name"),
                                  dict(mutually_exclusive=[["action_id", "type"]]))


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(action_id=ma.check_action_id)
    ctx.checked(options.MACHINE_TARGET.check, p)
    if p["comment"] is not None and not p["comment"].strip():
        ctx.fail_json(msg="comment must not be empty.")


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
