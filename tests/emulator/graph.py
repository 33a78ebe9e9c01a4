"""Microsoft Graph security (``/v1.0/security/...``) on the emulator's HTTPS server: advanced hunting and incidents.

- ``POST /v1.0/security/runHuntingQuery`` (https://learn.microsoft.com/en-us/graph/api/security-security-runhuntingquery):
  body ``{"Query", "Timespan"}``, answer ``{"schema": [{"name", "type"}], "results": [...]}``; the KQL subset of
  hunting.py over the same seed data.
- ``GET /v1.0/security/incidents`` (``$filter``, ``$top``, ``$skip``, ``$expand=alerts``, ``@odata.nextLink``),
  ``GET|PATCH /v1.0/security/incidents/{id}``, ``POST /v1.0/security/incidents/{id}/comments``
  (https://learn.microsoft.com/en-us/graph/api/resources/security-incident).

Tokens must carry a Graph audience (auth.GRAPH_AUDIENCES); errors have Graph's shape
``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``
(https://learn.microsoft.com/en-us/graph/errors). Choices where the docs are silent: README.md, "Microsoft Graph".
"""

import datetime
import json
import re
import uuid

from starlette.responses import Response

from . import detection_rules, hunting
from .auth import GRAPH_AUDIENCES
from .auth_user import delegated_requirement, signed_in_user
from .common import ApiError
from .odata import FieldSpec, ODataError, compile_filter, parse_paging
from .seed import iso

# beta too: its detection rules still carry the properties deprecated by the 2026 rework (detection_rules.py).
GRAPH_PREFIX = re.compile(r"^/(?:v1\.0|beta)(?=/security(/|$))")
GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
READ = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
WRITE = ("SecurityIncident.ReadWrite.All",)
HUNT = ("ThreatHunting.Read.All",)
MAX_TOP = 50
STATUSES = ("active", "resolved", "inProgress", "redirected", "awaitingAction", "unknownFutureValue")
SETTABLE_STATUSES = ("active", "resolved", "inProgress")
SEVERITIES = ("unknown", "informational", "low", "medium", "high", "unknownFutureValue")
CLASSIFICATIONS = ("unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue")
DETERMINATIONS = {
    "truePositive": ("multiStagedAttack", "maliciousUserActivity", "compromisedAccount", "malware", "phishing",
                     "unwantedSoftware", "other"),
    "informationalExpectedActivity": ("securityTesting", "lineOfBusinessApplication", "confirmedUserActivity", "other"),
    "falsePositive": ("notMalicious", "notEnoughDataToValidate", "other"),
    "unknown": ("unknown",),
}
ALL_DETERMINATIONS = ("unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
                      "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious",
                      "notEnoughDataToValidate", "confirmedUserActivity", "lineOfBusinessApplication",
                      "unknownFutureValue")
PATCHABLE = ("assignedTo", "classification", "determination", "status", "customTags", "resolvingComment")
INCIDENT_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("assignedTo", "str"), ("classification", "str"), ("createdDateTime", "datetime"), ("determination", "str"),
    ("lastUpdateDateTime", "datetime"), ("severity", "str"), ("status", "str"), ("id", "str"))}
SEVERITY_ORDER = {"Informational": 1, "Low": 2, "Medium": 3, "High": 4, "UnSpecified": 0}
ALERT_STATUS = {"New": "new", "InProgress": "inProgress", "Resolved": "resolved"}
CLASSIFICATION = {"TruePositive": "truePositive", "FalsePositive": "falsePositive",
                  "InformationalExpectedActivity": "informationalExpectedActivity"}
