"""mde_machine_action and mde_machine_action_info through real ansible-playbook runs against the emulator."""
import os
import stat
import zipfile

from tests.integration.harness import action_delays, onboarded

DEFAULT_COMMENT = "Requested by Ansible (defender.endpoint.mde_machine_action)"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"


def action_posts(emulator):
    """(path, body) of every POST to a machine action endpoint."""
    return [(e["path"], e["body"]) for e in emulator.writes() if e["path"].startswith("/api/machines/")]


def task(name, action, **args):
    args["action"] = action
    return {"name": name, "defender.endpoint.mde_machine_action": args}


def failing(name, module, **args):
    return {"name": name, module: args, "ignore_errors": True}


# -- stateful actions: isolation and code-execution restriction -------------------------------------------
def test_isolation_and_restriction_are_idempotent_states(ansible, emulator):
    machine, = onboarded(emulator)
    mid, name = machine["id"], machine["computerDnsName"]
    first = ansible.playbook(diff=True, tasks=[
        dict(task("check isolate", "isolate", machine_name=name.upper()), check_mode=True),
        task("isolate", "isolate", machine_name=name.upper(), isolation_type="Selective"),
        task("isolate again", "isolate", machine_name=name, isolation_type="Selective"),
        task("restrict", "restrict_code_execution", machine_id=mid, comment="Incident 42"),
        task("restrict again", "restrict_code_execution", machine_id=mid, comment="Incident 42"),
    ])
    assert first.rc == 0, first
    check = first.task("check isolate")
    assert check["changed"] is True and check["machine_action"] is None
    assert check["diff"] == {"before": {"isolated": False}, "after": {"isolated": True}}
    iso = first.task("isolate")
    assert iso["changed"] is True and iso["diff"] == {"before": {"isolated": False}, "after": {"isolated": True}}
    assert iso["machine_action"]["type"] == "Isolate" and iso["machine_action"]["scope"] == "Selective"
    assert iso["machine_action"]["machineId"] == mid
    again = first.task("isolate again")
    assert again["changed"] is False and again["machine_action"]["id"] == iso["machine_action"]["id"]
    assert again["diff"] == {"before": {"isolated": True}, "after": {"isolated": True}}
    assert first.task("restrict")["changed"] is True
    assert first.task("restrict")["diff"]["after"] == {"code_execution_restricted": True}
    assert first.task("restrict again")["changed"] is False
    assert action_posts(emulator) == [
        ("/api/machines/%s/isolate" % mid, {"Comment": DEFAULT_COMMENT, "IsolationType": "Selective"}),
        ("/api/machines/%s/restrictCodeExecution" % mid, {"Comment": "Incident 42"}),
    ]

    # A second run, once the actions have succeeded: nothing is sent. Another isolation type warns.
    emulator.clear_log()
    second = ansible.playbook(tasks=[
        task("isolate", "isolate", machine_id=mid, isolation_type="Full"),
        task("restrict", "restrict_code_execution", machine_id=mid, wait=True),
    ])
    assert second.rc == 0, second
    assert second.task("isolate")["changed"] is False
    assert any("IsolationType Selective" in w for w in second.task("isolate").get("warnings", []))
    assert second.task("restrict")["changed"] is False
    assert second.task("restrict")["machine_action"]["status"] == "Succeeded"
    assert emulator.writes() == []
    assert {e["method"] for e in emulator.log if e["path"].startswith("/api/")} == {"GET"}
    reads = [e["query"].get("$filter") for e in emulator.log if e["path"] == "/api/machineactions"]
    assert reads == [
        "machineId eq '%s' and (type eq 'Isolate' or type eq 'Unisolate') and "
        "(status eq 'Pending' or status eq 'InProgress' or status eq 'Succeeded')" % mid,
        "machineId eq '%s' and (type eq 'RestrictCodeExecution' or type eq 'UnrestrictCodeExecution') and "
        "(status eq 'Pending' or status eq 'InProgress' or status eq 'Succeeded')" % mid]

    # Release both: check mode sends nothing, then one POST each, then nothing again.
    emulator.clear_log()
    third = ansible.playbook(diff=True, tasks=[
        dict(task("check unisolate", "unisolate", machine_id=mid), check_mode=True),
        task("unisolate", "unisolate", machine_id=mid, comment="clean"),
        task("unrestrict", "unrestrict_code_execution", machine_name=name),
        task("unisolate again", "unisolate", machine_id=mid, comment="clean"),
        task("unrestrict again", "unrestrict_code_execution", machine_name=name),
    ])
    assert third.rc == 0, third
    assert third.task("check unisolate")["changed"] is True
    assert third.task("unisolate")["diff"] == {"before": {"isolated": True}, "after": {"isolated": False}}
    assert third.task("unrestrict")["diff"] == {"before": {"code_execution_restricted": True},
                                                "after": {"code_execution_restricted": False}}
    assert third.task("unisolate again")["changed"] is False
    assert third.task("unrestrict again")["changed"] is False
    assert action_posts(emulator) == [
        ("/api/machines/%s/unisolate" % mid, {"Comment": "clean"}),
        ("/api/machines/%s/unrestrictCodeExecution" % mid, {"Comment": DEFAULT_COMMENT}),
    ]


