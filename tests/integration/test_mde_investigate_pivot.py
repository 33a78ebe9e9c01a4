"""Entity pivots (files, IPs, domains, users), machine lookups by IP / tag with logged-on users,
automated investigations and cancelling machine actions, through real ansible-playbook runs against the emulator.

Expectations come from the emulator's own derived data (tests/emulator/api_entities.py); every test also checks what
the emulator received: the calls made, none before a failed validation, no write in check mode or on a re-run.
"""
import datetime
import json
import os
import signal
import subprocess
import time

import requests
import yaml

from tests.emulator import api_entities
from tests.integration.harness import BIN, Ansible, action_delays
from tests.integration.test_eda import java_env

FILE = "defender.endpoint.mde_file_info"
IP = "defender.endpoint.mde_ip_info"
DOMAIN = "defender.endpoint.mde_domain_info"
USER = "defender.endpoint.mde_user_info"
MACHINE = "defender.endpoint.mde_machine_info"
AIR = "defender.endpoint.mde_investigation"
AIR_INFO = "defender.endpoint.mde_investigation_info"
ACTION = "defender.endpoint.mde_machine_action"
CANCEL = "defender.endpoint.mde_machine_action_cancel"


def api_calls(emulator):
    return [(e["method"], e["path"]) for e in emulator.log if e["path"].startswith("/api/")]


def writes(emulator):
    return [(w["method"], w["path"]) for w in emulator.writes()]


def ids(items):
    return sorted(i["id"] for i in items)


def active_machines(emulator):
    return {i["machineId"] for i in api_entities.investigations(emulator.state) if i["state"] in api_entities.ACTIVE_STATES}


def idle_windows_machine(emulator, skip=()):
    busy = active_machines(emulator)
    return next(m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["osPlatform"].startswith("Windows")
                and m["id"] not in busy and m["id"] not in skip and m["computerDnsName"] and not m["computerDnsName"].startswith("dup"))


# -- files ------------------------------------------------------------------------------------------------------------
def test_file_info_every_part_by_sha1_and_sha256_and_unknown_is_empty(ansible, emulator):
    ents = api_entities.data(emulator.state)
    sha1 = api_entities.dropper_sha1(1)
    entry = ents.files[sha1]
    unknown = "ab" * 20
    r = ansible.playbook([
        {"name": "all", FILE: {"file_hash": sha1.upper()}},
        {"name": "by sha256", FILE: {"file_hash": entry["sha256"], "include": ["machines"]}},
        {"name": "profile only", FILE: {"file_hash": sha1, "include": []}},
        {"name": "stats 48h", FILE: {"file_hash": sha1, "include": ["stats"], "lookback_hours": 48}},
        {"name": "unknown", FILE: {"file_hash": unknown}},
    ])
    assert r.rc == 0, r
    full = r.task("all")
    assert full["changed"] is False and full["file"]["sha1"] == sha1 and full["file"]["sha256"] == entry["sha256"]
    assert ids(full["machines"]) == sorted(entry["machines"]) and len(entry["machines"]) >= 5
    assert ids(full["alerts"]) == sorted(entry["alerts"])
    assert full["stats"]["sha1"] == sha1 and full["stats"]["topFileNames"] == ["payload0000.dll"]
    assert ids(r.task("by sha256")["machines"]) == sorted(entry["machines"])
    assert "stats" not in r.task("by sha256") and "alerts" not in r.task("by sha256")
    assert set(r.task("profile only")) & {"stats", "machines", "alerts"} == set()
    assert r.task("unknown")["file"] is None
    assert r.task("unknown")["machines"] == [] and r.task("unknown")["alerts"] == [] and r.task("unknown")["stats"] is None
    calls = api_calls(emulator)
    # the SHA-256 profile gave the SHA-1 that machines are looked up by; an unknown file costs one call only
    assert ("GET", "/api/files/%s/machines" % sha1) in calls and not any(entry["sha256"] + "/" in p for _m, p in calls)
    assert [p for _m, p in calls if unknown in p] == ["/api/files/%s" % unknown]
    stats = [e for e in emulator.log if e["path"].endswith("/stats")]
    assert [e["query"].get("lookBackHours") for e in stats] == [None, "48"]


