"""Answers from a hostile or compromised server, through real ansible-playbook / ansible-inventory runs.

An API answer (or a device's own name, transcript or alert text) decides no path, no size and no terminal output:
each test makes the emulator answer as an attacker would and checks what the collection wrote, printed and sent.
"""
import json
import os
import stat
import time
import zipfile

from tests.emulator import api_live_response as lr

ACTION = "defender.endpoint.mde_machine_action"
ACTION_INFO = "defender.endpoint.mde_machine_action_info"
LR = "defender.endpoint.mde_live_response"
ESC = "\x1b[2J\x1b[H"


def onboarded(emulator, n=0):
    found = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
             and not m["computerDnsName"].startswith("dup-")]
    return found[n]


def every_file(root):
    return sorted(os.path.join(d, f) for d, _dirs, names in os.walk(str(root)) for f in names)


def test_a_package_answer_naming_another_action_writes_nothing_anywhere(ansible, emulator, tmp_path):
    m = onboarded(emulator)
    collected = ansible.playbook(tasks=[{"name": "collect", ACTION: {
        "machine_id": m["id"], "action": "collect_investigation_package", "comment": "case 25", "wait": True}}])
    action_id = collected.task("collect")["machine_action"]["id"]
    dest = tmp_path / "packages"
    dest.mkdir()
    outside = tmp_path / "outside" / "evil"
    other = "0a000000-0000-4000-8000-0000000000ee"
    for hostile, says in ((str(outside), "not a machine action id"), ("../../x", "not a machine action id"),
                          (action_id + "/../x", "not a machine action id"), (other, "another action")):
        emulator.inject_fault(r"^/api/machineactions/%s$" % action_id, "tamper", method="GET", fields={"id": hostile})
        run = ansible.playbook(tasks=[{"name": "download", ACTION_INFO: {"action_id": action_id, "dest": str(dest)},
                                       "ignore_errors": True}])
        res = run.task("download")
        assert res["failed"] and says in res["msg"] and "refused" in res["msg"], res
    assert every_file(tmp_path / "packages") == [] and not os.path.exists(str(outside) + ".zip")
    assert not os.path.exists(str(tmp_path / "x.zip")) and not os.path.exists(str(tmp_path.parent / "x.zip"))
    assert [e for e in emulator.log if "GetPackageUri" in e["path"]] == []
    # The honest answer: the file is named after the id the task asked for.
    ok = ansible.playbook(tasks=[{"name": "download", ACTION_INFO: {"action_id": action_id, "dest": str(dest)}}])
    assert ok.task("download")["dest"] == str(dest / ("%s.zip" % action_id.lower()))
    assert every_file(dest) == [str(dest / ("%s.zip" % action_id.lower()))]


def test_a_live_response_answer_with_dotdot_as_its_id_writes_nothing_outside_dest(ansible, emulator, tmp_path):
    m = onboarded(emulator, 1)
    dest = tmp_path / "case" / "evidence"
    dest.mkdir(parents=True)
    emulator.inject_fault(r"/runliveresponse$", "tamper", method="POST", fields={"id": ".."})
    run = ansible.playbook(tasks=[{"name": "collect", LR: {
        "machine_id": m["id"], "commands": [{"type": "GetFile", "path": "C:\\Windows\\Temp\\a.txt"}],
        "dest": str(dest)}, "ignore_errors": True}])
    res = run.task("collect")
    assert res["failed"] and "machine action id (a GUID)" in res["msg"] and "refused" in res["msg"], res
    assert every_file(tmp_path / "case") == []
    # No request went to a URL built from the hostile id.
    assert [e["path"] for e in emulator.log if e["path"].startswith("/api/machineactions/")] == []


