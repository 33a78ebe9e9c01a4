"""mde_library_file, mde_library_file_info and mde_live_response through real ansible-playbook runs."""
import hashlib
import json
import os
import stat

from tests.emulator import api_live_response as lr

LIB = "defender.endpoint.mde_library_file"
LIB_INFO = "defender.endpoint.mde_library_file_info"
LR = "defender.endpoint.mde_live_response"
SCRIPT = b"#mde-emulator: stdout=triage collected\nWrite-Output 'triage'\n"


def machine(emulator, n=0):
    found = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
             and not m["computerDnsName"].startswith("dup-")]
    return found[n]


def library_writes(emulator):
    return [(e["method"], e["path"], e["body"]) for e in emulator.writes() if "/libraryfiles" in e["path"]]


def sessions_started(emulator):
    return [e for e in emulator.writes() if e["path"].endswith("/runliveresponse")]


def script(tmp_path, name="triage.ps1", content=SCRIPT):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


# -- the library ---------------------------------------------------------------------------------------------
def test_library_file_is_idempotent_and_uploads_multipart(ansible, emulator, tmp_path):
    path = script(tmp_path)
    args = {"path": path, "description": "Triage", "has_parameters": True, "parameters_description": "-Days <n>"}
    run = ansible.playbook(diff=True, tasks=[
        {"name": "check", LIB: args, "check_mode": True},
        {"name": "upload", LIB: args},
        {"name": "again", LIB: args},
        {"name": "info", LIB_INFO: {}},
        {"name": "one", LIB_INFO: {"file_name": "TRIAGE.PS1"}},
        {"name": "none", LIB_INFO: {"file_name": "nothere.ps1"}},
    ])
    assert run.rc == 0, run
    assert run.task("check")["changed"] is True and run.task("check")["library_file"] is None
    up = run.task("upload")
    digest = hashlib.sha256(SCRIPT).hexdigest()
    assert up["changed"] is True and up["differences"] == ["missing"]
    assert up["library_file"]["sha256"] == digest and up["library_file"]["fileName"] == "triage.ps1"
    assert up["diff"]["before"] == {} and up["diff"]["after"]["sha256"] == digest
    assert run.task("again")["changed"] is False and run.task("again")["differences"] == []
    assert [f["fileName"] for f in run.task("info")["library_files"]] == ["triage.ps1"]
    assert run.task("one")["library_files"][0]["hasParameters"] is True and run.task("none")["library_files"] == []
    writes = library_writes(emulator)
    assert len(writes) == 1, writes  # check mode and the re-run sent nothing
    body = writes[0][2]
    assert body["File"] == {"filename": "triage.ps1", "size": len(SCRIPT), "sha256": digest}
    assert body["Description"] == "Triage" and body["HasParameters"] == "true" and body["OverrideIfExists"] == "true"
    assert body["ParametersDescription"] == "-Days <n>"

    emulator.clear_log()
    (tmp_path / "triage.ps1").write_bytes(SCRIPT + b"# v2\n")
    changed = ansible.playbook(tasks=[
        {"name": "content", LIB: args},
        {"name": "metadata", LIB: dict(args, description="Triage v2")},
        {"name": "unchanged", LIB: dict(args, description="Triage v2")},
        {"name": "omitted options are not compared", LIB: {"path": path}},
        {"name": "delete", LIB: {"file_name": "triage.ps1", "state": "absent"}},
        {"name": "delete again", LIB: {"file_name": "triage.ps1", "state": "absent"}},
    ])
    assert changed.rc == 0, changed
    assert changed.task("content")["differences"] == ["sha256"]
    assert changed.task("metadata")["differences"] == ["description"]
    names = ("unchanged", "omitted options are not compared", "delete", "delete again")
    assert [changed.task(n)["changed"] for n in names] == [False, False, True, False]
    assert [(m, p) for m, p, _b in library_writes(emulator)] == [
        ("POST", "/api/libraryfiles"), ("POST", "/api/libraryfiles"), ("DELETE", "/api/libraryfiles/triage.ps1")]


def test_library_file_limits_are_checked_before_any_call(ansible, emulator, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)
    run = ansible.playbook(tasks=[
        {"name": "too big", LIB: {"path": str(big)}, "ignore_errors": True},
        {"name": "no file", LIB: {"path": str(tmp_path / "absent.ps1")}, "ignore_errors": True},
        {"name": "bad name", LIB: {"path": script(tmp_path), "file_name": "../x.ps1"}, "ignore_errors": True},
    ])
    assert "20 MB" in run.task("too big")["msg"]
    assert "is not a file" in run.task("no file")["msg"]
    assert "plain file name" in run.task("bad name")["msg"]
    assert [e for e in emulator.log if e["path"].startswith("/api/")] == []