def test_release_of_a_machine_never_isolated_sends_nothing(ansible, emulator):
    machine, = onboarded(emulator)
    res = ansible.playbook(diff=True, tasks=[task("unisolate", "unisolate", machine_id=machine["id"])])
    assert res.rc == 0, res
    assert res.task("unisolate")["changed"] is False
    assert res.task("unisolate")["diff"] == {"before": {"isolated": False}, "after": {"isolated": False}}
    assert emulator.writes() == []


# -- one-shot actions ------------------------------------------------------------------------------------
def test_one_shot_actions_send_exact_bodies_and_are_not_repeated_while_pending(ansible, emulator):
    win, other, spare = onboarded(emulator, count=3)
    with action_delays(emulator, 60, 60):
        res = ansible.playbook(diff=True, tasks=[
            dict(task("check scan", "antivirus_scan", machine_id=spare["id"]), check_mode=True),
            task("scan", "antivirus_scan", machine_id=win["id"], scan_type="Full", comment="alert 3212"),
            task("package", "collect_investigation_package", machine_id=win["id"]),
            task("quarantine", "stop_and_quarantine_file", machine_id=win["id"], sha1=SHA1.upper()),
            task("offboard", "offboard", machine_id=other["id"], comment="Decommissioned, ticket 99"),
            task("scan again", "antivirus_scan", machine_id=win["id"], scan_type="Full", comment="alert 3212"),
            task("package again", "collect_investigation_package", machine_id=win["id"]),
            task("quarantine again", "stop_and_quarantine_file", machine_id=win["id"], sha1=SHA1),
            task("offboard again", "offboard", machine_id=other["id"], comment="Decommissioned, ticket 99"),
            failing("quick scan while a full one is pending", "defender.endpoint.mde_machine_action",
                    machine_id=win["id"], action="antivirus_scan", scan_type="Quick"),
            failing("wait times out", "defender.endpoint.mde_machine_action", machine_id=win["id"],
                    action="antivirus_scan", scan_type="Full", wait=True, wait_timeout=2),
        ])
    assert res.rc == 0, res
    mid, oid = win["id"], other["id"]
    check = res.task("check scan")
    assert check["changed"] is True and check["machine_action"] is None
    for name, type_ in (("scan", "RunAntiVirusScan"), ("package", "CollectInvestigationPackage"),
                        ("quarantine", "StopAndQuarantineFile"), ("offboard", "Offboard")):
        sent, again = res.task(name), res.task(name + " again")
        assert sent["changed"] is True and sent["machine_action"]["type"] == type_
        assert sent["machine_action"]["status"] == "Pending"
        assert again["changed"] is False and again["machine_action"]["id"] == sent["machine_action"]["id"]
    assert res.task("offboard")["diff"] == {"before": {"offboarded": False}, "after": {"offboarded": True}}
    assert res.task("quarantine")["machine_action"]["relatedFileInfo"]["fileIdentifier"] == SHA1
    conflict = res.task("quick scan while a full one is pending")
    assert conflict["failed"] is True
    assert "ActiveRequestAlreadyExists" in conflict["msg"]
    assert res.task("scan")["machine_action"]["id"] in conflict["msg"] and "scope Full" in conflict["msg"]
    timeout = res.task("wait times out")
    assert timeout["failed"] is True and "did not finish within wait_timeout (2 seconds)" in timeout["msg"]
    assert timeout["machine_action"]["id"] == res.task("scan")["machine_action"]["id"]
    assert action_posts(emulator) == [
        ("/api/machines/%s/runAntiVirusScan" % mid, {"Comment": "alert 3212", "ScanType": "Full"}),
        ("/api/machines/%s/collectInvestigationPackage" % mid, {"Comment": DEFAULT_COMMENT}),
        ("/api/machines/%s/StopAndQuarantineFile" % mid, {"Comment": DEFAULT_COMMENT, "Sha1": SHA1}),
        ("/api/machines/%s/offboard" % oid, {"Comment": "Decommissioned, ticket 99"}),
        ("/api/machines/%s/runAntiVirusScan" % mid, {"Comment": DEFAULT_COMMENT, "ScanType": "Quick"}),
    ]
    assert len(emulator.machine_actions) == 4


