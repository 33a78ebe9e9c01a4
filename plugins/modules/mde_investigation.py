#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_investigation
short_description: Start an automated investigation on a machine in Microsoft Defender for Endpoint
version_added: 0.2.0
description:
  - Starts an automated investigation (AIR) on one machine (C(POST /api/machines/{id}/startInvestigation)).
  - B(Idempotent.) The machine's investigations that are not over (C(Queued), C(Running), C(PendingResource),
    C(PendingApproval)) are read first; when there is one, nothing is sent, C(changed) is false and that
    investigation is returned. When the API answers that one is already running, it is read and returned the same way.
  - A start whose answer is lost (a timeout, a dropped connection, HTTP 5xx) is not sent again blindly; the machine's
    investigations are read back first.
  - Automated investigations run on Windows 10 1709 and later, Windows 11 and Windows Server 2019 and later; on
    other systems Defender ends the investigation with state C(UnsupportedOs).
  - Needs the WindowsDefenderATP application permissions C(Alert.ReadWrite.All) (to start and read investigations)
    and C(Machine.Read.All) (to find the machine). The API allows 50 starts an hour.
  - With O(wait), the task waits until the investigation is no longer C(Queued), C(Running) or C(PendingResource),
    that is until it has ended or waits for an analyst to approve its remediation in the portal (C(PendingApproval)).
    An investigation that ends C(Failed), C(InnerFailure), C(TerminatedBySystem) or C(UnsupportedOs) fails the task.
    That holds for a running investigation found instead of starting one too.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.machine_target
  - defender.endpoint.wait
attributes:
  check_mode:
    support: full
    description: The machine and its investigations are read; nothing is started.
  diff_mode:
    support: full
    description: Shows whether an investigation is running on the machine, before and after.
options:
  comment:
    description:
      - The comment sent with the request (C(Comment), required by the API).
      - Defaults to C(Started by Ansible (defender.endpoint.mde_investigation)).
    type: str
seealso:
  - module: defender.endpoint.mde_investigation_info
  - name: Start Investigation API
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/initiate-autoir-investigation
'''

EXAMPLES = r'''
- name: Investigate a machine (nothing is started while one is running there)
  defender.endpoint.mde_investigation:
    machine_name: ws-00001.contoso.local
    comment: "Incident 4711"
  register: air

- name: Start one and wait until it has ended or needs approval
  defender.endpoint.mde_investigation:
    machine_id: "{{ air.investigation.machineId }}"
    wait: true
    wait_timeout: 3600
'''

RETURN = r'''
investigation:
  description:
    - The Investigation entity as the API returns it (camelCase keys), the one started or the running one that made
      a start unnecessary; after O(wait), as it was when the wait ended.
    - V(null) in check mode when one would be started.
  returned: always
  type: dict
  sample:
    id: "63017"
    startTime: "2020-01-06T14:11:34Z"
    endTime: null
    state: Running
    cancelledBy: null
    statusDetails: null
    machineId: a69a22debe5f274d8765ea3c368d00762e057b30
    computerDnsName: desktop-gtrcon0
    triggeringAlertId: null
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError, quoted
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import investigations as inv
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options

PERMISSION = "Alert.ReadWrite.All"


def finish(ctx, result):
    investigation = result.get("investigation")
    if not ctx.params["wait"] or ctx.check_mode or not investigation:
        return result
    investigation, settled = inv.wait_for(ctx.client, investigation, ctx.params["wait_timeout"], progress=ctx.waiting(
        quoted(inv.describe(investigation), 400), (ctx.params["wait_timeout"], "wait_timeout")))
    result["investigation"] = investigation
    if not settled:
        ctx.fail_json(msg="%s did not end within wait_timeout (%d seconds); its state is %s. The investigation keeps "
                      "running." % (inv.describe(investigation), ctx.params["wait_timeout"], investigation.get("state")),
                      **result)
    if investigation.get("state") in inv.FAILED_STATES:
        ctx.fail_json(msg="%s ended with state %s%s." % (
            inv.describe(investigation), investigation.get("state"),
            ": %s" % investigation["statusDetails"] if investigation.get("statusDetails") else ""), **result)
    return result


def run(ctx):
    p = ctx.params
    machine = mu.find_machine(ctx.client, machine_id=p["machine_id"], machine_name=p["machine_name"])
    running = inv.active_on(ctx.client, machine["id"])
    result = dict(changed=False, investigation=inv.latest(running),
                  diff=dict(before=dict(investigation_running=bool(running)), after=dict(investigation_running=True)))
    if running:
        return finish(ctx, result)
    result["changed"] = True
    if ctx.check_mode:
        return result
    try:
        result["investigation"] = inv.start(ctx.client, machine["id"], p["comment"])
    except MDEError as e:
        if not inv.is_already_running(e):
            raise
        running = inv.active_on(ctx.client, machine["id"])
        if not running:
            raise
        result.update(changed=False, investigation=inv.latest(running))
        result["diff"]["before"] = dict(investigation_running=True)
    return finish(ctx, result)


ARGUMENT_SPEC = options.module_spec(options.MACHINE_TARGET, dict(comment=dict(type="str")), options.WAIT)
SPEC_OPTIONS = options.spec_rules(options.MACHINE_TARGET)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(options.MACHINE_TARGET.check, p)
    if p["comment"] is not None and not p["comment"].strip():
        ctx.fail_json(msg="comment must not be empty.")
    ctx.checked(options.WAIT.check, p)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