DETERMINATION = {"Malware": "malware", "Clean": "notMalicious", "Other": "other", "Phishing": "phishing",
                 "SecurityTesting": "securityTesting", "InsufficientData": "notEnoughDataToValidate",
                 "CompromisedUser": "compromisedAccount", "MultiStagedAttack": "multiStagedAttack",
                 "MaliciousUserActivity": "maliciousUserActivity", "UnwantedSoftware": "unwantedSoftware",
                 "LineOfBusinessApplication": "lineOfBusinessApplication",
                 "ConfirmedUserActivity": "confirmedUserActivity", "NotMalicious": "notMalicious",
                 "ConfirmedActivity": "confirmedUserActivity"}
DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def now_iso():
    return iso(datetime.datetime.now(datetime.timezone.utc))


def error_response(status, code, message, headers=None):
    inner = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    body = json.dumps({"error": {"code": code, "message": message, "innerError": inner}})
    return Response(body, status_code=status, headers=dict(headers or {}, **{"content-type": "application/json"}))


def fault_response(fault):
    status = fault["status"]
    codes = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Forbidden", 404: "NotFound",
             429: "TooManyRequests", 504: "GatewayTimeout"}
    headers = {}
    if status == 429 and fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    message = fault.get("message") or "Emulated fault (HTTP %d)" % status
    return error_response(status, codes.get(status, "InternalServerError" if status >= 500 else "BadRequest"),
                          message, headers)


def ok(obj, status=200):
    return Response(json.dumps(obj), status_code=status, headers={"content-type": GRAPH_JSON})


# ---- incidents: derived from the seed alerts on first use --------------------------------------------------
def _incidents(state):
    data = getattr(state, "graph_incidents", None)
    if data is None:
        groups = {}
        for alert in state.alerts:
            groups.setdefault(alert["incidentId"], []).append(alert)
        data = {}
        for iid in sorted(groups):
            members = groups[iid]
            statuses = {a["status"] for a in members}
            resolved = statuses == {"Resolved"}
            status = "resolved" if resolved else ("inProgress" if "InProgress" in statuses else "active")
            if status == "inProgress" and iid % 5 == 0:
                status = "awaitingAction"  # Defender's automation waits for an analyst's approval
            top = max(members, key=lambda a: SEVERITY_ORDER.get(a["severity"], 0))
            first = min(members, key=lambda a: a["alertCreationTime"])
            machines = {a["machineId"] for a in members}
            owner = next((a["assignedTo"] for a in members if a["assignedTo"]), None)
            last = [a for a in members if a["status"] == "Resolved"]
            data[str(iid)] = {
                "id": str(iid),
                "tenantId": state.tenant_id,
                "status": status,
                "incidentWebUrl": "https://security.microsoft.com/incidents/%s?tid=%s" % (iid, state.tenant_id),
                "redirectIncidentId": None,
                "displayName": "%s on %s" % (first["title"], "one endpoint" if len(machines) == 1
                                             else "%d endpoints" % len(machines)),
                "createdDateTime": first["alertCreationTime"],
                "lastUpdateDateTime": max(a["lastUpdateTime"] for a in members),
                "assignedTo": owner,
                "classification": CLASSIFICATION.get(last[0]["classification"], "unknown") if resolved else "unknown",
                "determination": DETERMINATION.get(last[0]["determination"], "unknown") if resolved else "unknown",
                "severity": top["severity"].lower() if top["severity"] in SEVERITY_ORDER else "unknown",
                "customTags": [],
                "systemTags": [],
                "comments": [],
                "summary": None,
                "description": None,
                "resolvingComment": None,
                "lastModifiedBy": None,
                "_alerts": [a["id"] for a in members],
            }
        state.graph_incidents = data
    return data


