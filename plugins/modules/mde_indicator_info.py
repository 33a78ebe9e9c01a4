#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_indicator_info
short_description: List custom indicators (IoCs) in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Returns the active custom indicators as the API returns them, all pages, optionally filtered.
  - Filters are sent to the API as one server-side OData C($filter).
  - Needs the WindowsDefenderATP application permission C(Ti.ReadWrite.All), or C(Ti.ReadWrite); an application
    with only C(Ti.ReadWrite) sees only the indicators it created.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  indicator_value:
    description:
      - Only indicators with one of these values.
      - Values are matched as given and, except for URLs, also in lower and upper case, since the API compares
        strings case-sensitively while hashes and domain names are not case-sensitive.
    type: list
    elements: str
  indicator_type:
    description: Only indicators of one of these types.
    type: list
    elements: str
    choices: [FileSha1, FileSha256, FileMd5, CertificateThumbprint, IpAddress, DomainName, Url]
  action:
    description: Only indicators with one of these actions.
    type: list
    elements: str
    choices: [Warn, Block, Audit, Alert, AlertAndBlock, BlockAndRemediate, Allowed]
  created_by:
    description:
      - Only indicators whose C(createdBy) is one of these, an application (client) ID for indicators created
        through the API, a user name for those created in the portal.
    type: list
    elements: str
  odata_filter:
    description:
      - A raw OData C($filter) expression, ANDed with the filters above, for example C(severity eq 'High').
      - The API filters indicators on C(application), C(createdByDisplayName), C(expirationTime), C(generateAlert),
        C(title), C(rbacGroupNames), C(rbacGroupIds), C(indicatorValue), C(indicatorType),
        C(creationTimeDateTimeUtc), C(createdBy), C(action) and C(severity).
    type: str
  limit:
    description: Return at most this many indicators. By default all are returned.
    type: int
'''

EXAMPLES = r'''
- name: Every indicator this application created
  defender.endpoint.mde_indicator_info:
    created_by: "{{ lookup('ansible.builtin.env', 'MDE_CLIENT_ID') }}"
  register: mine

- name: Blocked file hashes
  defender.endpoint.mde_indicator_info:
    indicator_type: [FileSha1, FileSha256, FileMd5]
    action: [Block, BlockAndRemediate]
  register: blocked

- name: Is this IP known?
  defender.endpoint.mde_indicator_info:
    indicator_value: 198.51.100.7
    indicator_type: IpAddress
  register: ip

- name: High-severity indicators, first 100
  defender.endpoint.mde_indicator_info:
    odata_filter: "severity eq 'High'"
    limit: 100
'''

RETURN = r'''
indicators:
  description: The Indicator entities, as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - id: "995"
      indicatorValue: 12.13.14.15
      indicatorType: IpAddress
      action: Block
      application: demo-test
      source: TestPrdApp
      sourceType: AadApp
      createdBy: 45097602-1234-5678-1234-9f453233e62c
      severity: Informational
      title: test
      description: test
      recommendedActions: test
      creationTimeDateTimeUtc: "2018-10-24T11:15:35.3688259Z"
      expirationTime: "2030-12-12T00:00:00Z"
      lastUpdateTime: "2019-10-24T10:54:23.2009016Z"
      lastUpdatedBy: TestPrdApp
      rbacGroupNames: []
filter:
  description: The OData C($filter) that was sent, if any.
  returned: always
  type: str
  sample: "indicatorType eq 'IpAddress' and (indicatorValue eq '198.51.100.7')"
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import indicators as ti
from ansible_collections.defender.endpoint.plugins.module_utils import odata


def build_filter(p):
    parts = [odata.any_of("indicatorType", p["indicator_type"]), odata.any_of("action", p["action"]),
             odata.any_of("createdBy", p["created_by"])]
    # Case variants, unless only URLs (whose paths are case-sensitive) are asked for.
    only_urls = bool(p["indicator_type"]) and all(t == "Url" for t in p["indicator_type"])
    values = []
    for value in p["indicator_value"] or []:
        for v in ti.value_variants("Url" if only_urls else "DomainName", value.strip()):
            if v not in values:
                values.append(v)
    parts.append(odata.any_of("indicatorValue", values))
    if p["odata_filter"]:
        parts.append("(%s)" % p["odata_filter"])
    return odata.and_all(*parts)


def run(ctx):
    odata_filter = build_filter(ctx.params)
    found = list(ctx.client.list("/api/indicators", odata_filter=odata_filter, limit=ctx.params["limit"],
                                 page_size=ti.PAGE_SIZE))
    return dict(changed=False, indicators=found, filter=odata_filter)


ARGUMENT_SPEC = dict(
    indicator_value=dict(type="list", elements="str"),
    indicator_type=dict(type="list", elements="str", choices=ti.TYPES),
    action=dict(type="list", elements="str", choices=ti.ACTIONS),
    created_by=dict(type="list", elements="str"),
    odata_filter=dict(type="str"),
    limit=dict(type="int"),
)
SPEC_OPTIONS = {}


def validate(ctx):
    """Checks before any call."""
    if ctx.params["limit"] is not None and ctx.params["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % ctx.params["limit"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
