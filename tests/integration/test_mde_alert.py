"""mde_alert_info and mde_alert through ansible-playbook against the emulator.

Expected results are computed from the emulator's own alert data (``emulator.alerts``), and every test checks
what the emulator received (its request log).
"""
import datetime

import pytest

from tests.emulator import Emulator
from tests.integration.harness import Ansible

INFO = "defender.endpoint.mde_alert_info"
ALERT = "defender.endpoint.mde_alert"


def api_calls(emulator, method=None, path_prefix="/api/"):
    return [e for e in emulator.log if e["path"].startswith(path_prefix) and (method is None or e["method"] == method)]


def ids(alerts):
    return [a["id"] for a in alerts]


def canonical(dt):
    """A time as the emulator stores alert times (sortable text)."""
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def parse(text):
    return datetime.datetime.fromisoformat(text[:19] + "+00:00")


# -- mde_alert_info: filters ---------------------------------------------------------------------------
def test_each_filter_narrows_as_the_data_says(ansible, emulator):
    alerts = [dict(a) for a in emulator.alerts]
    assert len(alerts) == 100
    by_machine = {}
    for a in alerts:
        by_machine.setdefault(a["machineId"], []).append(a)
    machine_id = max(by_machine, key=lambda m: len(by_machine[m]))
    created = sorted(a["alertCreationTime"] for a in alerts)
    created_cut = parse(created[60])                     # an absolute ISO 8601 time: 40 alerts at or after it
    updated_cut = parse(sorted(a["lastUpdateTime"] for a in alerts)[30])
    investigation = next(a["investigationId"] for a in alerts if a["investigationId"] and a["status"] == "New")

    cases = {
        "status": (dict(status=["New", "InProgress"]), lambda a: a["status"] in ("New", "InProgress")),
        "severity": (dict(severity=["High"]), lambda a: a["severity"] == "High"),
        "category": (dict(category=["Malware", "Execution"]), lambda a: a["category"] in ("Malware", "Execution")),
        "detection_source": (dict(detection_source="WindowsDefenderAv"), lambda a: a["detectionSource"] == "WindowsDefenderAv"),
        "assigned_to": (dict(assigned_to=["secop1@contoso.com"]), lambda a: a["assignedTo"] == "secop1@contoso.com"),
        "incident_id": (dict(incident_id=[1005, 1010]), lambda a: a["incidentId"] in (1005, 1010)),
        "created_after": (dict(created_after=created_cut.strftime("%Y-%m-%dT%H:%M:%SZ")),
                          lambda a: a["alertCreationTime"] >= canonical(created_cut)),
        "updated_after": (dict(updated_after=updated_cut.isoformat()),
                          lambda a: a["lastUpdateTime"] >= canonical(updated_cut)),
        "combined": (dict(status=["New"], severity=["Low", "Medium"], category=["Malware", "Execution", "Persistence"]),
                     lambda a: (a["status"], a["severity"] in ("Low", "Medium"),
                                a["category"] in ("Malware", "Execution", "Persistence")) == ("New", True, True)),
        "odata_filter": (dict(status=["New"], odata_filter="investigationId eq %d" % investigation),
                         lambda a: a["status"] == "New" and a["investigationId"] == investigation),
        "machine_id": (dict(machine_id=machine_id), lambda a: a["machineId"] == machine_id),
        "machine_id_status": (dict(machine_id=machine_id, status=["New"]),
                              lambda a: a["machineId"] == machine_id and a["status"] == "New"),
    }
    tasks = [{"name": name, INFO: args} for name, (args, _pred) in cases.items()]
    tasks.append({"name": "relative", INFO: {"created_after": "10d"}})
    tasks.append({"name": "limit", INFO: {"status": ["New"], "limit": 7}})
    tasks.append({"name": "everything", INFO: {}})
    before = datetime.datetime.now(datetime.timezone.utc)
    result = ansible.playbook(tasks=tasks)
    after = datetime.datetime.now(datetime.timezone.utc)
    assert result.rc == 0, result

    for name, (_args, pred) in cases.items():
        task = result.task(name)
        expected = [a["id"] for a in alerts if pred(a)]
        assert expected, name                            # each case selects something ...
        assert len(expected) < len(alerts), name         # ... and narrows
        assert sorted(ids(task["alerts"])) == sorted(expected), name
        assert task["changed"] is False
    # every returned entity is the API's camelCase alert, without evidence unless asked
    sample = result.task("status")["alerts"][0]
    assert {"id", "status", "severity", "machineId", "alertCreationTime", "evidence"} <= set(sample)
    assert all(a["evidence"] == [] for a in result.task("everything")["alerts"])
    assert sorted(ids(result.task("everything")["alerts"])) == sorted(ids(alerts))
    assert result.task("everything")["filter"] is None

    # relative time: between what "now - 10 days" was before and after the run
    got = set(ids(result.task("relative")["alerts"]))
    assert {a["id"] for a in alerts if a["alertCreationTime"] >= canonical(before - datetime.timedelta(days=10))} >= got
    assert got >= {a["id"] for a in alerts if a["alertCreationTime"] >= canonical(after - datetime.timedelta(days=10))}
    assert 0 < len(got) < len(alerts)

    limited = result.task("limit")["alerts"]
    assert len(limited) == 7 and all(a["status"] == "New" for a in limited)

    # one server-side $filter per task, on the alerts endpoint; machine_id on the machine's alerts collection
    filters = [e["query"].get("$filter") for e in api_calls(emulator, "GET", "/api/alerts")]
    assert result.task("combined")["filter"] == ("status eq 'New' and (severity eq 'Low' or severity eq 'Medium') and "
                                                 "(category eq 'Malware' or category eq 'Execution' or category eq 'Persistence')")
    assert result.task("combined")["filter"] in filters
    assert "status eq 'New' and (investigationId eq %d)" % investigation in filters
    assert "(incidentId eq 1005 or incidentId eq 1010)" in filters
    machine_calls = api_calls(emulator, "GET", "/api/machines/")
    assert [(e["path"], e["query"].get("$filter")) for e in machine_calls] == [
        ("/api/machines/%s/alerts" % machine_id, None), ("/api/machines/%s/alerts" % machine_id, "status eq 'New'")]
    assert all("machineId" not in (f or "") for f in filters)
    assert [e for e in api_calls(emulator, "GET", "/api/alerts") if e["query"].get("$top") == "7"]
    assert not emulator.writes()