# -- IPs, domains, users ----------------------------------------------------------------------------------------------
def test_ip_domain_and_user_pivots_and_unseen_values_are_empty(ansible, emulator):
    ents = api_entities.data(emulator.state)
    c2_alerts = sorted(ents.ip_alerts[api_entities.C2_IP])
    c2_machines = sorted({a["machineId"] for a in ents.alerts(c2_alerts)})
    user = emulator.alerts[1]["relatedUser"]["userName"]
    user_alerts = sorted(ents.user_alerts[user.lower()])
    r = ansible.playbook([
        {"name": "ip", IP: {"ip": api_entities.C2_IP, "lookback_hours": 720}},
        {"name": "ip unseen", IP: {"ip": "2001:db8::77"}},
        {"name": "domain", DOMAIN: {"domain": api_entities.C2_DOMAIN.upper() + "."}},
        {"name": "domain unseen", DOMAIN: {"domain": "nothing-here.example.org", "include": ["machines", "alerts"]}},
        {"name": "user", USER: {"user": user}},
        {"name": "user unseen", USER: {"user": "nobody42"}},
    ])
    assert r.rc == 0, r
    ip = r.task("ip")
    assert ip["ip"] == api_entities.C2_IP and ids(ip["alerts"]) == c2_alerts
    assert ip["stats"]["organizationPrevalence"] == len(c2_machines) and "machines" not in ip
    unseen = r.task("ip unseen")
    assert unseen["ip"] == "2001:db8:0:0:0:0:0:77" and unseen["alerts"] == []
    assert unseen["stats"]["organizationPrevalence"] == 0
    dom = r.task("domain")
    assert dom["domain"] == api_entities.C2_DOMAIN and ids(dom["machines"]) == c2_machines and ids(dom["alerts"]) == c2_alerts
    assert dom["stats"]["host"] == api_entities.C2_DOMAIN
    assert r.task("domain unseen")["machines"] == [] and r.task("domain unseen")["alerts"] == []
    assert "stats" not in r.task("domain unseen")
    usr = r.task("user")
    assert ids(usr["alerts"]) == user_alerts
    assert ids(usr["machines"]) == sorted({a["machineId"] for a in ents.alerts(user_alerts)})
    assert r.task("user unseen")["machines"] == [] and r.task("user unseen")["alerts"] == []
    assert all(m == "GET" for m, _p in api_calls(emulator))


def test_bad_values_fail_before_any_call(ansible, emulator):
    bad = [
        ("md5", FILE, {"file_hash": "d41d8cd98f00b204e9800998ecf8427e"}, "does not look files up by MD5"),
        ("short hash", FILE, {"file_hash": "abc123"}, "file_hash must be a SHA-1"),
        ("lookback", FILE, {"file_hash": "ab" * 20, "lookback_hours": 721}, "lookback_hours must be between 1 and 720"),
        ("cidr", IP, {"ip": "10.0.0.0/8"}, "ip must be one IPv4 or IPv6 address"),
        ("not an ip", IP, {"ip": "10.0.0.300"}, "ip must be one IPv4 or IPv6 address"),
        ("url", DOMAIN, {"domain": "https://contoso.com/x"}, "domain must be a domain name"),
        ("upn", USER, {"user": "user1@contoso.com"}, "user must be the account name only"),
        ("domain user", USER, {"user": "CONTOSO\\user1"}, "user must be the account name only"),
        ("path user", USER, {"user": "../alerts"}, "user must be an account name"),
        ("old ip time", MACHINE, {"ip": "10.0.0.1", "ip_timestamp": "40d"}, "ip_timestamp must be within the last 30 days"),
        ("tag with ip", MACHINE, {"ip": "10.0.0.1", "tag": "VIP"}, "mutually exclusive"),
        ("starts without tag", MACHINE, {"tag_starts_with": True, "machine_tags": ["x"]}, "tag"),
        ("air id", AIR_INFO, {"investigation_id": "1/../2"}, "investigation_id must not contain"),
        ("cancel id", CANCEL, {"action_id": "not-a-guid"}, "action_id must be a machine action id"),
    ]
    r = ansible.playbook([{"name": n, m: a, "ignore_errors": True} for n, m, a, _t in bad])
    assert r.rc == 0, r
    for name, _m, _a, text in bad:
        res = r.task(name)
        assert res.get("failed") and text in res["msg"], (name, res)
    assert emulator.log == []  # not even a token request


