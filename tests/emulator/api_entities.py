"""Entity pivots and automated investigations: /api/files, /api/ips, /api/domains, /api/users,
/api/machines/{id}/logonusers, /api/investigations and /api/machines/{id}/startInvestigation.

Everything here is derived from the seeded machines and alerts (``data(state)``, rebuilt after each reset), so a
file, an IP, a domain or a user answers the same machines and alerts whichever endpoint is asked. README.md,
"Entities and investigations", describes the layout and the choices where the documentation is silent.
"""

import datetime
import hashlib
import ipaddress
import json
import re
import time

from . import seed as seedmod
from .api_machines import get_machine
from .common import ApiError, check_body, collection_response, entity_response, json_response, page
from .odata import FieldSpec, compile_filter, parse_paging

MACHINE_READ = ("Machine.Read.All", "Machine.ReadWrite.All")
ALERT_READ = ("Alert.Read.All", "Alert.ReadWrite.All")
ALERT_WRITE = ("Alert.ReadWrite.All",)
# Fixed pivots of the seed (invented test data): the command-and-control alerts relate to this IP and this domain.
C2_IP = "198.51.100.200"
C2_DOMAIN = "update-check.fabrikam-cdn.example"
C2_CATEGORY = "CommandAndControl"
# The "dropper": the File evidence of alert 0 (payload0000.dll), also present on every onboarded machine whose list
# index is a multiple of DROPPER_EVERY.
DROPPER_EVERY = 8
ACTIVE_STATES = ("Queued", "Running", "PendingApproval", "PendingResource")
INVESTIGATION_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("startTime", "datetime"), ("id", "str"), ("state", "str"), ("machineId", "str"), ("triggeringAlertId", "str"))}
HASH_RE = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)((?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)+[A-Za-z]{2,63}$")
MAX_LOOKBACK_HOURS = 720
DOMAIN_MACHINES_MAX = 500
SYSTEM_PUBLISHER = ("Microsoft Corporation", "Microsoft Windows", "Microsoft Windows Production PCA 2011")


def dropper_sha1(seed):
    """The SHA-1 of the seed's dropper (tests use it)."""
    return seedmod.sha1_hex(seed, "file", 0)


class EntityData:
    """Files, IPs, domains, users and investigations for the current machines and alerts (state.entities)."""

    def __init__(self, state):
        self.state = state
        self.files = {}          # sha1 -> dict(sha1, sha256, name, path, alerts=[ids], machines=[ids], system)
        self.by_sha256 = {}
        self.ip_alerts = {C2_IP: []}
        self.domain_alerts = {C2_DOMAIN: []}
        self.user_alerts = {}    # lower-case account name -> [alert ids]
        self.investigations = []
        self.next_investigation = 800000
        self.outcomes = {}       # machine id -> state a new investigation ends in (one-shot)
        for alert in state.alerts:
            for ev in seedmod.alert_evidence(alert, state.seed):
                if ev["entityType"] in ("File", "Process"):
                    self._add_file(ev, alert, system=ev["entityType"] == "Process")
            if alert["category"] == C2_CATEGORY:
                self.ip_alerts[C2_IP].append(alert["id"])
                self.domain_alerts[C2_DOMAIN].append(alert["id"])
            user = (alert.get("relatedUser") or {}).get("userName")
            if user:
                self.user_alerts.setdefault(user.lower(), []).append(alert["id"])
        dropper = self.files.get(dropper_sha1(state.seed))
        if dropper is not None:
            for i, machine in enumerate(state.machines):
                if i % DROPPER_EVERY == 0 and machine["onboardingStatus"] == "Onboarded" and machine["id"] not in dropper["machines"]:
                    dropper["machines"].append(machine["id"])
        for alert in state.alerts:  # the seed's investigations: one per alert that names one
            if alert.get("investigationId") is not None:
                final = alert["investigationState"] not in ACTIVE_STATES
                self.investigations.append({
                    "id": str(alert["investigationId"]), "startTime": alert["alertCreationTime"],
                    "endTime": alert["lastUpdateTime"] if final else None, "state": alert["investigationState"],
                    "cancelledBy": None, "statusDetails": None, "machineId": alert["machineId"],
                    "computerDnsName": alert["computerDnsName"], "triggeringAlertId": alert["id"], "_created": None})

    def _add_file(self, ev, alert, system):
        entry = self.files.get(ev["sha1"])
        if entry is None:
            entry = {"sha1": ev["sha1"], "sha256": ev["sha256"], "name": ev["fileName"], "path": ev["filePath"],
                     "alerts": [], "machines": [], "system": system}
            self.files[ev["sha1"]] = entry
            self.by_sha256[ev["sha256"]] = entry
        entry["alerts"].append(alert["id"])
        if alert["machineId"] not in entry["machines"]:
            entry["machines"].append(alert["machineId"])

    # ---- lookups ------------------------------------------------------------------------------------------------
    def file(self, ident):
        ident = ident.lower()
        return self.files.get(ident) if len(ident) == 40 else self.by_sha256.get(ident)

    def alerts(self, ids):
        by_id = self.state.alerts_by_id
        return [by_id[i] for i in ids if i in by_id]

    def machines(self, ids):
        by_id = self.state.machines_by_id
        return [by_id[i] for i in ids if i in by_id]


def data(state):
    if getattr(state, "entities", None) is None:
        state.entities = EntityData(state)
    return state.entities


def _lookback(ctx):
    raw = ctx.query.get("lookBackHours")
    if raw is None:
        return MAX_LOOKBACK_HOURS
    try:
        hours = int(raw)
    except ValueError as exc:
        raise ApiError(400, "InvalidInput", "lookBackHours must be an integer, got %s" % raw) from exc
    if hours < 1 or hours > MAX_LOOKBACK_HOURS:
        raise ApiError(400, "InvalidInput", "lookBackHours must be between 1 and %d, got %d" % (MAX_LOOKBACK_HOURS, hours))
    return hours


def _since(hours):
    return seedmod.iso(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours))


