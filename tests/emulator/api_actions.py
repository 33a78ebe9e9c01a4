"""Machine response actions (/api/machines/{id}/<action>) and /api/machineactions."""

import datetime
import json
import re
import time
import uuid

from .api_machines import get_machine
from .common import GUID_RE, ApiError, check_body, check_enum, collection_response, entity_response, json_response, page
from .odata import FieldSpec, compile_filter, parse_paging
from .seed import iso
from .state import FINAL_STATUSES

ACTION_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("id", "str"), ("status", "str"), ("machineId", "str"), ("type", "str"), ("requestor", "str"), ("creationDateTimeUtc", "datetime"))}
READ = ("Machine.Read.All", "Machine.ReadWrite.All")
ACTION_ROLES = ("Machine.Isolate", "Machine.RestrictExecution", "Machine.Scan", "Machine.CollectForensics", "Machine.Offboard",
                "Machine.StopAndQuarantine", "Machine.LiveResponse")
SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")
# path segment -> (action type, extra body fields, permission)
ACTIONS = {
    "isolate": ("Isolate", ("IsolationType",), "Machine.Isolate"),
    "unisolate": ("Unisolate", (), "Machine.Isolate"),
    "restrictCodeExecution": ("RestrictCodeExecution", (), "Machine.RestrictExecution"),
    "unrestrictCodeExecution": ("UnrestrictCodeExecution", (), "Machine.RestrictExecution"),
    "runAntiVirusScan": ("RunAntiVirusScan", ("ScanType",), "Machine.Scan"),
    "collectInvestigationPackage": ("CollectInvestigationPackage", (), "Machine.CollectForensics"),
    "offboard": ("Offboard", (), "Machine.Offboard"),
    "StopAndQuarantineFile": ("StopAndQuarantineFile", ("Sha1",), "Machine.StopAndQuarantine"),
}
TITLES = {"Isolate": "Isolate device", "Unisolate": "Release device from isolation", "RestrictCodeExecution": "Restrict app execution",
          "UnrestrictCodeExecution": "Remove app execution restriction", "RunAntiVirusScan": "Run antivirus scan",
          "CollectInvestigationPackage": "Collect investigation package", "Offboard": "Offboard device",
          "StopAndQuarantineFile": "Stop and quarantine file"}


def _action_view(state, action, list_form=False):
    state.refresh_action(action)
    data = {k: v for k, v in action.items() if not k.startswith("_")}
    if list_form:  # the documented list examples spell it lastUpdateTimeUtc
        data["lastUpdateTimeUtc"] = data.pop("lastUpdateDateTimeUtc")
    return data


