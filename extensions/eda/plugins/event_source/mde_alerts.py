# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mde_alerts: an ansible-rulebook event source of Microsoft Defender for Endpoint alerts.

Polls ``GET /api/alerts`` by ``lastUpdateTime`` through the collection's shared client (token reuse and
cache, throttling, retries, paging) and puts each new or changed alert on the queue once, as
``{"mde_alert": <Alert entity, camelCase as the API returns it>}`` (ansible-rulebook adds ``meta``).
What was emitted is remembered across polls and, through a checkpoint file, across restarts.

See DOCUMENTATION below and docs/eda.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

DOCUMENTATION = r'''
name: mde_alerts
short_description: Poll Microsoft Defender for Endpoint alerts for Event-Driven Ansible
version_added: 0.1.0
description:
  - Polls C(GET /api/alerts) every O(interval) seconds for alerts whose C(lastUpdateTime) is at or after the last one
    seen, with the severity and status filters sent to the API as one OData C($filter), reading all pages.
  - 'Each new or changed alert (key alert C(id) + C(lastUpdateTime)) becomes one event C({"mde_alert": <alert>}); the
    alert is the Alert entity as the API returns it (camelCase). An alert that changes again is emitted again.'
  - What was emitted is kept in a checkpoint file (O(checkpoint_path)), so a restarted rulebook emits nothing twice.
  - An alert dated more than 60 seconds ahead of this machine's clock is emitted with a warning; the watermark never
    moves past now + 60 seconds (or + O(overlap), when smaller), so such an alert cannot silence the source.
  - Alert strings that hold template syntax (C({{), C({%), C({#)) are logged as a warning and written as C(!unsafe)
    when ansible-rulebook passes the event to a playbook (C(run_playbook) extra vars, C(run_module) arguments), so
    ansible-core never templates them. See docs/eda.md for what that does not cover.
  - A failed poll is logged as one line and retried at the next interval; bad options fail at start.
  - Needs the WindowsDefenderATP application permission C(Alert.Read.All) or C(Alert.ReadWrite.All).
options:
  tenant_id:
    description: The Entra ID tenant. Default E(MDE_TENANT_ID), E(AZURE_TENANT_ID) or E(AZURE_TENANT).
    type: str
  client_id:
    description: The application (client) ID. Default E(MDE_CLIENT_ID) or E(AZURE_CLIENT_ID).
    type: str
  client_secret:
    description: A client secret. Default E(MDE_CLIENT_SECRET), E(AZURE_CLIENT_SECRET) or E(AZURE_SECRET).
    type: str
  client_certificate_path:
    description: A PEM file with the app's certificate and key. Default E(MDE_CLIENT_CERTIFICATE_PATH) or
      E(AZURE_CLIENT_CERTIFICATE_PATH).
    type: path
  client_certificate_password:
    description: The password of its key. Default E(MDE_CLIENT_CERTIFICATE_PASSWORD) or E(AZURE_CLIENT_CERTIFICATE_PASSWORD).
    type: str
  access_token:
    description: A ready bearer token (expires; not refreshed). Default E(MDE_ACCESS_TOKEN).
    type: str
  auth_mode:
    description:
      - How to sign in, as the modules' O(auth_mode) (V(client_secret), V(client_certificate), V(access_token),
        V(device_code), V(managed_identity), V(workload_identity)). Default E(MDE_AUTH_MODE), else what the credential
        given implies.
      - With V(device_code), a sign-in needed at start is shown on standard error while the source waits; it is then kept
        in the token cache, so a restarted rulebook signs in silently until the refresh token expires.
    type: str
    choices: [client_secret, client_certificate, access_token, device_code, managed_identity, workload_identity]
  federated_token_file:
    description: The federated token file for V(workload_identity). Default E(MDE_FEDERATED_TOKEN_FILE) or E(AZURE_FEDERATED_TOKEN_FILE).
    type: path
  cloud:
    description: V(global), V(gcc), V(gcc_high) or V(dod). Default E(MDE_CLOUD), else V(global).
    type: str
    choices: [global, gcc, gcc_high, dod]
    default: global
  api_url:
    description: The API base URL without C(/api). Default E(MDE_API_URL), else the one of O(cloud).
    type: str
  graph_url:
    description: The Microsoft Graph base URL without C(/v1.0). Default E(MDE_GRAPH_URL), else the one of O(cloud).
    type: str
  authority_host:
    description: The Entra ID sign-in host. Default E(MDE_AUTHORITY_HOST) or E(AZURE_AUTHORITY_HOST), else the one of
      O(cloud).
    type: str
  validate_certs:
    description: Verify TLS certificates. Default E(MDE_VALIDATE_CERTS), else V(true).
    type: bool
    default: true
  ca_path:
    description: A PEM CA bundle to verify the API and sign-in hosts with. Default E(MDE_CA_PATH).
    type: path
  timeout:
    description: Seconds to wait for each HTTP request. Default E(MDE_TIMEOUT), else 30.
    type: int
    default: 30
  token_cache:
    description: Share access tokens through the file cache of the collection. Default E(MDE_TOKEN_CACHE), else V(true).
    type: bool
    default: true
  severity:
    description: Only alerts with one of these severities.
    type: list
    elements: str
    choices: [UnSpecified, Informational, Low, Medium, High]
  status:
    description: Only alerts with one of these statuses.
    type: list
    elements: str
    choices: [New, InProgress, Resolved]
  interval:
    description: Seconds between polls (a number, or an age such as V(30s) or V(5m)).
    type: str
    default: 60
  initial_lookback:
    description:
      - Without a checkpoint, the first poll reads alerts updated within this age (V(1h), V(30m), V(0s)) or since this
        ISO 8601 time. Ignored when the checkpoint file exists.
    type: str
    default: 1h
  overlap:
    description:
      - Each poll also re-reads this far behind the newest C(lastUpdateTime) seen, so an alert that becomes visible in
        the API a little after a later one is not missed. Alerts already emitted in that window are not emitted again.
      - V(0s) reads from the newest C(lastUpdateTime) seen (inclusive) only.
    type: str
    default: 2m
  include_evidence:
    description: Read each alert's C(evidence) too (C($expand=evidence)).
    type: bool
    default: false
  checkpoint_path:
    description:
      - The checkpoint file (JSON, written atomically, mode 0600). An empty value means the default.
      - Default C(<cache>/eda/mde_alerts-<digest>.json) beside the token cache (E(MDE_TOKEN_CACHE_DIR), else
        C($XDG_CACHE_HOME/defender.endpoint), else C(~/.cache/defender.endpoint)); the digest is of the API URL,
        tenant, client and filters, so sources with other filters keep their own file.
      - With O(tenants), one file holds one entry per tenant id (default C(<cache>/eda/mde_alerts-tenants-<digest>.json),
        the digest of the shared options, so adding or removing a tenant keeps the others' entries).
    type: path
  tenants:
    description:
      - Several tenants in one source, for a security provider's customers reached with one multi-tenant app, each a
        dictionary with C(tenant_id), C(name) (a short label of lower-case letters, digits and underscores) and,
        rarely, its own connection or credential options (C(client_id), C(client_secret), C(api_url), ...); what an
        entry does not set comes from the options above. O(tenant_id) is then not polled unless listed. An entry with
        a credential or a C(client_id) of its own takes none of the shared credential options; a shared
        O(access_token) or O(auth_mode=managed_identity) (each reaches one tenant only) cannot serve the list.
      - Each tenant gets its own client (token, call budget) and is polled side by side with the others, with its own
        checkpoint entry; a tenant waiting out a throttle (HTTP 429, C(Retry-After)) holds back no other tenant.
      - 'Every event carries the tenant beside the alert: C({"mde_alert": <alert>, "mde_tenant_id": <id>,
        "mde_tenant": <name>}).'
      - A tenant whose admin never consented to the app (or revoked it) is logged once as a warning naming the tenant
        and the admin-consent URL, and tried again at each poll; the other tenants go on.
    type: list
    elements: dict
'''