def _alerts_response(ctx, alerts):
    return collection_response(ctx, "Alerts", [ctx.state.alert_json(a) for a in alerts])


def _machines_response(ctx, machines):
    return collection_response(ctx, "Machines", [ctx.state.machine_json(m) for m in machines])


def _stats(alerts, since):
    """(prevalence, first seen, last seen) over the alerts whose last event is within the window."""
    recent = [a for a in alerts if a["lastEventTime"] >= since]
    if not recent:
        return 0, None, None
    return (len({a["machineId"] for a in recent}), min(a["firstEventTime"] for a in recent),
            max(a["lastEventTime"] for a in recent))


def _short(stamp):
    return stamp[:19] + "Z" if stamp else None


# ---- files -----------------------------------------------------------------------------------------------------------
def _check_hash(ident, sha1_only=False):
    if not HASH_RE.match(ident):
        raise ApiError(400, "InvalidHashValue", "Hash %s is invalid" % ident)
    if sha1_only and not SHA1_RE.match(ident):
        raise ApiError(400, "InvalidHashValue", "Hash %s is invalid: only SHA-1 is supported by this API" % ident)


def _file_entity(ctx, entry):
    alerts = data(ctx.state).alerts(entry["alerts"])
    first = min((a["firstEventTime"] for a in alerts), default=None)
    last = max((a["lastEventTime"] for a in alerts), default=None)
    system = entry["system"]
    digest = int(entry["sha1"][:6], 16)
    return {
        "sha1": entry["sha1"], "sha256": entry["sha256"], "md5": hashlib.md5(entry["name"].encode()).hexdigest(),
        "globalPrevalence": 1000000 + digest if system else 1 + digest % 40,
        "globalFirstObserved": "2019-10-01T00:00:00Z" if system else _short(first),
        "globalLastObserved": _short(last), "size": 45056 + digest % 100000,
        "fileType": "APP" if system else "DLL", "isPeFile": True,
        "filePublisher": SYSTEM_PUBLISHER[0] if system else None,
        "fileProductName": "Microsoft Windows Operating System" if system else None,
        "signer": SYSTEM_PUBLISHER[1] if system else None, "issuer": SYSTEM_PUBLISHER[2] if system else None,
        "signerHash": seedmod.sha1_hex("signer") if system else None, "isValidCertificate": bool(system),
        "determinationType": "Clean" if system else "Malware",
        "determinationValue": None if system else "Trojan:Win32/Emulated.%s" % entry["name"].split(".")[0],
    }


