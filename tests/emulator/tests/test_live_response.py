"""Live response and its library in the emulator."""

import hashlib
import json
import time

import requests

from tests.emulator import api_live_response as lr

SCRIPT = b"#mde-emulator: stdout=collected 3 items\nWrite-Output 'hello'\n"


def _upload(api, name, content, **fields):
    form = [("File", (name, content, "application/octet-stream"))] + [(k, (None, str(v))) for k, v in fields.items()]
    return api.post("/api/libraryfiles", files=form)


def _final(api, action_id, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = api.get("/api/machineactions/%s" % action_id).json()
        if body["status"] not in ("Pending", "InProgress"):
            return body
        time.sleep(0.1)
    raise AssertionError("action did not finish")


def _commands(*items):
    return [{"type": t, "params": [{"key": k, "value": v} for k, v in params]} for t, params in items]


def test_library_upload_list_delete(emulator, api):
    resp = _upload(api, "collect.ps1", SCRIPT, Description="collects", HasParameters="true", ParametersDescription="-Path")
    assert resp.status_code == 200, resp.text
    entity = resp.json()
    assert entity["fileName"] == "collect.ps1" and entity["sha256"] == hashlib.sha256(SCRIPT).hexdigest()
    assert entity["hasParameters"] is True and entity["parametersDescription"] == "-Path" and entity["description"] == "collects"
    again = _upload(api, "collect.ps1", b"other")
    assert again.status_code == 400 and "OverrideIfExists" in again.json()["error"]["message"]
    assert _upload(api, "collect.ps1", b"other", OverrideIfExists="true").json()["sha256"] == hashlib.sha256(b"other").hexdigest()
    listed = api.get("/api/libraryfiles").json()
    assert listed["@odata.context"].endswith("#LibraryFiles") and [f["fileName"] for f in listed["value"]] == ["collect.ps1"]
    log = [e for e in emulator.log if e["method"] == "POST" and e["path"] == "/api/libraryfiles"][0]
    assert log["body"]["File"] == {"filename": "collect.ps1", "size": len(SCRIPT), "sha256": hashlib.sha256(SCRIPT).hexdigest()}
    assert api.delete("/api/libraryfiles/collect.ps1").status_code == 204
    assert api.delete("/api/libraryfiles/collect.ps1").status_code == 404
    big = _upload(api, "big.bin", b"\0" * (lr.MAX_LIBRARY_FILE + 1))
    assert big.status_code == 400 and "20MB" in big.json()["error"]["message"]
    assert api.post("/api/libraryfiles", json={"File": "x"}).status_code == 400


def test_library_needs_library_manage(emulator, api_for):
    assert api_for("readonly").get("/api/libraryfiles").status_code == 403


def test_run_script_and_get_file_results_byte_for_byte(emulator, api):
    lr.put_library_file(emulator, "collect.ps1", SCRIPT)
    machine = emulator.machines[0]
    body = {"Commands": _commands(("RunScript", [("ScriptName", "collect.ps1"), ("Args", "-Verbose")]),
                                  ("GetFile", [("Path", "C:\\temp\\evidence.log")])), "Comment": "test"}
    resp = api.post("/api/machines/%s/runliveresponse" % machine["id"], json=body)
    assert resp.status_code == 201, resp.text
    action = resp.json()
    assert action["type"] == "LiveResponse" and [c["commandStatus"] for c in action["commands"]] == ["Created", "Created"]
    again = api.post("/api/machines/%s/runliveresponse" % machine["id"], json=body)
    assert again.status_code == 400 and again.json()["error"]["code"] == "ActiveRequestAlreadyExists"
    early = api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=0)" % action["id"])
    assert early.status_code == 404
    final = _final(api, action["id"])
    assert final["status"] == "Succeeded" and [c["commandStatus"] for c in final["commands"]] == ["Completed", "Completed"]
    link = api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=0)" % action["id"]).json()["value"]
    assert "/api/" not in link and "sig=" in link and link.split("/")[2].split(":")[0] == "localhost"
    transcript = requests.get(link, verify=emulator.ca_path, timeout=10).content
    assert transcript == lr.transcript(action["id"], 0, "collect.ps1", "-Verbose", SCRIPT)
    parsed = json.loads(transcript)
    assert parsed["exit_code"] == 0 and "collected 3 items" in parsed["script_output"]
    link1 = api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=1)" % action["id"]).json()["value"]
    got = requests.get(link1, verify=emulator.ca_path, timeout=10)
    assert got.content == lr.file_content(machine["id"], "C:\\temp\\evidence.log")
    blob = [e for e in emulator.log if e["family"] == "blob"]
    assert len(blob) == 2 and not any(e["authorization"] for e in blob)
    requests.get(link1, verify=emulator.ca_path, timeout=10, headers={"Authorization": "Bearer x"})
    assert emulator.log[-1]["authorization"] is True
    assert requests.get(link1.replace("sig=", "sig=x"), verify=emulator.ca_path, timeout=10).status_code == 403
    assert api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=2)" % action["id"]).status_code == 400


def test_failing_script_stops_the_rest_and_keeps_its_transcript(emulator, api):
    lr.put_library_file(emulator, "fail.ps1", b"#mde-emulator: exit_code=3\n#mde-emulator: stderr=access denied\n")
    machine = emulator.machines[4]
    body = {"Commands": _commands(("RunScript", [("ScriptName", "fail.ps1")]), ("GetFile", [("Path", "/tmp/x")])), "Comment": "t"}
    action = api.post("/api/machines/%s/runliveresponse" % machine["id"], json=body).json()
    final = _final(api, action["id"])
    assert final["status"] == "Failed"
    assert [c["commandStatus"] for c in final["commands"]] == ["Failed", "Created"]
    assert "exited with code 3" in final["commands"][0]["errors"][0]
    link = api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=0)" % action["id"]).json()["value"]
    result = requests.get(link, verify=emulator.ca_path, timeout=10).json()
    assert result["exit_code"] == 3 and result["script_errors"] == "access denied\n"


def test_timeout_missing_script_order_and_concurrency(emulator, api):
    lr.configure(emulator, runscript_timeout=0.5, max_sessions=2)
    lr.put_library_file(emulator, "slow.ps1", b"#mde-emulator: duration=30\n")
    ids = [m["id"] for m in emulator.machines[:4]]
    slow = api.post("/api/machines/%s/runliveresponse" % ids[0], json={
        "Commands": _commands(("RunScript", [("ScriptName", "slow.ps1")])), "Comment": "t"}).json()
    missing = api.post("/api/machines/%s/runliveresponse" % ids[1], json={
        "Commands": _commands(("PutFile", [("FileName", "nothere.exe")])), "Comment": "t"}).json()
    third = api.post("/api/machines/%s/runliveresponse" % ids[2], json={
        "Commands": _commands(("GetFile", [("Path", "/tmp/a")])), "Comment": "t"})
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
    wrong_order = api.post("/api/machines/%s/runliveresponse" % ids[3], json={
        "Commands": _commands(("GetFile", [("Path", "/a")]), ("RunScript", [("ScriptName", "slow.ps1")])), "Comment": "t"})
    assert wrong_order.status_code == 400 and "order" in wrong_order.json()["error"]["message"]
    timed_out = _final(api, slow["id"])
    assert timed_out["status"] == "Failed" and "timed out" in timed_out["commands"][0]["errors"][0]
    assert _final(api, missing["id"])["commands"][0]["errors"][0].startswith("File nothere.exe was not found")
    assert api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=0)" % slow["id"]).status_code == 404
    emulator.reset()
    assert lr.library(emulator) == {}