# -- live response ------------------------------------------------------------------------------------------------
def test_every_command_type_results_byte_for_byte_without_the_token(ansible, emulator, tmp_path):
    lr.put_library_file(emulator, "triage.ps1", SCRIPT)
    lr.put_library_file(emulator, "tool.exe", b"MZ tool")
    m = machine(emulator)
    dest = tmp_path / "evidence"
    commands = [{"type": "PutFile", "file_name": "tool.exe"},
                {"type": "RunScript", "script_name": "triage.ps1", "args": "-Days 7"},
                {"type": "GetFile", "path": "C:\\Windows\\Temp\\triage.zip"}]
    args = {"machine_name": m["computerDnsName"], "commands": commands, "comment": "Incident 17", "dest": str(dest)}
    run = ansible.playbook(tasks=[{"name": "session", LR: args}])
    assert run.rc == 0, run
    res = run.task("session")
    action = res["machine_action"]
    assert res["changed"] is True and action["status"] == "Succeeded" and action["type"] == "LiveResponse"
    posts = sessions_started(emulator)
    assert len(posts) == 1 and posts[0]["body"] == {"Comment": "Incident 17", "Commands": [
        {"type": "PutFile", "params": [{"key": "FileName", "value": "tool.exe"}]},
        {"type": "RunScript", "params": [{"key": "ScriptName", "value": "triage.ps1"}, {"key": "Args", "value": "-Days 7"}]},
        {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\Windows\\Temp\\triage.zip"}]}]}
    put, ran, got = res["results"]
    assert put == {"index": 0, "type": "PutFile", "status": "Completed", "errors": []}
    expected = json.loads(lr.transcript(action["id"], 1, "triage.ps1", "-Days 7", SCRIPT))
    assert ran["exit_code"] == 0 and ran["script_output"] == expected["script_output"] and ran["script_errors"] == ""
    content = lr.file_content(m["id"], "C:\\Windows\\Temp\\triage.zip")
    assert got["remote_path"] == "C:\\Windows\\Temp\\triage.zip"
    assert got["path"] == str(dest / action["id"] / "2-triage.zip")
    with open(got["path"], "rb") as f:
        assert f.read() == content
    assert got["sha256"] == hashlib.sha256(content).hexdigest() and got["size"] == len(content)
    assert stat.S_IMODE(os.stat(got["path"]).st_mode) == 0o600
    with open(ran["path"], "rb") as f:
        assert f.read() == lr.transcript(action["id"], 1, "triage.ps1", "-Days 7", SCRIPT)
    blobs = [e for e in emulator.log if e["family"] == "blob"]
    assert len(blobs) == 2 and all(e["status"] == 200 and e["authorization"] is False for e in blobs)
    assert "sig=" not in run.stdout + run.stderr and "CustomPlaybookCommandOutput" not in run.stdout + run.stderr


def test_failing_script_fails_the_task_naming_it_with_the_transcript(ansible, emulator):
    lr.put_library_file(emulator, "fix.ps1", b"#mde-emulator: exit_code=5\n#mde-emulator: stderr=registry key locked\n"
                                             b"#mde-emulator: stdout=step 1 done\n")
    m = machine(emulator, 1)
    run = ansible.playbook(tasks=[{"name": "fix", LR: {"machine_id": m["id"], "commands": [
        {"type": "RunScript", "script_name": "fix.ps1"}]}, "ignore_errors": True}])
    res = run.task("fix")
    assert res["failed"] is True and res["machine_action"]["status"] == "Failed"
    assert "command 0 (RunScript fix.ps1) failed" in res["msg"] and "exit code 5" in res["msg"]
    assert "registry key locked" in res["msg"] and "step 1 done" in res["msg"]
    assert res["results"][0]["exit_code"] == 5 and res["results"][0]["status"] == "Failed"


def test_runscript_time_out_and_wait_timeout(ansible, emulator):
    # The slow script outlasts the short wait and the start of the next task by seconds even on a loaded machine,
    # and stays within the RunScript time-out.
    lr.configure(emulator, runscript_timeout=6)
    lr.put_library_file(emulator, "hang.ps1", b"#mde-emulator: duration=20\n")
    lr.put_library_file(emulator, "slow.ps1", b"#mde-emulator: duration=5\n")
    m1, m2 = machine(emulator, 2), machine(emulator, 3)
    slow = [{"type": "RunScript", "script_name": "slow.ps1"}]
    run = ansible.playbook(tasks=[
        {"name": "hang", LR: {"machine_id": m1["id"], "commands": [{"type": "RunScript", "script_name": "hang.ps1"}]},
         "ignore_errors": True},
        {"name": "short wait", LR: {"machine_id": m2["id"], "commands": slow, "wait_timeout": 1}, "ignore_errors": True},
        {"name": "re-run waits for the same session", LR: {"machine_id": m2["id"], "commands": slow}},
    ])
    hang = run.task("hang")
    assert hang["failed"] is True and "timed out" in hang["msg"] and "exit code" not in hang["msg"]
    short = run.task("short wait")
    assert short["failed"] is True and "did not finish within wait_timeout (1 seconds)" in short["msg"]
    again = run.task("re-run waits for the same session")
    assert again["changed"] is False and again["machine_action"]["id"] == short["machine_action"]["id"]
    assert again["machine_action"]["status"] == "Succeeded" and again["results"][0]["exit_code"] == 0
    assert len([e for e in sessions_started(emulator) if m2["id"] in e["path"]]) == 1


def test_pending_session_rules_check_mode_and_missing_library_files(ansible, emulator, tmp_path):
    lr.put_library_file(emulator, "slow.ps1", b"#mde-emulator: duration=20\n")
    m = machine(emulator, 4)
    slow = [{"type": "RunScript", "script_name": "slow.ps1"}]
    other = [{"type": "RunScript", "script_name": "slow.ps1", "args": "-Other"}]
    run = ansible.playbook(tasks=[
        {"name": "check", LR: {"machine_id": m["id"], "commands": slow}, "check_mode": True},
        {"name": "check missing", LR: {"machine_id": m["id"], "commands": [
            {"type": "PutFile", "file_name": "absent.exe"}]}, "check_mode": True, "ignore_errors": True},
        {"name": "missing", LR: {"machine_id": m["id"], "commands": [
            {"type": "RunScript", "script_name": "absent.ps1"}]}, "ignore_errors": True},
        {"name": "start", LR: {"machine_id": m["id"], "commands": slow, "wait": False}},
        {"name": "same pending", LR: {"machine_id": m["id"], "commands": slow, "wait": False}},
        {"name": "other pending", LR: {"machine_id": m["id"], "commands": other}, "ignore_errors": True},
        {"name": "check while pending", LR: {"machine_id": m["id"], "commands": slow, "wait": False},
         "check_mode": True},
    ])
    check = run.task("check")
    assert check["changed"] is True and check["machine_action"] is None
    assert check["msg"] == "Would start a live response session on %s: RunScript ScriptName=slow.ps1." % m["computerDnsName"]
    assert "absent.exe" in run.task("check missing")["msg"] and "mde_library_file" in run.task("check missing")["msg"]
    assert run.task("missing")["missing_library_files"] == ["absent.ps1"]
    started = run.task("start")
    assert started["changed"] is True and started["machine_action"]["status"] == "Pending"
    assert started["results"] == [{"index": 0, "type": "RunScript", "status": "Created", "errors": [],
                                   "script_name": "slow.ps1"}]
    same = run.task("same pending")
    assert same["changed"] is False and same["machine_action"]["id"] == started["machine_action"]["id"]
    other_res = run.task("other pending")
    assert other_res["failed"] is True and started["machine_action"]["id"] in other_res["msg"]
    assert "one session per machine" in other_res["msg"] and "ScriptName=slow.ps1" in other_res["msg"]
    assert run.task("check while pending")["changed"] is False
    assert len(sessions_started(emulator)) == 1


def test_input_is_checked_before_any_call(ansible, emulator):
    m = machine(emulator)
    bad = {
        "order": [{"type": "GetFile", "path": "/a"}, {"type": "RunScript", "script_name": "x.ps1"}],
        "missing option": [{"type": "RunScript"}],
        "foreign option": [{"type": "GetFile", "path": "/a", "script_name": "x"}],
        "no dest": [{"type": "GetFile", "path": "/a"}],
    }
    run = ansible.playbook(tasks=[{"name": n, LR: {"machine_id": m["id"], "commands": c}, "ignore_errors": True}
                                  for n, c in bad.items()])
    assert "order" in run.task("order")["msg"]
    assert "needs script_name" in run.task("missing option")["msg"]
    assert "not script_name" in run.task("foreign option")["msg"]
    assert "dest is required" in run.task("no dest")["msg"]
    assert [e for e in emulator.log if e["path"].startswith("/api/")] == []


def test_no_secret_or_link_at_vvvv(ansible, emulator, tmp_path):
    lr.put_library_file(emulator, "triage.ps1", SCRIPT)
    m = machine(emulator, 5)
    run = ansible.playbook(extra_args=["-vvvv"], tasks=[
        {"name": "library", LIB: {"path": script(tmp_path, "other.ps1")}},
        {"name": "session", LR: {"machine_id": m["id"], "dest": str(tmp_path / "ev"), "commands": [
            {"type": "RunScript", "script_name": "triage.ps1"}, {"type": "GetFile", "path": "/var/log/syslog"}]}},
    ])
    assert run.rc == 0, run
    text = run.stdout + run.stderr
    secret = emulator.apps["full"]["client_secret"]
    assert secret not in text and "sig=" not in text and "CustomPlaybookCommandOutput" not in text
    for name in os.listdir(ansible.cache_dir):
        if name != "tokens.json" and os.path.isfile(os.path.join(ansible.cache_dir, name)):
            with open(os.path.join(ansible.cache_dir, name), encoding="utf-8", errors="replace") as f:
                data = f.read()
            assert secret not in data and "sig=" not in data, name
    assert all(e["authorization"] is False for e in emulator.log if e["family"] == "blob")


# -- roles ------------------------------------------------------------------------------------------------------
def test_collect_evidence_role_writes_a_manifest_of_what_it_fetched(ansible, emulator, tmp_path):
    m1, m2 = machine(emulator, 6), machine(emulator, 7)
    dest = tmp_path / "evidence"
    paths = ["C:\\Windows\\System32\\winevt\\Logs\\Security.evtx", "C:\\Users\\Public\\dropper.exe"]
    run = ansible.playbook(tasks=[{"name": "collect", "ansible.builtin.include_role": {
        "name": "defender.endpoint.collect_evidence"}, "vars": {
        "collect_evidence_machines": [m1["computerDnsName"]], "collect_evidence_machine_ids": [m2["id"]],
        "collect_evidence_paths": paths, "collect_evidence_dest": str(dest),
        "collect_evidence_comment": "Incident 17"}}])
    assert run.rc == 0, [(t, r.get("msg")) for t, r in run.tasks().items() if r.get("failed")]
    manifest = json.loads((dest / "manifest.json").read_text())
    assert stat.S_IMODE(os.stat(str(dest / "manifest.json")).st_mode) == 0o600
    items = manifest["items"]
    assert manifest["collected_by"] == "Incident 17" and len(items) == 6
    assert sorted((i["machine_id"], i["kind"]) for i in items) == sorted(
        [(m, "investigation_package") for m in (m1["id"], m2["id"])] + [(m, "file") for m in (m1["id"], m2["id"]) for p in paths])
    for item in items:
        with open(item["local_path"], "rb") as f:
            data = f.read()
        assert hashlib.sha256(data).hexdigest() == item["sha256"] and len(data) == item["size"]
        assert item["action_id"] and item["collected_at"] and item["machine"]
        if item["kind"] == "file":
            assert data == lr.file_content(item["machine_id"], item["remote_path"])
    folders = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert folders == sorted(["%s-%s" % (m1["id"], m1["computerDnsName"]), m2["id"]])


def test_run_script_role_reports_exit_codes_and_uploads_once(ansible, emulator, tmp_path):
    hosts = [machine(emulator, n) for n in (8, 9, 10)]
    emulator.set_action_outcome(hosts[2]["id"], "LiveResponse", "Failed")
    inventory = tmp_path / "hosts.ini"
    lines = ["h%d mde_id=%s ansible_connection=local\n" % (i, m["id"]) for i, m in enumerate(hosts)]
    inventory.write_text("[fleet]\n" + "".join(lines))
    path = script(tmp_path, "remediate.ps1", b"#mde-emulator: stdout=fixed\n")
    play = [{"name": "remediate", "hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "run", "ansible.builtin.include_role": {"name": "defender.endpoint.run_script"},
         "vars": {"run_script_path": path, "run_script_dest": str(tmp_path / "transcripts")}}]}]
    run = ansible.playbook(plays=play, inventory=str(inventory), forks=3)
    assert run.rc != 0
    assert run.stats["h0"]["failures"] == 0 and run.stats["h1"]["failures"] == 0 and run.stats["h2"]["failures"] == 1
    report = [r for t, r in run.tasks("h0").items() if t.endswith("Report the exit codes")][0]["msg"]
    assert "h0: Succeeded, exit code 0" in report and "h2: Failed" in report
    assert len([w for w in emulator.writes() if w["path"] == "/api/libraryfiles"]) == 1
    emulator.clear_log()
    again = ansible.playbook(plays=play, inventory=str(inventory), forks=3)
    assert again.stats["h0"]["failures"] == 0
    assert [w for w in emulator.writes() if w["path"] == "/api/libraryfiles"] == []