def _known_file(ctx, ident):
    _check_hash(ident)
    entry = data(ctx.state).file(ident)
    if entry is None:
        raise ApiError(404, "ResourceNotFound", "File %s was not found" % ident)
    return entry


def get_file(ctx, ident):
    return entity_response(ctx, "Files/$entity", _file_entity(ctx, _known_file(ctx, ident)))


def file_stats(ctx, ident):
    entry = _known_file(ctx, ident)
    hours = _lookback(ctx)
    ent = _file_entity(ctx, entry)
    since = _since(hours)
    alerts = data(ctx.state).alerts(entry["alerts"])
    machines = data(ctx.state).machines(entry["machines"])
    recent = [m for m in machines if m["lastSeen"] >= since]
    _count, first, _last = _stats(alerts, since)
    body = {"@odata.context": "%s/api/$metadata#microsoft.windowsDefenderATP.api.InOrgFileStats" % ctx.base_url,
            "sha1": entry["sha1"], "organizationPrevalence": len(recent), "orgFirstSeen": _short(first),
            "orgLastSeen": _short(max(m["lastSeen"] for m in recent)) if recent else None,
            "globallyPrevalence": ent["globalPrevalence"], "globalFirstObserved": ent["globalFirstObserved"],
            "globalLastObserved": ent["globalLastObserved"], "topFileNames": [entry["name"]]}
    return json_response(body)


def file_machines(ctx, ident):
    _check_hash(ident, sha1_only=True)
    entry = data(ctx.state).file(ident)
    return _machines_response(ctx, data(ctx.state).machines(entry["machines"]) if entry else [])


def file_alerts(ctx, ident):
    _check_hash(ident, sha1_only=True)
    entry = data(ctx.state).file(ident)
    return _alerts_response(ctx, data(ctx.state).alerts(entry["alerts"]) if entry else [])


# ---- IPs and domains ---------------------------------------------------------------------------------------------------
def _check_ip(ip):
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError as exc:
        raise ApiError(400, "InvalidIpAddress", "IP %s is invalid" % ip) from exc


def _check_domain(domain):
    if not DOMAIN_RE.match(domain):
        raise ApiError(400, "InvalidDomainName", "Domain %s is invalid" % domain)
    return domain.lower()


def ip_stats(ctx, ip):
    ip = _check_ip(ip)
    hours = _lookback(ctx)
    count, first, last = _stats(data(ctx.state).alerts(data(ctx.state).ip_alerts.get(ip, [])), _since(hours))
    return json_response({"@odata.context": "%s/api/$metadata#microsoft.windowsDefenderATP.api.InOrgIPStats" % ctx.base_url,
                          "ipAddress": ip, "organizationPrevalence": count, "orgFirstSeen": _short(first),
                          "orgLastSeen": _short(last)})


def ip_alerts(ctx, ip):
    ip = _check_ip(ip)
    return _alerts_response(ctx, data(ctx.state).alerts(data(ctx.state).ip_alerts.get(ip, [])))


def domain_stats(ctx, domain):
    domain = _check_domain(domain)
    hours = _lookback(ctx)
    count, first, last = _stats(data(ctx.state).alerts(data(ctx.state).domain_alerts.get(domain, [])), _since(hours))
    return json_response({"@odata.context": "%s/api/$metadata#microsoft.windowsDefenderATP.api.InOrgDomainStats" % ctx.base_url,
                          "host": domain, "organizationPrevalence": count, "orgFirstSeen": _short(first),
                          "orgLastSeen": _short(last)})


