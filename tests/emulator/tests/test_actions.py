"""Machine actions lifecycle."""

import io
import time
import zipfile

import requests


def _wait_final(api, action_id, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = api.get("/api/machineactions/%s" % action_id).json()
        if body["status"] in ("Succeeded", "Failed", "Cancelled", "TimeOut"):
            return body
        time.sleep(0.1)
    raise AssertionError("action did not finish")


def test_isolate_lifecycle_and_duplicate(emulator, api):
    m = emulator.machines[0]
    resp = api.post("/api/machines/%s/isolate" % m["id"], json={"Comment": "test", "IsolationType": "Selective"})
    assert resp.status_code == 201
    action = resp.json()
    assert action["@odata.context"].endswith("#MachineActions/$entity")
    assert action["type"] == "Isolate" and action["scope"] == "Selective" and action["status"] == "Pending"
    assert action["requestor"] == emulator.apps["full"]["client_id"] and action["requestorComment"] == "test"
    assert action["machineId"] == m["id"] and action["computerDnsName"] == m["computerDnsName"]
    for key in ("creationDateTimeUtc", "lastUpdateDateTimeUtc", "relatedFileInfo", "cancellationRequestor", "title", "requestSource"):
        assert key in action
    dup = api.post("/api/machines/%s/isolate" % m["id"], json={"Comment": "again", "IsolationType": "Full"})
    assert dup.status_code == 400
    assert dup.json()["error"]["code"] == "ActiveRequestAlreadyExists" and dup.json()["error"]["message"] == "Action is already in progress"
    final = _wait_final(api, action["id"])
    assert final["status"] == "Succeeded"
    listed = api.get("/api/machineactions", params={"$filter": "machineId eq '%s' and type eq 'Isolate'" % m["id"]}).json()["value"]
    assert [a["id"] for a in listed] == [action["id"]] and "lastUpdateTimeUtc" in listed[0]
    assert api.post("/api/machines/%s/isolate" % m["id"], json={"Comment": "now ok"}).status_code == 201


def test_forced_failure_and_cancel(emulator, api):
    m = emulator.machines[4]
    emulator.set_action_outcome(m["id"], "RunAntiVirusScan", "Failed")
    resp = api.post("/api/machines/%s/runAntiVirusScan" % m["id"], json={"Comment": "scan", "ScanType": "Quick"})
    assert resp.status_code == 201 and resp.json()["scope"] == "Quick"
    assert _wait_final(api, resp.json()["id"])["status"] == "Failed"
    resp = api.post("/api/machines/%s/restrictCodeExecution" % m["id"], json={"Comment": "r"})
    cancelled = api.post("/api/machineactions/%s/cancel" % resp.json()["id"], json={"Comment": "oops"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"
    assert cancelled.json()["cancellationComment"] == "oops"


def test_body_validation(emulator, api):
    m = emulator.machines[0]
    for body, code in (({"comment": "x"}, "InvalidRequestBody"), ({}, "MissingRequiredParameter"),
                       ({"Comment": "x", "IsolationType": "Partial"}, "InvalidRequestBody")):
        resp = api.post("/api/machines/%s/isolate" % m["id"], json=body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, body
    resp = api.post("/api/machines/%s/runAntiVirusScan" % m["id"], json={"Comment": "x"})
    assert resp.json()["error"]["code"] == "MissingRequiredParameter"
    resp = api.post("/api/machines/%s/StopAndQuarantineFile" % m["id"], json={"Comment": "x", "Sha1": "abc"})
    assert resp.json()["error"]["code"] == "InvalidHashValue"
    resp = api.post("/api/machines/%s/StopAndQuarantineFile" % m["id"], json={"Comment": "x", "Sha1": "a" * 40})
    assert resp.status_code == 201 and resp.json()["relatedFileInfo"] == {"fileIdentifier": "a" * 40, "fileIdentifierType": "Sha1"}
    resp = api.post("/api/machines/%s/offboard" % emulator.find_machines(osPlatform="Linux")[0]["id"], json={"Comment": "x"})
    assert resp.json()["error"]["code"] == "OsPlatformNotSupported"
    assert api.post("/api/machines/nope/isolate", json={"Comment": "x"}).status_code == 404
    resp = api.get("/api/machineactions/%s" % m["id"])
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadRequest"
    assert api.get("/api/machineactions/6b9a5f0e-0000-4000-8000-000000000000").status_code == 404


def test_package_uri(emulator, api):
    m = emulator.machines[6]
    action = api.post("/api/machines/%s/collectInvestigationPackage" % m["id"], json={"Comment": "pkg"}).json()
    assert api.get("/api/machineactions/%s/getPackageUri" % action["id"]).status_code == 404
    _wait_final(api, action["id"])
    resp = api.get("/api/machineactions/%s/GetPackageUri" % action["id"])
    assert resp.status_code == 200
    url = resp.json()["value"]
    assert url.startswith(emulator.url + "/_emulator/packages/")
    with zipfile.ZipFile(io.BytesIO(requests.get(url, verify=emulator.ca_path, timeout=10).content)) as archive:
        assert "README.txt" in archive.namelist()
    assert emulator.counters["calls"]["GET /api/machineactions/{id}/getPackageUri"] == 2
