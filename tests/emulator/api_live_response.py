"""Live response (/api/machines/{id}/runliveresponse, GetLiveResponseResultDownloadLink), its library
(/api/libraryfiles) and the pre-signed result downloads.

Documented behaviour: https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response,
https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result,
https://learn.microsoft.com/en-us/defender-endpoint/api/upload-library,
https://learn.microsoft.com/en-us/defender-endpoint/api/list-library-files and
https://learn.microsoft.com/en-us/defender-endpoint/api/delete-library. What the pages leave open is listed in the
README ("Live response").
"""

import base64
import datetime
import email.parser
import email.policy
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from urllib.parse import quote, urlsplit

from starlette.responses import Response

from .api_machines import get_machine
from .common import ApiError, GUID_RE, check_body, collection_response, entity_response, json_response
from .seed import iso

LIBRARY_ROLES = ("Library.Manage",)
READ = ("Machine.Read.All", "Machine.ReadWrite.All")
COMMAND_TYPES = ("PutFile", "RunScript", "GetFile")
PARAM_KEYS = {"PutFile": (("FileName",), ()), "RunScript": (("ScriptName",), ("Args",)), "GetFile": (("Path",), ())}
MAX_LIBRARY_FILE = 20 * 1024 * 1024
MAX_SESSIONS = 25                 # concurrently running sessions per tenant
RUNSCRIPT_TIMEOUT = 600.0         # RunScript times out after 10 minutes (state.live_response["runscript_timeout"])
LINK_VALIDITY = 30 * 60           # the download link is valid for 30 minutes
BLOB_PATH = re.compile(r"^/investigation-actions-data/(?P<action>[0-9a-fA-F-]{36})/CustomPlaybookCommandOutput/(?P<index>\d+)$")
DIRECTIVE = re.compile(r"^\s*#\s*mde-emulator:\s*(?P<key>[a-z_]+)\s*=\s*(?P<value>.*?)\s*$", re.M)
TRANSCRIPT_HEADER = ("Transcript started, output file is C:\\ProgramData\\Microsoft\\Windows Defender Advanced Threat Protection"
                     "\\Temp\\PSScriptOutputs\\PSScript_Transcript_%s.txt\n")


# ---- state ------------------------------------------------------------------------------------------
def data(state):
    """The live response part of the emulator's state (library files, signing key, RunScript timeout)."""
    lr = getattr(state, "live_response", None)
    if lr is None or lr.get("_generation") is not state.actions:
        # reset() replaces state.actions: the library and the settings go back to their seed (empty) too.
        lr = {"_generation": state.actions, "library": {}, "key": uuid.uuid4().bytes, "runscript_timeout": RUNSCRIPT_TIMEOUT,
              "max_sessions": MAX_SESSIONS}
        state.live_response = lr
    return lr


def configure(emulator, runscript_timeout=None, max_sessions=None):
    """Test hook: shorten RunScript's 10-minute time-out, change the 25-session limit (both survive until reset())."""
    with emulator.state.lock:
        lr = data(emulator.state)
        if runscript_timeout is not None:
            lr["runscript_timeout"] = float(runscript_timeout)
        if max_sessions is not None:
            lr["max_sessions"] = int(max_sessions)


def library(emulator):
    """The library files (public entity dicts plus ``_content``), by lower-cased file name."""
    with emulator.state.lock:
        return dict(data(emulator.state)["library"])


def put_library_file(emulator, file_name, content, description=None, has_parameters=False, parameters_description=None,
                     created_by="seed"):
    """Test hook: a library file as if uploaded."""
    with emulator.state.lock:
        return _store(emulator.state, file_name, content, description, has_parameters, parameters_description, created_by)


# ---- deterministic content a test can compute ---------------------------------------------------------
def directives(script):
    """``#mde-emulator: key=value`` lines of a script (bytes or text): exit_code, stdout, stderr, duration."""
    text = script.decode("utf-8", "replace") if isinstance(script, bytes) else script
    found = {"stdout": [], "stderr": []}
    for m in DIRECTIVE.finditer(text):
        key, value = m.group("key"), m.group("value")
        if key in ("stdout", "stderr"):
            found[key].append(value)
        elif key == "exit_code":
            found["exit_code"] = int(value)
        elif key == "duration":
            found["duration"] = float(value)
    return found