def test_a_device_named_dotdot_is_no_host_and_evidence_stays_in_its_folder(ansible, emulator, tmp_path):
    m = onboarded(emulator, 2)
    state = emulator.state
    m["computerDnsName"] = ".."
    state._index_machines()  # pylint: disable=protected-access
    state.touch_machine(m)
    inv = ansible.inventory({"plugin": "defender.endpoint.mde_machines"})
    hosts = inv.data["_meta"]["hostvars"]
    assert ".." not in hosts and "." not in hosts
    name = hosts[m["id"]]["mde_computer_dns_name"]                  # named by the next preference, its id
    assert (name if isinstance(name, str) else name["__ansible_unsafe"]) == ".."
    assert "(or . or ..)" in " ".join(inv.stderr.split())
    dest = tmp_path / "case" / "evidence"
    (tmp_path / "case").mkdir()
    os.chmod(str(tmp_path / "case"), 0o755)
    run = ansible.playbook(tasks=[{"name": "collect", "ansible.builtin.include_role": {
        "name": "defender.endpoint.collect_evidence"}, "vars": {
        "collect_evidence_machines": [".."], "collect_evidence_paths": ["C:\\Temp\\a.txt"],
        "collect_evidence_investigation_package": False, "collect_evidence_dest": str(dest)}}])
    assert run.rc == 0, [(t, r.get("msg")) for t, r in run.tasks().items() if r.get("failed")]
    assert sorted(p.name for p in dest.iterdir()) == sorted(["%s-.." % m["id"], "manifest.json"])
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == ["evidence"]
    assert stat.S_IMODE(os.stat(str(tmp_path / "case")).st_mode) == 0o755   # the parent's mode stays the user's


def test_a_huge_transcript_and_escape_codes_never_reach_the_terminal(ansible, emulator, tmp_path):
    lines = [b"#mde-emulator: exit_code=5", b"#mde-emulator: stderr=" + ESC.encode() + b"fatal: [localhost]: FAKE"]
    lines += [b"#mde-emulator: stdout=" + b"A" * 200] * 11000                       # a transcript of about 2.2 MB
    lr.put_library_file(emulator, "noisy.ps1", b"\n".join(lines) + b"\n")
    m = onboarded(emulator, 3)
    dest = tmp_path / "out"
    task = {"name": "noisy", LR: {"machine_id": m["id"], "commands": [{"type": "RunScript", "script_name": "noisy.ps1"}],
                                  "dest": str(dest)}, "ignore_errors": True}
    run = ansible.playbook(tasks=[task])
    res = run.task("noisy")
    assert res["failed"] and "exit code 5" in res["msg"] and len(res["msg"]) < 8200, len(res["msg"])
    ran = res["results"][0]
    assert ran["truncated"] is True and ran["exit_code"] == 5 and len(ran["script_output"]) == 1024 * 1024
    assert os.path.getsize(ran["path"]) > 2 * 1024 * 1024                           # the whole file stays on disk
    # The same run as a person sees it, with Ansible's default output: no escape code, no forged line.
    emulator.reset()
    lr.put_library_file(emulator, "noisy.ps1", b"\n".join(lines[:2]) + b"\n")
    api_text = ESC + "fatal: [localhost]: FORGED\r\n" + "B" * 9000
    emulator.inject_fault(r"/isolate$", "status", status=400, message=api_text)
    shown = ansible.playbook(tasks=[dict(task, name="noisy"), {"name": "isolate", ACTION: {
        "machine_id": m["id"], "action": "isolate", "comment": "case 25"}, "ignore_errors": True}],
        env={"ANSIBLE_STDOUT_CALLBACK": "default"})
    terminal = shown.stdout + shown.stderr
    assert "\x1b" not in terminal and "\\x1b[2J" in terminal and "Emulated" not in terminal
    assert "FORGED" in terminal and "\r" not in terminal and "(cut: %d characters in all)" % len(api_text) in terminal


def test_an_endless_retry_after_fails_at_once_and_the_next_run_does_not_wait(ansible, emulator):
    emulator.inject_fault(r"^/api/machines$", "status", status=429, retry_after="1e308", method="GET")
    task = {"name": "list", "defender.endpoint.mde_machine_info": {"limit": 1}, "ignore_errors": True}
    started = time.monotonic()
    first = ansible.playbook(tasks=[task]).task("list")
    assert first["failed"] and first["status"] == 429 and "a day or more" in first["msg"]
    assert "OverflowError" not in first["msg"] and "Unexpected" not in first["msg"]
    second = ansible.playbook(tasks=[task]).task("list")
    assert not second.get("failed") and len(second["machines"]) == 1
    assert time.monotonic() - started < 60
    budget = json.loads(open(os.path.join(ansible.cache_dir, "ratelimit.json")).read())
    assert all(entry["blocked_until"] <= time.time() for entry in budget.values())