def domain_alerts(ctx, domain):
    domain = _check_domain(domain)
    return _alerts_response(ctx, data(ctx.state).alerts(data(ctx.state).domain_alerts.get(domain, [])))


def domain_machines(ctx, domain):
    domain = _check_domain(domain)
    alerts = data(ctx.state).alerts(data(ctx.state).domain_alerts.get(domain, []))
    ids = list(dict.fromkeys(a["machineId"] for a in alerts))[:DOMAIN_MACHINES_MAX]
    return _machines_response(ctx, data(ctx.state).machines(ids))


# ---- users ---------------------------------------------------------------------------------------------------------------
def _user_alerts(ctx, name):
    return data(ctx.state).alerts(data(ctx.state).user_alerts.get(name.lower(), []))


def user_alerts(ctx, name):
    return _alerts_response(ctx, _user_alerts(ctx, name))


def user_machines(ctx, name):
    ids = list(dict.fromkeys(a["machineId"] for a in _user_alerts(ctx, name)))
    return _machines_response(ctx, data(ctx.state).machines(ids))


def logon_users(ctx, ident):
    machine = get_machine(ctx, ident)
    users = {}
    for alert in ctx.state.alerts_for_machine(machine["id"]):
        rel = alert.get("relatedUser") or {}
        name = rel.get("userName")
        if not name:
            continue
        user = users.get(name.lower())
        if user is None:
            domain = (rel.get("domainName") or "contoso").lower()
            user = users[name.lower()] = {
                "id": "%s\\%s" % (domain, name), "accountName": name, "accountDomain": domain,
                "firstSeen": _short(alert["firstEventTime"]), "lastSeen": _short(alert["lastEventTime"]),
                "logonTypes": "Interactive", "isDomainAdmin": name.lower() == "user0000", "isOnlyNetworkUser": False}
        user["firstSeen"] = min(user["firstSeen"], _short(alert["firstEventTime"]))
        user["lastSeen"] = max(user["lastSeen"], _short(alert["lastEventTime"]))
    return collection_response(ctx, "Users", [json.dumps(u) for u in users.values()])


# ---- investigations -------------------------------------------------------------------------------------------------------
def refresh_investigation(state, inv, now=None):
    """Advance a started investigation lazily: Queued -> Running -> its outcome (action_delays, as machine actions)."""
    if inv.get("_created") is None or inv["state"] not in ("Queued", "Running"):
        return inv
    now = now or time.time()
    pending, running = state.action_delays
    if now >= inv["_created"] + pending + running:
        inv["state"] = inv["_outcome"]
        inv["endTime"] = seedmod.iso(datetime.datetime.fromtimestamp(inv["_created"] + pending + running, datetime.timezone.utc))
    elif now >= inv["_created"] + pending:
        inv["state"] = "Running"
    return inv


def _view(state, inv):
    refresh_investigation(state, inv)
    return {k: v for k, v in inv.items() if not k.startswith("_")}


def _ordered(state):
    return sorted(data(state).investigations, key=lambda i: i["startTime"], reverse=True)  # newest first


def list_investigations(ctx):
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), INVESTIGATION_FIELDS)
    now = time.time()
    items = [i for i in _ordered(ctx.state) if pred is None or pred(refresh_investigation(ctx.state, i, now))]
    chunk = page(items, top if top is not None else 10000, skip)
    return collection_response(ctx, "Investigations", [json.dumps(_view(ctx.state, i)) for i in chunk])


def get_investigation(ctx, ident):
    for inv in data(ctx.state).investigations:
        if inv["id"] == ident or (inv["triggeringAlertId"] or "").lower() == ident.lower():
            return entity_response(ctx, "Investigations/$entity", _view(ctx.state, inv))
    raise ApiError(404, "ResourceNotFound", "Investigation %s was not found" % ident)


