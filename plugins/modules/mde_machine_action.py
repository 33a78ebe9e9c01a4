#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_machine_action
short_description: Run a response action on a machine in Microsoft Defender for Endpoint, safely re-runnable
version_added: 0.1.0
description:
  - Isolates or releases a machine, restricts or allows code execution, runs an antivirus scan, collects an
    investigation package, stops and quarantines a file, or offboards a machine, through the Defender for
    Endpoint machine action API.
  - B(Isolation and code-execution restriction are states.) The module reads the machine's actions of that pair
    (C(Isolate)/C(Unisolate), C(RestrictCodeExecution)/C(UnrestrictCodeExecution)); the latest one that is
    C(Pending), C(InProgress) or C(Succeeded) gives the machine's state (C(Failed), C(TimeOut) and C(Cancelled)
    actions changed nothing). When the machine is already in the requested state, or on its way to it, nothing
    is sent and C(changed) is false. A machine without any such action is taken as not isolated and not restricted.
  - B(The other actions are one-shot.) When an identical action (same type; same scan type; same file) is already
    C(Pending) or C(InProgress) on the machine, nothing is sent, C(changed) is false and that action is returned.
    Otherwise a new action is requested each time the task runs.
  - When the API answers that the action is already in progress (HTTP 400 C(ActiveRequestAlreadyExists)), the
    pending action is read and returned with C(changed) false; a different pending action of the same type
    (for example a scan of another type) fails the task, naming it.
  - Needs the WindowsDefenderATP application permission of the action (C(Machine.Isolate),
    C(Machine.RestrictExecution), C(Machine.Scan), C(Machine.CollectForensics), C(Machine.StopAndQuarantine) or
    C(Machine.Offboard)) and C(Machine.Read.All) (or C(Machine.ReadWrite.All)) to find the machine and read its
    actions.
  - With O(wait), the task waits until the action is C(Succeeded), C(Failed), C(TimeOut) or C(Cancelled); anything but
    C(Succeeded) fails the task with the action's status and error. That holds for a pending action found instead of
    sending a new one too. It polls C(GET /api/machineactions/{id}) every 2 seconds at first, backing off to every 15
    seconds.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.machine_target
  - defender.endpoint.wait
attributes:
  check_mode:
    support: full
    description: The machine and its actions are read; no action is requested.
  diff_mode:
    support: partial
    description:
      - For isolation, code-execution restriction and offboarding, the diff shows the machine's state before and
        after (C(isolated), C(code_execution_restricted), C(offboarded)).
      - The one-shot actions have no diff.
