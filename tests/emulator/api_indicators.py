"""/api/indicators: list, submit-or-update, import, delete, batch delete."""

import datetime
import ipaddress
import json
import re
from urllib.parse import urlsplit

from starlette.responses import Response

from .common import ApiError, check_body, collection_response, json_response, normalize_time, page, require_object
from .odata import FieldSpec, compile_filter, parse_paging
from .seed import iso

INDICATOR_FIELDS = {
    "application": FieldSpec("application"), "createdByDisplayName": FieldSpec("createdByDisplayName", key="source"),
    "expirationTime": FieldSpec("expirationTime", ftype="datetime"), "generateAlert": FieldSpec("generateAlert", ftype="bool"),
    "title": FieldSpec("title"), "rbacGroupNames": FieldSpec("rbacGroupNames", ftype="list"),
    "rbacGroupIds": FieldSpec("rbacGroupIds", ftype="list"), "indicatorValue": FieldSpec("indicatorValue"),
    "indicatorType": FieldSpec("indicatorType"), "creationTimeDateTimeUtc": FieldSpec("creationTimeDateTimeUtc", ftype="datetime"),
    "createdBy": FieldSpec("createdBy"), "action": FieldSpec("action"), "severity": FieldSpec("severity"),
}
ROLES = ("Ti.ReadWrite", "Ti.ReadWrite.All")
TYPES = ("FileSha1", "FileSha256", "FileMd5", "CertificateThumbprint", "IpAddress", "DomainName", "Url")
ACTIONS = ("Warn", "Block", "Audit", "Alert", "AlertAndBlock", "BlockAndRemediate", "Allowed")
ALLOWED_BY_TYPE = {
    "file": ("Allowed", "Audit", "Warn", "Block", "BlockAndRemediate", "Alert", "AlertAndBlock"),
    "network": ("Allowed", "Audit", "Warn", "Block", "Alert", "AlertAndBlock"),
    "cert": ("Allowed", "BlockAndRemediate", "Alert", "AlertAndBlock"),
}
SEVERITIES = ("Informational", "Low", "Medium", "High")
REQUIRED = ("indicatorValue", "indicatorType", "action", "title", "description")
OPTIONAL = ("application", "expirationTime", "severity", "recommendedActions", "rbacGroupNames", "educateUrl", "generateAlert", "externalID")
HASH_LEN = {"FileSha1": 40, "FileSha256": 64, "FileMd5": 32, "CertificateThumbprint": 40}
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([A-Za-z0-9-]{1,63}(?<!-)\.)+[A-Za-z]{2,63}$")
TENANT_LIMIT = 15000


def visible(ctx, indicator):
    """Ti.ReadWrite.All apps and signed-in users (their MDE role decides, README) see every indicator; Ti.ReadWrite apps
    only their own."""
    return ctx.delegated or "Ti.ReadWrite.All" in ctx.app["roles"] or indicator["createdBy"] == ctx.requestor


def active(indicator, now_text):
    exp = indicator.get("expirationTime")
    return exp is None or exp > now_text


def _now():
    return iso(datetime.datetime.now(datetime.timezone.utc))


def list_indicators(ctx):
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), INDICATOR_FIELDS)
    now = _now()
    items = [i for i in ctx.state.indicators.values() if active(i, now) and visible(ctx, i) and (pred is None or pred(i))]
    chunk = page(items, top if top is not None else 10000, skip)
    return collection_response(ctx, "Indicators", [json.dumps(i) for i in chunk])