EXAMPLES = r'''
- name: Contain machines on new high-severity alerts
  hosts: localhost
  sources:
    - defender.endpoint.mde_alerts:
        severity: [High]
        status: [New]
        interval: 60
        checkpoint_path: /var/lib/eda/mde_alerts.json
  rules:
    - name: Isolate the machine
      condition: event.mde_alert.severity == "High" and event.mde_alert.machineId is defined
      action:
        run_module:
          name: defender.endpoint.mde_machine_action
          module_args:
            machine_id: "{{ event.mde_alert.machineId }}"
            action: isolate
            comment: "Alert {{ event.mde_alert.id }}"

- name: High-severity alerts of two customers' tenants
  hosts: localhost
  sources:
    - defender.endpoint.mde_alerts:
        severity: [High]
        tenants:
          - {tenant_id: 00000000-0000-0000-0000-0000000000f1, name: fabrikam}
          - {tenant_id: 00000000-0000-0000-0000-0000000000f2, name: northwind}
  rules:
    - name: Isolate the machine in its tenant
      condition: event.mde_alert.machineId is defined
      action:
        run_module:
          name: defender.endpoint.mde_machine_action
          module_args:
            tenant_id: "{{ event.mde_tenant_id }}"
            machine_id: "{{ event.mde_alert.machineId }}"
            action: isolate
            comment: "Alert {{ event.mde_alert.id }} of {{ event.mde_tenant }}"
'''


try:
    from ansible_collections.defender.endpoint.plugins.module_utils import poller
except ImportError:
    # The sources' one sys.path bootstrap (mde_incidents.py runs this file for it). ansible-rulebook runs a source with
    # runpy from <root>/ansible_collections/defender/endpoint/extensions/eda/plugins/event_source/, without <root> on
    # sys.path: put it there.
    _COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 6))
    if os.path.basename(_COLLECTIONS) != "ansible_collections":
        raise
    sys.path.append(os.path.dirname(_COLLECTIONS))
    from ansible_collections.defender.endpoint.plugins.module_utils import poller

ConfigError = poller.ConfigError
# As module_utils/alerts.py spells them (the API's enum values).
SEVERITIES = ["UnSpecified", "Informational", "Low", "Medium", "High"]
STATUSES = ["New", "InProgress", "Resolved"]


class AlertPoller(poller.Poller, name="mde_alerts", noun="alert", event_key="mde_alert", time_field="lastUpdateTime"):
    """GET /api/alerts by lastUpdateTime (module_utils/poller.py does the rest)."""

    OPTIONS = dict(severity=dict(type="list", choices=SEVERITIES), status=dict(type="list", choices=STATUSES),
                   include_evidence=dict(type="bool", default=False))

    def fetch(self, odata_filter):
        """Every alert matching ``odata_filter``, all pages (blocking: run in a thread)."""
        params = {"$expand": "evidence"} if self.config["include_evidence"] else None
        return list(self.client.list("/api/alerts", odata_filter=odata_filter, params=params))

    @staticmethod
    def base_url(client):
        return client.api_url


setup = AlertPoller.setup
main = AlertPoller.main

if __name__ == "__main__":
    # Print the events of one poll: python mde_alerts.py '{"severity": ["High"], "initial_lookback": "1d"}'
    AlertPoller.print_one_poll(sys.argv)
