# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live response sessions: commands, request body, pending sessions, the session slot, results.

Plain Python (no Ansible import), used by mde_live_response. The API:
``POST /api/machines/{id}/runliveresponse`` (https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response:
``Commands``, each ``{"type", "params": [{"key", "value"}]}``, in the order PutFile, RunScript, GetFile, and
``Comment``; 10 calls a minute, 25 concurrently running sessions, one session per machine, RunScript times out after 10
minutes, a failed command stops the ones after it) and
``GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})``
(https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result: a pre-signed link valid 30 minutes;
a RunScript result is JSON ``{script_name, exit_code, script_output, script_errors}``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import math
import os
import re
import tempfile

from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

TYPES = ("PutFile", "RunScript", "GetFile")  # also the order the API requires
# Each command's options (snake_case, the collection's) -> the API's parameter keys; the first is required.
PARAMS = {
    "PutFile": (("file_name", "FileName"),),
    "RunScript": (("script_name", "ScriptName"), ("args", "Args")),
    "GetFile": (("path", "Path"),),
}
DEFAULT_COMMENT = "Requested by Ansible (defender.endpoint.mde_live_response)"
POST_FAMILY = "POST /api/machines/{id}/runliveresponse"
# "25 concurrently running sessions" (run-live-response, "Limitations").
MAX_SESSIONS = 25
# "RunScript command time-outs after 10 minutes": a session handed over without waiting holds its slot this long per
# RunScript (a minute per other command), unless found final sooner.
RUNSCRIPT_TIMEOUT = 600
OTHER_COMMAND_LEASE = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The largest file a GetFile command collects: "Supports files up to 3 GB in size"
# (https://learn.microsoft.com/en-us/defender-endpoint/live-response, "Limitations"). No result download, whatever the
# server says, is accepted past it.
MAX_RESULT_SIZE = 3 * 1024 ** 3
# How much of a RunScript transcript is parsed into the task's result (the collection's own cap: Microsoft documents
# none). A longer transcript is kept whole on disk (with dest); the result gets its first MAX_TRANSCRIPT bytes,
# ``truncated: true``, and the script name and exit code when they stand at the start, as the API writes them.
MAX_TRANSCRIPT = 1024 * 1024
_HEAD_FIELD = re.compile(r'"(script_name|exit_code)"\s*:\s*("(?:[^"\\]|\\.){0,1024}"|-?[0-9]{1,12})')


def check_commands(commands):
    """The commands as ``[(type, {API key: value})]``; ValueError naming the item for anything the API would refuse:
    an unknown type, a missing or foreign option, control characters, or an order other than PutFile, RunScript,
    GetFile."""
    if not commands:
        raise ValueError("commands must list at least one command")
    checked = []
    for n, command in enumerate(commands, start=1):
        if not isinstance(command, dict):
            raise ValueError("commands item %d must be a dictionary with type and its options" % n)
        ctype = command.get("type")
        if ctype not in TYPES:
            raise ValueError("commands item %d: type must be one of %s (as the API spells them), got %s" % (
                n, ", ".join(TYPES), odata.shown(ctype)))
        allowed = dict(PARAMS[ctype])
        extra = sorted(k for k, v in command.items() if k != "type" and k not in allowed and v is not None)
        if extra:
            raise ValueError("commands item %d: %s takes %s, not %s" % (n, ctype, " and ".join(allowed), ", ".join(extra)))
        values = {}
        for number, (option, key) in enumerate(PARAMS[ctype]):
            value = command.get(option)
            if value is None or (number == 0 and not str(value).strip()):
                if number == 0:
                    raise ValueError("commands item %d: %s needs %s" % (n, ctype, option))
                continue
            if not isinstance(value, str):
                value = str(value)
            if odata.CONTROL_RE.search(value):
                raise ValueError("commands item %d: %s must not contain control characters, got %s" % (
                    n, option, odata.shown(value)))
            values[key] = value.strip() if number == 0 else value
        checked.append((ctype, values))
    ranks = [TYPES.index(t) for t, _v in checked]
    if ranks != sorted(ranks):
        raise ValueError("commands must be in the order the API runs them: every PutFile, then every RunScript, then "
                         "every GetFile; got %s" % ", ".join(t for t, _v in checked))
    return checked


def build_body(checked, comment=None):
    """The request body, as run-live-response documents it."""
    return {"Commands": [{"type": ctype, "params": [{"key": key, "value": values[key]}
                                                    for _option, key in PARAMS[ctype] if key in values]}
                         for ctype, values in checked],
            "Comment": comment if comment else DEFAULT_COMMENT}


def library_names(checked):
    """The library files the commands need: PutFile's file and RunScript's script, in order, once each."""
    return odata.unique(values.get("FileName") or values.get("ScriptName") for ctype, values in checked
                        if ctype in ("PutFile", "RunScript"))


def _command_of(entry):
    command = (entry or {}).get("command") or {}
    params = sorted((str(p.get("key")), str(p.get("value"))) for p in (command.get("params") or []) if isinstance(p, dict))
    return command.get("type"), params


def same_commands(action, body):
    """Whether a LiveResponse action runs exactly the commands of ``body`` (types and parameters, in order)."""
    have = [_command_of(c) for c in sorted(action.get("commands") or [], key=lambda c: c.get("index") or 0)]
    want = [(c["type"], sorted((p["key"], p["value"]) for p in c["params"])) for c in body["Commands"]]
    return have == want


def describe_commands(action):
    return "; ".join("%s %s" % (t, " ".join("%s=%s" % kv for kv in params)) for t, params in
                     (_command_of(c) for c in action.get("commands") or []))


def pending_sessions(client, machine_id):
    """The machine's LiveResponse actions that are Pending or InProgress (sessions started from the portal's device
    page are not in /api/machineactions: the POST's 400 ActiveRequestAlreadyExists is then the only sign)."""
    return list(client.list("/api/machineactions", odata_filter=ma.machine_filter(
        machine_id, ["LiveResponse"], ma.ACTIVE_STATUSES)))


def start(client, machine_id, body, known_ids=(), now=None):
    """POST the session; the MachineAction. A lost answer is reconciled (the machine's LiveResponse actions created
    since just before, not already known, with this comment and these commands), never sent twice blindly."""
    since = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(seconds=ma.CLOCK_SKEW)
    known = set(str(i) for i in known_ids if i)
    odata_filter = odata.and_all(ma.machine_filter(machine_id, ["LiveResponse"]),
                                 "creationDateTimeUtc ge %s" % odata.format_time(since))

    def reconcile():
        ours = [a for a in client.list("/api/machineactions", odata_filter=odata_filter)
                if str(a.get("id")) not in known and same_commands(a, body)
                and (a.get("requestorComment") or "") == body["Comment"]]
        return ma.latest(ours)

    return ma.entity(client.post("/api/machines/%s/runliveresponse" % odata.path_segment(machine_id), json=body,
                                 reconcile=reconcile))


# -- the controller-wide session slot --------------------------------------------------------------------------------
class SessionSlot:
    """One of the 25 concurrent live response sessions, held across every fork of the controller (throttle.SessionSlots
    in the call budget's directory); nothing when the client has no shared budget."""

    def __init__(self, client, limit=MAX_SESSIONS):
        budget = getattr(client, "budget", None)
        self.client = client
        self.limit = limit
        self.key = "%s|%s" % (getattr(client, "budget_key", ""), POST_FAMILY)
        self.slots = None
        self.token = None
        if budget is not None:
            from ansible_collections.defender.endpoint.plugins.module_utils.throttle import SessionSlots
            directory = None if getattr(budget, "_in_memory", True) else budget.directory
            self.slots = SessionSlots(directory, warnings=getattr(budget, "warnings", None))

    def _final_ids(self, ids):
        final = []
        for action_id in ids:
            try:
                action = self.client.get(ma.path(action_id))
            except MDEError as e:
                if e.status == 404:
                    final.append(action_id)
                continue
            if (action or {}).get("status") in ma.FINAL_STATUSES:
                final.append(action_id)
        return final

    def acquire(self, timeout, progress=None):
        if self.slots is not None:
            self.token = self.slots.acquire(self.key, self.limit, timeout=timeout, verify=self._final_ids,
                                            what="live response sessions", progress=progress)

    def release(self):
        if self.slots is not None and self.token:
            self.slots.release(self.key, self.token)
            self.token = None

    def hand_over(self, action_id, lease):
        if self.slots is not None and self.token:
            self.slots.hand_over(self.key, self.token, action_id, lease)
            self.token = None


def lease_for(checked):
    """How long a session can run once started, from its commands (for a slot handed over without waiting)."""
    return sum(RUNSCRIPT_TIMEOUT if t == "RunScript" else OTHER_COMMAND_LEASE for t, _v in checked) + 60


# -- results ---------------------------------------------------------------------------------------------------------
def result_link(client, action_id, index):
    """The pre-signed download link of command ``index``'s result. Never returned, logged or kept."""
    data = client.get(ma.path(action_id, "/GetLiveResponseResultDownloadLink(index=%d)" % int(index)))
    link = (data or {}).get("value") if isinstance(data, dict) else None
    if not link or not isinstance(link, str):
        raise MDEError("GET /api/machineactions/%s/GetLiveResponseResultDownloadLink(index=%d) returned no link." % (
            action_id, index), method="GET", path="/api/machineactions/%s/GetLiveResponseResultDownloadLink" % action_id)
    return link.strip().strip('"')


def read_transcript(path):
    """The RunScript result file at ``path``, parsed (parse_transcript), reading at most MAX_TRANSCRIPT bytes."""
    with open(path, "rb") as f:
        data = f.read(MAX_TRANSCRIPT + 1)
    if len(data) <= MAX_TRANSCRIPT:
        return parse_transcript(data)
    head = data[:MAX_TRANSCRIPT].decode("utf-8", "replace")
    out = {"script_name": None, "exit_code": None, "script_output": head, "script_errors": None, "truncated": True}
    for name, value in _HEAD_FIELD.findall(head[:4096]):
        try:
            out[name] = json.loads(value)
        except ValueError:
            continue
    if not isinstance(out["exit_code"], int) or isinstance(out["exit_code"], bool):
        out["exit_code"] = None
    if not isinstance(out["script_name"], str):
        out["script_name"] = None
    return out


def parse_transcript(data):
    """A RunScript result file as a dict (script_name, exit_code, script_output, script_errors). The documented
    example has a raw line break inside a string, so control characters in strings are accepted."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        parsed = json.loads(text, strict=False)
    except ValueError:
        return {"script_name": None, "exit_code": None, "script_output": text, "script_errors": None,
                "unparsed": True}
    if not isinstance(parsed, dict):
        return {"script_name": None, "exit_code": None, "script_output": text, "script_errors": None,
                "unparsed": True}
    exit_code = parsed.get("exit_code")
    try:
        exit_code = int(exit_code) if exit_code is not None else None
    except (TypeError, ValueError):
        pass
    return {"script_name": parsed.get("script_name"), "exit_code": exit_code,
            "script_output": parsed.get("script_output"), "script_errors": parsed.get("script_errors")}


def local_name(index, ctype, values):
    """The controller file name of a command's result: ``<index>-<name>``, only letters, digits and ``._-``."""
    if ctype == "RunScript":
        base = "%s.transcript.json" % values["ScriptName"]
    else:
        base = re.split(r"[\\/]", values["Path"].rstrip("\\/"))[-1] or "file"
    base = _UNSAFE.sub("_", base).lstrip(".") or "file"
    return "%d-%s" % (index, base[:150])


def fetch(client, action, index, ctype, values, dest_dir=None):
    """Download command ``index``'s result without the bearer token. Into ``dest_dir`` (then kept: path, sha256, size)
    or, for a RunScript transcript with no ``dest_dir``, a temporary file read and removed. Returns a dict of
    result fields."""
    action_id = odata.answer_id(action, "machine_action")
    link = result_link(client, action_id, index)
    what = "the result of command %d (%s) of live response action %s" % (index, ctype, action_id)
    out = {}
    if dest_dir:
        path = os.path.join(dest_dir, local_name(index, ctype, values))
        _path, sha256, size = client.download(link, path, what=what, max_size=MAX_RESULT_SIZE)
        out.update(path=path, sha256=sha256, size=size)
        if ctype == "RunScript":
            out.update(read_transcript(path))
        return out
    fd, tmp = tempfile.mkstemp(prefix=".mde-live-response-", suffix=".json")
    os.close(fd)
    try:
        _path, sha256, size = client.download(link, tmp, what=what, max_size=MAX_RESULT_SIZE)
        out.update(read_transcript(tmp))
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    out.update(sha256=sha256, size=size)
    return out


# -- waiting: one poll for every session of the controller ---------------------------------------------------------
BOARD_NAME = "live_response_status"  # .json and .lock, beside the call budget


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _board_entry(key, value):
    """One top-level entry of the status board as read from the file, with the types the board writes; entries of
    another type are dropped (None drops the whole key)."""
    if key in ("polled_at", "claimed_until"):
        return value if _number(value) else None
    if key == "watch" and isinstance(value, dict):
        return dict((k, v) for k, v in value.items() if isinstance(v, dict) and isinstance(v.get("pid"), int)
                    and (v.get("start") is None or isinstance(v.get("start"), int)))
    if key == "status" and isinstance(value, dict):
        return dict((k, v) for k, v in value.items() if v is None or isinstance(v, str))
    return None


# Seconds between polls of the controller's sessions (times MDE_RATE_LIMIT_SCALE), and how long a process may take
# to poll before another one does it in its place.
POLL_EVERY = 5.0
POLL_CLAIM = 60.0


class StatusBoard:
    """The statuses of the live response sessions every fork of the controller waits for, polled with one call.

    Polling each session by id would cost each fork a call per poll: 25 sessions polled every 15 seconds are 6,000
    calls an hour, four times the 1,500 an hour the machine action endpoints allow. Instead each waiting process
    writes its session's id on a board (``live_response_status.json`` beside the call budget, mode 0600, locked);
    whichever process finds the board's statuses older than the poll interval reads them all in one
    ``GET /api/machineactions?$filter=id eq 'a' or id eq 'b' ...`` and writes them back; the others read the board.
    A process reads its own session once more, whole, when the board says it is final.
    """

    def __init__(self, client, directory, scale=1.0, sleep=None, clock=None):
        import time as _time
        from ansible_collections.defender.endpoint.plugins.module_utils import files
        self.client = client
        self.directory = directory
        self.every = max(0.5, POLL_EVERY * scale)
        self.sleep = sleep or _time.sleep
        self.clock = clock or _time.time
        self.pid = os.getpid()
        budget = getattr(client, "budget", None)
        self._store = files.StateStore(directory, BOARD_NAME, "live response status board", check=_board_entry,
                                       warnings=getattr(budget, "warnings", None))

    def _locked(self, update):
        return self._store.update(update)

    def wait(self, action, timeout, progress=None):
        """Like machine_actions.wait_for: ``(action, finished)``."""
        from ansible_collections.defender.endpoint.plugins.module_utils.throttle import process_alive, process_start
        action_id = str(action["id"])
        me = {"pid": self.pid, "start": process_start(self.pid)}
        deadline = self.clock() + timeout
        status = action.get("status")
        try:
            while status not in ma.FINAL_STATUSES:
                if progress is not None:
                    progress.update(status)
                now = self.clock()
                if now >= deadline:
                    return action, False

                def update(board):
                    watch = board.setdefault("watch", {})
                    watch[action_id] = me
                    for other, who in list(watch.items()):
                        if not isinstance(who, dict) or not process_alive(who.get("pid"), who.get("start")):
                            del watch[other]
                    statuses = board.setdefault("status", {})
                    for other in list(statuses):
                        if other not in watch:
                            del statuses[other]
                    if now - (board.get("polled_at") or 0) >= self.every and (board.get("claimed_until") or 0) < now:
                        board["claimed_until"] = now + POLL_CLAIM
                        return True, list(watch)
                    return False, statuses.get(action_id)

                poll, found = self._locked(update)
                if poll:
                    statuses = {}
                    try:
                        for chunk in odata.chunks(found, 25):
                            for item in self.client.list("/api/machineactions", odata_filter=" or ".join(
                                    "id eq %s" % odata.quote(i) for i in chunk)):
                                statuses[str(item.get("id"))] = item.get("status")
                    finally:
                        stamp = self.clock()

                        def store(board):
                            board.setdefault("status", {}).update(statuses)
                            board["polled_at"] = stamp
                            board["claimed_until"] = 0

                        self._locked(store)
                    found = statuses.get(action_id)
                if found in ma.FINAL_STATUSES:
                    action = ma.entity(self.client.get(ma.path(action_id)))
                    status = action.get("status")
                    continue
                if found is not None:
                    status = found
                self.sleep(min(self.every / 2.0, max(0.0, deadline - self.clock())))
            if progress is not None:
                progress.done(status)
            return action, True
        finally:
            def leave(board):
                board.get("watch", {}).pop(action_id, None)
                board.get("status", {}).pop(action_id, None)
            try:
                self._locked(leave)
            except (IOError, OSError):
                pass


def wait_for(client, action, timeout, scale=1.0, progress=None):
    """Wait for a session: through the controller's StatusBoard when the client shares a budget directory, else by
    polling the action (2 s growing to 15 s, times ``scale``). ``progress`` (progress.Progress) is told each status."""
    budget = getattr(client, "budget", None)
    directory = None if budget is None or getattr(budget, "_in_memory", True) else budget.directory
    if directory:
        try:
            return StatusBoard(client, directory, scale=scale).wait(action, timeout, progress=progress)
        except (IOError, OSError):
            pass
    return ma.wait_for(client, action, timeout, first=max(0.25, 2.0 * scale), maximum=max(0.5, 15.0 * scale),
                       progress=progress)