def test_evidence_on_request_one_alert_and_check_mode(ansible, emulator):
    alerts = [dict(a) for a in emulator.alerts]
    high = [a["id"] for a in alerts if a["severity"] == "High"]
    machine_id = alerts[0]["machineId"]
    on_machine = [a["id"] for a in alerts if a["machineId"] == machine_id]
    result = ansible.playbook(check=True, tasks=[
        {"name": "high with evidence", INFO: {"severity": ["High"], "include_evidence": True}},
        {"name": "one", INFO: {"alert_id": alerts[3]["id"], "include_evidence": True}},
        {"name": "one plain", INFO: {"alert_id": alerts[3]["id"]}},
        {"name": "machine with evidence", INFO: {"machine_id": machine_id, "include_evidence": True}},
        {"name": "unknown", INFO: {"alert_id": "da000000000000000000_1"}, "ignore_errors": True},
        {"name": "unknown machine", INFO: {"machine_id": "0" * 40}, "ignore_errors": True},
    ])
    assert result.rc == 0, result
    found = result.task("high with evidence")["alerts"]
    assert sorted(ids(found)) == sorted(high)
    for alert in found + result.task("machine with evidence")["alerts"] + result.task("one")["alerts"]:
        kinds = [e["entityType"] for e in alert["evidence"]]
        assert kinds == ["User", "Process", "File"], alert["id"]
        assert alert["evidence"][0]["accountName"] == alert["relatedUser"]["userName"]
    assert sorted(ids(result.task("machine with evidence")["alerts"])) == sorted(on_machine)
    one = result.task("one")["alerts"]
    assert ids(one) == [alerts[3]["id"]] and "@odata.context" not in one[0]
    assert result.task("one plain")["alerts"][0]["evidence"] == []
    unknown = result.task("unknown")
    assert unknown["failed"] and "No alert with id da000000000000000000_1" in unknown["msg"]
    assert "No machine with id %s" % ("0" * 40) in result.task("unknown machine")["msg"]

    expands = [(e["path"], e["query"].get("$expand")) for e in api_calls(emulator, "GET")]
    assert ("/api/alerts", "evidence") in expands
    assert ("/api/alerts/%s" % alerts[3]["id"], "evidence") in expands
    assert ("/api/alerts/%s" % alerts[3]["id"], None) in expands
    # the machine's alerts are read from its collection, then their evidence by id from /api/alerts
    by_id = [e for e in api_calls(emulator, "GET", "/api/alerts") if "id eq" in (e["query"].get("$filter") or "")]
    assert len(by_id) == 1 and by_id[0]["query"]["$expand"] == "evidence"
    assert not emulator.writes()