def start_investigation(ctx, ident):
    state = ctx.state
    machine = get_machine(ctx, ident)
    body = check_body(ctx.body, required=("Comment",))
    if not isinstance(body["Comment"], str):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Comment must be a string")
    ents = data(state)
    for inv in ents.investigations:
        if inv["machineId"] == machine["id"] and refresh_investigation(state, inv)["state"] in ACTIVE_STATES:
            raise ApiError(400, "ActiveRequestAlreadyExists", "An automated investigation is already running on this machine")
    now = time.time()
    outcome = ents.outcomes.pop(machine["id"], None)
    if outcome is None:
        if machine["osPlatform"] in ("Linux", "macOS"):
            outcome = "UnsupportedOs"
        elif any(a["status"] != "Resolved" for a in state.alerts_for_machine(machine["id"])):
            outcome = "SuccessfullyRemediated"
        else:
            outcome = "Benign"
    inv = {"id": str(ents.next_investigation), "startTime": seedmod.iso(datetime.datetime.fromtimestamp(now, datetime.timezone.utc)),
           "endTime": None, "state": "Queued", "cancelledBy": None, "statusDetails": None, "machineId": machine["id"],
           "computerDnsName": machine["computerDnsName"], "triggeringAlertId": None, "_created": now, "_outcome": outcome,
           "_comment": body["Comment"], "_requestor": ctx.requestor}
    ents.next_investigation += 1
    ents.investigations.append(inv)
    return entity_response(ctx, "Investigations/$entity", _view(state, inv), status=201)


def set_investigation_outcome(state, machine_id, outcome):
    """Tests: the next investigation started on ``machine_id`` ends in ``outcome`` (one-shot)."""
    with state.lock:
        data(state).outcomes[machine_id] = outcome


def investigations(state):
    """Tests: every investigation (started ones refreshed), oldest first."""
    with state.lock:
        return [_view(state, i) for i in data(state).investigations]


H = r"(?P<ident>[^/]+)"
ROUTES = [
    # method, path regex (after /api), template, handler, roles, rate family
    ("GET", r"/files/" + H, "/api/files/{id}", get_file, ("File.Read.All",), "default"),
    ("GET", r"/files/%s/stats" % H, "/api/files/{id}/stats", file_stats, ("File.Read.All",), "default"),
    ("GET", r"/files/%s/machines" % H, "/api/files/{id}/machines", file_machines, MACHINE_READ, "default"),
    ("GET", r"/files/%s/alerts" % H, "/api/files/{id}/alerts", file_alerts, ALERT_READ, "default"),
    ("GET", r"/ips/(?P<ip>[^/]+)/stats", "/api/ips/{ip}/stats", ip_stats, ("Ip.Read.All",), "default"),
    ("GET", r"/ips/(?P<ip>[^/]+)/alerts", "/api/ips/{ip}/alerts", ip_alerts, ALERT_READ, "default"),
    ("GET", r"/domains/(?P<domain>[^/]+)/stats", "/api/domains/{domain}/stats", domain_stats, ("URL.Read.All",), "default"),
    ("GET", r"/domains/(?P<domain>[^/]+)/machines", "/api/domains/{domain}/machines", domain_machines, MACHINE_READ, "default"),
    ("GET", r"/domains/(?P<domain>[^/]+)/alerts", "/api/domains/{domain}/alerts", domain_alerts, ALERT_WRITE, "default"),
    ("GET", r"/users/(?P<name>[^/]+)/alerts", "/api/users/{id}/alerts", user_alerts, ALERT_READ, "default"),
    ("GET", r"/users/(?P<name>[^/]+)/machines", "/api/users/{id}/machines", user_machines, ("Machine.ReadWrite.All",), "default"),
    ("GET", r"/machines/%s/logonusers" % H, "/api/machines/{id}/logonusers", logon_users, ("User.Read.All",), "default"),
    ("GET", r"/investigations", "/api/investigations", list_investigations, ALERT_READ, "default"),
    ("GET", r"/investigations/" + H, "/api/investigations/{id}", get_investigation, ALERT_READ, "default"),
    ("POST", r"/machines/%s/startInvestigation" % H, "/api/machines/{id}/startInvestigation", start_investigation, ALERT_WRITE,
     "startInvestigation"),
]
