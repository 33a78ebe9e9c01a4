"""Microsoft Graph as the client's second API, through real ansible-playbook runs against the emulator:
advanced hunting on both APIs, Graph tokens per scope and per cloud, incidents (paging, filters, idempotence, check
mode, diff, comments), mde_alert's idempotent comment, bad input failing before any call, 403 naming the permission.
"""
import pytest

from tests.emulator import Emulator
from tests.integration.harness import Ansible

HUNT = "defender.endpoint.mde_advanced_hunting"
INFO = "defender.endpoint.mde_incident_info"
INCIDENT = "defender.endpoint.mde_incident"
ALERT = "defender.endpoint.mde_alert"
GRAPH_HUNT = "/v1.0/security/runHuntingQuery"
MDE_HUNT = "/api/advancedqueries/run"
QUERY = 'DeviceInfo | where DeviceName startswith "srv-" | project DeviceId, DeviceName | take 3'


def task(name, module, check=None, **args):
    out = {"name": name, module: args, "ignore_errors": True}
    if check is not None:
        out["check_mode"] = check
    return out


def token_scopes(emulator):
    return [e["body"]["scope"] for e in emulator.log if e["family"] == "token"]


def graph_calls(emulator):
    return [e for e in emulator.log if e["family"] == "graph"]


def test_hunting_answers_the_same_on_both_apis_with_one_token_per_scope(ansible, emulator):
    result = ansible.playbook(tasks=[
        task("graph", HUNT, query=QUERY, timespan="P30D"),
        task("mde", HUNT, query=QUERY, api="mde"),
        task("graph again", HUNT, query=QUERY),
    ])
    assert result.rc == 0, result
    graph, mde = result.task("graph"), result.task("mde")
    assert graph["schema"] == mde["schema"] == [{"name": "DeviceId", "type": "String"},
                                                {"name": "DeviceName", "type": "String"}]
    assert graph["results"] == mde["results"] and graph["row_count"] == 3 and graph["api"] == "graph"
    assert not graph.get("warnings")
    assert any("2027-02-01" in w and "MC1220762" in w for w in mde["warnings"])
    calls = [(e["path"], e["body"], e["status"]) for e in emulator.log if e["family"] not in ("token", "discovery")]
    assert calls == [(GRAPH_HUNT, {"Query": QUERY, "Timespan": "P30D"}, 200), (MDE_HUNT, {"Query": QUERY}, 200),
                     (GRAPH_HUNT, {"Query": QUERY}, 200)]
    # One token per scope for the whole play (the cache keeps both); each API accepted only its own.
    assert sorted(token_scopes(emulator)) == ["https://api.securitycenter.microsoft.com/.default",
                                              "https://graph.microsoft.com/.default"]


@pytest.mark.parametrize("cloud,scope", [("gcc", "https://graph.microsoft.com/.default"),
                                         ("gcc_high", "https://graph.microsoft.us/.default"),
                                         ("dod", "https://dod-graph.microsoft.us/.default")])
def test_the_graph_token_follows_the_cloud(ansible, emulator, cloud, scope):
    result = ansible.playbook(tasks=[task("hunt", HUNT, query="DeviceInfo | count")],
                              env={"MDE_CLOUD": cloud, "MDE_GRAPH_URL": emulator.url})
    assert result.task("hunt")["results"] == [{"Count": len(emulator.machines)}], result
    assert token_scopes(emulator) == [scope]
    assert [e["path"] for e in graph_calls(emulator)] == [GRAPH_HUNT]