def transcript(action_id, index, script_name, args, script):
    """The RunScript result file (JSON, as the get-live-response-result page shows it) for this script."""
    found = directives(script)
    output = TRANSCRIPT_HEADER % uuid.uuid5(uuid.NAMESPACE_URL, "%s/%d" % (action_id, index))
    output += "Running %s with arguments: %s\n" % (script_name, args or "")
    output += "".join(line + "\n" for line in found["stdout"])
    errors = "".join(line + "\n" for line in found["stderr"])
    return json.dumps({"script_name": script_name, "exit_code": found.get("exit_code", 0), "script_output": output,
                       "script_errors": errors}).encode("utf-8")


def file_content(machine_id, path):
    """The bytes GetFile collects for ``path`` on the machine: a text header and 4-8 KB of every byte value."""
    seed = hashlib.sha256(("%s|%s" % (machine_id, path)).encode("utf-8")).digest()
    header = ("Emulated file %s collected from machine %s\n" % (path, machine_id)).encode("utf-8")
    size = 4096 + seed[0] * 16
    body = bytes((seed[i % 32] + i) % 256 for i in range(size))
    return header + body


def file_missing(path):
    """GetFile fails for a path whose file name starts with ``missing`` (the device has no such file)."""
    name = re.split(r"[\\/]", path)[-1]
    return name.lower().startswith("missing")


# ---- library ------------------------------------------------------------------------------------------
def _library_view(entry):
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def _store(state, file_name, content, description, has_parameters, parameters_description, created_by):
    lib = data(state)["library"]
    stamp = iso(datetime.datetime.now(datetime.timezone.utc))
    old = lib.get(file_name.lower())
    entry = {"fileName": file_name, "sha256": hashlib.sha256(content).hexdigest(), "description": description,
             "creationTime": old["creationTime"] if old else stamp, "lastUpdatedTime": stamp, "createdBy": created_by,
             "hasParameters": bool(has_parameters), "parametersDescription": parameters_description, "_content": content}
    lib[file_name.lower()] = entry
    return entry


def parse_multipart(raw, content_type):
    """A multipart/form-data body as {field name: text, or {"filename", "content"} for a file part}."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = {"filename": filename, "content": payload}
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields


def logged_form(fields):
    """What the request log keeps of a multipart body: the fields, a file as its name, size and sha256."""
    out = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            out[name] = {"filename": value["filename"], "size": len(value["content"]),
                         "sha256": hashlib.sha256(value["content"]).hexdigest()}
        else:
            out[name] = value
    return out


def _form_field(fields, name):
    """A form field by name, case-insensitively (the page's table writes ``File``, its curl example ``file``)."""
    for key, value in fields.items():
        if key.lower() == name.lower():
            return value
    return None


def _form_bool(fields, name):
    value = _form_field(fields, name)
    if value is None or value == "":
        return False
    if not isinstance(value, str) or value.strip().lower() not in ("true", "false"):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: %s must be true or false" % name)
    return value.strip().lower() == "true"


def list_library(ctx):
    items = [json.dumps(_library_view(e)) for e in sorted(data(ctx.state)["library"].values(), key=lambda e: e["fileName"].lower())]
    return collection_response(ctx, "LibraryFiles", items)


def upload_library(ctx):
    fields = ctx.body
    if not isinstance(fields, dict) or not fields.get("_multipart"):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: multipart/form-data is required")
    upload = _form_field(fields, "File")
    if not isinstance(upload, dict):
        raise ApiError(400, "MissingRequiredParameter", "Parameter File is missing")
    name = upload["filename"].replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: the file has no name")
    if len(upload["content"]) > MAX_LIBRARY_FILE:
        raise ApiError(400, "BadRequest", "File max size limitation is 20MB, got %d bytes" % len(upload["content"]))
    override = _form_bool(fields, "OverrideIfExists")
    has_parameters = _form_bool(fields, "HasParameters")
    lib = data(ctx.state)["library"]
    if name.lower() in lib and not override:
        raise ApiError(400, "BadRequest", "A file named %s already exists in the library; set OverrideIfExists to replace it" % name)
    entry = _store(ctx.state, name, upload["content"], _form_field(fields, "Description"), has_parameters,
                   _form_field(fields, "ParametersDescription"), ctx.requestor)
    return entity_response(ctx, "LibraryFiles/$entity", _library_view(entry))


def delete_library(ctx, name):
    lib = data(ctx.state)["library"]
    if name.lower() not in lib:
        raise ApiError(404, "NotFound", "File %s was not found in the library" % name)
    del lib[name.lower()]
    return Response(status_code=204)


# ---- sessions -----------------------------------------------------------------------------------------
def _params(command, index):
    ctype = command.get("type") if isinstance(command, dict) else None
    if ctype not in COMMAND_TYPES:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Commands[%d].type must be one of %s" % (index, ", ".join(COMMAND_TYPES)))
    params = command.get("params")
    if not isinstance(params, list):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Commands[%d].params must be a list of key/value pairs" % index)
    required, optional = PARAM_KEYS[ctype]
    values = {}
    for item in params:
        if not isinstance(item, dict) or set(item) != {"key", "value"} or not isinstance(item["value"], str):
            raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Commands[%d].params items are {key, value} with a string value" % index)
        if item["key"] not in required + optional:
            raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: %s takes the parameters %s, not %r" % (
                ctype, ", ".join(required + optional), item["key"]))
        values[item["key"]] = item["value"]
    for key in required:
        if not values.get(key):
            raise ApiError(400, "MissingRequiredParameter", "Parameter %s of %s (Commands[%d]) is missing" % (key, ctype, index))
    return ctype, values


