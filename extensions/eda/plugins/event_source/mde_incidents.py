# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mde_incidents: an ansible-rulebook event source of Microsoft Graph security incidents.

Polls ``GET /v1.0/security/incidents`` by ``lastUpdateDateTime`` through the collection's shared client (its Graph
side) and puts each new or changed incident on the queue once, as ``{"mde_incident": <incident, with its alerts>}``.
The polling, selection, checkpoint and untrusted-text machinery is mde_alerts' (its AlertPoller), not a copy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import asyncio
import hashlib
import json
import logging
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
    description: Only incidents with one of these severities (V(informational), V(low), V(medium), V(high)).
    type: list
    elements: str
  status:
    description: Only incidents with one of these statuses (V(active), V(inProgress), V(resolved), V(redirected), V(awaitingAction)).
    type: list
    elements: str
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


def _import_base():
    try:
        from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts
    except ImportError:
        ancestors = [os.path.abspath(globals().get("__file__") or "")]
        for _level in range(8):
            ancestors.append(os.path.dirname(ancestors[-1]))
        if os.path.basename(ancestors[7]) != "ansible_collections":
            raise
        if ancestors[8] not in sys.path:
            sys.path.append(ancestors[8])
        from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts
    from ansible_collections.defender.endpoint.plugins.module_utils import incidents as incidents_mod
    return mde_alerts, incidents_mod


base, incidents = _import_base()
logger = logging.getLogger("defender.endpoint.mde_incidents")
ConfigError = base.ConfigError
SEVERITIES = ["informational", "low", "medium", "high"]
STATUSES = ["active", "inProgress", "resolved", "redirected", "awaitingAction"]
OWN_OPTIONS = ("severity", "status", "include_alerts")


def parse_args(args, environ=None, now=None):
    """mde_alerts' options and checks, with this source's severity, status and include_alerts."""
    args = dict(args or {})
    own = dict((k, args.pop(k)) for k in OWN_OPTIONS if k in args)
    if "include_evidence" in args:
        raise ConfigError("Unknown option(s) include_evidence; use include_alerts.")
    config = base.parse_args(args, environ, now)
    config["severity"] = base._enum_list(own.get("severity"), "severity", SEVERITIES)  # pylint: disable=protected-access
    config["status"] = base._enum_list(own.get("status"), "status", STATUSES)  # pylint: disable=protected-access
    config["include_alerts"] = base._as_bool(own.get("include_alerts", True), "include_alerts")  # pylint: disable=protected-access
    return config


def build_filter(state, overlap, severity=(), status=()):
    cutoff = state["watermark"] - int(overlap * base.TICKS)
    return base.odata.and_all("lastUpdateDateTime ge %s" % base.filter_time(cutoff),
                              base.odata.any_of("severity", severity), base.odata.any_of("status", status))


class IncidentPoller(base.AlertPoller):
    EVENT_KEY = "mde_incident"
    TIME_FIELD = "lastUpdateDateTime"
    NOUN = "incident"

    def build_filter(self):
        return build_filter(self.state, self.config["overlap"], self.config["severity"], self.config["status"])

    def fetch(self, odata_filter):
        return incidents.list_incidents(self.client, odata_filter, alerts=self.config["include_alerts"])


def default_checkpoint_path(cache_dir, graph_url, auth, severity, status):
    identity = auth.get("client_id") or ("token:" + hashlib.sha256((auth.get("access_token") or "").encode("utf-8"))
                                         .hexdigest()[:16])
    key = json.dumps([graph_url, auth.get("tenant_id"), identity, sorted(severity), sorted(status)])
    return os.path.join(cache_dir, "eda", "mde_incidents-%s.json" % hashlib.sha256(key.encode("utf-8")).hexdigest()[:16])


def setup(args, environ=None):
    """Validate, build the client, load (or start) the state; no API call."""
    if base.IMPORT_ERROR is not None:
        raise ConfigError("defender.endpoint.mde_incidents cannot import the collection's client (%s)." % base.IMPORT_ERROR)
    config = parse_args(args, environ)
    client = base.client_utils.create_client(sign_in=base.show_sign_in, **config["auth"])
    path = config["checkpoint_path"] or default_checkpoint_path(
        base.auth_utils.default_cache_dir(), client.graph.api_url, config["auth"], config["severity"], config["status"])
    state = base.load_checkpoint(path, config["overlap"])
    if state is None:
        state = base.initial_state(config["start"])
        logger.info("mde_incidents: no checkpoint at %s; reading incidents updated since %s.", path,
                    base.ticks_text(state["watermark"]))
    return IncidentPoller(client, config, path, state, base.install_yaml_marking())


async def main(queue, args):
    """ansible-rulebook entry point: poll until cancelled."""
    poller = setup(args)
    await poller.run(queue)


if __name__ == "__main__":
    class _PrintQueue:
        async def put(self, event):
            print(json.dumps(event))

    logging.basicConfig(level=logging.INFO)
    asyncio.run(setup(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}).poll(_PrintQueue()))