def test_hunting_quota_timeout_bad_input_and_permission(ansible, emulator):
    emulator.inject_fault(GRAPH_HUNT + "$", "status", status=504)
    emulator.inject_fault(GRAPH_HUNT + "$", "status", status=429, retry_after=3000, skip=1,
                          message="Query execution has exceeded the allowed CPU resources for this tenant.")
    # The quota comes last: its 429 asks for longer than the collection waits, so the task fails at once.
    result = ansible.playbook(tasks=[
        task("timed out", HUNT, query="DeviceInfo | count"),
        task("outside the subset", HUNT, query="DeviceEvents | take 1"),
        task("bad timespan", HUNT, query="DeviceInfo", timespan="7 days"),
        task("timespan on mde", HUNT, query="DeviceInfo", timespan="P1D", api="mde"),
        task("quota", HUNT, query="DeviceInfo | count"),
    ])
    quota = result.task("quota")
    assert quota["failed"] and quota["status"] == 429 and "allowed CPU resources" in quota["msg"]
    assert "try again after" in quota["msg"] and quota["request_id"]
    timed_out = result.task("timed out")
    assert timed_out["failed"] and timed_out["status"] == 504
    subset = result.task("outside the subset")
    assert subset["status"] == 400 and "Supported subset" in subset["msg"]
    assert "ISO 8601 duration" in result.task("bad timespan")["msg"]
    assert "api: graph only" in result.task("timespan on mde")["msg"]
    # The quota failed at once, the timed-out query was not re-run, the bad input made no call.
    assert [e["status"] for e in graph_calls(emulator)] == [504, 400, 429]
    denied = ansible.playbook(app="readonly", tasks=[task("hunt", HUNT, query="DeviceInfo | count")]).task("hunt")
    assert denied["status"] == 403 and denied["permission"] == "ThreatHunting.Read.All"
    assert "Microsoft Graph application permission ThreatHunting.Read.All" in denied["msg"]


def test_incident_info_reads_every_page_with_server_side_filters(tmp_path):
    with Emulator(state_dir=tmp_path / "emu", machines=80) as emu:
        ansible = Ansible(emu, tmp_path)
        result = ansible.playbook(tasks=[
            task("all", INFO),
            task("high active", INFO, severity=["high"], status=["active", "inProgress"], updated_after="30d",
                 odata_filter="assignedTo eq null or assignedTo ne null"),
            task("one with alerts", INFO, incident_id="1001", include_alerts=True),
            task("limited", INFO, limit=7),
            task("unknown", INFO, incident_id="99999"),
            task("bad id", INFO, incident_id="12/../3"),
        ])
        incident_ids = sorted({str(a["incidentId"]) for a in emu.alerts}, key=int)
        assert len(incident_ids) > 50
        assert [i["id"] for i in result.task("all")["incidents"]] == incident_ids, result
        lists = [e for e in emu.log if e["path"] == "/v1.0/security/incidents"]
        assert [e["query"].get("$skip") for e in lists[:2]] == [None, "50"]
        high = result.task("high active")["incidents"]
        assert high and all(i["severity"] == "high" and i["status"] in ("active", "inProgress") for i in high)
        assert lists[2]["query"]["$filter"].startswith("(status eq 'active' or status eq 'inProgress') and severity eq "
                                                       "'high' and lastUpdateDateTime ge ")
        assert lists[2]["query"]["$filter"].endswith(" and (assignedTo eq null or assignedTo ne null)")
        one = result.task("one with alerts")["incidents"][0]
        assert {a["id"] for a in one["alerts"]} == {a["id"] for a in emu.alerts if a["incidentId"] == 1001}
        assert len(result.task("limited")["incidents"]) == 7
        assert result.task("unknown")["incidents"] == []
        assert "incident_id must be an incident id" in result.task("bad id")["msg"]