def test_403_names_the_missing_permission(ansible, emulator):
    m = idle_windows_machine(emulator)
    r = ansible.playbook([
        {"name": "file", FILE: {"file_hash": api_entities.dropper_sha1(1), "include": []}, "ignore_errors": True},
        {"name": "domain alerts", DOMAIN: {"domain": "contoso.com", "include": ["alerts"]}, "ignore_errors": True},
        {"name": "user machines", USER: {"user": "user1", "include": ["machines"]}, "ignore_errors": True},
        {"name": "logon users", MACHINE: {"machine_id": m["id"], "logon_users": True}, "ignore_errors": True},
        {"name": "start", AIR: {"machine_id": m["id"]}, "ignore_errors": True},
    ], app="readonly")
    assert r.rc == 0, r
    assert r.task("file")["status"] == 403 and "File.Read.All" in r.task("file")["msg"]
    assert "Alert.ReadWrite.All" in r.task("domain alerts")["msg"]
    assert "Machine.ReadWrite.All" in r.task("user machines")["msg"]
    assert "User.Read.All" in r.task("logon users")["msg"]
    start = r.task("start")
    assert start["status"] == 403 and "Alert.ReadWrite.All" in start["msg"] and not start["changed"]
    assert writes(emulator) == [("POST", "/api/machines/%s/startInvestigation" % m["id"])]  # refused: 403


# -- machines by IP / tag, logged-on users ----------------------------------------------------------------------------
def test_machine_info_by_ip_by_tag_and_logon_users(ansible, emulator):
    m0 = emulator.machines[0]  # seen five minutes ago, tags Finance and VIP
    finance = sorted(m["id"] for m in emulator.machines if any(t.startswith("Fin") for t in m["machineTags"]))
    two_days_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    old = next(m for m in emulator.machines[4:] if m["lastSeen"] < two_days_ago)  # not seen in the last two days
    r = ansible.playbook([
        {"name": "ip now", MACHINE: {"ip": m0["lastIpAddress"], "logon_users": True}},
        {"name": "old ip now", MACHINE: {"ip": old["lastIpAddress"]}},
        {"name": "old ip then", MACHINE: {"ip": old["lastIpAddress"], "ip_timestamp": old["lastSeen"]}},
        {"name": "tag", MACHINE: {"tag": "VIP"}},
        {"name": "tag prefix", MACHINE: {"tag": "Fin", "tag_starts_with": True, "limit": 100}},
        {"name": "tag exact prefix", MACHINE: {"tag": "Fin"}},
    ])
    assert r.rc == 0, r
    now = r.task("ip now")
    assert ids(now["machines"]) == [m0["id"]]
    users = now["logon_users"][m0["id"]]
    expected = sorted({a["relatedUser"]["userName"] for a in emulator.state.alerts_for_machine(m0["id"])})
    assert sorted(u["accountName"] for u in users) == expected and all(u["id"].startswith("contoso\\") for u in users)
    assert r.task("old ip now")["machines"] == [] and ids(r.task("old ip then")["machines"]) == [old["id"]]
    assert ids(r.task("tag")["machines"]) == [m0["id"]]
    assert ids(r.task("tag prefix")["machines"]) == finance and r.task("tag exact prefix")["machines"] == []
    paths = [e["path"] for e in emulator.log if "findby" in e["path"]]
    assert paths[0].startswith("/api/machines/findbyip(ip='%s',timestamp=" % m0["lastIpAddress"])
    tag_queries = [e["query"] for e in emulator.log if e["path"] == "/api/machines/findbytag"]
    assert tag_queries[1] == {"tag": "Fin", "useStartsWithFilter": "true"}


# -- investigations ---------------------------------------------------------------------------------------------------
def test_start_investigation_check_mode_then_once_then_nothing(ansible, emulator):
    m = idle_windows_machine(emulator)
    task = {"name": "air", AIR: {"machine_name": m["computerDnsName"], "comment": "Incident 18"}}
    with action_delays(emulator, 300, 300):  # still running at the re-run
        _start_check_run_rerun(ansible, emulator, m, task)


