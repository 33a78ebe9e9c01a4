"""Live response helpers: commands, bodies, transcripts, the controller-wide session slots."""
import json
import multiprocessing
import os

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import library
from ansible_collections.defender.endpoint.plugins.module_utils import live_response as lr
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.throttle import SessionSlots, family, process_alive, process_start


def test_body_is_the_documented_one():
    checked = lr.check_commands([{"type": "RunScript", "script_name": "minidump.ps1", "args": "OfficeClickToRun"},
                                 {"type": "GetFile", "path": "C:\\windows\\TEMP\\OfficeClickToRun.dmp.zip"}])
    # https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response, "Request example"
    assert lr.build_body(checked, "Testing Live Response API") == {
        "Commands": [{"type": "RunScript", "params": [{"key": "ScriptName", "value": "minidump.ps1"},
                                                      {"key": "Args", "value": "OfficeClickToRun"}]},
                     {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\windows\\TEMP\\OfficeClickToRun.dmp.zip"}]}],
        "Comment": "Testing Live Response API"}
    assert lr.library_names(lr.check_commands([{"type": "PutFile", "file_name": "a.exe"},
                                               {"type": "RunScript", "script_name": "a.exe"}])) == ["a.exe"]


@pytest.mark.parametrize("commands,text", [
    ([], "at least one"),
    ([{"type": "Shell"}], "type must be one of PutFile, RunScript, GetFile"),
    ([{"type": "GetFile"}], "needs path"),
    ([{"type": "PutFile", "file_name": "a", "args": "x"}], "not args"),
    ([{"type": "GetFile", "path": "/a"}, {"type": "PutFile", "file_name": "b"}], "order"),
    ([{"type": "RunScript", "script_name": "a\nb"}], "control characters"),
])
def test_bad_commands(commands, text):
    with pytest.raises(ValueError, match=text):
        lr.check_commands(commands)


def test_same_commands_and_transcripts():
    body = lr.build_body(lr.check_commands([{"type": "RunScript", "script_name": "s.ps1", "args": "-x"}]))
    action = {"commands": [{"index": 0, "command": {"type": "RunScript", "params": [
        {"key": "Args", "value": "-x"}, {"key": "ScriptName", "value": "s.ps1"}]}}]}
    assert lr.same_commands(action, body)
    action["commands"][0]["command"]["params"][0]["value"] = "-y"
    assert not lr.same_commands(action, body)
    # The documented result file has a raw line break inside a string: still read.
    raw = b'{"script_name": "minidump.ps1", "exit_code": 0, "script_output": "line 1\nline 2", "script_errors": ""}'
    assert lr.parse_transcript(raw) == {"script_name": "minidump.ps1", "exit_code": 0,
                                        "script_output": "line 1\nline 2", "script_errors": ""}
    assert lr.parse_transcript(b"not json")["unparsed"] is True
    assert lr.local_name(2, "GetFile", {"Path": "C:\\Users\\x\\..\\evil name.zip"}) == "2-evil_name.zip"
    assert lr.local_name(0, "GetFile", {"Path": "/var/log/.."}) == "0-file"
    assert lr.local_name(1, "RunScript", {"ScriptName": "s.ps1"}) == "1-s.ps1.transcript.json"


def test_families_and_library_names():
    assert family("POST", "/api/machines/abc/runliveresponse") == lr.POST_FAMILY
    assert family("GET", "/api/machineactions/a/GetLiveResponseResultDownloadLink(index=3)") == \
        "GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(...)"
    assert family("DELETE", "/api/libraryfiles/x.ps1") == "DELETE /api/libraryfiles/{id}"
    for bad in ("", "a/b.ps1", "..", "a\\b", "x\ny"):
        with pytest.raises(ValueError):
            library.check_file_name(bad)
    entry = {"sha256": "AB", "description": None, "hasParameters": False}
    assert library.differences(entry, "ab", description="") == []
    assert library.differences(entry, "cd", has_parameters=True) == ["sha256", "has_parameters"]


# -- session slots ----------------------------------------------------------------------------------------------
def test_slots_cap_and_release(tmp_path):
    slots = SessionSlots(str(tmp_path / "cache"), sleep=lambda s: None)
    tokens = [slots.acquire("k", 2), slots.acquire("k", 2)]
    with pytest.raises(MDEError, match="2 sessions were already running"):
        slots.acquire("k", 2, timeout=0)
    slots.release("k", tokens[0])
    assert slots.acquire("k", 2, timeout=0)
    assert oct(os.stat(str(tmp_path / "cache" / "sessions.json")).st_mode & 0o777) == "0o600"


def _hold(directory, queue):
    queue.put(SessionSlots(directory).acquire("k", 1))


def test_slot_of_a_dead_process_is_taken_back(tmp_path):
    directory = str(tmp_path / "cache")
    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_hold, args=(directory, queue))
    child.start()
    queue.get(timeout=30)
    child.join()
    assert not process_alive(child.pid, None)
    assert SessionSlots(directory).acquire("k", 1, timeout=0)  # the dead child's slot was free again


def test_a_reused_pid_is_not_the_holder(tmp_path):
    assert process_alive(os.getpid(), process_start(os.getpid()))
    assert not process_alive(os.getpid(), (process_start(os.getpid()) or 0) + 1)


def test_handed_over_slot_is_held_by_its_lease_or_until_verified_final(tmp_path):
    now = [1000.0]
    slots = SessionSlots(str(tmp_path / "cache"), sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    token = slots.acquire("k", 1)
    slots.hand_over("k", token, "action-1", lease=60)
    asked = []

    def verify(ids):
        asked.append(list(ids))
        return ["action-1"] if now[0] > 1020 else []

    assert slots.acquire("k", 1, verify=verify, timeout=100)
    assert asked[0] == ["action-1"] and 1020 < now[0] < 1060
    other = SessionSlots(str(tmp_path / "cache2"), sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    token = other.acquire("k", 1)
    other.hand_over("k", token, "action-2", lease=30)
    start = now[0]
    assert other.acquire("k", 1, timeout=100)  # no verify: the lease ends it
    assert now[0] - start >= 30


def test_damaged_file_starts_anew(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    (directory / "sessions.json").write_text("{not json")
    os.chmod(str(directory / "sessions.json"), 0o600)
    slots = SessionSlots(str(directory))
    assert slots.acquire("k", 1)
    assert "damaged" in slots.warnings[0]
    assert json.loads((directory / "sessions.json").read_text())["k"][0]["pid"] == os.getpid()


def test_without_a_directory_slots_are_in_memory():
    slots = SessionSlots(None, sleep=lambda s: None)
    slots.acquire("k", 1)
    with pytest.raises(MDEError):
        slots.acquire("k", 1, timeout=0)


class _Resp:
    def __init__(self, status, body):
        self.status_code, self.headers, self.reason = status, {}, "x"
        self.content = json.dumps(body).encode()

    def json(self):
        return json.loads(self.content)


class _Session:
    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def request(self, method, url, **kwargs):
        self.calls.append(dict(kwargs, method=method, url=url))
        return self.answers.pop(0)


class _Tokens:
    refreshable = False

    def get_token(self, force_refresh=False):
        return "tok"

    def describe(self):
        return "test"


def test_upload_is_multipart_and_retried_as_a_reconciled_write():
    from ansible_collections.defender.endpoint.plugins.module_utils.client import MDEClient
    entity = {"fileName": "s.ps1", "sha256": "ab", "description": None, "hasParameters": False}
    session = _Session(_Resp(503, {"error": {"code": "ServiceUnavailable"}}), _Resp(200, {"value": []}),
                       _Resp(200, entity))
    client = MDEClient("https://api.example", _Tokens(), session, sleep=lambda s: None)
    assert library.upload(client, "s.ps1", b"content", "ab") == entity
    first, read_back, second = session.calls
    assert first["files"] == second["files"] == [("File", ("s.ps1", b"content", "application/octet-stream")),
                                                 ("OverrideIfExists", (None, "true"))]
    assert "json" not in first and read_back["method"] == "GET" and first["url"] == "https://api.example/api/libraryfiles"


def test_a_transcript_over_the_cap_is_parsed_from_its_start_only(tmp_path, monkeypatch):
    monkeypatch.setattr(lr, "MAX_TRANSCRIPT", 1000)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"script_name": "big.ps1", "exit_code": 3, "script_output": "x" * 50000,
                                "script_errors": ""}))
    out = lr.read_transcript(str(path))
    assert out["truncated"] is True and out["exit_code"] == 3 and out["script_name"] == "big.ps1"
    assert len(out["script_output"]) == 1000 and os.path.getsize(str(path)) > 50000
    small = tmp_path / "s.json"
    small.write_text(json.dumps({"script_name": "s.ps1", "exit_code": 0, "script_output": "ok", "script_errors": ""}))
    assert lr.read_transcript(str(small)) == {"script_name": "s.ps1", "exit_code": 0, "script_output": "ok",
                                              "script_errors": ""}


@pytest.mark.parametrize("content", [
    '{"watch": [], "status": "x", "polled_at": "soon", "claimed_until": null}',
    '{"watch": {"a": 1, "b": {"pid": "x"}}, "status": {"c": 5}, "polled_at": [1]}',
    '["not", "a", "board"]',
])
def test_a_status_board_with_wrong_types_is_repaired_with_a_warning(tmp_path, content):
    import types
    action_id = "0a000000-0000-4000-8000-0000000000c1"
    board_file = tmp_path / "live_response_status.json"
    board_file.write_text(content)
    os.chmod(str(board_file), 0o600)
    os.chmod(str(tmp_path), 0o700)

    class Client:
        budget = types.SimpleNamespace(warnings=[])

        def list(self, path, odata_filter=None):
            return [{"id": action_id, "status": "Succeeded"}]

        def get(self, path):
            return {"id": action_id, "status": "Succeeded"}

    client = Client()
    board = lr.StatusBoard(client, str(tmp_path), sleep=lambda s: None)
    action, finished = board.wait({"id": action_id, "status": "Pending"}, 60)
    assert finished and action["status"] == "Succeeded"
    assert [w for w in client.budget.warnings if "live response status board" in w and "damaged" in w]
    saved = json.loads(board_file.read_text())
    assert isinstance(saved, dict) and isinstance(saved.get("watch", {}), dict) and isinstance(saved["polled_at"], float)


def test_session_slots_with_wrong_types_are_repaired_with_a_warning(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    (tmp_path / "sessions.json").write_text('{"k": "abc", "j": [1, {"token": 5}, {"token": "t", "pid": 1}]}')
    os.chmod(str(tmp_path / "sessions.json"), 0o600)
    slots = SessionSlots(str(tmp_path))
    token = slots.acquire("k", 1, timeout=5)
    assert token and [w for w in slots.warnings if "session slots" in w and "damaged" in w]
    saved = json.loads((tmp_path / "sessions.json").read_text())
    assert [s["token"] for s in saved["k"]] == [token] and saved["j"] == [{"token": "t", "pid": 1}]


def test_waiting_for_a_free_session_slot_says_so(tmp_path):
    from ansible_collections.defender.endpoint.plugins.module_utils.progress import Progress
    os.chmod(str(tmp_path), 0o700)
    now = [1000.0]
    lines = []
    slots = SessionSlots(str(tmp_path), sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0], poll=5)
    (tmp_path / "sessions.json").write_text(json.dumps({"k": [{"token": "other", "lease_until": 1100.0}]}))
    os.chmod(str(tmp_path / "sessions.json"), 0o600)
    progress = Progress(lines.append, "a free live response session slot", (600, "wait_timeout"), quiet_for=0,
                        clock=lambda: now[0])
    assert slots.acquire("k", 1, timeout=600, progress=progress)
    assert now[0] >= 1100.0
    assert "all 1 in use" in lines[0] and "a free live response session slot" in lines[0]
    assert "a slot is free" in lines[-1] and "done waiting" in lines[-1]
