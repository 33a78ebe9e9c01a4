"""In-process state of the emulator: seed data, machine actions, request log, counters, faults, rate limits."""

import collections
import datetime
import json
import math
import re
import threading
import time

from . import seed as seedmod

DEFAULT_MAX_ALERTS = 20000
FINAL_STATUSES = ("Succeeded", "Failed", "TimeOut", "Cancelled")

# limits per route "family": list of (calls, window seconds)
RATE_LIMITS = {
    "default": [(100, 60), (1500, 3600)],
    "getPackageUri": [(2, 60), (120, 3600)],
    "batchUpdate": [(10, 60), (500, 3600)],
    "import": [(30, 60)],
    "batchDelete": [(30, 60), (1500, 3600)],
    "hunting": [(45, 60), (1500, 3600)],
    "liveResponse": [(10, 60)],
    "tvmExport": [(30, 60), (1000, 3600)],
    "tvmMachineVulnerabilities": [(50, 60), (1500, 3600)],
    "graphIncidents": [(50, 60), (1500, 3600)],
    "detectionRules": [(150, 60)],  # README "Choices where the documentation is silent", 34
    "startInvestigation": [(50, 3600)],
}


class State:
    """All mutable emulator data. Every access from handlers happens under ``lock``."""

    def __init__(self, tokens, machines=50, alerts=None, indicators=None, seed=1, rate_limit_scale=1.0, action_delays=(0.5, 0.5),
                 tenant_id=None, domain="contoso.local"):
        self.tokens = tokens
        self.tenant_id = tenant_id or tokens.tenant_id  # the tenant whose data this is (emulator.py: one State per tenant)
        self.domain = domain
        self.lock = threading.RLock()
        self.seed = seed
        self.n_machines = machines
        self.n_alerts = alerts
        self.n_indicators = indicators
        self.rate_limit_scale = rate_limit_scale
        self.action_delays = tuple(action_delays)
        self.base_time = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.log = []
        self.counters = {"token_requests": 0, "calls": {}}
        self.faults = []
        self._windows = collections.defaultdict(collections.deque)
        self.machines = []
        self.machines_by_id = {}
        self.machines_by_name = {}
        self._machine_json = {}
        self.alerts = []
        self.alerts_by_id = {}
        self._alert_json = {}
        self.indicators = {}
        self.next_indicator_id = 1
        self.actions = []
        self.actions_by_id = {}
        self.action_outcomes = {}
        self._process_events = None
        self.reset()

    # ---- seed / reset --------------------------------------------------------------------------
    def reset(self):
        with self.lock:
            # The seed is relative to now: a reset emulator is the same tenant on the day it is reset (a machine seen
            # five minutes ago is still found by findbyip at "now", an alert of the last hour is still recent).
            self.base_time = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            self.machines = seedmod.generate_machines(self.n_machines, self.seed, self.base_time, self.domain)
            self._index_machines()
            self._machine_json = {}
            count = self.n_alerts if self.n_alerts is not None else min(2 * self.n_machines, DEFAULT_MAX_ALERTS)
            self.alerts = seedmod.generate_alerts(count, self.machines, self.seed, self.base_time, self.tenant_id)
            self.alerts_by_id = {a["id"]: a for a in self.alerts}
            self._alert_json = {}
            self._alerts_by_machine = None
            apps = self.tokens.apps
            creators = [(apps["full"]["client_id"], apps["full"]["display_name"], "AadApp"),
                        ("secop@contoso.com", "secop@contoso.com", "User"),
                        (apps["ti_own"]["client_id"], apps["ti_own"]["display_name"], "AadApp"),
                        ("5f6e7d8c-0000-4000-8000-000000000abc", "OtherSiemApp", "AadApp")]
            count = self.n_indicators if self.n_indicators is not None else 20
            self.indicators = {i["id"]: i for i in seedmod.generate_indicators(count, creators, self.base_time)}
            self.next_indicator_id = 1000 + count
            self.actions = []
            self.actions_by_id = {}
            self.action_outcomes = {}
            self._process_events = None
            self.tvm = None  # api_tvm.TvmData, derived from the machines on first use
            self.graph_incidents = None  # graph.py: Graph incidents, derived from the alerts on first use
            self.detection_rules = None  # detection_rules.py: the tenant's custom detection rules, seeded on first use
            self.entities = None  # api_entities.EntityData (files, IPs, domains, users, investigations), on first use
            self.log = []
            self.counters = {"token_requests": 0, "calls": {}}
            self.faults = []
            self._windows.clear()

    def _index_machines(self):
        self.machines_by_id = {m["id"]: m for m in self.machines}
        self.machines_by_name = {}
        for m in self.machines:
            if m["computerDnsName"]:
                for key in (m["computerDnsName"].lower(), m["computerDnsName"].split(".")[0].lower()):
                    best = self.machines_by_name.get(key)
                    if best is None or m["lastSeen"] > best["lastSeen"]:
                        self.machines_by_name[key] = m

    # ---- machines --------------------------------------------------------------------------------
    def find_machine(self, ident):
        """Machine by id, else by computer DNS name or host name (most recently seen one wins)."""
        machine = self.machines_by_id.get(ident.lower())
        if machine is None:
            machine = self.machines_by_name.get(ident.lower())
        return machine

    def machine_json(self, machine):
        cached = self._machine_json.get(machine["id"])
        if cached is None:
            cached = json.dumps(machine)
            self._machine_json[machine["id"]] = cached
        return cached

    def touch_machine(self, machine):
        self._machine_json.pop(machine["id"], None)

    def alerts_for_machine(self, machine_id):
        if self._alerts_by_machine is None:
            index = collections.defaultdict(list)
            for alert in self.alerts:
                index[alert["machineId"]].append(alert)
            self._alerts_by_machine = index
        return self._alerts_by_machine.get(machine_id, [])

    # ---- alerts ----------------------------------------------------------------------------------
    def alert_json(self, alert, expand=False):
        if expand:
            data = {k: v for k, v in alert.items() if not k.startswith("_")}
            data["evidence"] = seedmod.alert_evidence(alert, self.seed)
            return json.dumps(data)
        cached = self._alert_json.get(alert["id"])
        if cached is None:
            cached = json.dumps({k: v for k, v in alert.items() if not k.startswith("_")})
            self._alert_json[alert["id"]] = cached
        return cached

    def touch_alert(self, alert):
        self._alert_json.pop(alert["id"], None)

    # ---- machine actions ---------------------------------------------------------------------------
    def refresh_action(self, action, now=None):
        """Advance an action's status lazily from its timestamps (Pending -> InProgress -> final)."""
        if action["status"] in FINAL_STATUSES:
            return action
        now = now or time.time()
        created = action["_created"]
        # An action may carry its own (pending, running) seconds; live response sessions also advance their commands.
        pending, running = action.get("_delays") or self.action_delays
        if action.get("_refresh"):
            action["_refresh"](action, now)
        if now >= created + pending + running:
            action["status"] = action["_outcome"]
            action["lastUpdateDateTimeUtc"] = seedmod.iso(datetime.datetime.fromtimestamp(created + pending + running, datetime.timezone.utc))
            if action["status"] == "Failed" and action.get("errorHResult") in (None, 0):
                action["errorHResult"] = -2147467259
        elif now >= created + pending and action["status"] == "Pending":
            action["status"] = "InProgress"
            action["lastUpdateDateTimeUtc"] = seedmod.iso(datetime.datetime.fromtimestamp(created + pending, datetime.timezone.utc))
        return action

    def process_events(self):
        if self._process_events is None:
            self._process_events = seedmod.generate_process_events(self.machines, self.seed, self.base_time)
        return self._process_events

    # ---- log / counters ----------------------------------------------------------------------------
    def count_call(self, key):
        calls = self.counters["calls"]
        calls[key] = calls.get(key, 0) + 1

    # ---- faults -------------------------------------------------------------------------------------
    # Faults that answer in place of the API (the request has no effect) and, ``*_after``, faults that let the API
    # carry the request out and then lose its answer (the effect happened, the client cannot know it).
    # "tamper": the request is carried out and its JSON answer has ``fields`` written over it (over each entity of a
    # "value" list): a hostile or compromised server, for the tests of what the collection does with an answer.
    FAULT_KINDS = ("status", "drop", "delay", "invalid_json", "status_after", "drop_after", "tamper")

    def add_fault(self, path_regex, kind, count=1, status=500, delay=0.0, method=None, retry_after=1, skip=0,
                  message=None, fields=None, tenant=None):
        if kind not in self.FAULT_KINDS:
            raise ValueError("fault kind must be one of %s" % ", ".join(self.FAULT_KINDS))
        with self.lock:
            self.faults.append({"regex": re.compile(path_regex), "pattern": path_regex, "kind": kind, "remaining": int(count),
                                "status": int(status), "delay": float(delay), "method": method.upper() if method else None,
                                "retry_after": retry_after, "skip": int(skip), "message": message,
                                "fields": dict(fields or {}), "tenant": tenant})

    def take_fault(self, method, path, tenant_of=lambda: None):
        """The first fault for this request; ``tenant_of()``: the tenant id the request is made in, for a fault
        limited to one tenant (asked only then)."""
        with self.lock:
            for fault in self.faults:
                if fault["remaining"] <= 0:
                    continue
                if fault["tenant"] and fault["tenant"] != tenant_of():
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if fault["regex"].search(path):
                    if fault["skip"] > 0:  # let this many matching requests through first
                        fault["skip"] -= 1
                        continue
                    fault["remaining"] -= 1
                    return dict(fault)
        return None

    # ---- rate limits --------------------------------------------------------------------------------
    def rate_check(self, key, family):
        """Record a call; return None if allowed, else the Retry-After seconds (int >= 1)."""
        now = time.monotonic()
        limits = RATE_LIMITS.get(family, RATE_LIMITS["default"])
        with self.lock:
            wait = 0.0
            for calls, window in limits:
                span = window * self.rate_limit_scale
                dq = self._windows[(key, family, window)]
                while dq and dq[0] <= now - span:
                    dq.popleft()
                if len(dq) >= calls:
                    wait = max(wait, dq[0] + span - now)
            if wait > 0:
                return max(1, math.ceil(wait))
            for calls, window in limits:
                self._windows[(key, family, window)].append(now)
        return None