# -- waiting ---------------------------------------------------------------------------------------------
def test_wait_ends_on_succeeded_and_fails_on_failed_or_timeout(ansible, emulator):
    a, b = onboarded(emulator, count=2)
    emulator.set_action_outcome(b["id"], "RunAntiVirusScan", "Failed")
    emulator.set_action_outcome(b["id"], "CollectInvestigationPackage", "TimeOut")
    emulator.set_action_outcome(b["id"], "Isolate", "Failed")
    res = ansible.playbook(tasks=[
        task("isolate and wait", "isolate", machine_id=a["id"], wait=True),
        failing("isolation fails", "defender.endpoint.mde_machine_action", machine_id=b["id"], action="isolate",
                wait=True),
        task("isolate after the failure", "isolate", machine_id=b["id"]),
        failing("scan fails", "defender.endpoint.mde_machine_action", machine_id=b["id"], action="antivirus_scan",
                wait=True),
        failing("package times out", "defender.endpoint.mde_machine_action", machine_id=b["id"],
                action="collect_investigation_package", wait=True, wait_timeout=60),
    ])
    assert res.rc == 0, res
    done = res.task("isolate and wait")
    assert done["changed"] is True and done["machine_action"]["status"] == "Succeeded"
    scan = res.task("scan fails")
    assert scan["failed"] is True and scan["machine_action"]["status"] == "Failed"
    assert "ended with status Failed" in scan["msg"] and "errorHResult" in scan["msg"]
    assert scan["machine_action"]["id"] in scan["msg"]
    pkg = res.task("package times out")
    assert pkg["failed"] is True and "ended with status TimeOut" in pkg["msg"]
    failed_iso = res.task("isolation fails")
    assert failed_iso["failed"] is True and "Isolate action" in failed_iso["msg"] and "status Failed" in failed_iso["msg"]
    retry = res.task("isolate after the failure")  # a failed isolation changed nothing: isolate again
    assert retry["changed"] is True and retry["machine_action"]["id"] != failed_iso["machine_action"]["id"]
    polls = [e for e in emulator.log if e["method"] == "GET" and e["path"].startswith("/api/machineactions/")]
    assert 4 <= len(polls) <= 12  # each action finishes ~1 s after it is created; the first poll is 2 s later
    assert len(action_posts(emulator)) == 5


