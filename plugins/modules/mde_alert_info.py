#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_alert_info
short_description: List or look up alerts in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Returns Defender for Endpoint alerts as the API returns them, by id or by filters.
  - Filters are sent to the API as one server-side OData C($filter); all pages are read, so more than the
    API's 10,000 alerts per page come back whole.
  - Needs the WindowsDefenderATP application permission C(Alert.Read.All) or C(Alert.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.time_filters
  - defender.endpoint.time_filters.updated_after
  - defender.endpoint.attributes.info_module
options:
  alert_id:
    description:
      - The id of one alert, such as V(da637472900382838869_1364969609). Returns that one alert.
      - Mutually exclusive with the filters.
    type: str
  alert_ids:
    description:
      - Several alert ids. Returns the alerts found, read 50 ids per call (never one call per alert); the ids
        Defender does not know are listed in RV(missing_ids), not a failure.
      - Mutually exclusive with O(alert_id) and the filters.
    type: list
    elements: str
    version_added: 0.2.0
  status:
    description: Only alerts with one of these C(status) values.
    type: list
    elements: str
    choices: [New, InProgress, Resolved]
  severity:
    description: Only alerts with one of these C(severity) values.
    type: list
    elements: str
    choices: [UnSpecified, Informational, Low, Medium, High]
  category:
    description: Only alerts of one of these categories (C(category)), for example V(Execution), V(Malware), V(SuspiciousActivity).
    type: list
    elements: str
  machine_id:
    description:
      - Only alerts of this machine (its Defender device id, 40 hexadecimal characters).
      - The alerts endpoint cannot filter on C(machineId), so the alerts are read from the machine's own
        alerts collection, C(/api/machines/{id}/alerts), with the other filters as its C($filter).
      - With O(include_evidence), the evidence is read afterwards from C(/api/alerts) by alert id, 50 alerts per
        request, because that collection documents no C($expand).
    type: str
  incident_id:
    description: Only alerts of one of these incidents (C(incidentId)).
    type: list
    elements: int
  detection_source:
    description: Only alerts from one of these detection sources (C(detectionSource)), for example V(WindowsDefenderAtp), V(WindowsDefenderAv).
    type: list
    elements: str
  assigned_to:
    description: Only alerts assigned to one of these owners (C(assignedTo), a user principal name).
    type: list
    elements: str
  odata_filter:
    description:
      - A raw OData C($filter) expression, ANDed with the filters above, for example C(investigationId eq 123456).
      - O(created_after) filters on C(alertCreationTime), O(updated_after) on C(lastUpdateTime).
      - The alerts endpoint filters on C(alertCreationTime), C(lastUpdateTime), C(incidentId), C(investigationId), C(id),
        C(assignedTo), C(detectionSource), C(lastEventTime), C(status), C(severity) and C(category); it answers
        HTTP 400 (C(ODataError)) for other fields.
    type: str
  include_evidence:
    description:
      - Include each alert's C(evidence) (files, processes, users, ...), requested with C($expand=evidence).
      - Without it, C(evidence) is an empty list.
    type: bool
    default: false
  limit:
    description: Return at most this many alerts. By default all are returned.
    type: int
'''

EXAMPLES = r'''
- name: New and in-progress high-severity alerts of the last 24 hours, with their evidence
  defender.endpoint.mde_alert_info:
    status: [New, InProgress]
    severity: High
    created_after: 24h
    include_evidence: true
  register: found

- name: Show their ids and machines
  ansible.builtin.debug:
    msg: "{{ found.alerts | map(attribute='id') | zip(found.alerts | map(attribute='computerDnsName')) | list }}"

- name: One alert by id
  defender.endpoint.mde_alert_info:
    alert_id: da637472900382838869_1364969609

- name: Several alerts by id; unknown ids come back in missing_ids
  defender.endpoint.mde_alert_info:
    alert_ids: [da637472900382838869_1364969609, da637472900382838869_1364969610]
  register: found

- name: Unresolved alerts of one machine, with a raw OData filter
  defender.endpoint.mde_alert_info:
    machine_id: 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
    odata_filter: "status ne 'Resolved'"

- name: Malware alerts updated since a given time, at most 100
  defender.endpoint.mde_alert_info:
    category: [Malware]
    detection_source: [WindowsDefenderAv]
    updated_after: "2026-01-31T08:00:00Z"
    limit: 100
'''

RETURN = r'''
alerts:
  description: The Alert entities, as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - id: da637472900382838869_1364969609
      incidentId: 1126093
      investigationId: null
      assignedTo: null
      severity: Low
      status: New
      classification: null
      determination: null
      investigationState: Queued
      detectionSource: WindowsDefenderAtp
      detectorId: 17e10bbc-3a68-474a-8aad-faef14d43952
      category: Execution
      title: Low-reputation arbitrary code executed by signed executable
      alertCreationTime: "2021-01-26T20:33:57.7220239Z"
      firstEventTime: "2021-01-26T20:31:32.9562661Z"
      lastEventTime: "2021-01-26T20:31:33.0577322Z"
      lastUpdateTime: "2021-01-26T20:33:59.2Z"
      resolvedTime: null
      machineId: 111e6dd8c833c8a052ea231ec1b19adaf497b625
      computerDnsName: temp123.middleeast.corp.microsoft.com
      rbacGroupName: A
      mitreTechniques: [T1064, T1085, T1220]
      relatedUser: {userName: temp123, domainName: DOMAIN}
      comments: []
      evidence: []
missing_ids:
  description: With O(alert_ids), the ids of which Defender knows no alert.
  returned: when O(alert_ids) is given
  type: list
  elements: str
  sample: [da000000000000000000_1]
  version_added: 0.2.0
filter:
  description: The OData C($filter) that was sent, if any.
  returned: always
  type: str
  sample: "(status eq 'New' or status eq 'InProgress') and severity eq 'High' and alertCreationTime ge 2026-01-31T08:00:00Z"
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import alerts as alerts_utils
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import options

FILTER_OPTIONS = tuple(option for option, _field, _kind in alerts_utils.ALERT_FILTERS)


def read_one(ctx, alert_id, expand):
    params = {"$expand": "evidence"} if expand else None
    try:
        return odata.entity(ctx.client.get("/api/alerts/%s" % odata.path_segment(alert_id), params=params))
    except MDEError as e:
        if e.status == 404:
            ctx.fail_json(msg="No alert with id %s in Defender for Endpoint." % alert_id, **e.to_dict())
        raise


def read_machine_alerts(ctx, machine_id, odata_filter, limit, expand):
    path = "/api/machines/%s/alerts" % odata.path_segment(machine_id)
    try:
        found = list(ctx.client.list(path, odata_filter=odata_filter, limit=limit))
    except MDEError as e:
        if e.status == 404:
            ctx.fail_json(msg="No machine with id %s in Defender for Endpoint." % machine_id, **e.to_dict())
        raise
    if expand and found:
        full = alerts_utils.read_by_ids(ctx.client, [a["id"] for a in found], expand=True)
        found = [full.get(str(a["id"]).lower(), a) for a in found]
    return found


def run(ctx):
    p = ctx.params
    if p["alert_ids"] is not None:
        ids = odata.unique(alerts_utils.check_alert_ids(p["alert_ids"]))
        found = alerts_utils.read_by_ids(ctx.client, ids, expand=p["include_evidence"])
        return dict(changed=False, alerts=[found[i.lower()] for i in ids if i.lower() in found][:p["limit"]],
                    missing_ids=[i for i in ids if i.lower() not in found], filter=None)
    if p["alert_id"]:
        alert_id = alerts_utils.check_alert_id(p["alert_id"])
        return dict(changed=False, alerts=[read_one(ctx, alert_id, p["include_evidence"])], filter=None)
    odata_filter = alerts_utils.alert_filter(dict((k, p[k]) for k in FILTER_OPTIONS), p["odata_filter"])
    if p["machine_id"]:
        found = read_machine_alerts(ctx, mu.check_machine_id(p["machine_id"]), odata_filter, p["limit"],
                                    p["include_evidence"])
    else:
        params = {"$expand": "evidence"} if p["include_evidence"] else None
        found = list(ctx.client.list("/api/alerts", odata_filter=odata_filter, params=params, limit=p["limit"]))
    return dict(changed=False, alerts=found, filter=odata_filter)


ARGUMENT_SPEC = options.module_spec(dict(
    alert_id=dict(type="str"),
    alert_ids=dict(type="list", elements="str"),
    status=dict(type="list", elements="str", choices=alerts_utils.STATUSES),
    severity=dict(type="list", elements="str", choices=alerts_utils.SEVERITIES),
    category=dict(type="list", elements="str"),
    machine_id=dict(type="str"),
    incident_id=dict(type="list", elements="int"),
    detection_source=dict(type="list", elements="str"),
    assigned_to=dict(type="list", elements="str"),
), options.CREATED_AFTER, options.UPDATED_AFTER, dict(
    odata_filter=dict(type="str"),
    include_evidence=dict(type="bool", default=False),
    limit=dict(type="int"),
))
SPEC_OPTIONS = dict(
    mutually_exclusive=[[selector, f] for selector in ("alert_id", "alert_ids")
                        for f in FILTER_OPTIONS + ("machine_id", "odata_filter")] + [["alert_id", "alert_ids"]],
)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    if p["limit"] is not None and p["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % p["limit"])
    ctx.check_given(alert_id=alerts_utils.check_alert_id,
                    alert_ids=alerts_utils.check_alert_ids,
                    machine_id=mu.check_machine_id)
    for group in options.TIME_FILTERS:
        ctx.checked(group.check, p)
    ctx.checked(alerts_utils.alert_filter, dict((k, p[k]) for k in FILTER_OPTIONS), p["odata_filter"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
