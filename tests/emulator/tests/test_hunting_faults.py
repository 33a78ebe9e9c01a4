"""Advanced hunting subset, fault injection, request log, HTTP admin endpoints, CLI."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests


def test_hunting_subset(emulator, api):
    resp = api.post("/api/advancedqueries/run", json={"Query": "DeviceInfo | where OSPlatform == 'Linux' | project DeviceId, DeviceName | take 3"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["Schema"] == [{"Name": "DeviceId", "Type": "String"}, {"Name": "DeviceName", "Type": "String"}]
    assert len(body["Results"]) == 3
    body = api.post("/api/advancedqueries/run", json={"Query": "DeviceInfo | summarize count() by OSPlatform"}).json()
    assert sum(r["count_"] for r in body["Results"]) == len(emulator.machines)
    body = api.post("/api/advancedqueries/run", json={"Query": "DeviceProcessEvents | where Timestamp > ago(30d) | limit 5"}).json()
    assert len(body["Results"]) == 5 and body["Schema"][0] == {"Name": "Timestamp", "Type": "DateTime"}
    resp = api.post("/api/advancedqueries/run", json={"Query": "DeviceInfo | join (DeviceNetworkInfo) on DeviceId"})
    assert resp.status_code == 400 and "Supported subset" in resp.json()["error"]["message"]
    assert api.post("/api/advancedqueries/run", json={"query": "DeviceInfo"}).status_code == 400


def test_faults(emulator, api):
    emulator.inject_fault(r"^/api/machines$", "status", count=2, status=503)
    assert api.get("/api/machines").status_code == 503
    assert api.get("/api/machines").status_code == 503
    assert api.get("/api/machines").status_code == 200
    emulator.inject_fault(r"/api/machines", "status", status=429)
    resp = api.get("/api/machines")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1" and resp.json()["error"]["code"] == "TooManyRequests"
    emulator.inject_fault(r"/api/machines", "status", status=429, retry_after=None)
    assert "Retry-After" not in api.get("/api/machines").headers
    emulator.inject_fault(r"/api/machines", "drop")
    with pytest.raises(requests.ConnectionError):
        api.get("/api/machines")
    emulator.inject_fault(r"/api/machines", "invalid_json")
    resp = api.get("/api/machines")
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    emulator.inject_fault(r"/api/machines", "delay", delay=0.3, method="GET")
    start = time.time()
    assert api.get("/api/machines").status_code == 200 and time.time() - start >= 0.3
    emulator.inject_fault(r"/oauth2/v2.0/token", "status", status=500)
    assert requests.post("%s/%s/oauth2/v2.0/token" % (emulator.url, emulator.tenant_id), data={}, verify=emulator.ca_path,
                         timeout=10).status_code == 500


def test_request_log(emulator, api):
    emulator.clear_log()
    m = emulator.machines[0]
    api.get("/api/machines", params={"$top": "1"})
    api.post("/api/machines/%s/tags" % m["id"], json={"Value": "x", "Action": "Add"})
    log = emulator.log
    assert [(e["method"], e["status"]) for e in log] == [("GET", 200), ("POST", 200)]
    assert log[0]["query"] == {"$top": "1"} and log[0]["family"] == "machines"
    assert log[1]["body"] == {"Value": "x", "Action": "Add"} and log[1]["client_id"] == emulator.apps["full"]["client_id"]
    assert emulator.writes() == [log[1]]
    assert emulator.counters["calls"]["POST /api/machines/{id}/tags"] == 1


def test_http_admin(emulator, api):
    base = emulator.url + "/_emulator/"
    api.get("/api/machines")
    assert requests.get(base + "log", verify=emulator.ca_path, timeout=10).json()[-1]["path"] == "/api/machines"
    assert requests.get(base + "counters", verify=emulator.ca_path, timeout=10).json()["calls"]["GET /api/machines"] == 1
    conf = requests.get(base + "config", verify=emulator.ca_path, timeout=10).json()
    assert conf["tenant_id"] == emulator.tenant_id and "full" in conf["apps"]
    requests.post(base + "faults", json={"path_regex": "/api/alerts", "kind": "status", "status": 502}, verify=emulator.ca_path, timeout=10)
    assert api.get("/api/alerts").status_code == 502
    requests.post(base + "expire_tokens", verify=emulator.ca_path, timeout=10)
    assert api.get("/api/alerts").status_code == 401
    requests.post(base + "reset", verify=emulator.ca_path, timeout=10)
    assert emulator.log == []


def test_cli(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with subprocess.Popen([sys.executable, "-m", "tests.emulator", "--port", "0", "--machines", "5", "--state-dir", str(tmp_path)],
                          cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        _check_cli(proc, tmp_path)


def _check_cli(proc, tmp_path):
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        conf = json.loads((tmp_path / "config.json").read_text())
        assert conf["url"] == url and os.path.exists(conf["ca_path"])
        assert requests.get(url + "/_emulator/config", verify=conf["ca_path"], timeout=10).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