# -- permissions and bad input ---------------------------------------------------------------------------
def test_missing_permission_names_it(ansible, emulator):
    machine, = onboarded(emulator)
    res = ansible.playbook(app="readonly", tasks=[
        failing("isolate", "defender.endpoint.mde_machine_action", machine_id=machine["id"], action="isolate"),
        failing("scan", "defender.endpoint.mde_machine_action", machine_id=machine["id"], action="antivirus_scan"),
    ])
    assert res.rc == 0, res
    iso = res.task("isolate")
    assert iso["failed"] is True and "Machine.Isolate" in iso["msg"] and iso["status"] == 403
    assert iso["permission"] == "Machine.Isolate"
    assert "Machine.Scan" in res.task("scan")["msg"]
    assert emulator.machine_actions == []


def test_bad_input_fails_before_any_write(ansible, emulator):
    machine, = onboarded(emulator)
    mod = "defender.endpoint.mde_machine_action"
    res = ansible.playbook(tasks=[
        failing("unknown action", mod, machine_id=machine["id"], action="reboot"),
        failing("bad sha1", mod, machine_id=machine["id"], action="stop_and_quarantine_file", sha1="1234"),
        failing("missing sha1", mod, machine_id=machine["id"], action="stop_and_quarantine_file"),
        failing("both selectors", mod, machine_id=machine["id"], machine_name=machine["computerDnsName"],
                action="isolate"),
        failing("no selector", mod, action="isolate"),
        failing("offboard without comment", mod, machine_id=machine["id"], action="offboard"),
        failing("unknown machine name", mod, machine_name="nosuch-host.contoso.local", action="isolate"),
        failing("unknown machine id", mod, machine_id="0" * 40, action="isolate"),
        failing("duplicate name", mod, machine_name="dup-00002.contoso.local", action="isolate"),
    ])
    assert res.rc == 0, res
    msgs = dict((name, r["msg"]) for name, r in res.tasks().items())
    assert all(r["failed"] for r in res.tasks().values())
    assert "value of action must be one of" in msgs["unknown action"]
    assert "40 hexadecimal characters" in msgs["bad sha1"]
    assert "action is stop_and_quarantine_file but all of the following are missing: sha1" in msgs["missing sha1"]
    assert "mutually exclusive" in msgs["both selectors"]
    assert "one of the following is required" in msgs["no selector"]
    assert "set comment explicitly" in msgs["offboard without comment"]
    assert "No onboarded machine named nosuch-host.contoso.local" in msgs["unknown machine name"]
    assert "No machine with id %s" % ("0" * 40) in msgs["unknown machine id"]
    dups = [m["id"] for m in emulator.machines if m["computerDnsName"] == "dup-00002.contoso.local"]
    assert len(dups) == 2 and all(d in msgs["duplicate name"] for d in dups)
    assert "use machine_id" in msgs["duplicate name"]
    # Only the three lookups reached the API, and they only read.
    api = [e for e in emulator.log if e["path"].startswith("/api/")]
    assert emulator.writes() == [] and {e["method"] for e in api} == {"GET"}
    assert all(e["path"].startswith("/api/machines") for e in api) and len(api) == 3