def _start_check_run_rerun(ansible, emulator, m, task):
    check = ansible.playbook([task], check=True, diff=True)
    assert check.rc == 0, check
    assert check.task("air")["changed"] and check.task("air")["investigation"] is None
    assert check.task("air")["diff"] == {"before": {"investigation_running": False}, "after": {"investigation_running": True}}
    assert writes(emulator) == []

    run = ansible.playbook([task])
    assert run.rc == 0, run
    started = run.task("air")["investigation"]
    assert run.task("air")["changed"] and started["machineId"] == m["id"] and started["state"] in ("Queued", "Running")
    posts = list(emulator.writes())
    assert [(w["method"], w["path"]) for w in posts] == [("POST", "/api/machines/%s/startInvestigation" % m["id"])]
    assert posts[0]["body"] == {"Comment": "Incident 18"}

    emulator.clear_log()
    again = ansible.playbook([task])
    assert again.rc == 0, again
    assert not again.task("air")["changed"] and again.task("air")["investigation"]["id"] == started["id"]
    assert writes(emulator) == []


def test_investigation_wait_outcomes_running_one_and_lost_answer(ansible, emulator):
    win = idle_windows_machine(emulator)
    win2 = idle_windows_machine(emulator, skip=[win["id"]])
    linux = next(m for m in emulator.machines if m["osPlatform"] == "Linux" and m["onboardingStatus"] == "Onboarded"
                 and m["id"] not in active_machines(emulator))
    busy = sorted(active_machines(emulator))[0]
    api_entities.set_investigation_outcome(emulator.state, win["id"], "PartiallyRemediated")
    emulator.inject_fault(r"/machines/%s/startInvestigation$" % win2["id"], "status_after", status=502, method="POST")
    with action_delays(emulator, 0.2, 0.2):
        r = ansible.playbook([
            {"name": "wait", AIR: {"machine_id": win["id"], "wait": True, "wait_timeout": 60}},
            {"name": "linux", AIR: {"machine_id": linux["id"], "wait": True, "wait_timeout": 60}, "ignore_errors": True},
            {"name": "busy", AIR: {"machine_id": busy}},
            {"name": "lost answer", AIR: {"machine_id": win2["id"]}},
        ])
    assert r.rc == 0, r
    assert r.task("wait")["investigation"]["state"] == "PartiallyRemediated" and r.task("wait")["changed"]
    failed = r.task("linux")
    assert failed["failed"] and "ended with state UnsupportedOs" in failed["msg"]
    assert not r.task("busy")["changed"] and r.task("busy")["investigation"]["machineId"] == busy
    lost = r.task("lost answer")
    assert lost["changed"] and lost["investigation"]["machineId"] == win2["id"]
    # the POST whose answer was lost was carried out and read back, never sent twice
    assert len([w for w in emulator.writes() if win2["id"] in w["path"]]) == 1
    assert not [w for w in emulator.writes() if busy in w["path"]]


def test_investigation_info_by_id_alert_and_filters(ansible, emulator):
    invs = api_entities.investigations(emulator.state)
    one = invs[0]
    running = [i for i in invs if i["state"] == "Running"]
    machine = running[0]["machineId"]
    r = ansible.playbook([
        {"name": "by id", AIR_INFO: {"investigation_id": one["id"]}},
        {"name": "by alert", AIR_INFO: {"investigation_id": one["triggeringAlertId"]}},
        {"name": "running", AIR_INFO: {"state": ["Running"]}},
        {"name": "machine", AIR_INFO: {"machine_id": machine, "state": ["Running", "Queued"]}},
        {"name": "recent", AIR_INFO: {"created_after": "1h", "limit": 5}},
        {"name": "unknown", AIR_INFO: {"investigation_id": "1"}, "ignore_errors": True},
    ])
    assert r.rc == 0, r
    assert r.task("by id")["investigations"] == [one] == r.task("by alert")["investigations"]
    assert ids(r.task("running")["investigations"]) == ids(running)
    assert ids(r.task("machine")["investigations"]) == ids([i for i in running if i["machineId"] == machine])
    assert r.task("machine")["filter"] == "machineId eq '%s' and (state eq 'Running' or state eq 'Queued')" % machine
    assert r.task("recent")["filter"].startswith("startTime ge ")
    assert r.task("unknown")["failed"] and r.task("unknown")["msg"] == "No investigation with id 1 in Defender for Endpoint."