def validate_value(itype, value):
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: indicatorValue must be a non-empty string")
    if itype in HASH_LEN:
        if len(value) != HASH_LEN[itype] or not re.match(r"^[0-9a-fA-F]+$", value):
            raise ApiError(400, "InvalidHashValue", "Hash %s is invalid" % value)
    elif itype == "IpAddress":
        try:
            addr = ipaddress.ip_address(value)
        except ValueError as exc:
            raise ApiError(400, "InvalidIpAddress", "IP %s is invalid" % value) from exc
        if addr.version == 6 and value.count(":") != 7:
            raise ApiError(400, "InvalidIpAddress", "IP %s is invalid: IPv6 addresses must be written in full (8 groups)" % value)
    elif itype == "DomainName":
        if not DOMAIN_RE.match(value):
            raise ApiError(400, "InvalidDomainName", "Domain %s is invalid" % value)
    elif itype == "Url":
        text = value if re.match(r"^https?://", value, re.I) else "http://" + value
        parts = urlsplit(text)
        if any(c.isspace() for c in value) or not parts.hostname or not (DOMAIN_RE.match(parts.hostname) or _is_ip(parts.hostname)):
            raise ApiError(400, "InvalidUrl", "URL %s is invalid" % value)


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def validate_indicator(item):
    """Validate one submit/import item; return the normalised field dict."""
    item = check_body(require_object(item), required=REQUIRED, optional=OPTIONAL)
    itype, action = item["indicatorType"], item["action"]
    if itype not in TYPES:
        raise ApiError(400, "InvalidRequestBody",
                       "Request body is incorrect: '%s' is not a valid indicatorType. Allowed values: %s" % (itype, ", ".join(TYPES)))
    if action not in ACTIONS:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: '%s' is not a valid action. Allowed values: %s" % (action, ", ".join(ACTIONS)))
    if item.get("severity") is not None and item["severity"] not in SEVERITIES:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: '%s' is not a valid severity" % item["severity"])
    family = "file" if itype.startswith("File") else "cert" if itype == "CertificateThumbprint" else "network"
    if action not in ALLOWED_BY_TYPE[family]:
        raise ApiError(400, "InvalidInput", "Action %s is not supported for indicator type %s" % (action, itype))
    generate = item.get("generateAlert")
    if generate is not None and not isinstance(generate, bool):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: generateAlert must be a boolean")
    if action == "Audit" and generate is not True:
        raise ApiError(400, "InvalidInput", "generateAlert must be true when action is Audit")
    validate_value(itype, item["indicatorValue"])
    groups = item.get("rbacGroupNames")
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: rbacGroupNames must be a list of strings")
    fields = {k: item.get(k) for k in REQUIRED + OPTIONAL if k in item}
    fields["rbacGroupNames"] = groups
    fields["expirationTime"] = normalize_time(item.get("expirationTime"), "expirationTime")
    return fields


def _match_key(itype, value):
    return (itype, value.lower() if itype != "Url" else value)


def upsert(ctx, item):
    """Create or update (match key: indicatorType + indicatorValue, case-insensitive for all but Url). Returns (entity, created)."""
    state = ctx.state
    fields = validate_indicator(item)
    key = _match_key(fields["indicatorType"], fields["indicatorValue"])
    now = _now()
    existing = next((i for i in state.indicators.values() if _match_key(i["indicatorType"], i["indicatorValue"]) == key), None)
    if existing is not None and not visible(ctx, existing):
        raise ApiError(403, "Forbidden", "Indicator %s was created by another application; Ti.ReadWrite only allows changing the app's own indicators"
                       % existing["id"])
    name = ctx.actor_name
    if existing is not None:
        for field in ("action", "title", "description", "severity", "recommendedActions", "expirationTime", "generateAlert", "educateUrl", "externalID"):
            if field in fields:
                existing[field] = fields[field]
        if "rbacGroupNames" in item:
            existing["rbacGroupNames"] = fields["rbacGroupNames"] or []
        existing.update({"lastUpdateTime": now, "lastUpdatedBy": name})
        return existing, False
    if sum(1 for i in state.indicators.values() if active(i, now)) >= TENANT_LIMIT:
        raise ApiError(400, "BadRequest", "The tenant has reached the limit of %d active indicators" % TENANT_LIMIT)
    ident = str(state.next_indicator_id)
    state.next_indicator_id += 1
    entity = {
        "id": ident, "indicatorValue": fields["indicatorValue"], "indicatorType": fields["indicatorType"], "action": fields["action"],
        "application": fields.get("application"), "source": name, "sourceType": ctx.source_type, "createdBy": ctx.requestor,
        "severity": fields.get("severity") or "Informational", "title": fields["title"], "description": fields["description"],
        "recommendedActions": fields.get("recommendedActions"), "creationTimeDateTimeUtc": now, "expirationTime": fields["expirationTime"],
        "lastUpdateTime": now, "lastUpdatedBy": name, "rbacGroupNames": fields["rbacGroupNames"] or [], "rbacGroupIds": [],
        "generateAlert": bool(fields.get("generateAlert")), "externalID": fields.get("externalID"),
    }
    if fields.get("educateUrl"):
        entity["educateUrl"] = fields["educateUrl"]
    state.indicators[ident] = entity
    return entity, True


