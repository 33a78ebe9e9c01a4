#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_advanced_hunting
short_description: Run an advanced hunting (KQL) query through Microsoft Graph or the Defender for Endpoint API
version_added: 0.1.0
description:
  - Runs a Kusto (KQL) query and returns its schema and rows, in the same shape whichever API answered.
  - By default (O(api=graph)) the query goes to Microsoft Graph's C(POST /v1.0/security/runHuntingQuery), which needs
    the Microsoft Graph application permission C(ThreatHunting.Read.All).
  - O(api=mde) uses the Defender for Endpoint API's C(POST /api/advancedqueries/run) (permission
    C(AdvancedQuery.Read.All)). Microsoft is retiring it (message center MC1220762) and it stops returning data on
    1 February 2027, so the module warns when it is used.
  - The module only reads. It runs the query in check mode too and never reports a change.
  - "The documented limits: data of the last 30 days only; at most 100,000 rows and 124 MB per result; 200 seconds per
    query (a query that timed out is not re-run); 45 calls a minute per tenant; 10 minutes of CPU an hour and 3 hours
    a day. A query over a quota fails with the API's message. When the API answers HTTP 429 with a short
    C(Retry-After), the shared client waits and tries again; a longer one (a CPU quota spent for the hour) fails at
    once, saying when to try again."
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
  timespan:
    description:
      - The time range of the data the query sees, an ISO 8601 duration such as V(P1D), V(PT12H) or V(P30D), sent as
        the C(Timespan) property. Without it, Microsoft Graph applies its default range.
      - Only with O(api=graph); the Defender for Endpoint API has no such property (use C(where Timestamp > ago(1d))).
    type: str
  api:
    description:
      - V(graph) runs the query through Microsoft Graph (C(ThreatHunting.Read.All)).
      - V(mde) runs it through the retiring Defender for Endpoint advanced hunting API (C(AdvancedQuery.Read.All)),
        with a deprecation warning; it stops returning data on 2027-02-01.
    type: str
    choices: [graph, mde]
    default: graph
  timeout:
    description:
      - Seconds to wait for the query's answer (and for each other HTTP request of the task, such as the token request).
      - The API stops a query after 200 seconds and answers with an error; the default of 210 seconds leaves time for
        that answer to arrive. A longer wait cannot return more, so at most 210 is accepted.
      - A query without an answer within O(timeout) is not sent again (it would spend the tenant's CPU quota again).
      - If not set, E(MDE_TIMEOUT) is used.
    type: int
    default: 210
notes:
  - A result of exactly 100,000 rows is probably cut at the API's limit; the module then adds a warning. Narrow the
    query (C(where), C(project), C(summarize), C(take)) to get everything.
  - Microsoft Graph names the columns C(name) and C(type); the Defender for Endpoint API C(Name) and C(Type). The module
    returns C(name) and C(type) for both.
seealso:
  - name: runHuntingQuery (Microsoft Graph)
    description: The Graph method and its permission.
    link: https://learn.microsoft.com/en-us/graph/api/security-security-runhuntingquery
  - name: Advanced hunting API (Defender for Endpoint)
    description: The retiring API and its limits.
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
      | where FileName =~ "powershell.exe"
      | project Timestamp, DeviceId, DeviceName, ProcessCommandLine
      | take 100
    timespan: P1D
    timeout: 120
  register: ps

- name: Tag the machines the hunt found
  defender.endpoint.mde_machine:
    machine_ids: "{{ ps.results | map(attribute='DeviceId') | unique | list }}"
    tags: [hunt-powershell]
  when: ps.row_count > 0

- name: The same query through the retiring Defender for Endpoint API (until 2027-02-01)
  defender.endpoint.mde_advanced_hunting:
    query: DeviceInfo | summarize count() by OSPlatform
    api: mde
'''

RETURN = r'''
schema:
  description: The columns of the result, each with its C(name) and C(type), whichever API answered.
  returned: always
  type: list
  elements: dict
  sample:
    - name: Timestamp
      type: DateTime
    - name: DeviceName
      type: String
results:
  description: The rows of the result, one dict per row keyed by column name.
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
api:
  description: The API that answered, V(graph) or V(mde).
  returned: always
  type: str
  sample: graph
'''

import re

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule

PATH = "/api/advancedqueries/run"
GRAPH_PATH = "/v1.0/security/runHuntingQuery"
MAX_ROWS = 100000
MAX_TIMEOUT = 210
RETIREMENT = "2027-02-01"
DEPRECATION = ("api: mde uses the Defender for Endpoint advanced hunting API (/api/advancedqueries/run), which Microsoft "
               "is retiring (message center MC1220762): it stops returning data on %s. Use api: graph (Microsoft "
               "Graph runHuntingQuery, application permission ThreatHunting.Read.All)." % RETIREMENT)
_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def columns(schema):
    """The schema as ``[{name, type}]``, from Graph's ``name``/``type`` or the Defender API's ``Name``/``Type``."""
    out = []
    for column in schema or []:
        if isinstance(column, dict):
            out.append({"name": column.get("name", column.get("Name")), "type": column.get("type", column.get("Type"))})
    return out


def run(ctx):
    p = ctx.params
    # A query only reads, so repeating it after a dropped connection cannot do anything twice; a query that ran out
    # of time (read timeout, 504) is not re-run: it would only spend the tenant's CPU quota again.
    if p["api"] == "mde":
        ctx.warn(DEPRECATION)
        answer = ctx.client.post(PATH, json={"Query": p["query"]}, retry_safe=True, retry_timeouts=False) or {}
        schema, results = answer.get("Schema"), answer.get("Results")
    else:
        body = {"Query": p["query"]}
        if p["timespan"]:
            body["Timespan"] = p["timespan"]
        answer = ctx.client.graph.post(GRAPH_PATH, json=body, retry_safe=True, retry_timeouts=False) or {}
        schema, results = answer.get("schema"), answer.get("results")
    results = results or []
    if len(results) >= MAX_ROWS:
        ctx.warn("The query returned %d rows, the API's limit: the results are probably cut. Narrow the query "
                 "(where, project, summarize, take) to get every row." % len(results))
    return dict(changed=False, schema=columns(schema), results=results, row_count=len(results), api=p["api"])


ARGUMENT_SPEC = dict(
    query=dict(type="str", required=True),
    timespan=dict(type="str"),
    api=dict(type="str", choices=["graph", "mde"], default="graph"),
    # The shared option, with a default and a bound that fit the API's 200 seconds per query.
    timeout=dict(default=MAX_TIMEOUT),
)
SPEC_OPTIONS = {}


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    if not p["query"].strip():
        ctx.fail_json(msg="query must not be empty.")
    timeout = p["timeout"]
    if timeout < 1 or timeout > MAX_TIMEOUT:
        ctx.fail_json(msg="timeout must be between 1 and %d seconds (the API stops a query after 200 seconds), "
                          "got %d." % (MAX_TIMEOUT, timeout))
    if p["timespan"] is not None:
        if p["api"] == "mde":
            ctx.fail_json(msg="timespan is for api: graph only; with api: mde, limit the time in the query "
                              "(where Timestamp > ago(1d)).")
        if not _DURATION.match(p["timespan"].strip()):
            ctx.fail_json(msg="timespan must be an ISO 8601 duration such as P1D, PT12H or P30D, got %r."
                              % p["timespan"])
        p["timespan"] = p["timespan"].strip()


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