def graph_alert(alert):
    """An MDE alert as Graph's alert (https://learn.microsoft.com/en-us/graph/api/resources/security-alert)."""
    return {
        "id": alert["id"], "providerAlertId": alert["id"], "incidentId": str(alert["incidentId"]),
        "status": ALERT_STATUS.get(alert["status"], "unknown"), "severity": alert["severity"].lower(),
        "classification": CLASSIFICATION.get(alert["classification"]),
        "determination": DETERMINATION.get(alert["determination"]),
        "serviceSource": "microsoftDefenderForEndpoint", "detectionSource": "microsoftDefenderForEndpoint",
        "title": alert["title"], "description": alert["description"], "category": alert["category"],
        "assignedTo": alert["assignedTo"], "createdDateTime": alert["alertCreationTime"],
        "lastUpdateDateTime": alert["lastUpdateTime"], "mitreTechniques": alert["mitreTechniques"],
        "evidence": [{
            "@odata.type": "#microsoft.graph.security.deviceEvidence", "createdDateTime": alert["alertCreationTime"],
            "verdict": "suspicious", "remediationStatus": "none", "roles": [], "tags": [],
            "mdeDeviceId": alert["machineId"], "deviceDnsName": alert["computerDnsName"],
            "rbacGroupName": alert["rbacGroupName"],
        }],
    }


# Evolvable enums (https://learn.microsoft.com/en-us/graph/best-practices-concept#handling-future-members-in-evolvable-
# enumerations): members defined after ``unknownFutureValue`` are sent and accepted only when the request carries
# ``Prefer: include-unknown-enum-members``; otherwise an answer shows ``unknownFutureValue`` in their place and a
# request that names one is refused (400). microsoft.graph.security.incidentStatus has one such member,
# awaitingAction (https://learn.microsoft.com/en-us/graph/api/resources/security-incident).
EVOLVED_STATUSES = ("awaitingAction",)
PREFER_UNKNOWN = "include-unknown-enum-members"


def view(ctx, incident, expand=False):
    state = ctx.state
    body = {k: v for k, v in incident.items() if not k.startswith("_")}
    if body.get("status") in EVOLVED_STATUSES and not getattr(ctx, "include_unknown", False):
        body["status"] = "unknownFutureValue"
    if expand:
        body["alerts"] = [graph_alert(state.alerts_by_id[i]) for i in incident["_alerts"] if i in state.alerts_by_id]
    return body


def _expand(query):
    expand = query.get("$expand")
    if expand is None:
        return False
    if expand.strip() != "alerts":
        raise GraphError(400, "BadRequest", "Only $expand=alerts is supported on incidents")
    return True


def list_incidents(ctx, base):
    top, skip = parse_paging(ctx.query, max_top=MAX_TOP)
    top = MAX_TOP if top is None else top
    text = ctx.query.get("$filter") or ""
    for member in EVOLVED_STATUSES:
        if "'%s'" % member.lower() in text.lower() and not getattr(ctx, "include_unknown", False):
            raise GraphError(400, "BadRequest", "Invalid filter clause: the enumeration member '%s' of "
                             "microsoft.graph.security.incidentStatus needs the request header Prefer: %s."
                             % (member, PREFER_UNKNOWN))
    pred = compile_filter(ctx.query.get("$filter"), INCIDENT_FIELDS)
    expand = _expand(ctx.query)
    items = list(_incidents(ctx.state).values())
    if pred is not None:
        items = [i for i in items if pred(i)]
    chunk = items[skip:skip + top]
    body = {"@odata.context": "%s/v1.0/$metadata#security/incidents" % base}
    if skip + top < len(items):
        from urllib.parse import urlencode
        query = dict(ctx.query, **{"$skip": str(skip + top), "$top": str(top)})
        body["@odata.nextLink"] = "%s/v1.0/security/incidents?%s" % (base, urlencode(query))
    body["value"] = [view(ctx, i, expand) for i in chunk]
    return ok(body)


def _get(ctx, ident):
    incident = _incidents(ctx.state).get(ident)
    if incident is None:
        raise GraphError(404, "NotFound", "Incident %s was not found" % ident)
    return incident


def get_incident(ctx, base, ident):
    body = {"@odata.context": "%s/v1.0/$metadata#security/incidents/$entity" % base}
    body.update(view(ctx, _get(ctx, ident), _expand(ctx.query)))
    return ok(body)