def _plan(state, machine, commands, delays, outcome):
    """Each command's (duration, status, errors) and the action's final status, fixed when the session starts."""
    lr = data(state)
    lib = lr["library"]
    plan = []
    status = "Succeeded"
    for index, (ctype, values) in enumerate(commands):
        duration, errors, transcript_kept = delays[1], [], False
        if index == 0 and outcome != "Succeeded":
            errors = ["Emulated failure (set_action_outcome)"]
        elif ctype == "PutFile" and values["FileName"].lower() not in lib:
            errors = ["File %s was not found in the live response library" % values["FileName"]]
        elif ctype == "RunScript":
            script = lib.get(values["ScriptName"].lower())
            if script is None:
                errors = ["Script %s was not found in the live response library" % values["ScriptName"]]
            else:
                found = directives(script["_content"])
                duration = found.get("duration", delays[1])
                if duration > lr["runscript_timeout"]:
                    duration = lr["runscript_timeout"]
                    errors = ["Script execution timed out after %g seconds" % lr["runscript_timeout"]]
                elif found.get("exit_code", 0) != 0:
                    errors = ["Script %s exited with code %d" % (values["ScriptName"], found["exit_code"])]
                    transcript_kept = True
        elif ctype == "GetFile" and file_missing(values["Path"]):
            errors = ["File %s was not found on the device" % values["Path"]]
        plan.append({"duration": duration, "errors": errors, "transcript": transcript_kept,
                     "content": (lib.get(values.get("ScriptName", "").lower()) or {}).get("_content") if ctype == "RunScript" else None})
        if errors:
            status = "Failed"
            break  # "when a live response command fails all the subsequent actions won't be executed"
    return plan, status


def _refresh(action, now, state=None):
    """Advance the commands' statuses (hook called by State.refresh_action)."""
    start = action["_created"] + action["_delays"][0]
    cancelled_at = action.get("_cancelled_at")
    for index, command in enumerate(action["commands"]):
        if index >= len(action["_plan"]):
            break
        step = action["_plan"][index]
        begins, ends = start, start + step["duration"]
        start = ends
        if cancelled_at is not None and begins >= cancelled_at:
            break
        if now >= begins and command["startTime"] is None:
            command["startTime"] = iso(datetime.datetime.fromtimestamp(begins, datetime.timezone.utc))
        if now >= ends and command["commandStatus"] == "Created":
            command["endTime"] = iso(datetime.datetime.fromtimestamp(ends, datetime.timezone.utc))
            command["commandStatus"] = "Failed" if step["errors"] else "Completed"
            command["errors"] = list(step["errors"])


