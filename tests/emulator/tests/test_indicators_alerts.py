"""Indicators and alerts."""

INDICATOR = {"indicatorValue": "220e7d15b011d7fac48f2bd61114db1022197f7f", "indicatorType": "FileSha1", "action": "Block",
             "title": "t", "description": "d", "severity": "High"}


def test_indicator_submit_update_delete(emulator, api):
    resp = api.post("/api/indicators", json=INDICATOR)
    assert resp.status_code == 200
    created = resp.json()
    assert created["createdBy"] == emulator.apps["full"]["client_id"] and created["sourceType"] == "AadApp"
    again = api.post("/api/indicators", json=dict(INDICATOR, action="BlockAndRemediate")).json()
    assert again["id"] == created["id"] and again["action"] == "BlockAndRemediate"
    found = api.get("/api/indicators", params={"$filter": "indicatorValue eq '%s'" % INDICATOR["indicatorValue"]}).json()["value"]
    assert [i["id"] for i in found] == [created["id"]]
    assert api.delete("/api/indicators/%s" % created["id"]).status_code == 204
    assert api.delete("/api/indicators/%s" % created["id"]).status_code == 404


def test_indicator_validation(api):
    cases = [({"indicatorValue": "abc"}, "InvalidHashValue"), ({"indicatorType": "IpAddress", "indicatorValue": "10.0.0.0/8"}, "InvalidIpAddress"),
             ({"indicatorType": "DomainName", "indicatorValue": "not a domain"}, "InvalidDomainName"),
             ({"indicatorType": "Url", "indicatorValue": "http://"}, "InvalidUrl"), ({"action": "Audit"}, "InvalidInput"),
             ({"IndicatorValue": "x"}, "InvalidRequestBody")]
    for change, code in cases:
        resp = api.post("/api/indicators", json=dict(INDICATOR, **change))
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, change
    body = dict(INDICATOR)
    del body["title"]
    assert api.post("/api/indicators", json=body).json()["error"]["code"] == "MissingRequiredParameter"
    assert api.post("/api/indicators", json=dict(INDICATOR, action="Audit", generateAlert=True)).status_code == 200


def test_import_and_batch_delete(emulator, api):
    items = [dict(INDICATOR, indicatorValue="%040x" % k) for k in range(3)] + [dict(INDICATOR, indicatorValue="zz")]
    resp = api.post("/api/indicators/import", json={"Indicators": items})
    results = resp.json()["value"]
    assert [r["isFailed"] for r in results] == [False, False, False, True]
    assert results[3]["failureReason"] and results[0]["indicator"] == "%040x" % 0
    resp = api.post("/api/indicators/import", json={"Indicators": [INDICATOR] * 501})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "MaximumBatchSizeExceeded"
    ids = [r["id"] for r in results[:3]]
    assert api.post("/api/indicators/BatchDelete", json={"IndicatorIds": ids + ["999999"]}).status_code == 404
    assert api.post("/api/indicators/BatchDelete", json={"IndicatorIds": ids}).status_code == 204
    assert emulator.counters["calls"]["POST /api/indicators/import"] == 2


def test_ti_own_sees_only_its_indicators(emulator, api_for):
    own = api_for("ti_own")
    client_id = emulator.apps["ti_own"]["client_id"]
    listed = own.get("/api/indicators").json()["value"]
    assert listed and all(i["createdBy"] == client_id for i in listed)
    assert len(listed) < len(emulator.indicators)


def test_alerts_list_patch_batch(emulator, api):
    page = api.get("/api/alerts", params={"$top": 5}).json()
    assert len(page["value"]) == 5 and all(a["evidence"] == [] for a in page["value"])
    expanded = api.get("/api/alerts", params={"$top": 2, "$expand": "evidence"}).json()["value"]
    assert expanded[0]["evidence"] and expanded[0]["evidence"][0]["entityType"] == "User"
    new = api.get("/api/alerts", params={"$filter": "status eq 'New' and severity eq 'High'"}).json()["value"]
    assert new and all(a["status"] == "New" and a["severity"] == "High" for a in new)
    alert = new[0]
    resp = api.patch("/api/alerts/%s" % alert["id"], json={"status": "Resolved", "classification": "TruePositive", "determination": "Malware",
                                                           "comment": "done", "assignedTo": "me@contoso.com"})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "Resolved" and body["resolvedTime"]
    assert body["comments"][-1]["comment"] == "done" and body["lastUpdateTime"] > alert["lastUpdateTime"]
    bad = api.patch("/api/alerts/%s" % alert["id"], json={"status": "Closed"})
    assert bad.status_code == 400
    assert api.patch("/api/alerts/%s" % alert["id"], json={"Status": "New"}).json()["error"]["code"] == "InvalidRequestBody"
    ids = [a["id"] for a in new[:3]]
    resp = api.post("/api/alerts/batchUpdate", json={"alertIds": ids, "status": "InProgress", "assignedTo": "x@contoso.com"})
    assert resp.status_code == 200 and resp.content == b""
    assert all(emulator.state.alerts_by_id[i]["status"] == "InProgress" for i in ids)
    assert api.get("/api/alerts/nope").status_code == 404
    resp = api.get("/api/alerts", params={"$filter": "machineId eq 'x'"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "ODataError"