def patch_incident(ctx, base, ident):
    incident = _get(ctx, ident)
    body = ctx.body
    if not isinstance(body, dict) or not body:
        raise GraphError(400, "BadRequest", "A request body with at least one property is required")
    for key in body:
        if key not in PATCHABLE:
            raise GraphError(400, "BadRequest", "Invalid property '%s': the properties that can be updated are %s"
                             % (key, ", ".join(PATCHABLE)))
    checks = (("status", SETTABLE_STATUSES), ("classification", CLASSIFICATIONS), ("determination", ALL_DETERMINATIONS))
    for key, allowed in checks:
        if key in body and body[key] not in allowed:
            raise GraphError(400, "BadRequest", "Invalid value '%s' for property '%s'" % (body[key], key))
    if "customTags" in body and (not isinstance(body["customTags"], list)
                                 or not all(isinstance(t, str) for t in body["customTags"])):
        raise GraphError(400, "BadRequest", "customTags must be a list of strings")
    classification = body.get("classification", incident["classification"])
    determination = body.get("determination", incident["determination"])
    allowed = DETERMINATIONS.get(classification)
    if allowed is not None and determination not in allowed and ("classification" in body or "determination" in body):
        raise GraphError(400, "BadRequest", "The determination '%s' is not valid with the classification '%s'"
                         % (determination, classification))
    for key, value in body.items():
        incident[key] = list(value) if key == "customTags" else value
    incident["lastUpdateDateTime"] = now_iso()
    incident["lastModifiedBy"] = ctx.actor_name
    out = {"@odata.context": "%s/v1.0/$metadata#security/incidents/$entity" % base}
    out.update(view(ctx, incident))
    return ok(out)


def post_comment(ctx, base, ident):
    incident = _get(ctx, ident)
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get("comment"), str) or not body["comment"].strip():
        raise GraphError(400, "BadRequest", "The property 'comment' is required")
    incident["comments"].append({"comment": body["comment"],
                                 "createdByDisplayName": ctx.actor_display_name,
                                 "createdDateTime": now_iso()})
    incident["lastUpdateDateTime"] = now_iso()
    return ok({"@odata.context": "%s/v1.0/$metadata#Collection(microsoft.graph.security.alertComment)" % base,
               "value": incident["comments"]})


# ---- advanced hunting ----------------------------------------------------------------------------------------
def duration_seconds(text):
    match = DURATION.match(text or "")
    if not match or not any(match.groups()):
        return None
    d, h, m, s = (int(g or 0) for g in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def run_hunting(ctx, base):
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get("Query"), str) or not body["Query"].strip():
        raise GraphError(400, "BadRequest", "The property 'Query' is required")
    since = None
    if body.get("Timespan") is not None:
        seconds = duration_seconds(body["Timespan"])
        if seconds is None:
            raise GraphError(400, "BadRequest", "Timespan '%s' is not an ISO 8601 duration" % body["Timespan"])
        since = iso(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds))
    try:
        schema, rows = hunting.run_query(ctx.state, body["Query"], since=since)
    except ApiError as err:
        raise GraphError(400, "BadRequest", err.message)
    return ok({"@odata.context": "%s/v1.0/$metadata#microsoft.graph.security.huntingQueryResults" % base,
               "schema": [{"name": n, "type": t} for n, t in schema], "results": rows})