# -- mde_alert_info: more than one page ----------------------------------------------------------------
@pytest.fixture(scope="module")
def big_emulator(tmp_path_factory):
    emu = Emulator(state_dir=tmp_path_factory.mktemp("mde-emulator-12000"), machines=50, alerts=12000, seed=6)
    emu.start()
    yield emu
    emu.stop()


def test_more_than_10000_alerts_come_back_whole(big_emulator, tmp_path):
    emulator = big_emulator
    emulator.clear_log()
    alerts = emulator.alerts
    oldest = min(a["alertCreationTime"] for a in alerts)
    cut = parse(oldest) - datetime.timedelta(seconds=1)
    expected = [a["id"] for a in alerts if a["severity"] != "UnSpecified" and a["alertCreationTime"] >= canonical(cut)]
    assert len(expected) == 12000
    result = Ansible(emulator, tmp_path).playbook(tasks=[
        {"name": "all", INFO: {"created_after": cut.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "severity": ["Informational", "Low", "Medium", "High"]}},
    ])
    assert result.rc == 0, result
    got = ids(result.task("all")["alerts"])
    assert len(got) == len(set(got)) == 12000
    assert set(got) == set(expected)
    pages = api_calls(emulator, "GET", "/api/alerts")
    assert len(pages) == 2
    assert [p["query"].get("$skip") for p in pages] == [None, "10000"]
    assert all(p["query"]["$top"] == "10000" and p["query"]["$filter"] == result.task("all")["filter"] for p in pages)


# -- mde_alert ---------------------------------------------------------------------------------------
def test_update_one_alert_idempotent_check_mode_and_diff(ansible, emulator):
    alert = next(a for a in emulator.alerts if a["status"] == "New" and a["assignedTo"] is None)
    ident = alert["id"]
    take = {"alert_id": ident, "status": "InProgress", "assigned_to": "secop2@contoso.com"}
    resolve = {"alert_id": ident, "status": "Resolved", "assigned_to": "SECOP2@contoso.com",
               "classification": "FalsePositive", "determination": "NotMalicious", "comment": "benign admin tool"}
    result = ansible.playbook(diff=True, tasks=[
        {"name": "take in check mode", ALERT: take, "check_mode": True},
        {"name": "take", ALERT: take},
        {"name": "take again", ALERT: take},
        {"name": "resolve", ALERT: resolve},
        {"name": "resolve again", ALERT: dict(resolve, comment=None)},
        {"name": "comment again", ALERT: {"alert_id": ident, "comment": "still benign"}},
    ])
    assert result.rc == 0, result
    check = result.task("take in check mode")
    assert check["changed"] is True and check["updated_ids"] == [ident]
    assert check["diff"] == {"before": {ident: {"status": "New", "assignedTo": None}},
                             "after": {ident: {"status": "InProgress", "assignedTo": "secop2@contoso.com"}}}
    assert check["alert"]["status"] == "InProgress"
    taken = result.task("take")
    assert taken["changed"] is True and taken["alert"]["assignedTo"] == "secop2@contoso.com"
    assert taken["alert"]["status"] == "InProgress" and "@odata.context" not in taken["alert"]
    again = result.task("take again")
    assert again["changed"] is False and again["updated_ids"] == [] and again["alert"]["status"] == "InProgress"
    resolved = result.task("resolve")
    assert resolved["changed"] is True
    assert resolved["diff"]["before"] == {ident: {"status": "InProgress", "classification": None, "determination": None}}
    assert resolved["diff"]["after"] == {ident: {"status": "Resolved", "classification": "FalsePositive",
                                                 "determination": "Clean", "comment": "benign admin tool"}}
    assert resolved["alert"]["comments"][-1]["comment"] == "benign admin tool"
    assert result.task("resolve again")["changed"] is False
    assert result.task("comment again")["changed"] is True

    # exactly these writes reached the API: nothing in check mode, nothing on a re-run, only changed fields
    assert [(w["method"], w["path"], w["body"]) for w in emulator.writes()] == [
        ("PATCH", "/api/alerts/%s" % ident, {"status": "InProgress", "assignedTo": "secop2@contoso.com"}),
        ("PATCH", "/api/alerts/%s" % ident, {"status": "Resolved", "classification": "FalsePositive",
                                             "determination": "Clean", "comment": "benign admin tool"}),
        ("PATCH", "/api/alerts/%s" % ident, {"comment": "still benign"}),
    ]
    live = emulator.state.alerts_by_id[ident]
    assert (live["status"], live["assignedTo"], live["classification"], live["determination"]) == (
        "Resolved", "secop2@contoso.com", "FalsePositive", "Clean")
    assert [c["comment"] for c in live["comments"]] == ["benign admin tool", "still benign"]


