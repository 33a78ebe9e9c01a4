# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mde_incidents: an ansible-rulebook event source of Microsoft Graph security incidents.

Polls ``GET /v1.0/security/incidents`` by ``lastUpdateDateTime`` through the collection's shared client (its Graph
side) and puts each new or changed incident on the queue once, as ``{"mde_incident": <incident, with its alerts>}``.
The polling, selection, checkpoint and untrusted-text machinery is the collection's (module_utils/poller.py), shared
with mde_alerts, not a copy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

DOCUMENTATION = r'''
name: mde_incidents
short_description: Poll Microsoft Graph security incidents for Event-Driven Ansible
version_added: 0.2.0
description:
  - Polls C(GET /v1.0/security/incidents) of Microsoft Graph every O(interval) seconds for incidents whose
    C(lastUpdateDateTime) is at or after the last one seen (less O(overlap)), with the severity and status filters sent
    as one OData C($filter), reading all pages, with each incident's alerts (C($expand=alerts)) unless
    O(include_alerts=false).
  - 'Each new or changed incident (key incident C(id) + C(lastUpdateDateTime)) becomes one event C({"mde_incident":
    <incident>}), the incident as Graph returns it. What was emitted is kept in a checkpoint file, so a restarted
    rulebook emits nothing twice.'
  - Shares its machinery with C(mde_alerts) (future-dated times, template-like text marked C(!unsafe), failed polls
    retried at the next interval); see that source and docs/eda.md.
  - Needs the Microsoft Graph application permission C(SecurityIncident.Read.All).
options:
  severity:
    description: Only incidents with one of these severities.
    type: list
    elements: str
    choices: [informational, low, medium, high]
  status:
    description: Only incidents with one of these statuses.
    type: list
    elements: str
    choices: [active, inProgress, resolved, redirected, awaitingAction]
  include_alerts:
    description: Read each incident's alerts with their evidence (devices...).
    type: bool
    default: true
  interval:
    description: Seconds between polls (a number, or an age such as V(30s) or V(5m)).
    type: str
    default: 60
  initial_lookback:
    description: Without a checkpoint, the first poll reads incidents updated within this age or since this ISO 8601 time.
    type: str
    default: 1h
  overlap:
    description: Each poll re-reads this far behind the newest C(lastUpdateDateTime) seen.
    type: str
    default: 2m
  checkpoint_path:
    description: The checkpoint file. Default C(<cache>/eda/mde_incidents-<digest>.json) beside the token cache.
    type: path
  tenants:
    description:
      - 'Several tenants in one source, as the O(tenants) of C(mde_alerts) (C(tenant_id), C(name), optionally the
        tenant''s own connection options): each polled side by side with its own client and checkpoint entry.'
      - 'Every event carries the tenant beside the incident: C({"mde_incident": <incident>, "mde_tenant_id": <id>,
        "mde_tenant": <name>}). A tenant without admin consent is logged once and tried again at each poll.'
    type: list
    elements: dict
notes:
  - The shared connection options (tenant_id, client_id, client_secret, ..., graph_url) are those of C(mde_alerts),
    with the same environment variables.
'''

EXAMPLES = r'''
- name: Contain the devices of new high-severity incidents
  hosts: localhost
  sources:
    - defender.endpoint.mde_incidents:
        severity: [high]
        status: [active]
  rules:
    - name: Show it
      condition: event.mde_incident.severity == "high"
      action:
        debug:
'''


try:
    from ansible_collections.defender.endpoint.plugins.module_utils import poller
except ImportError:  # not on sys.path yet: the sources' one bootstrap, in mde_alerts.py beside this file, puts it there
    import runpy
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mde_alerts.py"))
    from ansible_collections.defender.endpoint.plugins.module_utils import poller
from ansible_collections.defender.endpoint.plugins.module_utils import incidents

ConfigError = poller.ConfigError
SEVERITIES = ["informational", "low", "medium", "high"]
STATUSES = ["active", "inProgress", "resolved", "redirected", "awaitingAction"]


class IncidentPoller(poller.Poller, name="mde_incidents", noun="incident", event_key="mde_incident",
                     time_field="lastUpdateDateTime"):
    """GET /v1.0/security/incidents by lastUpdateDateTime (module_utils/poller.py does the rest)."""

    OPTIONS = dict(severity=dict(type="list", choices=SEVERITIES), status=dict(type="list", choices=STATUSES),
                   include_alerts=dict(type="bool", default=True))
    REFUSED = dict(include_evidence="use include_alerts")

    def fetch(self, odata_filter):
        return incidents.list_incidents(self.client, odata_filter, alerts=self.config["include_alerts"])

    @staticmethod
    def base_url(client):
        return client.graph.api_url


setup = IncidentPoller.setup
main = IncidentPoller.main

if __name__ == "__main__":
    IncidentPoller.print_one_poll(sys.argv)
