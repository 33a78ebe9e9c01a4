"""/api/machines: list, get, find by IP / tag, update, tags, device value, related alerts."""

import datetime
import ipaddress
import re
from urllib.parse import urlencode

from .common import ApiError, check_body, check_enum, collection_response, entity_response, page, require_object
from .odata import FieldSpec, canonical_time, compile_filter, parse_paging

MACHINE_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("computerDnsName", "str"), ("id", "str"), ("version", "str"), ("deviceValue", "str"), ("aadDeviceId", "str"),
    ("machineTags", "list"), ("lastSeen", "datetime"), ("exposureLevel", "str"), ("onboardingStatus", "str"),
    ("lastIpAddress", "str"), ("healthStatus", "str"), ("osPlatform", "str"), ("riskScore", "str"), ("rbacGroupId", "num"))}
DEVICE_VALUES = ("Normal", "Low", "High")
READ = ("Machine.Read.All", "Machine.ReadWrite.All")
WRITE = ("Machine.ReadWrite.All",)
PAGE_SIZE = 10000


def get_machine(ctx, ident):
    machine = ctx.state.find_machine(ident)
    if machine is None:
        raise ApiError(404, "ResourceNotFound", "Machine %s was not found" % ident)
    return machine


def list_machines(ctx):
    state = ctx.state
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), MACHINE_FIELDS)
    if not state.machines:
        raise ApiError(404, "ResourceNotFound", "No recent machines were found")
    items = state.machines if pred is None else [m for m in state.machines if pred(m)]
    next_link = None
    if top is None:
        chunk = items[skip:skip + PAGE_SIZE]
        if skip + PAGE_SIZE < len(items):
            query = {k: v for k, v in ctx.query.items() if k != "$skip"}
            query["$skip"] = str(skip + PAGE_SIZE)
            next_link = "%s%s?%s" % (ctx.base_url, ctx.path, urlencode(query))
    else:
        chunk = page(items, top, skip)
    return collection_response(ctx, "Machines", [state.machine_json(m) for m in chunk], next_link)


def get_one(ctx, ident):
    return entity_response(ctx, "Machines/$entity", get_machine(ctx, ident))


def find_by_ip(ctx, args):
    params = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|[^,]+)", args))
    ip = params.get("ip", "").strip().strip("'")
    stamp = params.get("timestamp", "").strip().strip("'")
    if not ip or not stamp:
        raise ApiError(400, "InvalidInput", "findbyip requires ip='<IP>' and timestamp=<ISO-8601>")
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ApiError(400, "InvalidIpAddress", "IP %s is invalid" % ip) from exc
    try:
        when = canonical_time(stamp)
    except ValueError as exc:
        raise ApiError(400, "InvalidInput", "Invalid timestamp %s" % stamp) from exc
    now = datetime.datetime.now(datetime.timezone.utc)
    moment = datetime.datetime.fromisoformat(when[:26] + "+00:00")
    if moment < now - datetime.timedelta(days=30) or moment > now + datetime.timedelta(minutes=15):
        raise ApiError(400, "InvalidInput", "The timestamp must be within the last 30 days")
    low = canonical_time(moment - datetime.timedelta(minutes=15))
    high = canonical_time(moment + datetime.timedelta(minutes=15))
    found = [m for m in ctx.state.machines
             if (m["lastIpAddress"] == ip or any(a["ipAddress"] == ip for a in m["ipAddresses"])) and m["firstSeen"] <= high and m["lastSeen"] >= low]
    return collection_response(ctx, "Machines", [ctx.state.machine_json(m) for m in found])


def find_by_tag(ctx):
    tag = ctx.query.get("tag")
    if not tag:
        raise ApiError(400, "MissingRequiredParameter", "Parameter tag is missing")
    starts = (ctx.query.get("useStartsWithFilter") or "false").lower() == "true"
    if starts:
        found = [m for m in ctx.state.machines if any(t.startswith(tag) for t in m["machineTags"])]
    else:
        found = [m for m in ctx.state.machines if tag in m["machineTags"]]
    return collection_response(ctx, "Machines", [ctx.state.machine_json(m) for m in found])