# method, path regex (after /v1.0), template, handler, roles (any of), rate family
ROUTES = [
    ("POST", r"/security/runHuntingQuery", "/v1.0/security/runHuntingQuery", run_hunting, HUNT, "hunting"),
    ("GET", r"/security/incidents", "/v1.0/security/incidents", list_incidents, READ, "graphIncidents"),
    ("GET", r"/security/incidents/(?P<ident>[^/]+)", "/v1.0/security/incidents/{id}", get_incident, READ,
     "graphIncidents"),
    ("PATCH", r"/security/incidents/(?P<ident>[^/]+)", "/v1.0/security/incidents/{id}", patch_incident, WRITE,
     "graphIncidents"),
    ("POST", r"/security/incidents/(?P<ident>[^/]+)/comments", "/v1.0/security/incidents/{id}/comments", post_comment,
     WRITE, "graphIncidents"),
]
ROUTES += detection_rules.ROUTES  # custom detection rules (detection_rules.py)
COMPILED = [(m, re.compile("^%s/?$" % p), t, h, r, f) for m, p, t, h, r, f in ROUTES]


def handle(app, method, path, query, raw, headers, entry):
    """Answer one Graph request (``app``: the EmulatorApp)."""
    from .common import Ctx
    emu = app.emu
    state = emu.state
    rest = GRAPH_PREFIX.sub("", path)
    route, groups, allowed = None, None, []
    for m, regex, template, handler, roles, fam in COMPILED:
        found = regex.match(rest)
        if found:
            if m == method:
                route, groups = (m, regex, template, handler, roles, fam), found.groupdict()
                break
            allowed.append(m)
    if route is None:
        if allowed:
            return error_response(405, "MethodNotAllowed", "%s is not allowed on %s" % (method, path),
                                  {"Allow": ", ".join(sorted(set(allowed)))})
        return error_response(400, "BadRequest", "Resource not found for the segment '%s'." % rest.strip("/"))
    _m, _r, template, handler, roles, fam = route
    entry["route"] = "%s %s" % (method, template if path.startswith("/v1.0/") else "/beta" + template[5:])
    with state.lock:
        state.count_call(entry["route"])
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return error_response(401, "InvalidAuthenticationToken", "Access token is empty.")
    claims, problem = emu.tokens.verify(auth[7:].strip(), audiences=GRAPH_AUDIENCES)
    if claims is None:
        return error_response(401, "InvalidAuthenticationToken", "Access token validation failure. %s" % problem)
    entry["client_id"] = claims.get("appid")
    entry["tenant"] = claims["tid"]
    state = emu.state_of(claims["tid"])  # the token's tenant
    granted = claims.get("roles") or []
    user = signed_in_user(claims)
    if user is not None:  # a delegated token: Graph checks its scp (the delegated names are the application ones)
        entry["user"] = user["upn"]
        granted = claims["scp"].split()
        needed = delegated_requirement(template, roles)
        if not any(perm in granted for perm in needed):
            return error_response(403, "Forbidden", "Missing scope permissions on the request. API requires one of '%s'. Scopes on "
                                  "the request '%s'" % (", ".join(needed), ", ".join(granted)))
    elif not any(role in granted for role in roles):
        return error_response(403, "Forbidden", "Missing application roles. API required roles: %s. Application "
                              "roles: %s." % (", ".join(roles), ", ".join(granted) or "none"))
    retry = state.rate_check((claims["tid"], claims.get("appid"), template), fam)
    if retry is not None:
        return error_response(429, "TooManyRequests", "Too many requests. Retry after %d seconds." % retry,
                              {"Retry-After": str(retry)})
    body = None
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "BadRequest", "Unable to read JSON request payload.")
    client = emu.tokens.app_by_client(claims.get("appid")) or {"client_id": claims.get("appid"),
                                                               "display_name": claims.get("app_displayname")}
    ctx = Ctx(state, method, path, query, body, dict(client, roles=granted), emu.url, user=user)
    ctx.include_unknown = PREFER_UNKNOWN in headers.get("prefer", "").lower()
    entry["prefer"] = headers.get("prefer")
    try:
        with state.lock:
            return handler(ctx, emu.url, **groups)
    except GraphError as err:
        return error_response(err.status, err.code, err.message, err.headers)
    except ODataError as err:
        return error_response(400, "BadRequest", "Invalid filter clause: %s" % err)
