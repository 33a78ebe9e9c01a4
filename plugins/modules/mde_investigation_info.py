#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_investigation_info
short_description: List automated investigations in Microsoft Defender for Endpoint
version_added: 0.2.0
description:
  - Returns automated investigations as the API returns them, one by id or all matching filters. The filters are
    sent to the API as one OData C($filter); all pages are read.
  - Needs the WindowsDefenderATP application permission C(Alert.Read.All) or C(Alert.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.time_filters
  - defender.endpoint.attributes.info_module
options:
  investigation_id:
    description:
      - The id of one investigation (V(63017)), or the id of the alert that triggered it (the API takes both).
        An unknown id fails the task.
      - Mutually exclusive with the filters.
    type: str
  machine_id:
    description: Only investigations on this machine (its Defender device id, 40 hexadecimal characters).
    type: str
  state:
    description: Only investigations in one of these states, as the API spells them.
    type: list
    elements: str
    choices: [Unknown, Terminated, SuccessfullyRemediated, Benign, Failed, PartiallyRemediated, Running, PendingApproval,
              PendingResource, PartiallyInvestigated, TerminatedByUser, TerminatedBySystem, Queued, InnerFailure,
              PreexistingAlert, UnsupportedOs, UnsupportedAlertType, SuppressedAlert]
  limit:
    description: Return at most this many investigations. By default all are returned.
    type: int
seealso:
  - module: defender.endpoint.mde_investigation
  - name: List Investigations API
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/get-investigation-collection
'''

EXAMPLES = r'''
- name: Investigations still running on a machine
  defender.endpoint.mde_investigation_info:
    machine_id: 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
    state: [Queued, Running, PendingResource, PendingApproval]
  register: running

- name: Investigations of the last day that wait for approval
  defender.endpoint.mde_investigation_info:
    state: PendingApproval
    created_after: 24h

- name: One investigation
  defender.endpoint.mde_investigation_info:
    investigation_id: "63017"
'''

RETURN = r'''
investigations:
  description: The Investigation entities, as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - id: "63017"
      startTime: "2020-01-06T14:11:34Z"
      endTime: null
      state: Running
      cancelledBy: null
      statusDetails: null
      machineId: a69a22debe5f274d8765ea3c368d00762e057b30
      computerDnsName: desktop-gtrcon0
      triggeringAlertId: da637139166940871892_-598649278
filter:
  description: The OData C($filter) that was sent, if any.
  returned: always
  type: str
  sample: "machineId eq 'a69a22debe5f274d8765ea3c368d00762e057b30' and (state eq 'Running')"
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import investigations as inv
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options

FILTERS = ("machine_id", "state", "created_after")


def run(ctx):
    p = ctx.params
    if p["investigation_id"]:
        ident = inv.check_investigation_id(p["investigation_id"])
        try:
            return dict(changed=False, investigations=[inv.read(ctx.client, ident)], filter=None)
        except MDEError as e:
            if e.status == 404:
                ctx.fail_json(msg="No investigation with id %s in Defender for Endpoint." % ident, **e.to_dict())
            raise
    machine_id = mu.check_machine_id(p["machine_id"]) if p["machine_id"] else None
    odata_filter = inv.info_filter(machine_id, p["state"], p["created_after"])
    found = list(ctx.client.list("/api/investigations", odata_filter=odata_filter, limit=p["limit"]))
    return dict(changed=False, investigations=found, filter=odata_filter)


ARGUMENT_SPEC = options.module_spec(dict(
    investigation_id=dict(type="str"),
    machine_id=dict(type="str"),
    state=dict(type="list", elements="str", choices=list(inv.STATES)),
), options.CREATED_AFTER, dict(limit=dict(type="int")))
SPEC_OPTIONS = dict(mutually_exclusive=[["investigation_id", f] for f in FILTERS])


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(investigation_id=inv.check_investigation_id, machine_id=mu.check_machine_id)
    ctx.checked(options.CREATED_AFTER.check, p)
    if p["limit"] is not None and p["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % p["limit"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
