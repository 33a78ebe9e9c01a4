#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_advanced_hunting
short_description: Run an advanced hunting (KQL) query in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Runs a Kusto (KQL) query with C(POST /api/advancedqueries/run) and returns its schema and rows as the API returns them.
  - The module only reads. It runs the query in check mode too and never reports a change.
  - "The API's limits: data of the last 30 days only; at most 100,000 rows and 124 MB per result; 200 seconds per
    query; 45 calls a minute and 1,500 an hour per tenant; 10 minutes of CPU an hour and 3 hours a day. A query over a
    limit fails with the API's message. When the API answers HTTP 429, the shared client waits as long as its
    C(Retry-After) header says and tries again."
  - Needs the WindowsDefenderATP application permission C(AdvancedQuery.Read.All). Microsoft labels this API the older,
    limited hunting API; it is not available in Defender for Business.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: The module only reads; the query runs in check mode too.
  diff_mode:
    support: none
    description: The module only reads.
options:
  query:
    description:
      - The KQL query, for example V(DeviceInfo | where OSPlatform == "Windows11" | summarize count() by MachineGroup).
      - Sent as is in the C(Query) property of the request body.
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for the query's answer (and for each other HTTP request of the task, such as the token request).
      - The API stops a query after 200 seconds and answers with an error; the default of 210 seconds leaves time for
        that answer to arrive. A longer wait cannot return more, so at most 210 is accepted.
      - A request without an answer within O(timeout) is sent again by the shared client, like any read, so set it
        above the time your query needs.
      - If not set, E(MDE_TIMEOUT) is used.
    type: int
    default: 210
notes:
  - A result of exactly 100,000 rows is probably cut at the API's limit; the module then adds a warning. Narrow the
    query (C(where), C(project), C(summarize), C(take)) to get everything.
seealso:
  - name: Advanced hunting API
    description: Microsoft's page on the API and its limits.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/run-advanced-query-api
'''

EXAMPLES = r'''
- name: Count onboarded Windows 11 machines per device group
  defender.endpoint.mde_advanced_hunting:
    query: >-
      DeviceInfo
      | where OSPlatform == "Windows11" and OnboardingStatus == "Onboarded"
      | summarize count() by MachineGroup
  register: per_group

- name: Show the counts
  ansible.builtin.debug:
    msg: "{{ per_group.results | items2dict(key_name='MachineGroup', value_name='count_') }}"

- name: PowerShell processes of the last day, at most 100
  defender.endpoint.mde_advanced_hunting:
    query: >-
      DeviceProcessEvents
      | where Timestamp > ago(1d) and FileName =~ "powershell.exe"
      | project Timestamp, DeviceId, DeviceName, ProcessCommandLine
      | take 100
    timeout: 120
  register: ps

- name: Tag the machines the hunt found
  defender.endpoint.mde_machine:
    machine_ids: "{{ ps.results | map(attribute='DeviceId') | unique | list }}"
    tags: [hunt-powershell]
  when: ps.row_count > 0
'''

RETURN = r'''
schema:
  description: The columns of the result, as the API returns them (C(Schema)), each with its C(Name) and C(Type).
  returned: always
  type: list
  elements: dict
  sample:
    - Name: Timestamp
      Type: DateTime
    - Name: DeviceName
      Type: String
results:
  description: The rows of the result (C(Results)), one dict per row keyed by column name.
  returned: always
  type: list
  elements: dict
  sample:
    - Timestamp: "2020-02-05T01:10:26.2648757Z"
      DeviceName: ws-00001.contoso.local
row_count:
  description: The number of rows in RV(results).
  returned: always
  type: int
  sample: 1
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule

PATH = "/api/advancedqueries/run"
MAX_ROWS = 100000
MAX_TIMEOUT = 210


def run(ctx):
    # A query only reads, so repeating it after an ambiguous failure cannot do anything twice.
    answer = ctx.client.post(PATH, json={"Query": ctx.params["query"]}, retry_safe=True,
                             retry_timeouts=False) or {}
    schema = answer.get("Schema") or []
    results = answer.get("Results") or []
    if len(results) >= MAX_ROWS:
        ctx.warn("The query returned %d rows, the API's limit: the results are probably cut. Narrow the query "
                 "(where, project, summarize, take) to get every row." % len(results))
    return dict(changed=False, schema=schema, results=results, row_count=len(results))


ARGUMENT_SPEC = dict(
    query=dict(type="str", required=True),
    # The shared option, with a default and a bound that fit the API's 200 seconds per query.
    timeout=dict(default=MAX_TIMEOUT),
)
SPEC_OPTIONS = {}


def validate(ctx):
    """Checks before any call."""
    if not ctx.params["query"].strip():
        ctx.fail_json(msg="query must not be empty.")
    timeout = ctx.params["timeout"]
    if timeout < 1 or timeout > MAX_TIMEOUT:
        ctx.fail_json(msg="timeout must be between 1 and %d seconds (the API stops a query after 200 seconds), "
                          "got %d." % (MAX_TIMEOUT, timeout))


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