def update_machine(ctx, ident):
    body = require_object(ctx.body)
    machine = get_machine(ctx, ident)
    check_body(body, optional=("machineTags", "deviceValue"))
    for key in body:
        if key not in ("machineTags", "deviceValue"):
            raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: property '%s' cannot be updated; only machineTags and deviceValue" % key)
    check_enum(body, "deviceValue", DEVICE_VALUES)
    tags = body.get("machineTags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: machineTags must be a list of strings")
    if tags is not None:
        machine["machineTags"] = list(dict.fromkeys(tags))
    if body.get("deviceValue"):
        machine["deviceValue"] = body["deviceValue"]
    ctx.state.touch_machine(machine)
    return entity_response(ctx, "Machines/$entity", machine)


def _apply_tag(machine, value, action):
    if action == "Add" and value not in machine["machineTags"]:
        machine["machineTags"] = machine["machineTags"] + [value]
    elif action == "Remove" and value in machine["machineTags"]:
        machine["machineTags"] = [t for t in machine["machineTags"] if t != value]


def _check_tag_body(body, extra=()):
    check_body(body, required=("Value", "Action") + tuple(extra))
    check_enum(body, "Action", ("Add", "Remove"))
    if not isinstance(body["Value"], str) or len(body["Value"]) > 200:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Value must be a string of at most 200 characters")


def machine_tags(ctx, ident):
    machine = get_machine(ctx, ident)
    _check_tag_body(ctx.body)
    _apply_tag(machine, ctx.body["Value"], ctx.body["Action"])
    ctx.state.touch_machine(machine)
    return entity_response(ctx, "Machines/$entity", machine)


def machine_tags_multiple(ctx):
    _check_tag_body(ctx.body, extra=("MachineIds",))
    ids = ctx.body["MachineIds"]
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: MachineIds must be a non-empty list")
    if len(ids) > 500:
        raise ApiError(400, "MaximumBatchSizeExceeded", "Maximum batch size exceeded. Received: %d, allowed: 500" % len(ids))
    updated = []
    for ident in ids:
        machine = ctx.state.machines_by_id.get(str(ident).lower())
        if machine is not None:
            _apply_tag(machine, ctx.body["Value"], ctx.body["Action"])
            ctx.state.touch_machine(machine)
            updated.append(machine)
    return collection_response(ctx, "Machines", [ctx.state.machine_json(m) for m in updated])


def set_device_value(ctx, ident):
    machine = get_machine(ctx, ident)
    check_body(ctx.body, required=("DeviceValue",))
    check_enum(ctx.body, "DeviceValue", DEVICE_VALUES)
    machine["deviceValue"] = ctx.body["DeviceValue"]
    ctx.state.touch_machine(machine)
    return entity_response(ctx, "Machines/$entity", machine)


def machine_alerts(ctx, ident):
    from .api_alerts import ALERT_FIELDS  # pylint: disable=import-outside-toplevel
    machine = get_machine(ctx, ident)
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), ALERT_FIELDS)
    items = [a for a in ctx.state.alerts_for_machine(machine["id"]) if pred is None or pred(a)]
    return collection_response(ctx, "Alerts", [ctx.state.alert_json(a) for a in page(items, top, skip)])


ROUTES = [
    # method, path regex (after /api), template, handler, roles, rate family
    ("GET", r"/machines", "/api/machines", list_machines, READ, "default"),
    ("GET", r"/machines/findbyip\((?P<args>[^)]*)\)", "/api/machines/findbyip(...)", find_by_ip, READ, "default"),
    ("GET", r"/machines/findbytag", "/api/machines/findbytag", find_by_tag, READ, "default"),
    ("POST", r"/machines/AddOrRemoveTagForMultipleMachines", "/api/machines/AddOrRemoveTagForMultipleMachines", machine_tags_multiple, WRITE, "default"),
    ("GET", r"/machines/(?P<ident>[^/]+)", "/api/machines/{id}", get_one, READ, "default"),
    ("PATCH", r"/machines/(?P<ident>[^/]+)", "/api/machines/{id}", update_machine, WRITE, "default"),
    ("POST", r"/machines/(?P<ident>[^/]+)/tags", "/api/machines/{id}/tags", machine_tags, WRITE, "default"),
    ("POST", r"/machines/(?P<ident>[^/]+)/setDeviceValue", "/api/machines/{id}/setDeviceValue", set_device_value, WRITE, "default"),
    ("GET", r"/machines/(?P<ident>[^/]+)/alerts", "/api/machines/{id}/alerts", machine_alerts, ("Alert.Read.All", "Alert.ReadWrite.All"), "default"),
]
