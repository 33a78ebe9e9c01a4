"""Custom detection rules on the emulator (detection_rules.py): the seed, create/get/update/delete as Microsoft
documents them, 409 on a duplicate id, 400 in Graph's shape, the query's columns, paging, beta's deprecated fields,
permissions."""

import requests

from tests.emulator import detection_rules

GRAPH = "https://graph.microsoft.com/.default"
RULES = "/v1.0/security/rules/detectionRules"
QUERY = "DeviceProcessEvents | project Timestamp, DeviceId, ReportId, FileName"


def call(emu, method, path, token=None, **kwargs):
    headers = {"Authorization": "Bearer " + (token or emu.token_for("full", GRAPH))}
    return requests.request(method, emu.url + path, headers=headers, verify=emu.ca_path, timeout=30, **kwargs)


def rule(ident="r-1", **extra):
    body = {"id": ident, "displayName": "Rule %s" % ident, "status": "enabled",
            "queryCondition": {"queryText": QUERY}, "schedule": {"frequency": "PT1H"},
            "detectionAction": {"alertTemplate": {"title": "Alert %s" % ident, "severity": "low",
                                                  "entityMappings": {"hosts": [{"deviceIdColumn": "DeviceId"}]}},
                                "automatedActions": {"isolateDevices": [{"deviceIdColumn": "DeviceId",
                                                                         "isolationType": "full"}]}}}
    body.update(extra)
    return body


def test_the_seed_has_a_rule_from_before_the_rework_and_beta_shows_deprecated_fields(emulator):
    body = call(emulator, "GET", RULES).json()
    ids = [r["id"] for r in body["value"]]
    assert ids[0] == "7506" and "office-encoded-powershell" in ids and "@odata.nextLink" not in body
    assert {r["status"] for r in body["value"]} == {"enabled", "disabled", "autoDisabled"}
    v1 = call(emulator, "GET", RULES + "/7506").json()
    assert "isEnabled" not in v1 and "period" not in v1["schedule"] and v1["schedule"]["frequency"] == "P1D"
    beta = call(emulator, "GET", "/beta/security/rules/detectionRules/7506").json()
    assert beta["isEnabled"] is True and beta["schedule"]["period"] == "24H" and beta["detectorId"]
    assert beta["detectionAction"]["responseActions"] == []
    assert [e["route"] for e in emulator.log][-2:] == [
        "GET /v1.0/security/rules/detectionRules/{id}", "GET /beta/security/rules/detectionRules/{id}"]


def test_create_get_update_merges_and_delete(emulator):
    resp = call(emulator, "POST", RULES, json=rule())
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"].endswith(RULES + "/r-1")
    created = resp.json()
    assert created["createdBy"] == created["lastModifiedBy"] and created["status"] == "enabled"
    resp = call(emulator, "PATCH", RULES + "/r-1", json={"status": "disabled",
                                                         "detectionAction": {"alertTemplate": {"title": "New"}}})
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    template = updated["detectionAction"]["alertTemplate"]
    assert updated["status"] == "disabled" and template["title"] == "New" and template["severity"] == "low"
    assert updated["detectionAction"]["automatedActions"]["isolateDevices"][0]["isolationType"] == "full"
    assert call(emulator, "PATCH", RULES + "/r-1", json={"id": "other"}).status_code == 400
    assert call(emulator, "DELETE", RULES + "/r-1").status_code == 204
    gone = call(emulator, "GET", RULES + "/r-1")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NotFound"
    assert call(emulator, "DELETE", RULES + "/r-1").status_code == 404


def test_duplicates_and_bad_bodies_are_refused_in_graph_shape(emulator):
    assert call(emulator, "POST", RULES, json=rule()).status_code == 201
    dup = call(emulator, "POST", RULES, json=rule())
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "Conflict"
    same_name = call(emulator, "POST", RULES, json=rule("r-2", displayName="rule R-1"))
    assert same_name.status_code == 409
    cases = [
        rule("r-3", status="autoDisabled"),
        rule("r-4", schedule={"frequency": "PT1M"}),
        rule("r-5", queryCondition={"queryText": "DeviceProcessEvents | project Timestamp, DeviceId"}),
        rule("r-6", queryCondition={"queryText": "DeviceEvents | take 1"}),
        rule("r-7", isEnabled=True),
        dict((k, v) for k, v in rule("r-8").items() if k != "id"),
        rule("r-9", detectionAction={"alertTemplate": {"title": "t", "customDetails": {"x": "NoSuchColumn"}}}),
    ]
    for body in cases:
        resp = call(emulator, "POST", RULES, json=body)
        assert resp.status_code == 400, (body, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "BadRequest" and error["message"] and "request-id" in error["innerError"]
    assert "ReportId" in call(emulator, "POST", RULES, json=cases[2]).json()["error"]["message"]
    assert call(emulator, "POST", "/beta/security/rules/detectionRules", json=rule("r-10", isEnabled=True)
                ).status_code == 201  # beta ignores the deprecated property


def test_paging_and_filters(emulator):
    for n in range(120):
        detection_rules.add_rule(emulator.state, dict(rule("bulk-%03d" % n), createdDateTime="2026-09-01T00:00:%02dZ"
                                                      % (n % 60)))
    seen, path, pages = [], RULES, 0
    while path:
        body = call(emulator, "GET", path).json()
        seen += [r["id"] for r in body["value"]]
        pages += 1
        link = body.get("@odata.nextLink")
        path = link[len(emulator.url):] if link else None
    assert pages == 3 and len(seen) == len(set(seen)) == 124
    one = call(emulator, "GET", RULES, params={"$filter": "status eq 'disabled'"}).json()["value"]
    assert [r["id"] for r in one] == ["new-server-onboarded"]


def test_permissions(emulator):
    emulator.add_app("rules_reader", roles=("CustomDetection.Read.All",))
    token = emulator.token_for("rules_reader", GRAPH)
    assert call(emulator, "GET", RULES, token=token).status_code == 200
    resp = call(emulator, "POST", RULES, token=token, json=rule())
    assert resp.status_code == 403 and "CustomDetection.ReadWrite.All" in resp.json()["error"]["message"]
    none = call(emulator, "GET", RULES, token=emulator.token_for("readonly", GRAPH))
    assert none.status_code == 403 and "CustomDetection.Read.All" in none.json()["error"]["message"]


def test_delegated_permissions(emulator):
    analyst = emulator.user_token_for(scope=GRAPH)
    resp = call(emulator, "POST", RULES, token=analyst, json=rule("by-user"))
    assert resp.status_code == 201, resp.text
    assert resp.json()["createdBy"] == "analyst@contoso.onmicrosoft.com"
    reader = emulator.user_token_for(app="analyst_readonly", scope=GRAPH)
    refused = call(emulator, "GET", RULES, token=reader)
    assert refused.status_code == 403 and "CustomDetection.Read.All" in refused.json()["error"]["message"]
