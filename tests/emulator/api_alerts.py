"""/api/alerts: list ($expand=evidence), get, update, batch update, related machine."""

import datetime

from starlette.responses import Response

from .common import ApiError, check_body, check_enum, collection_response, json_response, page
from .odata import FieldSpec, ODataError, compile_filter, parse_paging
from .seed import alert_evidence, iso

ALERT_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("alertCreationTime", "datetime"), ("lastUpdateTime", "datetime"), ("incidentId", "num"), ("investigationId", "num"), ("id", "str"),
    ("assignedTo", "str"), ("detectionSource", "str"), ("lastEventTime", "datetime"), ("status", "str"), ("severity", "str"),
    ("category", "str"))}
READ = ("Alert.Read.All", "Alert.ReadWrite.All")
WRITE = ("Alert.ReadWrite.All",)
STATUSES = ("New", "InProgress", "Resolved")
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
DETERMINATIONS = ("MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware", "Other",
                  "SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "ConfirmedActivity", "Clean", "NotMalicious",
                  "InsufficientData")
UPDATABLE = ("status", "assignedTo", "classification", "determination", "comment")


def _expand(ctx):
    expand = ctx.query.get("$expand")
    if expand is None:
        return False
    if expand.strip().lower() != "evidence":
        raise ODataError("Only $expand=evidence is supported on alerts")
    return True


def list_alerts(ctx):
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), ALERT_FIELDS)
    expand = _expand(ctx)
    alerts = ctx.state.alerts
    items = alerts if pred is None else [a for a in alerts if pred(a)]
    chunk = page(items, top if top is not None else 10000, skip)
    return collection_response(ctx, "Alerts", [ctx.state.alert_json(a, expand) for a in chunk])


def get_alert(ctx, ident):
    alert = ctx.state.alerts_by_id.get(ident)
    if alert is None:
        raise ApiError(404, "ResourceNotFound", "Alert %s was not found" % ident)
    return alert


def _view(ctx, alert, expand=False):
    body = {"@odata.context": "%s/api/$metadata#Alerts/$entity" % ctx.base_url}
    body.update({k: v for k, v in alert.items() if not k.startswith("_")})
    if expand:
        body["evidence"] = alert_evidence(alert, ctx.state.seed)
    return body


def get_one(ctx, ident):
    return json_response(_view(ctx, get_alert(ctx, ident), _expand(ctx)))


def _validate_update(body):
    check_body(body, optional=UPDATABLE + ("alertIds",))
    fields = {k: body[k] for k in UPDATABLE if k in body}
    if not fields:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: provide at least one of %s" % ", ".join(UPDATABLE))
    check_enum(body, "status", STATUSES)
    check_enum(body, "classification", CLASSIFICATIONS)
    check_enum(body, "determination", DETERMINATIONS)
    for key in ("assignedTo", "comment"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: %s must be a string" % key)
    return fields


def _apply(ctx, alert, fields, stamp):
    for key in ("status", "assignedTo", "classification", "determination"):
        if key in fields:
            alert[key] = fields[key]
    if "status" in fields:
        alert["resolvedTime"] = stamp if fields["status"] == "Resolved" else None
    if fields.get("comment"):
        alert["comments"] = alert["comments"] + [{"comment": fields["comment"], "createdBy": ctx.requestor, "createdTime": stamp}]
    alert["lastUpdateTime"] = stamp
    ctx.state.touch_alert(alert)


def update_alert(ctx, ident):
    alert = get_alert(ctx, ident)
    fields = _validate_update(ctx.body)
    _apply(ctx, alert, fields, iso(datetime.datetime.now(datetime.timezone.utc)))
    return json_response(_view(ctx, alert))


def batch_update(ctx):
    body = check_body(ctx.body, required=("alertIds",), optional=UPDATABLE)
    ids = body["alertIds"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: alertIds must be a non-empty list of alert ids")
    fields = _validate_update(body)
    missing = [i for i in ids if i not in ctx.state.alerts_by_id]
    if missing:
        raise ApiError(404, "ResourceNotFound", "Alert(s) %s were not found" % ", ".join(missing))
    stamp = iso(datetime.datetime.now(datetime.timezone.utc))
    for ident in ids:
        _apply(ctx, ctx.state.alerts_by_id[ident], fields, stamp)
    return Response(status_code=200)


def alert_machine(ctx, ident):
    alert = get_alert(ctx, ident)
    machine = ctx.state.machines_by_id.get(alert["machineId"])
    if machine is None:
        raise ApiError(404, "ResourceNotFound", "Machine %s was not found" % alert["machineId"])
    body = {"@odata.context": "%s/api/$metadata#Machines/$entity" % ctx.base_url}
    body.update(machine)
    return json_response(body)


ROUTES = [
    ("GET", r"/alerts", "/api/alerts", list_alerts, READ, "default"),
    ("POST", r"/alerts/batchUpdate", "/api/alerts/batchUpdate", batch_update, WRITE, "batchUpdate"),
    ("GET", r"/alerts/(?P<ident>[^/]+)", "/api/alerts/{id}", get_one, READ, "default"),
    ("PATCH", r"/alerts/(?P<ident>[^/]+)", "/api/alerts/{id}", update_alert, WRITE, "default"),
    ("GET", r"/alerts/(?P<ident>[^/]+)/machine", "/api/alerts/{id}/machine", alert_machine, ("Machine.Read.All", "Machine.ReadWrite.All"), "default"),
]
