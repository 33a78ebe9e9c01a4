"""Vulnerability management endpoints: per-machine missing KBs / vulnerabilities / recommendations, the tenant-wide
lists and the paged software vulnerabilities export."""

from tests.emulator import api_tvm


def test_machine_missing_kbs_vulnerabilities_and_recommendations(emulator, api):
    m0 = emulator.machines[0]                      # Windows10, index 0: misses both Windows 10 KBs
    kbs = api.get("/api/machines/%s/getmissingkbs" % m0["id"])
    assert kbs.status_code == 200
    body = kbs.json()
    assert body["@odata.context"].endswith("#Collection(microsoft.windowsDefenderATP.api.PublicProductFixDto)")
    assert [k["id"] for k in body["value"]] == ["5031356", "5032189"]
    first = body["value"][0]
    assert set(first) == {"id", "name", "productsNames", "url", "machineMissedOn", "cveAddressed"}
    assert first["url"].endswith("?q=KB5031356") and first["productsNames"] == ["windows_10"]
    # machineMissedOn counts the onboarded Windows10 machines missing it (i % 3 != 2)
    expected = sum(1 for i, m in enumerate(emulator.machines) if m["osPlatform"] == "Windows10"
                   and m["onboardingStatus"] == "Onboarded" and i % 3 != 2)
    assert first["machineMissedOn"] == expected

    vulns = api.get("/api/machines/%s/vulnerabilities" % m0["computerDnsName"]).json()["value"]
    assert sorted(v["id"] for v in vulns) == sorted(["CVE-2023-36884", "CVE-2023-41772", "CVE-2023-36025", "CVE-2023-36397"])
    critical = next(v for v in vulns if v["id"] == "CVE-2023-36397")
    assert (critical["severity"], critical["publicExploit"], critical["exploitVerified"], critical["exploitInKit"]) == (
        "Critical", True, False, False)
    recos = api.get("/api/machines/%s/recommendations" % m0["id"]).json()["value"]
    assert [r["id"] for r in recos] == ["va-_-microsoft-_-windows_10"] and recos[0]["weaknesses"] == 4

    linux = emulator.machines[15]                  # Linux, odd index: curl CVE, no KB
    assert api.get("/api/machines/%s/getmissingkbs" % linux["id"]).json()["value"] == []
    assert [v["id"] for v in api.get("/api/machines/%s/vulnerabilities" % linux["id"]).json()["value"]] == ["CVE-2023-38545"]
    assert api.get("/api/machines/%s/getmissingkbs" % ("0" * 40)).status_code == 404


def test_permissions(emulator, api_for):
    readonly = api_for("readonly")
    m0 = emulator.machines[0]["id"]
    for path in ("/api/machines/%s/getmissingkbs" % m0, "/api/machines/%s/vulnerabilities" % m0,
                 "/api/machines/%s/recommendations" % m0, "/api/machines/SoftwareVulnerabilitiesByMachine",
                 "/api/vulnerabilities", "/api/vulnerabilities/machinesVulnerabilities"):
        resp = readonly.get(path)
        assert resp.status_code == 403, path
    assert "Software.Read.All" in readonly.get("/api/machines/%s/getmissingkbs" % m0).json()["error"]["message"]


def test_export_paging_and_top(emulator, api):
    records = api_tvm.data(emulator.state).export_records()
    assert len(records) > 40
    whole = api.get("/api/machines/SoftwareVulnerabilitiesByMachine").json()
    assert "@odata.nextLink" not in whole and whole["value"] == records
    seen, url, calls = [], "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=40", 0
    while url:
        data = (api.get(url) if url.startswith("/") else api.session.get(url, timeout=30)).json()
        seen.extend(data["value"])
        url = data.get("@odata.nextLink")
        calls += 1
    assert seen == records and calls == (len(records) + 39) // 40
    top = api.get("/api/machines/SoftwareVulnerabilitiesByMachine?$top=5").json()
    assert len(top["value"]) == 5 and "@odata.nextLink" not in top
    assert api.get("/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=200001").status_code == 400
    rec = next(r for r in records if r["recommendedSecurityUpdateId"] == "5031356")
    assert rec["cveId"] in api_tvm.KBS["5031356"][2] and rec["exploitabilityLevel"] in api_tvm.EXPLOIT_FLAGS
    # non-onboarded machines have no TVM data
    assert {r["deviceId"] for r in records} <= {m["id"] for m in emulator.machines if m["onboardingStatus"] == "Onboarded"}


def test_tenant_lists_and_filters(emulator, api):
    vulns = api.get("/api/vulnerabilities?$filter=severity eq 'Critical'").json()["value"]
    assert sorted(v["id"] for v in vulns) == ["CVE-2023-35349", "CVE-2023-36397", "CVE-2023-38545"]
    assert api.get("/api/vulnerabilities?$top=8001").status_code == 400
    rows = api.get("/api/vulnerabilities/machinesVulnerabilities?$filter=fixingKbId eq '5031356'").json()["value"]
    missing = {m["id"] for i, m in enumerate(emulator.machines) if m["osPlatform"] == "Windows10"
               and m["onboardingStatus"] == "Onboarded" and i % 3 != 2}
    assert {r["machineId"] for r in rows} == missing and {r["fixingKbId"] for r in rows} == {"5031356"}
    assert api.get("/api/vulnerabilities/machinesVulnerabilities?$filter=exploitability eq 'x'").status_code == 400