# -- cancelling machine actions -------------------------------------------------------------------------------------
def test_cancel_pending_actions_idempotent_with_check_mode(ansible, emulator):
    a = idle_windows_machine(emulator)
    b = idle_windows_machine(emulator, skip=[a["id"]])
    with action_delays(emulator, 300, 300):
        r = ansible.playbook([
            {"name": "scan a", ACTION: {"machine_id": a["id"], "action": "antivirus_scan"}, "register": "scan"},
            {"name": "isolate b", ACTION: {"machine_id": b["id"], "action": "isolate"}},
            {"name": "scan b", ACTION: {"machine_id": b["id"], "action": "antivirus_scan"}},
        ])
        assert r.rc == 0, r
        scan_id = r.task("scan a")["machine_action"]["id"]
        emulator.clear_log()
        plays = [
            {"name": "by id", CANCEL: {"action_id": scan_id, "comment": "false positive"}},
            {"name": "b scans", CANCEL: {"machine_name": b["computerDnsName"], "type": ["RunAntiVirusScan"]}},
        ]
        check = ansible.playbook(plays, check=True, diff=True)
        assert check.rc == 0, check
        assert check.task("by id")["changed"] and check.task("by id")["cancelled_ids"] == [scan_id]
        assert check.task("by id")["diff"]["after"] == {scan_id: "Cancelled"}
        assert writes(emulator) == []
        run = ansible.playbook(plays)
        assert run.rc == 0, run
        assert run.task("by id")["machine_actions"][0]["status"] == "Cancelled"
        assert run.task("by id")["machine_actions"][0]["cancellationComment"] == "false positive"
        b_scan = run.task("b scans")["cancelled_ids"]
        assert len(b_scan) == 1 and writes(emulator) == [("POST", "/api/machineactions/%s/cancel" % i) for i in [scan_id] + b_scan]
        state = {x["id"]: x for x in emulator.machine_actions}
        assert state[scan_id]["status"] == "Cancelled"
        assert [x["status"] for x in state.values() if x["machineId"] == b["id"] and x["type"] == "Isolate"] == ["Pending"]
        emulator.clear_log()
        again = ansible.playbook(plays)
        assert again.rc == 0, again
        assert not again.task("by id")["changed"] and again.task("by id")["final_ids"] == [scan_id]
        assert again.task("b scans")["machine_actions"] == [] and not again.task("b scans")["changed"]
        assert writes(emulator) == []