def run_live_response(ctx, ident):
    state = ctx.state
    machine = get_machine(ctx, ident)
    body = check_body(ctx.body, required=("Commands", "Comment"))
    if not isinstance(body["Comment"], str):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Comment must be a string")
    if not isinstance(body["Commands"], list) or not body["Commands"]:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Commands must be a non-empty array")
    commands = [_params(c, i) for i, c in enumerate(body["Commands"])]
    ranks = [COMMAND_TYPES.index(t) for t, _v in commands]
    if ranks != sorted(ranks):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Commands must be in the order PutFile, RunScript, GetFile")
    now = time.time()
    running = []
    for other in state.actions:
        if other["type"] == "LiveResponse":
            state.refresh_action(other, now)
            if other["status"] in ("Pending", "InProgress"):
                if other["machineId"] == machine["id"]:
                    raise ApiError(400, "ActiveRequestAlreadyExists", "Action is already in progress")
                running.append(other)
    lr = data(state)
    if len(running) >= lr["max_sessions"]:
        ends = min(a["_created"] + a["_delays"][0] + a["_delays"][1] for a in running)
        retry = max(1, math.ceil(ends - now))
        raise ApiError(429, "TooManyRequests", "Too many concurrent live response sessions: at most %d are allowed. Retry after %d "
                       "seconds." % (lr["max_sessions"], retry), {"Retry-After": str(retry)})
    delays = state.action_delays
    outcome = state.action_outcomes.pop((machine["id"], "LiveResponse"), "Succeeded")
    plan, status = _plan(state, machine, commands, delays, outcome)
    stamp = iso(datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
    action_id = str(uuid.uuid4())
    action = {
        "id": action_id, "type": "LiveResponse", "title": "Live response from %s" % ctx.app["display_name"],
        "requestor": ctx.requestor, "requestorComment": body["Comment"], "status": "Pending", "machineId": machine["id"],
        "computerDnsName": machine["computerDnsName"], "creationDateTimeUtc": stamp, "lastUpdateDateTimeUtc": stamp,
        "cancellationRequestor": None, "cancellationComment": None, "cancellationDateTimeUtc": None, "errorHResult": 0,
        "scope": None, "externalID": None, "requestSource": "PublicApi", "relatedFileInfo": None, "troubleshootInfo": None,
        "commands": [{"index": i, "startTime": None, "endTime": None, "commandStatus": "Created", "errors": [],
                      "command": {"type": t, "params": [dict(p) for p in body["Commands"][i]["params"]]}}
                     for i, (t, _v) in enumerate(commands)],
        "_created": now, "_outcome": status, "_delays": (delays[0], sum(p["duration"] for p in plan)), "_plan": plan,
        "_values": [v for _t, v in commands], "_refresh": _refresh,
    }
    state.actions.append(action)
    state.actions_by_id[action_id] = action
    view = {k: v for k, v in action.items() if not k.startswith("_")}
    return entity_response(ctx, "MachineActions/$entity", view, status=201)


def _sign(state, action_id, index, expiry):
    message = ("%s/%d/%s" % (action_id.lower(), index, expiry)).encode("utf-8")
    return base64.b64encode(hmac.new(data(state)["key"], message, hashlib.sha256).digest()).decode("ascii")


def _blob_base(base_url):
    """Result links point at another host name of the emulator (127.0.0.1 <-> localhost), as Azure storage is another
    host than the API: a client that sends its bearer token there shows up in the log."""
    parts = urlsplit(base_url)
    host = "localhost" if parts.hostname in ("127.0.0.1", "::1") else "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    return "%s://%s:%d" % (parts.scheme, host, parts.port)


def result_link(ctx, action_id, index):
    if not GUID_RE.match(action_id):
        raise ApiError(400, "BadRequest", "The key value (%s) from request is not valid. The key value should be format of type 'Edm.Guid'." % action_id)
    action = ctx.state.actions_by_id.get(action_id.lower())
    if action is None or action["type"] != "LiveResponse":
        raise ApiError(404, "ResourceNotFound", "Live response action %s was not found" % action_id)
    try:
        n = int(index)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", "index must be a number, got %r" % index) from exc
    ctx.state.refresh_action(action)
    if not 0 <= n < len(action["commands"]):
        raise ApiError(400, "BadRequest", "The action has %d commands; there is no index %d" % (len(action["commands"]), n))
    command = action["commands"][n]
    ctype = command["command"]["type"]
    if ctype == "PutFile":
        raise ApiError(404, "ResourceNotFound", "PutFile (command %d) has no result" % n)
    # A result exists once the command completed, and for a script that ran but exited with another code than 0 (its
    # transcript says why); a timed-out script or a missing file has none.
    done = command["commandStatus"] == "Completed" or (command["commandStatus"] == "Failed" and action["_plan"][n].get("transcript"))
    if not done:
        raise ApiError(404, "ResourceNotFound", "Command %d of action %s has no result (%s)" % (n, action_id, command["commandStatus"]))
    expiry = iso(datetime.datetime.fromtimestamp(time.time() + LINK_VALIDITY, datetime.timezone.utc))
    url = "%s/investigation-actions-data/%s/CustomPlaybookCommandOutput/%d?se=%s&sp=r&sv=2019-07-07&sr=b&sig=%s" % (
        _blob_base(ctx.base_url), action["id"], n, quote(expiry, safe=""), quote(_sign(ctx.state, action["id"], n, expiry), safe=""))
    return json_response({"@odata.context": "%s/api/$metadata#Edm.String" % ctx.base_url, "value": url})


def result_bytes(state, action, n):
    """The result file of command ``n`` of a live response action (RunScript transcript or GetFile content)."""
    command = action["commands"][n]
    values = action["_values"][n]
    if command["command"]["type"] == "RunScript":
        return transcript(action["id"], n, values["ScriptName"], values.get("Args"), action["_plan"][n]["content"] or b"")
    return file_content(action["machineId"], values["Path"])


def serve_result(emulator, method, path, query, headers, entry):
    """GET of a pre-signed result link. Logged like any request, with ``authorization``: whether the request carried an
    Authorization header (a pre-signed link needs none, and must never be sent the API's bearer token)."""
    entry["family"] = "blob"
    entry["authorization"] = "authorization" in headers
    found = BLOB_PATH.match(path)
    if method != "GET":
        return Response(status_code=405, headers={"Allow": "GET"})
    # The link names the action (a GUID, unique across tenants): the tenant is the one whose action it is.
    action_id = found.group("action").lower()
    state = next((s for s in emulator.tenant_states.values() if action_id in s.actions_by_id), emulator.state)
    with state.lock:
        action = state.actions_by_id.get(action_id)
        n = int(found.group("index"))
        expiry = query.get("se", "")
        good = action is not None and hmac.compare_digest(query.get("sig", ""), _sign(state, action["id"], n, expiry))
        try:
            expired = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() < time.time()
        except ValueError:
            expired = True
        if not good or expired:
            return Response("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to "
                            "authenticate the request.</Message></Error>", status_code=403, headers={"content-type": "application/xml"})
        content = result_bytes(state, action, n)
    return Response(content, headers={"content-type": "application/octet-stream"})


ROUTES = [
    ("POST", r"/machines/(?P<ident>[^/]+)/runliveresponse", "/api/machines/{id}/runliveresponse", run_live_response,
     ("Machine.LiveResponse",), "liveResponse"),
    ("GET", r"/machineactions/(?P<action_id>[^/(]+)/GetLiveResponseResultDownloadLink\(index=(?P<index>[^)]*)\)",
     "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})", result_link, READ, "default"),
    ("GET", r"/libraryfiles", "/api/libraryfiles", list_library, LIBRARY_ROLES, "default"),
    ("POST", r"/libraryfiles", "/api/libraryfiles", upload_library, LIBRARY_ROLES, "default"),
    ("DELETE", r"/libraryfiles/(?P<name>[^/]+)", "/api/libraryfiles/{fileName}", delete_library, LIBRARY_ROLES, "default"),
]