# -- mde_machine_action_info -----------------------------------------------------------------------------
def test_info_filters_and_investigation_package_download(ansible, emulator, tmp_path):
    a, b = onboarded(emulator, count=2)
    full_app = emulator.apps["full"]["client_id"]
    info = "defender.endpoint.mde_machine_action_info"
    dest = tmp_path / "packages"
    dest.mkdir()
    emulator.set_action_outcome(b["id"], "RunAntiVirusScan", "Failed")  # so that the status filter leaves it out
    res = ansible.playbook(tasks=[
        dict(task("collect", "collect_investigation_package", machine_id=a["id"], wait=True), register="collect"),
        dict(task("scan a", "antivirus_scan", machine_id=a["id"], wait=True), register="scan_a"),
        task("scan b", "antivirus_scan", machine_id=b["id"]),
        {"name": "by machine and type", info: {"machine_id": a["id"], "type": ["RunAntiVirusScan"]}},
        {"name": "by status", info: {"status": ["Succeeded"], "requestor": full_app, "created_after": "1h"}},
        {"name": "all, limited", info: {"limit": 2}},
        {"name": "none in the future", info: {"created_after": "2099-01-01T00:00:00Z"}},
        {"name": "by id", info: {"action_id": "{{ collect.machine_action.id }}"}},
        {"name": "download", info: {"action_id": "{{ collect.machine_action.id }}", "package_uri": True,
                                    "dest": str(dest)}},
        {"name": "download again", info: {"action_id": "{{ collect.machine_action.id }}", "dest": str(dest)}},
        failing("package of a scan", info, action_id="{{ scan_a.machine_action.id }}", dest=str(dest)),
        failing("package with filters", info, machine_id=a["id"], package_uri=True),
        failing("bad action id", info, action_id="not-a-guid"),
    ])
    assert res.rc == 0, res
    collect = res.task("collect")["machine_action"]
    scan_a = res.task("scan a")["machine_action"]
    scan_b = res.task("scan b")["machine_action"]
    assert collect["status"] == "Succeeded" and scan_a["status"] == "Succeeded"

    by_type = res.task("by machine and type")
    assert [x["id"] for x in by_type["machine_actions"]] == [scan_a["id"]]
    assert by_type["filter"] == "machineId eq '%s' and type eq 'RunAntiVirusScan'" % a["id"]
    by_status = res.task("by status")
    assert {x["id"] for x in by_status["machine_actions"]} == {collect["id"], scan_a["id"]}
    assert res.task("all, limited")["machine_actions"] and len(res.task("all, limited")["machine_actions"]) == 2
    assert res.task("none in the future")["machine_actions"] == []
    by_id = res.task("by id")
    assert by_id["machine_actions"] == [collect]
    assert scan_b["id"] not in [x["id"] for x in by_status["machine_actions"]]
    assert by_status["filter"].startswith("status eq 'Succeeded' and requestor eq '%s' and creationDateTimeUtc ge "
                                          % full_app)

    download = res.task("download")
    path = dest / ("%s.zip" % collect["id"])
    assert download["changed"] is True and download["dest"] == str(path)
    assert download["package_uri"].startswith("https://") and "?" in download["package_uri"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with zipfile.ZipFile(str(path)) as z:
        assert any(collect["id"] in z.read(n).decode(errors="replace") for n in z.namelist())
    assert download["size"] == os.path.getsize(path)
    again = res.task("download again")
    assert again["changed"] is False and again["sha256"] == download["sha256"]
    uri_calls = [e for e in emulator.log if e["path"].lower().endswith("/getpackageuri")]
    assert len(uri_calls) == 1  # the second task found the file and asked for no URI
    assert "not a CollectInvestigationPackage action" in res.task("package of a scan")["msg"]
    assert ("package_uri is True but all of the following are missing: action_id"
            in res.task("package with filters")["msg"])
    assert "must be a machine action id" in res.task("bad action id")["msg"]
    assert [post[0] for post in action_posts(emulator)] == [
        "/api/machines/%s/collectInvestigationPackage" % a["id"], "/api/machines/%s/runAntiVirusScan" % a["id"],
        "/api/machines/%s/runAntiVirusScan" % b["id"]]


def test_info_reads_pending_package_clearly(ansible, emulator):
    machine, = onboarded(emulator)
    with action_delays(emulator, 60, 60):
        res = ansible.playbook(tasks=[
            dict(task("collect", "collect_investigation_package", machine_id=machine["id"]), register="collect"),
            failing("download too early", "defender.endpoint.mde_machine_action_info",
                    action_id="{{ collect.machine_action.id }}", package_uri=True),
        ])
    assert res.rc == 0, res
    msg = res.task("download too early")["msg"]
    assert "is Pending" in msg and "wait: true" in msg
    assert not [e for e in emulator.log if e["path"].lower().endswith("/getpackageuri")]
