#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_incident_info
short_description: Read incidents from Microsoft Graph security (Microsoft Defender XDR)
version_added: 0.2.0
description:
  - Reads one incident by O(incident_id), or every incident that matches the filters, from Microsoft Graph
    (C(GET /v1.0/security/incidents)). Incidents exist only in Graph, not in the Defender for Endpoint API.
  - The filters are sent to Graph as one OData C($filter) (server-side), ANDed together; every page is read (C(@odata.nextLink)).
  - Needs the Microsoft Graph application permission C(SecurityIncident.Read.All) (or C(SecurityIncident.ReadWrite.All)).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.time_filters
  - defender.endpoint.time_filters.updated_after
  - defender.endpoint.attributes.info_module
options:
  incident_id:
    description: The id of one incident, a number such as V(2972395). The filters are then not allowed.
    type: str
  status:
    description: Only incidents with one of these statuses.
    type: list
    elements: str
    choices: [active, resolved, inProgress, redirected, awaitingAction]
  severity:
    description: Only incidents with one of these severities.
    type: list
    elements: str
    choices: [informational, low, medium, high]
  assigned_to:
    description: Only incidents assigned to one of these owners (user principal names, compared as Graph compares them).
    type: list
    elements: str
  classification:
    description: Only incidents with one of these classifications.
    type: list
    elements: str
    choices: [unknown, falsePositive, truePositive, informationalExpectedActivity]
  determination:
    description: Only incidents with one of these determinations (Graph's spelling, such as V(malware) or V(notMalicious)).
    type: list
    elements: str
  odata_filter:
    description: More of an OData C($filter), ANDed with the filters above, for example V(displayName eq 'x').
    type: str
  include_alerts:
    description: Read each incident's alerts too (C($expand=alerts)), with their evidence (devices, files, users...).
    type: bool
    default: false
  limit:
    description: Return at most this many incidents.
    type: int
seealso:
  - name: List incidents (Microsoft Graph)
    description: The endpoint, its filters and its permission.
    link: https://learn.microsoft.com/en-us/graph/api/security-list-incidents
'''

EXAMPLES = r'''
- name: New high-severity incidents of the last day, with their alerts
  defender.endpoint.mde_incident_info:
    severity: [high]
    status: [active]
    created_after: 24h
    include_alerts: true
  register: found

- name: One incident
  defender.endpoint.mde_incident_info:
    incident_id: "1000"
  register: one
'''

RETURN = r'''
incidents:
  description: The incidents, as Graph returns them (camelCase keys), with C(alerts) when O(include_alerts) is set.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "2972395"
      displayName: Multi-stage incident involving Initial access & Command and control on multiple endpoints
      status: active
      severity: high
      assignedTo: null
      classification: unknown
      determination: unknown
      customTags: []
      comments: []
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import incidents as iu
from ansible_collections.defender.endpoint.plugins.module_utils import options

PERMISSION = None
FILTER_OPTIONS = [option for option, _field, _kind in iu.FILTERS] + ["odata_filter"]


def run(ctx):
    p = ctx.params
    if p["incident_id"] is not None:
        ident = iu.check_incident_id(p["incident_id"])
        try:
            return dict(changed=False, incidents=[iu.get(ctx.client, ident, alerts=p["include_alerts"])])
        except MDEError as e:
            if e.status == 404:
                return dict(changed=False, incidents=[])
            raise
    odata_filter = iu.incident_filter(dict((k, p[k]) for k in FILTER_OPTIONS if k != "odata_filter"),
                                      p["odata_filter"])
    return dict(changed=False, incidents=iu.list_incidents(ctx.client, odata_filter, alerts=p["include_alerts"],
                                                           limit=p["limit"]))


ARGUMENT_SPEC = options.module_spec(dict(
    incident_id=dict(type="str"),
    status=dict(type="list", elements="str", choices=iu.STATUSES),
    severity=dict(type="list", elements="str", choices=iu.SEVERITIES),
    assigned_to=dict(type="list", elements="str"),
    classification=dict(type="list", elements="str", choices=iu.CLASSIFICATIONS),
    determination=dict(type="list", elements="str"),
), options.CREATED_AFTER, options.UPDATED_AFTER, dict(
    odata_filter=dict(type="str"),
    include_alerts=dict(type="bool", default=False),
    limit=dict(type="int"),
))
SPEC_OPTIONS = dict(mutually_exclusive=[["incident_id", option] for option in FILTER_OPTIONS + ["limit"]])


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(incident_id=iu.check_incident_id)
    for value in p["determination"] or []:
        if value not in iu.DETERMINATIONS:
            ctx.fail_json(msg="determination: %r is not one of %s." % (value, ", ".join(iu.DETERMINATIONS)))
    if p["limit"] is not None and p["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % p["limit"])
    for group in options.TIME_FILTERS:
        ctx.checked(group.check, p)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