def test_update_a_list_with_batch_update(ansible, emulator):
    alerts = emulator.alerts
    new = [a["id"] for a in alerts if a["status"] == "New"][:4]
    in_progress = [a for a in alerts if a["status"] == "InProgress"]
    taken = [a["id"] for a in in_progress if a["assignedTo"] == "secop1@contoso.com"][:2]
    other = [a["id"] for a in in_progress if a["assignedTo"] != "secop1@contoso.com"][:2]
    wanted = new + taken + other + [new[0]]          # a repeated id is updated once
    task = {"alert_ids": wanted, "status": "InProgress", "assigned_to": "secop1@contoso.com"}
    result = ansible.playbook(diff=True, tasks=[
        {"name": "check", ALERT: task, "check_mode": True},
        {"name": "apply", ALERT: task},
        {"name": "again", ALERT: task},
        {"name": "comment all", ALERT: {"alert_ids": new[:2], "comment": "batch note"}},
    ])
    assert result.rc == 0, result
    check = result.task("check")
    assert check["changed"] is True and check["updated_ids"] == new + other
    assert set(check["diff"]["before"]) == set(new + other)
    assert check["diff"]["after"][other[0]] == {"assignedTo": "secop1@contoso.com"}
    assert check["diff"]["after"][new[0]] == {"status": "InProgress", "assignedTo": "secop1@contoso.com"}
    applied = result.task("apply")
    assert applied["changed"] is True and ids(applied["alerts"]) == new + taken + other
    assert all(a["status"] == "InProgress" and a["assignedTo"] == "secop1@contoso.com" for a in applied["alerts"])
    again = result.task("again")
    assert again["changed"] is False and again["updated_ids"] == []
    assert result.task("comment all")["changed"] is True

    # one batchUpdate per set of differing fields, listing only the alerts that need it; none in check mode or re-run
    assert [(w["path"], w["body"]) for w in emulator.writes()] == [
        ("/api/alerts/batchUpdate", {"alertIds": new, "status": "InProgress", "assignedTo": "secop1@contoso.com"}),
        ("/api/alerts/batchUpdate", {"alertIds": other, "assignedTo": "secop1@contoso.com"}),
        ("/api/alerts/batchUpdate", {"alertIds": new[:2], "comment": "batch note"}),
    ]
    # reads are few: one $filter on id per task (plus the re-read after each write)
    reads = api_calls(emulator, "GET", "/api/alerts")
    assert len(reads) == 6 and all(" or id eq " in r["query"]["$filter"] for r in reads)
    for ident in new + taken + other:
        live = emulator.state.alerts_by_id[ident]
        assert (live["status"], live["assignedTo"]) == ("InProgress", "secop1@contoso.com")


def test_a_list_that_fails_part_way_names_what_was_updated_and_the_rerun_finishes(ansible, emulator):
    alerts = emulator.alerts
    new = [a["id"] for a in alerts if a["status"] == "New"][:3]
    other = [a["id"] for a in alerts if a["status"] == "InProgress" and a["assignedTo"] != "secop1@contoso.com"][:2]
    # two batch updates (New ones: status and owner; InProgress ones: owner only); the second is refused
    emulator.inject_fault("/api/alerts/batchUpdate", "status", status=400, skip=1)
    task = {"alert_ids": new + other, "status": "InProgress", "assigned_to": "secop1@contoso.com"}
    result = ansible.playbook(tasks=[
        {"name": "apply", ALERT: task, "ignore_errors": True},
        {"name": "again", ALERT: task},
    ])
    res = result.task("apply")
    assert res["failed"] is True and res["changed"] is True
    assert res["updated_ids"] == new and res["status"] == 400
    assert "3 of the 5 alerts to change had been changed before this call" in res["msg"]
    assert "re-running the task is safe" in res["msg"]
    again = result.task("again")
    assert again["changed"] is True and again["updated_ids"] == other
    assert [(w["body"]["alertIds"], w["status"]) for w in emulator.writes()] == [(new, 200), (other, 400), (other, 200)]
    for ident in new + other:
        live = emulator.state.alerts_by_id[ident]
        assert (live["status"], live["assignedTo"]) == ("InProgress", "secop1@contoso.com")