def submit(ctx):
    entity, _created = upsert(ctx, ctx.body)
    body = {"@odata.context": "%s/api/$metadata#Indicators/$entity" % ctx.base_url}
    body.update(entity)
    return json_response(body)


def import_batch(ctx):
    body = check_body(ctx.body, required=("Indicators",))
    items = body["Indicators"]
    if not isinstance(items, list):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Indicators must be a list")
    if len(items) > 500:
        raise ApiError(400, "MaximumBatchSizeExceeded", "Maximum batch size exceeded. Received: %d, allowed: 500" % len(items))
    results = []
    for item in items:
        value = item.get("indicatorValue") if isinstance(item, dict) else None
        try:
            entity, _created = upsert(ctx, item)
            results.append({"id": entity["id"], "indicator": entity["indicatorValue"], "isFailed": False, "failureReason": None})
        except ApiError as exc:
            results.append({"id": None, "indicator": value, "isFailed": True, "failureReason": "%s: %s" % (exc.code, exc.message)})
    return json_response({"value": results})


def delete_one(ctx, ident):
    indicator = ctx.state.indicators.get(ident)
    if indicator is None or not visible(ctx, indicator):
        raise ApiError(404, "ResourceNotFound", "Indicator %s was not found" % ident)
    del ctx.state.indicators[ident]
    return Response(status_code=204)


def batch_delete(ctx):
    body = check_body(ctx.body, required=("IndicatorIds",))
    ids = body["IndicatorIds"]
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: IndicatorIds must be a non-empty list")
    if len(ids) > 500:
        raise ApiError(400, "MaximumBatchSizeExceeded", "Maximum batch size exceeded. Received: %d, allowed: 500" % len(ids))
    ids = [str(i) for i in ids]
    bad = [i for i in ids if not i.isdigit()]
    if bad:
        raise ApiError(400, "InvalidInput", "Invalid indicator id(s): %s" % ", ".join(bad))
    missing = [i for i in ids if i not in ctx.state.indicators]
    if missing:
        raise ApiError(404, "ResourceNotFound", "Indicator(s) %s were not found" % ", ".join(missing))
    hidden = [i for i in ids if not visible(ctx, ctx.state.indicators[i])]
    if hidden:
        raise ApiError(403, "Forbidden", "The caller is not allowed to delete indicator(s) %s" % ", ".join(hidden))
    for i in ids:
        del ctx.state.indicators[i]
    return Response(status_code=204)


ROUTES = [
    ("GET", r"/indicators", "/api/indicators", list_indicators, ROLES, "default"),
    ("POST", r"/indicators", "/api/indicators", submit, ROLES, "default"),
    ("POST", r"/indicators/import", "/api/indicators/import", import_batch, ROLES, "import"),
    ("POST", r"/indicators/BatchDelete", "/api/indicators/BatchDelete", batch_delete, ROLES, "batchDelete"),
    ("DELETE", r"/indicators/(?P<ident>[^/]+)", "/api/indicators/{id}", delete_one, ROLES, "default"),
]
