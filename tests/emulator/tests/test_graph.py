"""Microsoft Graph security on the emulator: audiences, errors, hunting, incidents, paging, comments."""

import requests

GRAPH = "https://graph.microsoft.com/.default"


def call(emu, method, path, token=None, **kwargs):
    headers = {"Authorization": "Bearer " + (token or emu.token_for("full", GRAPH))}
    return requests.request(method, emu.url + path, headers=headers, verify=emu.ca_path, timeout=30, **kwargs)


def test_graph_refuses_the_defender_token_and_the_api_refuses_the_graph_token(emulator):
    resp = call(emulator, "GET", "/v1.0/security/incidents", token=emulator.token_for("full"))
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken" and "request-id" in error["innerError"]
    resp = requests.get(emulator.url + "/api/alerts", verify=emulator.ca_path, timeout=30,
                        headers={"Authorization": "Bearer " + emulator.token_for("full", GRAPH)})
    assert resp.status_code == 401


def test_hunting_answers_in_graph_shape_and_explains_the_subset(emulator):
    resp = call(emulator, "POST", "/v1.0/security/runHuntingQuery",
                json={"Query": "DeviceInfo | project DeviceId | take 2", "Timespan": "P30D"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["schema"] == [{"name": "DeviceId", "type": "String"}] and len(body["results"]) == 2
    bad = call(emulator, "POST", "/v1.0/security/runHuntingQuery", json={"Query": "DeviceEvents | take 1"})
    assert bad.status_code == 400 and "Supported subset" in bad.json()["error"]["message"]
    span = call(emulator, "POST", "/v1.0/security/runHuntingQuery", json={"Query": "DeviceInfo", "Timespan": "7 days"})
    assert span.status_code == 400


def test_incidents_follow_the_alerts_and_page_with_next_links(emulator):
    incidents = []
    path = "/v1.0/security/incidents?$top=10"
    while path:
        body = call(emulator, "GET", path).json()
        incidents.extend(body["value"])
        link = body.get("@odata.nextLink")
        path = link[len(emulator.url):] if link else None
    assert len(incidents) == len({a["incidentId"] for a in emulator.alerts})
    one = call(emulator, "GET", "/v1.0/security/incidents/%s?$expand=alerts" % incidents[0]["id"]).json()
    assert {a["id"] for a in one["alerts"]} == {a["id"] for a in emulator.alerts
                                                if str(a["incidentId"]) == incidents[0]["id"]}
    assert one["alerts"][0]["evidence"][0]["mdeDeviceId"]
    high = call(emulator, "GET", "/v1.0/security/incidents", params={"$filter": "severity eq 'high'"}).json()["value"]
    assert high and all(i["severity"] == "high" for i in high)


def test_patch_checks_the_pair_and_comments_append(emulator):
    ident = "1000"
    bad = call(emulator, "PATCH", "/v1.0/security/incidents/" + ident,
               json={"classification": "falsePositive", "determination": "malware"})
    assert bad.status_code == 400
    resp = call(emulator, "PATCH", "/v1.0/security/incidents/" + ident,
                json={"status": "inProgress", "customTags": ["a"]})
    assert resp.status_code == 200 and resp.json()["status"] == "inProgress"
    resp = call(emulator, "POST", "/v1.0/security/incidents/%s/comments" % ident,
                json={"@odata.type": "microsoft.graph.security.alertComment", "comment": "hello"})
    assert resp.status_code == 200 and resp.json()["value"][-1]["comment"] == "hello"
    readonly = call(emulator, "PATCH", "/v1.0/security/incidents/" + ident, json={"status": "active"},
                    token=emulator.token_for("readonly", GRAPH))
    assert readonly.status_code == 403 and "SecurityIncident.ReadWrite.All" in readonly.json()["error"]["message"]


def test_an_evolvable_enum_member_needs_the_prefer_header(emulator):
    prefer = {"Prefer": "include-unknown-enum-members"}
    query = "/v1.0/security/incidents?$filter=status eq 'awaitingAction'"
    refused = call(emulator, "GET", query)
    assert refused.status_code == 400 and "include-unknown-enum-members" in refused.json()["error"]["message"]
    headers = {"Authorization": "Bearer " + emulator.token_for("full", GRAPH), **prefer}
    found = requests.get(emulator.url + query, headers=headers, verify=emulator.ca_path, timeout=30).json()["value"]
    assert found and {i["status"] for i in found} == {"awaitingAction"}
    plain = call(emulator, "GET", "/v1.0/security/incidents/%s" % found[0]["id"]).json()
    assert plain["status"] == "unknownFutureValue"