def test_invalid_input_fails_before_any_call(ansible, emulator):
    some = emulator.alerts[0]["id"]
    cases = {
        "bad status": {ALERT: {"alert_id": some, "status": "Closed"}},
        "bad classification": {ALERT: {"alert_id": some, "classification": "Benign"}},
        "bad combination": {ALERT: {"alert_ids": [some], "classification": "FalsePositive", "determination": "Malware"}},
        "determination alone": {ALERT: {"alert_id": some, "determination": "Malware"}},
        "removed determination": {ALERT: {"alert_id": some, "classification": "TruePositive", "determination": "Apt"}},
        "bad owner": {ALERT: {"alert_id": some, "assigned_to": "secop2"}},
        "nothing to do": {ALERT: {"alert_id": some}},
        "bad severity filter": {INFO: {"severity": ["Critical"]}},
        "bad time filter": {INFO: {"created_after": "yesterday"}},
    }
    tasks = [dict(args, name=name, ignore_errors=True) for name, args in cases.items()]
    result = ansible.playbook(tasks=tasks)
    assert result.rc == 0, result
    for name in cases:
        assert result.task(name).get("failed") is True, name
    assert "Closed" in result.task("bad status")["msg"]
    assert "determination Malware does not go with classification FalsePositive" in result.task("bad combination")["msg"]
    assert "Clean, InsufficientData, Other" in result.task("bad combination")["msg"]
    assert "classification" in result.task("determination alone")["msg"]
    assert "assigned_to must be" in result.task("bad owner")["msg"]
    assert "created_after must be an ISO 8601 time" in result.task("bad time filter")["msg"]
    assert emulator.log == []                    # not even a token request


def test_failures_after_reading_write_nothing(ansible, emulator):
    resolved_tp = next(a for a in emulator.alerts if a["status"] == "Resolved" and a["classification"] == "TruePositive")
    new = next(a for a in emulator.alerts if a["status"] == "New")
    result = ansible.playbook(tasks=[
        {"name": "classification breaks determination", "ignore_errors": True,
         ALERT: {"alert_id": resolved_tp["id"], "classification": "FalsePositive"}},
        {"name": "unknown id in list", "ignore_errors": True,
         ALERT: {"alert_ids": [new["id"], "da999999999999999999_7"], "status": "Resolved"}},
        {"name": "unknown single id", "ignore_errors": True,
         ALERT: {"alert_id": "da999999999999999999_7", "status": "Resolved"}},
    ])
    assert result.rc == 0, result
    msg = result.task("classification breaks determination")["msg"]
    assert "set determination too" in msg and resolved_tp["id"] in msg and "Malware" in msg
    msg = result.task("unknown id in list")["msg"]
    assert "1 of the 2 alert ids" in msg and "da999999999999999999_7" in msg and new["id"] not in msg
    assert "No alert with id da999999999999999999_7" in result.task("unknown single id")["msg"]
    assert not emulator.writes()


def test_token_without_alert_readwrite_fails_naming_it(ansible, emulator):
    new = next(a for a in emulator.alerts if a["status"] == "New")
    result = ansible.playbook(app="readonly", tasks=[
        {"name": "read works", INFO: {"alert_id": new["id"]}},
        {"name": "update", ALERT: {"alert_id": new["id"], "status": "InProgress"}, "ignore_errors": True},
        {"name": "batch", ALERT: {"alert_ids": [new["id"]], "comment": "x"}, "ignore_errors": True},
    ])
    assert result.rc == 0, result
    assert ids(result.task("read works")["alerts"]) == [new["id"]]
    for name in ("update", "batch"):
        task = result.task(name)
        assert task["failed"] and "Alert.ReadWrite.All" in task["msg"] and task["status"] == 403, task
        assert task["permission"] == "Alert.ReadWrite.All"
    assert [(w["method"], w["status"]) for w in emulator.writes()] == [("PATCH", 403), ("POST", 403)]
    assert emulator.state.alerts_by_id[new["id"]]["status"] == "New"
