"""Machines endpoints and OData."""

from tests.emulator import Emulator


def test_list_and_shape(emulator, api):
    resp = api.get("/api/machines")
    assert resp.status_code == 200
    data = resp.json()
    assert data["@odata.context"].endswith("/api/$metadata#Machines")
    assert "@odata.nextLink" not in data
    assert len(data["value"]) == 50
    first = data["value"][0]
    for key in ("id", "computerDnsName", "firstSeen", "lastSeen", "osPlatform", "onboardingStatus", "osProcessor", "version", "lastIpAddress",
                "lastExternalIpAddress", "osBuild", "healthStatus", "rbacGroupId", "rbacGroupName", "riskScore", "aadDeviceId", "machineTags",
                "exposureLevel", "deviceValue", "ipAddresses", "osArchitecture", "isAadJoined", "agentVersion", "vmMetadata"):
        assert key in first
    assert first["computerDnsName"] == "ws-00000.contoso.local" and first["machineTags"] == ["Finance", "VIP"]
    assert resp.headers["content-type"].startswith("application/json; odata.metadata=minimal")
    assert emulator.machines[1]["computerDnsName"] is None
    assert emulator.machines[2]["computerDnsName"] == emulator.machines[3]["computerDnsName"]
    assert len(emulator.find_machines(onboardingStatus="Onboarded")) == 47


def test_v1_alias_and_get_by_name(emulator, api):
    m = emulator.machines[4]
    assert api.get("/api/v1.0/machines/%s" % m["id"]).json()["id"] == m["id"]
    assert api.get("/api/machines/%s" % m["computerDnsName"]).json()["id"] == m["id"]
    dup = api.get("/api/machines/dup-00002.contoso.local").json()
    assert dup["id"] == emulator.machines[3]["id"]  # most recently seen one wins


def test_unknown_machine_404(api):
    resp = api.get("/api/machines/0000000000000000000000000000000000000000")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "ResourceNotFound"


def test_paging_top_skip(emulator, api):
    ids = []
    for skip in (0, 20, 40):
        page = api.get("/api/machines", params={"$top": 20, "$skip": skip}).json()
        assert "@odata.nextLink" not in page
        ids += [m["id"] for m in page["value"]]
    assert ids == [m["id"] for m in emulator.machines]
    resp = api.get("/api/machines", params={"$top": 10001})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "ODataError"


def test_next_link_without_top(tmp_path, monkeypatch):
    emu = Emulator(state_dir=tmp_path, machines=10050, alerts=10, indicators=0)
    emu.start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_path)
        from .conftest import Api  # pylint: disable=import-outside-toplevel
        client = Api(emu, emu.token_for("readonly"))
        first = client.get("/api/machines").json()
        assert len(first["value"]) == 10000
        assert "$skip=10000" in first["@odata.nextLink"].replace("%24", "$")
        second = client.session.get(first["@odata.nextLink"]).json()
        assert len(second["value"]) == 50 and "@odata.nextLink" not in second
    finally:
        emu.stop()


def test_no_machines_404(tmp_path, monkeypatch):
    emu = Emulator(state_dir=tmp_path, machines=0)
    emu.start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_path)
        from .conftest import Api  # pylint: disable=import-outside-toplevel
        assert Api(emu, emu.token_for("full")).get("/api/machines").status_code == 404
    finally:
        emu.stop()


def test_filters(emulator, api):
    vip = api.get("/api/machines", params={"$filter": "machineTags/any(t: t eq 'VIP')"}).json()["value"]
    assert [m["id"] for m in vip] == [emulator.machines[0]["id"]]
    linux = api.get("/api/machines", params={"$filter": "osPlatform eq 'Linux' and onboardingStatus eq 'Onboarded'"}).json()["value"]
    assert linux and all(m["osPlatform"] == "Linux" for m in linux)
    recent = api.get("/api/machines", params={"$filter": "lastSeen gt 2018-08-01Z"}).json()["value"]
    assert len(recent) == 50
    starts = api.get("/api/machines", params={"$filter": "startswith(computerDnsName,'srv-')"}).json()["value"]
    assert starts and all(m["computerDnsName"].startswith("srv-") for m in starts)
    grp = api.get("/api/machines", params={"$filter": "rbacGroupId eq 140 or (riskScore eq 'High' and not (healthStatus ne 'Active'))"})
    assert grp.status_code == 200
    for bad in ("computerDnsName eq", "foo eq 'x'", "machineTags eq 'x'", "riskScore eq 'High' and"):
        resp = api.get("/api/machines", params={"$filter": bad})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "ODataError", bad


def test_find_by_tag_ip(emulator, api):
    fin = api.get("/api/machines/findbytag", params={"tag": "Fin", "useStartsWithFilter": "true"}).json()["value"]
    assert len(fin) == len([m for m in emulator.machines if "Finance" in m["machineTags"]])
    assert api.get("/api/machines/findbytag", params={"tag": "Fin"}).json()["value"] == []
    m = emulator.machines[7]
    resp = api.get("/api/machines/findbyip(ip='%s',timestamp=%s)" % (m["lastIpAddress"], m["lastSeen"]))
    assert [x["id"] for x in resp.json()["value"]] == [m["id"]]


def test_update_tags_device_value(emulator, api):
    m = emulator.machines[5]
    resp = api.patch("/api/machines/%s" % m["id"], json={"machineTags": ["a", "b"], "deviceValue": "High"})
    assert resp.status_code == 200 and resp.json()["machineTags"] == ["a", "b"] and resp.json()["deviceValue"] == "High"
    assert api.post("/api/machines/%s/tags" % m["id"], json={"Value": "c", "Action": "Add"}).json()["machineTags"] == ["a", "b", "c"]
    assert api.post("/api/machines/%s/tags" % m["id"], json={"Value": "a", "Action": "Remove"}).json()["machineTags"] == ["b", "c"]
    resp = api.post("/api/machines/%s/tags" % m["id"], json={"value": "a", "Action": "Remove"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidRequestBody"
    resp = api.post("/api/machines/%s/setDeviceValue" % m["id"], json={"DeviceValue": "Low"})
    assert resp.json()["deviceValue"] == "Low"
    ids = [x["id"] for x in emulator.machines[:3]]
    resp = api.post("/api/machines/AddOrRemoveTagForMultipleMachines", json={"Value": "bulk", "Action": "Add", "MachineIds": ids})
    assert resp.status_code == 200 and all("bulk" in x["machineTags"] for x in resp.json()["value"])
    resp = api.post("/api/machines/AddOrRemoveTagForMultipleMachines", json={"Value": "bulk", "Action": "Add", "MachineIds": ["x"] * 501})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "MaximumBatchSizeExceeded"
    assert api.put("/api/machines/%s" % m["id"], json={}).status_code == 405
    assert [w["path"] for w in emulator.writes()][0] == "/api/machines/%s" % m["id"]


def test_a_reset_tenant_is_seeded_relative_to_the_moment_of_the_reset(emulator):
    """A long test session resets the same emulator: the first machine is still seen five minutes ago afterwards."""
    import datetime
    emulator.state.base_time -= datetime.timedelta(hours=1)   # as if the emulator had been started an hour ago
    emulator.reset()
    seen = datetime.datetime.strptime(emulator.machines[0]["lastSeen"][:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    assert datetime.timedelta(0) <= datetime.datetime.now(datetime.timezone.utc) - seen <= datetime.timedelta(minutes=10)
