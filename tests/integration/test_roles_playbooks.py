"""Roles contain / release / ioc_sync and the playbooks remediate_alerts / release / ioc_sync / patch_by_exposure,
run with ansible-playbook against the emulator.

Expectations are computed from the emulator's own data; every test checks what the emulator received (its request
log): the exact writes, none in check mode, none on the second run.
"""
import json

import yaml

CONTAIN = "defender.endpoint.contain"
RELEASE = "defender.endpoint.release"


def writes(emulator):
    return [(w["method"], w["path"]) for w in emulator.writes()]


def changed_tasks(result, host="localhost"):
    return sorted(name for name, res in result.tasks(host).items() if res.get("changed"))


def role_play(role, check=False, **role_vars):
    return [{"name": role, "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "run " + role, "ansible.builtin.include_role": {"name": role}, "vars": role_vars},
        {"name": "result", "ansible.builtin.debug": {"var": role.split(".")[-1] + "_result"}},
    ]}]


def onboarded(emulator):
    return [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded"]


# -- contain / release ------------------------------------------------------------------------------------------
def test_contain_and_release_by_id_name_and_alert_idempotent(ansible, emulator):
    machines = onboarded(emulator)
    by_id = machines[10]                                     # given by machine id (upper case: ids are matched lowered)
    by_name = emulator.machines[0]                           # given by computerDnsName
    alert = next(a for a in emulator.alerts if a["machineId"] not in (by_id["id"], by_name["id"]))
    dup_alert = next(a for a in emulator.alerts if a["machineId"] == by_id["id"])   # same machine twice
    expected = {by_id["id"], by_name["id"], alert["machineId"]}
    inputs = dict(contain_machine_ids=[by_id["id"].upper()], contain_machines=[by_name["computerDnsName"]],
                  contain_alert_ids=[alert["id"], dup_alert["id"]])

    check = ansible.playbook(plays=role_play(CONTAIN, **inputs), check=True)
    assert check.rc == 0, check
    assert set(check.task("result")["contain_result"]["isolated"]) == expected
    assert writes(emulator) == []                             # check mode wrote nothing

    first = ansible.playbook(plays=role_play(CONTAIN, contain_collect_investigation_package=True,
                                             contain_antivirus_scan=True, contain_scan_type="Full",
                                             contain_comment="Incident 4711", contain_tag="Contained", **inputs))
    assert first.rc == 0, first
    result = first.task("result")["contain_result"]
    assert set(result["isolated"]) == expected and result["already_isolated"] == []
    assert result["machines"][by_name["id"]] == by_name["computerDnsName"]
    assert len(result["investigation_package_actions"]) == 3 and len(result["scan_actions"]) == 3
    posts = [w for w in emulator.writes() if not w["path"].endswith("/AddOrRemoveTagForMultipleMachines")]
    assert sorted((w["path"].rsplit("/", 1)[1], w["path"].split("/")[3]) for w in posts) == sorted(
        (kind, mid) for mid in expected for kind in ("collectInvestigationPackage", "isolate", "runAntiVirusScan"))
    tag_posts = [w["body"] for w in emulator.writes() if w["path"].endswith("/AddOrRemoveTagForMultipleMachines")]
    assert [(b["Value"], b["Action"], sorted(b["MachineIds"])) for b in tag_posts] == [("Contained", "Add", sorted(expected))]
    tagged = {m["id"] for m in emulator.machines if "Contained" in (m["machineTags"] or [])}
    assert tagged == expected
    bodies = {w["path"].rsplit("/", 1)[1]: w["body"] for w in posts}
    assert bodies["isolate"] == {"Comment": "Incident 4711", "IsolationType": "Full"}
    assert bodies["runAntiVirusScan"] == {"Comment": "Incident 4711", "ScanType": "Full"}
    # contain_wait: the role returned only once every isolation had succeeded
    isolations = [a for a in emulator.machine_actions if a["type"] == "Isolate"]
    assert sorted(a["machineId"] for a in isolations) == sorted(expected)
    assert {a["id"] for a in isolations} == set(result["isolation_actions"])

    emulator.clear_log()
    again = ansible.playbook(plays=role_play(CONTAIN, contain_collect_investigation_package=True,
                                             contain_antivirus_scan=True, contain_tag="Contained", **inputs))
    assert again.rc == 0, again
    assert changed_tasks(again) == [] and again.stats["localhost"]["changed"] == 0
    assert set(again.task("result")["contain_result"]["already_isolated"]) == expected
    assert writes(emulator) == []                             # isolated machines get no follow-up actions again

    release_inputs = dict(release_machine_ids=inputs["contain_machine_ids"], release_machines=inputs["contain_machines"],
                          release_alert_ids=inputs["contain_alert_ids"])
    released = ansible.playbook(plays=role_play(RELEASE, release_comment="Incident 4711 closed", release_tag="Contained",
                                                **release_inputs))
    assert released.rc == 0, released
    assert set(released.task("result")["release_result"]["released"]) == expected
    assert sorted(writes(emulator)) == sorted([("POST", "/api/machines/%s/unisolate" % m) for m in expected]
                                              + [("POST", "/api/machines/AddOrRemoveTagForMultipleMachines")])
    bodies = [w["body"] for w in emulator.writes()]
    assert all(b == {"Comment": "Incident 4711 closed"} for b in bodies if "Comment" in b)
    assert [(b["Value"], b["Action"], sorted(b["MachineIds"])) for b in bodies if "Value" in b] == [
        ("Contained", "Remove", sorted(expected))]
    assert not [m for m in emulator.machines if "Contained" in (m["machineTags"] or [])]
    assert all(a["status"] == "Succeeded" for a in emulator.machine_actions if a["type"] == "Unisolate")

    emulator.clear_log()
    released_again = ansible.playbook(plays=role_play(RELEASE, release_tag="Contained", **release_inputs))
    assert released_again.rc == 0, released_again
    assert released_again.stats["localhost"]["changed"] == 0 and writes(emulator) == []


def test_contain_refuses_unknown_or_ambiguous_input_before_any_write(ansible, emulator):
    known = emulator.alerts[0]["id"]
    cases = {
        "unknown alert": dict(contain_alert_ids=[known, "da000000000000000000_1"]),
        "ambiguous name": dict(contain_machines=["dup-00002.contoso.local"]),     # two onboarded machines
        "unknown id": dict(contain_machine_ids=["0" * 40]),
    }
    tasks = []
    for name, role_vars in cases.items():
        tasks.append({"name": name, "block": [
            {"name": "contain " + name, "ansible.builtin.include_role": {"name": CONTAIN}, "vars": role_vars}],
            "rescue": [{"name": "failure " + name, "ansible.builtin.debug": {"msg": "{{ ansible_failed_result.msg }}"}}]})
    r = ansible.playbook(tasks=tasks)
    assert r.rc == 0, r
    assert "Alerts not found: da000000000000000000_1" in r.task("failure unknown alert")["msg"]
    assert "dup-00002.contoso.local matches 2 onboarded machines" in r.task("failure ambiguous name")["msg"]
    assert "Machines not found: " + "0" * 40 in r.task("failure unknown id")["msg"]
    assert writes(emulator) == []
    assert not [e for e in emulator.log if e["path"].startswith("/api/") and e.get("route", "").startswith("GET /api/machineactions")]


# -- remediate_alerts -------------------------------------------------------------------------------------------
def test_remediate_alerts_contains_marks_summarises_and_is_idempotent(ansible, emulator, tmp_path):
    targets = [a for a in emulator.alerts if a["status"] == "New" and a["severity"] == "High"]
    machine_ids = {a["machineId"] for a in targets}
    assert len(targets) >= 3 and len(machine_ids) >= 3
    play = [{"import_playbook": "defender.endpoint.remediate_alerts"}]
    summary_file = tmp_path / "summary.json"

    check = ansible.playbook(plays=play, check=True, extra_args=["-e", "remediate_alerts_summary_file=%s" % summary_file])
    assert check.rc == 0, check
    assert writes(emulator) == []
    planned = json.loads(summary_file.read_text())
    assert planned["check_mode"] is True and set(planned["machines_isolated"]) == machine_ids
    assert sorted(planned["alerts_updated"]) == sorted(a["id"] for a in targets)

    run = ansible.playbook(plays=play, extra_args=["-e", "remediate_alerts_summary_file=%s" % summary_file,
                                                   "-e", "remediate_alerts_assigned_to=secop9@contoso.com"])
    assert run.rc == 0, run
    summary = json.loads(summary_file.read_text())
    assert summary == run.task("Show the summary")["remediate_alerts_summary"]
    assert summary["check_mode"] is False
    assert summary["machines_isolated"] == {m: next(x["computerDnsName"] for x in emulator.machines if x["id"] == m)
                                            for m in machine_ids}
    assert sorted(summary["alerts_updated"]) == sorted(a["id"] for a in targets)
    assert len(summary["alerts_found"]) == len(targets) and all("[High]" in line for line in summary["alerts_found"])
    isolate_posts = [w for w in emulator.writes() if w["path"].endswith("/isolate")]
    assert sorted(w["path"].split("/")[3] for w in isolate_posts) == sorted(machine_ids)
    alert_writes = [w for w in emulator.writes() if w["path"].startswith("/api/alerts")]
    assert alert_writes and all(w["method"] in ("PATCH", "POST") for w in alert_writes)
    updated = [w["body"].get("alertIds") or [w["path"].split("/")[3]] for w in alert_writes]
    assert sorted(i for ids in updated for i in ids) == sorted(a["id"] for a in targets)
    assert all(w["body"]["status"] == "InProgress" and w["body"]["assignedTo"] == "secop9@contoso.com"
               and w["body"]["comment"].startswith("Machine isolated by Ansible") for w in alert_writes)
    # ... isolation came before the alerts were taken
    assert max(w["time"] for w in isolate_posts) <= min(w["time"] for w in alert_writes)
    state = {a["id"]: a for a in emulator.alerts}
    assert all(state[a["id"]]["status"] == "InProgress" for a in targets)
    assert all(state[a["id"]]["comments"][-1]["comment"].startswith("Machine isolated") for a in targets)

    emulator.clear_log()
    again = ansible.playbook(plays=play)
    assert again.rc == 0, again
    assert again.stats["localhost"]["changed"] == 0 and writes(emulator) == []
    assert again.task("Show the summary")["remediate_alerts_summary"]["alerts_found"] == []


# -- ioc_sync ---------------------------------------------------------------------------------------------------
CSV = """\
# indicators owned by the SOC repository
indicator_value,indicator_type,action,title,description,severity,rbac_group_names,generate_alert
198.51.100.7,IpAddress,Block,C2 server,"Seen in incident 4711, stage 2",High,Servers;The-A-Team,
login-contoso.example.net,DomainName,Audit,Look-alike domain,Phishing kit,,,true
881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd,FileSha256,BlockAndRemediate,Dropper,From the sandbox,Medium,,
"""


def test_ioc_sync_makes_indicators_equal_to_the_file_and_purges_only_its_own(ansible, emulator, tmp_path):
    full = emulator.apps["full"]["client_id"]
    others_before = sorted(i["id"] for i in emulator.indicators if i["createdBy"] != full)
    own_before = sorted(i["id"] for i in emulator.indicators if i["createdBy"] == full)
    assert own_before and others_before
    csv_file = tmp_path / "iocs.csv"
    csv_file.write_text(CSV)
    play = [{"import_playbook": "defender.endpoint.ioc_sync"}]
    args = ["-e", "ioc_sync_file=%s" % csv_file]

    check = ansible.playbook(plays=play, check=True, extra_args=args)
    assert check.rc == 0, check
    assert check.task("Show what was done")["ioc_sync_result"] == dict(created=3, updated=0, deleted=len(own_before),
                                                                       unchanged=0, failed=0)
    assert writes(emulator) == []

    run = ansible.playbook(plays=play, extra_args=args)
    assert run.rc == 0, run
    assert run.task("Show what was done")["ioc_sync_result"]["created"] == 3
    own = {i["indicatorValue"]: i for i in emulator.indicators if i["createdBy"] == full}
    assert set(own) == {"198.51.100.7", "login-contoso.example.net",
                        "881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd"}
    assert own["198.51.100.7"]["description"] == "Seen in incident 4711, stage 2"
    assert sorted(own["198.51.100.7"]["rbacGroupNames"]) == ["Servers", "The-A-Team"]
    assert own["login-contoso.example.net"]["action"] == "Audit" and own["login-contoso.example.net"]["generateAlert"]
    assert sorted(i["id"] for i in emulator.indicators if i["createdBy"] != full) == others_before   # never purged
    assert {p for _m, p in writes(emulator)} <= {"/api/indicators/import", "/api/indicators/BatchDelete"}

    emulator.clear_log()
    again = ansible.playbook(plays=play, extra_args=args)
    assert again.rc == 0, again
    assert again.stats["localhost"]["changed"] == 0 and writes(emulator) == []

    # The same set as YAML with defaults, one severity changed: one update, nothing else.
    rows = [dict(indicator_value="198.51.100.7", indicator_type="IpAddress", title="C2 server",
                 description="Seen in incident 4711, stage 2", severity="Low", rbac_group_names=["The-A-Team", "Servers"]),
            dict(indicator_value="login-contoso.example.net", indicator_type="DomainName", action="Audit",
                 generate_alert=True, title="Look-alike domain", description="Phishing kit"),
            dict(indicator_value="881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd",
                 indicator_type="FileSha256", action="BlockAndRemediate", title="Dropper", description="From the sandbox",
                 severity="Medium")]
    yaml_file = tmp_path / "iocs.yml"
    yaml_file.write_text(yaml.safe_dump({"indicators": rows}))
    emulator.clear_log()
    changed = ansible.playbook(plays=play, extra_args=["-e", "ioc_sync_file=%s" % yaml_file,
                                                       "-e", '{"ioc_sync_defaults": {"action": "Block"}}'])
    assert changed.rc == 0, changed
    assert changed.task("Show what was done")["ioc_sync_result"] == dict(created=0, updated=1, deleted=0, unchanged=2,
                                                                         failed=0)
    assert len(emulator.writes()) == 1

    # An empty file would purge everything this application created: refused before any API call.
    empty = tmp_path / "empty.csv"
    empty.write_text("indicator_value,indicator_type\n")
    emulator.clear_log()
    refused = ansible.playbook(plays=play, extra_args=["-e", "ioc_sync_file=%s" % empty])
    assert refused.rc != 0 and "lists no indicator" in refused.stdout
    assert [e for e in emulator.log if e["path"].startswith("/api/")] == []


# -- patch_by_exposure ------------------------------------------------------------------------------------------
INVENTORY = {
    "plugin": "defender.endpoint.mde_machines",
    "keyed_groups": [{"key": "mde_exposure_level", "prefix": "exposure"}, {"key": "mde_os_platform", "prefix": "os"}],
}
RECORD = [{"name": "Record", "ansible.builtin.debug": {"msg": {
    "host": "{{ inventory_hostname }}", "family": "{{ patch_by_exposure_family }}",
    "connection": "{{ patch_by_exposure_connection }}", "batch": "{{ ansible_play_batch }}",
    "check_mode": "{{ ansible_check_mode }}"}}}]


def test_patch_by_exposure_batches_the_high_exposure_group_with_a_connection_per_os(ansible, emulator, tmp_path):
    inventory = tmp_path / "mde.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    record = tmp_path / "record.yml"
    record.write_text(yaml.safe_dump(RECORD))
    names = {}
    for m in onboarded(emulator):            # the inventory's hostnames: computerDnsName, else id; newest wins a name
        name = m["computerDnsName"] or m["id"]
        if name not in names or m["lastSeen"] > names[name]["lastSeen"]:
            names[name] = m
    high = sorted(n for n, m in names.items() if m["exposureLevel"] == "High")
    assert len(high) >= 5 and {names[n]["osPlatform"] for n in high} & {"Linux", "macOS"}

    # Check mode against the emulator's hosts, which cannot be reached: the test reaches them with a local
    # connection (an extra variable wins over the play's per-OS choice) and records what each would get.
    overrides = {"ansible_connection": "local", "patch_by_exposure_serial": 3,
                 "patch_by_exposure_tasks": {family: str(record) for family in ("windows", "linux", "macos")}}
    r = ansible.playbook(plays=[{"import_playbook": "defender.endpoint.patch_by_exposure"}], check=True,
                         inventory=str(inventory), extra_args=["-e", json.dumps(overrides)])
    assert r.rc == 0, r
    plan = r.task("Show the batches")["msg"]
    assert len(plan) == (len(high) + 2) // 3 and plan[0].startswith("batch 1: ")
    recorded = {h: r.task("Record", host=h)["msg"] for h in high}
    assert all(rec["check_mode"] for rec in recorded.values())
    for host, rec in recorded.items():
        platform = names[host]["osPlatform"]
        family = "windows" if platform.startswith("Windows") else ("macos" if platform == "macOS" else "linux")
        assert (rec["family"], rec["connection"]) == (family, "winrm" if family == "windows" else "ssh"), host
    # One play per batch, in the order they ran; each host saw its own batch.
    batches = [sorted(t["hosts"]) for play in r.data["plays"] for t in play["tasks"] if t["task"]["name"] == "Record"]
    assert all(sorted(recorded[h]["batch"]) == batch for batch in batches for h in batch)
    assert sorted(len(b) for b in batches) == sorted([3] * (len(high) // 3) + ([len(high) % 3] if len(high) % 3 else []))
    assert sorted(h for b in batches for h in b) == high
    # The plan shown by the first play is the batches the second play ran, in order, with each host's platform.
    planned = [sorted(entry.split(" (")[0] for entry in line.split(": ", 1)[1].split(", ")) for line in plan]
    assert planned == batches
    assert all("%s (%s)" % (h, names[h]["osPlatform"]) in line for line, batch in zip(plan, batches) for h in batch)
    # Nothing but reads of the machines list went to the API.
    assert {e["route"] for e in emulator.log if e["path"].startswith("/api/")} == {"GET /api/machines"}