# -- the contain_by_hash playbook -------------------------------------------------------------------------------------
def test_contain_by_hash_plans_in_check_mode_then_acts_then_changes_nothing(ansible, emulator, tmp_path):
    sha1 = api_entities.dropper_sha1(1)
    entry = api_entities.data(emulator.state).files[sha1]
    machines = {m["id"]: m for m in emulator.machines if m["id"] in entry["machines"]}
    allowed = sorted(i for i, m in machines.items() if "VIP" in m["machineTags"] or m["rbacGroupName"] == "Servers")
    assert len(allowed) == 2 and len(machines) - len(allowed) >= 3
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = {i["machineId"] for i in api_entities.investigations(emulator.state) if i["startTime"] >= since}
    to_investigate = sorted(set(machines) - recent - active_machines(emulator))
    assert to_investigate
    summary_file = tmp_path / "contain.json"
    play = [{"import_playbook": "defender.endpoint.contain_by_hash"}]
    args = ["-e", json.dumps({"contain_by_hash_file_hash": entry["sha256"], "contain_by_hash_allow_tags": ["VIP"],
                              "contain_by_hash_allow_groups": ["Servers"], "contain_by_hash_summary_file": str(summary_file)})]

    with action_delays(emulator, 300, 300):
        check = ansible.playbook(plays=play, check=True, extra_args=args)
        assert check.rc == 0, check
        assert writes(emulator) == []
        plan = json.loads(summary_file.read_text())
        assert {k: v for k, v in plan.items() if k.startswith("to_")} == {
            k: v for k, v in check.task("Show the plan")["contain_by_hash_plan"].items() if k.startswith("to_")}
        assert plan["check_mode"] is True and plan["sha1"] == sha1 and set(plan["machines_with_file"]) == set(machines)
        assert sorted(plan["allow_listed"]) == allowed
        assert sorted(plan["to_quarantine"]) == sorted(machines)
        assert sorted(plan["to_isolate"]) == sorted(set(machines) - set(allowed))
        assert sorted(plan["to_investigate"]) == to_investigate

        run = ansible.playbook(plays=play, extra_args=args)
        assert run.rc == 0, run
        done = json.loads(summary_file.read_text())
        assert done["check_mode"] is False and done["indicator_changed"] is True
        assert sorted(done["quarantined"]) == sorted(machines)
        assert sorted(done["isolated"]) == sorted(set(machines) - set(allowed))
        assert sorted(done["investigated"]) == to_investigate
        sent = writes(emulator)
        assert sent.count(("POST", "/api/indicators")) == 1
        assert sorted(p.split("/")[3] for m, p in sent if p.endswith("/StopAndQuarantineFile")) == sorted(machines)
        assert sorted(p.split("/")[3] for m, p in sent if p.endswith("/isolate")) == sorted(set(machines) - set(allowed))
        assert sorted(p.split("/")[3] for m, p in sent if p.endswith("/startInvestigation")) == to_investigate
        indicator = [i for i in emulator.indicators if i["indicatorValue"] == entry["sha256"]]
        assert len(indicator) == 1 and indicator[0]["indicatorType"] == "FileSha256" and indicator[0]["action"] == "BlockAndRemediate"
        # blocked first, then quarantined, then isolated, then investigated
        order = [p.rsplit("/", 1)[-1] for _m, p in sent]
        assert order[0] == "indicators" and order.index("isolate") > max(i for i, x in enumerate(order) if x == "StopAndQuarantineFile")

        emulator.clear_log()
        again = ansible.playbook(plays=play, extra_args=args)
        assert again.rc == 0, again
        assert writes(emulator) == []
        # only the summary file on the controller changed (it now says there is nothing left to do)
        assert [n for n, res in again.tasks().items() if res.get("changed")] == ["Write the summary file"]
        final = json.loads(summary_file.read_text())
        assert final["to_quarantine"] == [] and final["to_investigate"] == []


# -- the investigate_on_high_severity rulebook ------------------------------------------------------------------------
def test_rulebook_investigates_the_machine_of_a_new_high_severity_alert(emulator, tmp_path):
    busy = active_machines(emulator)
    target = next(a for a in emulator.alerts if (a["severity"], a["status"]) == ("High", "New") and a["machineId"] not in busy)
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    resp = requests.patch("%s/api/alerts/%s" % (emulator.url, target["id"]), json={"comment": "fresh"}, timeout=30,
                          headers={"Authorization": "Bearer " + emulator.token_for("full")}, verify=emulator.ca_path)
    assert resp.status_code == 200, resp.text
    emulator.clear_log()
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({
        "mde_alerts_interval": 1, "mde_alerts_initial_lookback": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "mde_alerts_checkpoint_path": str(tmp_path / "checkpoint.json")}))
    env = Ansible(emulator, tmp_path).env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    proc = subprocess.Popen([os.path.join(BIN, "ansible-rulebook"), "--rulebook", "defender.endpoint.investigate_on_high_severity",
                             "-i", str(tmp_path / "inventory.yml"), "--vars", str(tmp_path / "vars.yml")],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    path = "/api/machines/%s/startInvestigation" % target["machineId"]
    try:
        deadline = time.time() + 120
        while not any(w["path"] == path and w.get("status") == 201 for w in emulator.writes()):
            assert proc.poll() is None, proc.stdout.read()[-6000:]
            assert time.time() < deadline, "no investigation was started"
            time.sleep(0.3)
        time.sleep(3)  # a few more polls: the alert is not handled twice
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    posts = [w for w in emulator.writes() if w["path"].endswith("/startInvestigation")]
    assert [w["path"] for w in posts if w["path"] == path] == [path]
    assert posts[0]["body"]["Comment"].endswith("high-severity alert %s" % target["id"])