def test_a_status_board_with_wrong_types_is_repaired_not_fatal(ansible, emulator):
    os.makedirs(ansible.cache_dir, mode=0o700, exist_ok=True)
    board = os.path.join(ansible.cache_dir, "live_response_status.json")
    with open(board, "w") as f:
        json.dump({"watch": [], "status": "x", "polled_at": "soon"}, f)
    os.chmod(board, 0o600)
    lr.put_library_file(emulator, "ok.ps1", b"#mde-emulator: stdout=fine\n")
    m = onboarded(emulator, 4)
    run = ansible.playbook(tasks=[{"name": "run", LR: {"machine_id": m["id"], "commands": [
        {"type": "RunScript", "script_name": "ok.ps1"}]}}])
    res = run.task("run")
    assert not res.get("failed") and res["results"][0]["exit_code"] == 0, res
    assert [w for w in res.get("warnings", []) if "live response status board" in w and "damaged" in w]
    saved = json.load(open(board))
    assert isinstance(saved.get("watch", {}), dict) and isinstance(saved.get("status", {}), dict)


def test_a_zip_bomb_onboarding_package_is_refused_before_it_is_read(ansible, tmp_path):
    bomb = tmp_path / "WindowsDefenderATPOnboardingPackage.zip"
    with zipfile.ZipFile(str(bomb), "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("mdatp_onboard.json", "w") as member:
            chunk = b"0" * (1024 * 1024)
            for _i in range(64):
                member.write(chunk)
    assert os.path.getsize(str(bomb)) < 1024 * 1024
    run = ansible.playbook(tasks=[{"name": "read", "ansible.builtin.debug": {
        "msg": "{{ lookup('defender.endpoint.mdatp_package_json', '%s') | length }}" % bomb}, "ignore_errors": True}])
    res = run.task("read")
    assert res["failed"] and "larger than 1048576 bytes" in res["msg"], res


def test_text_options_with_control_characters_are_refused_before_any_call(ansible, emulator):
    m = onboarded(emulator, 5)
    cases = {
        "incident comment": {"defender.endpoint.mde_incident": {"incident_id": "1001", "comment": "a\u0000b"}},
        "cancel comment": {"defender.endpoint.mde_machine_action_cancel": {"machine_id": m["id"], "comment": "x\u0085y"}},
        "alert comment": {"defender.endpoint.mde_alert": {"alert_id": emulator.alerts[0]["id"], "comment": "ok " + ESC}},
        "isolation comment": {ACTION: {"machine_id": m["id"], "action": "isolate", "comment": "a\u2028b"}},
    }
    run = ansible.playbook(tasks=[dict(args, name=name, ignore_errors=True) for name, args in cases.items()])
    for name in cases:
        msg = run.task(name)["msg"]
        assert run.task(name)["failed"] and "must not contain control characters" in msg and "comment" in msg, msg
    assert [e for e in emulator.log if e["path"].startswith(("/api/", "/v1.0/"))] == []
    # Line breaks stay allowed in a comment.
    ok = ansible.playbook(tasks=[{"name": "multi-line", ACTION: {"machine_id": m["id"], "action": "isolate",
                                                                 "comment": "case 25\nsecond line"}}])
    assert ok.task("multi-line")["changed"] is True


def test_incidents_awaiting_action_are_found_with_the_evolvable_enum_header(ansible, emulator):
    run = ansible.playbook(tasks=[{"name": "waiting", "defender.endpoint.mde_incident_info": {
        "status": ["awaitingAction"]}}])
    found = run.task("waiting")["incidents"]
    assert found and {i["status"] for i in found} == {"awaitingAction"}, run.task("waiting")
    graph = [e for e in emulator.log if e["path"].startswith("/v1.0/security/incidents")]
    assert graph and all(e.get("prefer") == "include-unknown-enum-members" for e in graph)