options:
  action:
    description:
      - The response action.
      - V(isolate) and V(unisolate) isolate the machine from the network and release it.
      - V(restrict_code_execution) and V(unrestrict_code_execution) allow only Microsoft-signed code to run, and
        lift that restriction.
      - V(antivirus_scan) runs a Microsoft Defender Antivirus scan of O(scan_type).
      - V(collect_investigation_package) collects the forensics package; download it with
        M(defender.endpoint.mde_machine_action_info) and O(defender.endpoint.mde_machine_action_info#module:dest).
      - V(stop_and_quarantine_file) stops the processes of the file O(sha1) and quarantines it.
      - >-
        V(offboard) B(offboards the machine from Defender for Endpoint. This cannot be undone from the API or
        from Ansible:) the sensor stops reporting and protecting, and the machine has to be onboarded again with
        an onboarding package on the device itself. O(comment) is required for it. Once an C(Offboard) action is
        pending or has succeeded on the machine, the task reports C(changed) false.
    type: str
    required: true
    choices:
      - isolate
      - unisolate
      - restrict_code_execution
      - unrestrict_code_execution
      - antivirus_scan
      - collect_investigation_package
      - stop_and_quarantine_file
      - offboard
  isolation_type:
    description:
      - The kind of isolation, sent as C(IsolationType) with V(isolate); ignored by the other actions.
      - V(Full) cuts all network connections but the one to Defender; V(Selective) also keeps Outlook, Teams and
        Skype for Business connected; V(UnManagedDevice) contains a device that Defender discovered but does not
        manage.
      - A machine already isolated with another type is left as it is (C(changed) false, with a warning);
        release it first to change the type.
    type: str
    choices: [Full, Selective, UnManagedDevice]
    default: Full
  scan_type:
    description: The antivirus scan, sent as C(ScanType) with V(antivirus_scan); ignored by the other actions.
    type: str
    choices: [Quick, Full]
    default: Quick
  sha1:
    description:
      - The SHA-1 hash (40 hexadecimal characters) of the file to stop and quarantine.
      - Required with V(stop_and_quarantine_file), and not allowed with the other actions.
    type: str
  comment:
    description:
      - The comment recorded with the action (C(Comment); the API requires one), shown in the action center.
      - Defaults to C(Requested by Ansible (defender.endpoint.mde_machine_action)), except for V(offboard), which
        requires it.
    type: str
  wait_timeout:
    default: 600
notes:
  - >-
    B(Warning:) V(offboard) is irreversible. It removes the machine from Defender for Endpoint protection and
    monitoring; only running an onboarding package on the device brings it back. The module requires an explicit
    O(comment) for it, and supports check mode: run the task with C(--check) first.
  - The API has no "isolated" flag on the machine; the state is inferred from the machine's action history, as
    Microsoft recommends. Actions older than the tenant's data retention are not seen.
seealso:
  - module: defender.endpoint.mde_machine_action_info
  - name: Machine actions API
    description: Microsoft's reference of the machine action endpoints.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction
'''

EXAMPLES = r'''
- name: Isolate a compromised machine and wait until the isolation has taken effect
  defender.endpoint.mde_machine_action:
    machine_name: ws-00001.contoso.local
    action: isolate
    comment: "Incident 4711: ransomware alert"
    wait: true
  register: isolation

- name: Release it once it is clean
  defender.endpoint.mde_machine_action:
    machine_id: "{{ isolation.machine_action.machineId }}"
    action: unisolate
    comment: "Incident 4711: cleaned and validated"

- name: Full antivirus scan
  defender.endpoint.mde_machine_action:
    machine_name: ws-00001
    action: antivirus_scan
    scan_type: Full

- name: Stop and quarantine a file
  defender.endpoint.mde_machine_action:
    machine_name: ws-00001
    action: stop_and_quarantine_file
    sha1: 87662bc3d60e4200ceaf7aae249d1c343f4b83c9
    comment: "Incident 4711: dropper"

- name: Collect the investigation package, then download it to the controller
  block:
    - name: Collect
      defender.endpoint.mde_machine_action:
        machine_name: ws-00001
        action: collect_investigation_package
        wait: true
        wait_timeout: 1800
      register: collection

    - name: Download
      defender.endpoint.mde_machine_action_info:
        action_id: "{{ collection.machine_action.id }}"
        dest: "/var/forensics/{{ collection.machine_action.computerDnsName }}.zip"
'''

RETURN = r'''
machine_action:
  description:
    - The MachineAction entity as the API returns it (camelCase keys). It is the action requested, or the
      existing one that made the request unnecessary; after O(wait), in its final state.
    - V(null) in check mode when an action would be requested.
  returned: always
  type: dict
  sample:
    id: 5382f7ea-7557-4ab7-9782-d50480024a4e
    type: Isolate
    scope: Full
    requestor: Analyst@TestPrd.onmicrosoft.com
    requestorComment: "Incident 4711: ransomware alert"
    status: Succeeded
    machineId: 7b1f4967d9728e5aa3c06a9e617a22a4a5a17378
    computerDnsName: desktop-test
    creationDateTimeUtc: "2019-01-02T14:39:38.2262283Z"
    lastUpdateDateTimeUtc: "2019-01-02T14:40:44.6596267Z"
    relatedFileInfo: null
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options


def read_actions(ctx, machine_id, types, statuses=None):
    return list(ctx.client.list("/api/machineactions", odata_filter=ma.machine_filter(machine_id, types, statuses)))


def finish(ctx, result, wait):
    """Wait for the returned action when asked to, and fail unless it succeeded."""
    action = result.get("machine_action")
    if not wait or ctx.check_mode or not action:
        return result
    action, finished = ma.wait_for(ctx.client, action, ctx.params["wait_timeout"], progress=ctx.waiting(
        ma.describe(action), (ctx.params["wait_timeout"], "wait_timeout")))
    result["machine_action"] = action
    if not finished:
        ctx.fail_json(msg="%s did not finish within wait_timeout (%d seconds); its status is %s. The action "
                      "keeps running." % (ma.describe(action), ctx.params["wait_timeout"],
                                          action.get("status")), **result)
    if action.get("status") != "Succeeded":
        why = ma.failure_text(action)
        ctx.fail_json(msg="%s ended with status %s%s." % (ma.describe(action), action.get("status"),
                                                          ": %s" % why if why else ""), **result)
    return result


def run(ctx):
    p = ctx.params
    action = p["action"]
    spec = ma.ACTIONS[action]
    machine = mu.find_machine(ctx.client, machine_id=p["machine_id"], machine_name=p["machine_name"])
    machine_id = machine["id"]
    result = dict(changed=False, machine_action=None)

    if spec["pair"]:
        key = ma.PAIRS[spec["pair"]]["key"]
        history = read_actions(ctx, machine_id, ma.PAIRS[spec["pair"]]["types"], ma.LIVE_STATUSES)
        known = [a.get("id") for a in history]
        state, deciding = ma.pair_state(action, history)
        result["diff"] = dict(before={key: state}, after={key: spec["state"]})
        if state == spec["state"]:
            result["machine_action"] = deciding
            if action == "isolate" and deciding and deciding.get("scope") and deciding["scope"] != p["isolation_type"]:
                ctx.warn("%s is isolated with IsolationType %s, not %s; release it first to change the type."
                         % (machine.get("computerDnsName") or machine_id, deciding["scope"], p["isolation_type"]))
            return finish(ctx, result, p["wait"])
    else:
        active = read_actions(ctx, machine_id, [spec["type"]], ma.ACTIVE_STATUSES)
        known = [a.get("id") for a in active]
        pending = [a for a in active if ma.same_action(action, p, a)]
        if pending:
            result["machine_action"] = ma.latest(pending)
            return finish(ctx, result, p["wait"])

    result["changed"] = True
    if ctx.check_mode:
        return result
    body = ma.build_body(action, p["comment"], p["isolation_type"], p["scan_type"], p["sha1"])
    try:
        # A lost answer is reconciled: the machine's actions are read back before the POST is ever sent again.
        result["machine_action"] = ma.request_action(ctx.client, action, machine_id, body, p, known_ids=known)
    except MDEError as e:
        if not ma.is_already_pending(e):
            raise
        active = read_actions(ctx, machine_id, [spec["type"]], ma.ACTIVE_STATUSES)
        same = [a for a in active if ma.same_action(action, p, a)]
        if same:
            result.update(changed=False, machine_action=ma.latest(same))
            if "diff" in result:
                result["diff"]["before"] = dict(result["diff"]["after"])
            return finish(ctx, result, p["wait"])
        if active:
            other = ma.latest(active)
            ctx.fail_json(msg="%s The pending %s (scope %s%s) must finish or be cancelled first." % (
                str(e), ma.describe(other), other.get("scope"),
                ", file %s" % (other.get("relatedFileInfo") or {}).get("fileIdentifier")
                if other.get("relatedFileInfo") else ""), machine_action=other, changed=False, **e.to_dict())
        raise
    return finish(ctx, result, p["wait"])


ARGUMENT_SPEC = options.module_spec(
    options.MACHINE_TARGET,
    dict(
        action=dict(type="str", required=True, choices=list(ma.ACTIONS)),
        isolation_type=dict(type="str", default="Full", choices=list(ma.ISOLATION_TYPES)),
        scan_type=dict(type="str", default="Quick", choices=list(ma.SCAN_TYPES)),
        sha1=dict(type="str"),
        comment=dict(type="str"),
    ),
    options.WAIT.refined(wait_timeout=dict(default=600)),
)
SPEC_OPTIONS = options.spec_rules(options.MACHINE_TARGET, dict(
    required_if=[["action", "stop_and_quarantine_file", ["sha1"]]],
))


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(options.MACHINE_TARGET.check, p)
    ctx.checked(options.WAIT.check, p)
    ctx.checked(ma.validate, p["action"], p["comment"], p["sha1"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