def test_incident_update_check_mode_diff_idempotence_and_comments(ansible, emulator):
    update = dict(incident_id="1000", status="active", assigned_to="secop9@contoso.com", custom_tags=["triage"],
                  comment="Contained by Ansible")
    result = ansible.playbook(diff=True, tasks=[
        task("check", INCIDENT, check=True, **update),
        task("apply", INCIDENT, **update),
        task("again", INCIDENT, **update),
        task("forced", INCIDENT, incident_id="1000", comment="Contained by Ansible", force_comment=True),
        task("bad pair", INCIDENT, incident_id="1000", classification="falsePositive", determination="malware"),
        task("pair against current", INCIDENT, incident_id="1001", classification="truePositive"),
        task("redirected", INCIDENT, incident_id="1000", status="redirected"),
        task("unknown", INCIDENT, incident_id="99999", status="active"),
    ])
    check = result.task("check")
    assert check["changed"] is True and check["comment_added"] is True, result
    assert check["diff"]["after"] == {"status": "active", "assignedTo": "secop9@contoso.com",
                                      "customTags": ["triage"], "comment": "Contained by Ansible"}
    apply = result.task("apply")
    assert apply["changed"] is True and apply["incident"]["status"] == "active"
    assert [c["comment"] for c in apply["incident"]["comments"]] == ["Contained by Ansible"]
    again = result.task("again")
    assert again["changed"] is False and again["comment_added"] is False
    assert result.task("forced")["changed"] is True
    assert "does not go with classification falsePositive" in result.task("bad pair")["msg"]
    assert "Nothing was changed" in result.task("pair against current")["msg"] or \
        result.task("pair against current")["changed"] is False
    assert "value of status must be one of" in result.task("redirected")["msg"]
    assert "No incident with id 99999" in result.task("unknown")["msg"]
    writes = [(w["method"], w["path"], w["body"]) for w in emulator.writes()]
    assert writes == [
        ("PATCH", "/v1.0/security/incidents/1000", {"status": "active", "assignedTo": "secop9@contoso.com",
                                                    "customTags": ["triage"]}),
        ("POST", "/v1.0/security/incidents/1000/comments", {"@odata.type": "microsoft.graph.security.alertComment",
                                                            "comment": "Contained by Ansible"}),
        ("POST", "/v1.0/security/incidents/1000/comments", {"@odata.type": "microsoft.graph.security.alertComment",
                                                            "comment": "Contained by Ansible"}),
    ]
    denied = ansible.playbook(app="readonly", tasks=[task("t", INCIDENT, incident_id="1000", status="active")])
    res = denied.task("t")
    assert res["status"] == 403 and res["permission"] == "SecurityIncident.ReadWrite.All"


def test_alert_comment_is_idempotent_by_its_text(ansible, emulator):
    ids = [a["id"] for a in emulator.alerts if a["status"] == "New"][:3]
    result = ansible.playbook(tasks=[
        task("one", ALERT, alert_id=ids[0], comment="triaged"),
        task("one again", ALERT, alert_id=ids[0], comment="triaged"),
        task("batch", ALERT, alert_ids=ids, comment="triaged"),
        task("batch again", ALERT, alert_ids=ids, comment="triaged"),
        task("forced", ALERT, alert_id=ids[0], comment="triaged", force_comment=True),
    ])
    assert result.task("one")["changed"] is True, result
    assert result.task("one again")["changed"] is False
    assert result.task("batch")["updated_ids"] == ids[1:]
    assert result.task("batch again")["changed"] is False
    assert result.task("forced")["changed"] is True
    writes = [(w["path"], w["body"]) for w in emulator.writes()]
    assert writes == [("/api/alerts/%s" % ids[0], {"comment": "triaged"}),
                      ("/api/alerts/batchUpdate", {"alertIds": ids[1:], "comment": "triaged"}),
                      ("/api/alerts/%s" % ids[0], {"comment": "triaged"})]


def test_triage_incident_playbook_contains_assigns_comments_and_reruns_clean(ansible, emulator):
    devices = sorted({a["machineId"] for a in emulator.alerts if a["incidentId"] == 1002})
    plays = [{"import_playbook": "defender.endpoint.triage_incident"}]
    extra = ["-e", "triage_incident_id=1002", "-e", "triage_incident_assigned_to=secop7@contoso.com"]
    first = ansible.playbook(plays=plays, extra_args=extra)
    assert first.rc == 0, first
    isolated = sorted(w["path"].split("/")[3] for w in emulator.writes() if w["path"].endswith("/isolate"))
    assert isolated == devices
    incident_writes = [(w["method"], w["path"]) for w in emulator.writes() if w["path"].startswith("/v1.0/")]
    assert incident_writes == [("PATCH", "/v1.0/security/incidents/1002"),
                               ("POST", "/v1.0/security/incidents/1002/comments")]
    emulator.clear_log()
    again = ansible.playbook(plays=plays, extra_args=extra)
    assert again.rc == 0, again
    assert emulator.writes() == []