def submit_action(ctx, ident, segment):
    state = ctx.state
    action_type, extra, _perm = ACTIONS[segment]
    machine = get_machine(ctx, ident)
    body = ctx.body
    required = ("Comment",) + tuple(f for f in extra if f in ("ScanType", "Sha1"))
    check_body(body, required=required, optional=extra + ("ExternalID",))
    if not isinstance(body["Comment"], str):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Comment must be a string")
    scope = None
    related = None
    if action_type == "Isolate":
        scope = check_enum(body, "IsolationType", ("Full", "Selective", "UnManagedDevice")) or "Full"
    elif action_type == "RunAntiVirusScan":
        scope = check_enum(body, "ScanType", ("Quick", "Full"))
    elif action_type == "StopAndQuarantineFile":
        if not isinstance(body["Sha1"], str) or not SHA1_RE.match(body["Sha1"]):
            raise ApiError(400, "InvalidHashValue", "Hash %s is invalid" % body["Sha1"])
        related = {"fileIdentifier": body["Sha1"].lower(), "fileIdentifierType": "Sha1"}
    if action_type == "Offboard" and machine["osPlatform"] in ("Linux", "macOS"):
        raise ApiError(400, "OsPlatformNotSupported", "OS platform %s is not supported for this action" % machine["osPlatform"])
    for other in state.actions:
        if other["machineId"] == machine["id"] and other["type"] == action_type:
            state.refresh_action(other)
            if other["status"] in ("Pending", "InProgress"):
                raise ApiError(400, "ActiveRequestAlreadyExists", "Action is already in progress")
    now = time.time()
    stamp = iso(datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
    outcome = state.action_outcomes.pop((machine["id"], action_type), "Succeeded")
    action = {
        "id": str(uuid.uuid4()), "type": action_type, "title": "%s from %s" % (TITLES[action_type], ctx.app["display_name"]),
        "requestor": ctx.requestor, "requestorComment": body["Comment"], "status": "Pending", "machineId": machine["id"],
        "computerDnsName": machine["computerDnsName"], "creationDateTimeUtc": stamp, "lastUpdateDateTimeUtc": stamp,
        "cancellationRequestor": None, "cancellationComment": None, "cancellationDateTimeUtc": None, "errorHResult": 0,
        "scope": scope, "externalID": body.get("ExternalID"), "requestSource": "PublicApi", "relatedFileInfo": related,
        "commands": [], "troubleshootInfo": None, "_created": now, "_outcome": outcome,
    }
    state.actions.append(action)
    state.actions_by_id[action["id"]] = action
    return entity_response(ctx, "MachineActions/$entity", _action_view(state, action), status=201)


def list_actions(ctx):
    top, skip = parse_paging(ctx.query)
    pred = compile_filter(ctx.query.get("$filter"), ACTION_FIELDS)
    now = time.time()
    items = []
    for action in reversed(ctx.state.actions):  # newest first
        ctx.state.refresh_action(action, now)
        if pred is None or pred(action):
            items.append(action)
    chunk = page(items, top if top is not None else 10000, skip)
    return collection_response(ctx, "MachineActions", [json.dumps(_action_view(ctx.state, a, list_form=True)) for a in chunk])


def get_action(ctx, action_id):
    if not GUID_RE.match(action_id):
        raise ApiError(400, "BadRequest", "The key value (%s) from request is not valid. The key value should be format of type 'Edm.Guid'." % action_id)
    action = ctx.state.actions_by_id.get(action_id.lower())
    if action is None:
        raise ApiError(404, "ResourceNotFound", "MachineAction %s was not found" % action_id)
    return action


def get_one(ctx, action_id):
    return entity_response(ctx, "MachineActions/$entity", _action_view(ctx.state, get_action(ctx, action_id)))


def cancel_action(ctx, action_id):
    action = get_action(ctx, action_id)
    body = ctx.body if ctx.body is not None else {}
    check_body(body, optional=("Comment",))
    ctx.state.refresh_action(action)
    if action["status"] in FINAL_STATUSES:
        raise ApiError(400, "BadRequest", "Action %s is already in a final state (%s) and cannot be cancelled" % (action_id, action["status"]))
    stamp = iso(datetime.datetime.now(datetime.timezone.utc))
    action.update({"status": "Cancelled", "cancellationRequestor": ctx.requestor, "cancellationComment": body.get("Comment"),
                   "cancellationDateTimeUtc": stamp, "lastUpdateDateTimeUtc": stamp})
    return entity_response(ctx, "MachineActions/$entity", _action_view(ctx.state, action))


def package_uri(ctx, action_id):
    action = get_action(ctx, action_id)
    ctx.state.refresh_action(action)
    if action["type"] != "CollectInvestigationPackage" or action["status"] != "Succeeded":
        raise ApiError(404, "ResourceNotFound", "Investigation package for action %s was not found" % action_id)
    token = uuid.uuid5(uuid.NAMESPACE_URL, action["id"]).hex
    url = "%s/_emulator/packages/%s.zip?token=%s" % (ctx.base_url, action["id"], token)
    return json_response({"@odata.context": "%s/api/$metadata#Edm.String" % ctx.base_url, "value": url})


def _make_submit(segment):
    def handler(ctx, ident):
        return submit_action(ctx, ident, segment)
    handler.__name__ = "submit_%s" % segment
    return handler


ROUTES = [("POST", r"/machines/(?P<ident>[^/]+)/%s" % seg, "/api/machines/{id}/%s" % seg, _make_submit(seg), (perm,), "default")
          for seg, (_t, _e, perm) in ACTIONS.items()] + [
    ("GET", r"/machineactions", "/api/machineactions", list_actions, READ, "default"),
    ("GET", r"/machineactions/(?P<action_id>[^/]+)", "/api/machineactions/{id}", get_one, READ, "default"),
    ("POST", r"/machineactions/(?P<action_id>[^/]+)/cancel", "/api/machineactions/{id}/cancel", cancel_action, ACTION_ROLES, "default"),
    ("GET", r"/machineactions/(?P<action_id>[^/]+)/getPackageUri", "/api/machineactions/{id}/getPackageUri", package_uri, READ, "getPackageUri"),
]
