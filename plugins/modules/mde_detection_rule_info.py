#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_detection_rule_info
short_description: Read custom detection rules from Microsoft Graph security (Defender XDR)
version_added: 0.3.0
description:
  - Reads one custom detection rule by O(rule_id), or every rule of the tenant, optionally only those with a given
    O(display_name) (exact) or O(status), through Microsoft Graph (C(GET /v1.0/security/rules/detectionRules)).
  - The filters are sent as one OData C($filter); every page is read (C(@odata.nextLink)).
  - A rule id that does not exist gives RV(rules=[]), not a failure.
  - Rules made before Microsoft's 2026 rework of the API keep the number the service gave them as their id; they are
    returned like the others. With O(graph_version=beta), Graph also returns the deprecated properties (C(isEnabled),
    C(schedule.period), C(responseActions)...); the collection does not use them.
  - Needs the Microsoft Graph permission C(CustomDetection.Read.All) (or C(CustomDetection.ReadWrite.All)),
    application or delegated.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  rule_id:
    description: The id of one rule. The filters are then not allowed.
    type: str
  display_name:
    description: Only the rule with exactly this display name.
    type: str
  status:
    description: Only rules with one of these statuses.
    type: list
    elements: str
    choices: [enabled, disabled, autoDisabled]
  graph_version:
    description: The Graph version to call (V(beta) for tenants where the v1.0 endpoints are not live yet).
    type: str
    choices: [v1.0, beta]
    default: v1.0
seealso:
  - name: List detection rules (Microsoft Graph)
    description: The endpoint, its filters and its permission.
    link: https://learn.microsoft.com/en-us/graph/api/security-rulesroot-list-detectionrules
  - module: defender.endpoint.mde_detection_rule
'''

EXAMPLES = r'''
- name: Every rule of the tenant
  defender.endpoint.mde_detection_rule_info:
  register: all_rules

- name: One rule
  defender.endpoint.mde_detection_rule_info:
    rule_id: office-encoded-powershell
  register: one

- name: The rules the service turned off
  defender.endpoint.mde_detection_rule_info:
    status: [autoDisabled]
'''

RETURN = r'''
rules:
  description: The rules, as Graph returns them (camelCase keys).
  returned: success
  type: list
  elements: dict
  sample:
    - id: office-encoded-powershell
      displayName: Suspicious encoded PowerShell from Office
      status: enabled
      queryCondition: {queryText: "DeviceProcessEvents | ..."}
      schedule: {frequency: PT1H}
      detectionAction:
        alertTemplate: {title: Suspicious encoded PowerShell from Office, severity: high}
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import detections as du
from ansible_collections.defender.endpoint.plugins.module_utils import odata

PERMISSION = "CustomDetection.Read.All"


def rule_filter(display_name=None, status=None):
    parts = []
    if display_name is not None:
        parts.append("displayName eq %s" % odata.quote(display_name))
    if status:
        parts.append(odata.any_of("status", status))
    return odata.and_all(*parts)


def run(ctx):
    p = ctx.params
    version = p["graph_version"]
    if p["rule_id"] is not None:
        rule = du.get(ctx.client, du.check_rule_id(p["rule_id"]), version)
        return dict(changed=False, rules=[rule] if rule is not None else [])
    rules = du.list_rules(ctx.client, version, rule_filter(p["display_name"], p["status"]))
    if p["display_name"] is not None:  # exact, whatever the service's comparison
        rules = [r for r in rules if r.get("displayName") == p["display_name"]]
    return dict(changed=False, rules=rules)


ARGUMENT_SPEC = dict(
    rule_id=dict(type="str"),
    display_name=dict(type="str"),
    status=dict(type="list", elements="str", choices=du.ALL_STATUSES),
    graph_version=dict(type="str", choices=list(du.VERSIONS), default="v1.0"),
)
SPEC_OPTIONS = dict(mutually_exclusive=[["rule_id", "display_name"], ["rule_id", "status"]])


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(rule_id=du.check_rule_id)
    if p["display_name"] is not None:
        if not p["display_name"].strip():
            ctx.fail_json(msg="display_name must not be empty.")
        if odata.CONTROL_RE.search(p["display_name"]):
            ctx.fail_json(msg="display_name must not contain control characters such as CR, LF or NUL, got %s."
                          % odata.shown(p["display_name"]))


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
