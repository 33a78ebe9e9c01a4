"""mde_advanced_hunting with api: mde (the retiring /api/advancedqueries/run) through real ansible-playbook runs against
the emulator (Microsoft Graph, the default API, is tested in test_graph.py).

Expected rows are computed from the emulator's own data (``emulator.machines`` and its process events), and every
test checks what the emulator received: the exact request bodies, the retried 429, no call for bad input.
"""
import collections

HUNT = "defender.endpoint.mde_advanced_hunting"
PATH = "/api/advancedqueries/run"

BY_GROUP = ('DeviceInfo | where OSPlatform startswith "Windows" and OnboardingStatus == "Onboarded" '
            '| summarize count() by MachineGroup')
SERVERS = 'DeviceInfo | where DeviceName startswith "srv-" | project DeviceId, DeviceName, OSPlatform | take 3'
POWERSHELL = ("DeviceProcessEvents | where InitiatingProcessFileName =~ 'POWERSHELL.EXE' "
              "| project DeviceId, FileName | limit 4")


def hunts(emulator):
    return [e for e in emulator.log if e["path"] == PATH]


def hunt(name, **args):
    return {"name": name, HUNT: dict(args, api="mde")}


def failing(name, **args):
    return {"name": name, HUNT: dict(args, api="mde"), "ignore_errors": True}


def test_queries_return_the_rows_the_data_holds_in_check_mode_too_and_429_is_waited_out(ansible, emulator):
    machines = emulator.machines
    per_group = collections.Counter(m["rbacGroupName"] for m in machines
                                    if m["osPlatform"].lower().startswith("windows") and m["onboardingStatus"] == "Onboarded")
    servers = [m for m in machines if (m["computerDnsName"] or "").lower().startswith("srv-")][:3]
    powershell = [e for e in emulator.state.process_events()
                  if (e["InitiatingProcessFileName"] or "").lower() == "powershell.exe"][:4]
    assert len(per_group) == 3 and len(servers) == 3 and len(powershell) == 4

    emulator.inject_fault(r"/advancedqueries/run$", "status", count=1, status=429, retry_after=1)
    result = ansible.playbook(tasks=[
        hunt("by group", query=BY_GROUP),
        hunt("servers", query=SERVERS, timeout=60),
        hunt("powershell", query=POWERSHELL),
        dict(hunt("by group in check mode", query=BY_GROUP), check_mode=True),
    ])
    assert result.rc == 0, result

    by_group = result.task("by group")
    assert by_group["changed"] is False
    assert by_group["schema"] == [{"name": "MachineGroup", "type": "String"}, {"name": "count_", "type": "Int64"}]
    assert dict((r["MachineGroup"], r["count_"]) for r in by_group["results"]) == dict(per_group)
    assert by_group["row_count"] == len(per_group)

    srv = result.task("servers")
    assert srv["schema"] == [{"name": "DeviceId", "type": "String"}, {"name": "DeviceName", "type": "String"},
                             {"name": "OSPlatform", "type": "String"}]
    assert srv["results"] == [{"DeviceId": m["id"], "DeviceName": m["computerDnsName"], "OSPlatform": m["osPlatform"]}
                              for m in servers]
    assert srv["row_count"] == 3

    ps = result.task("powershell")
    assert ps["results"] == [{"DeviceId": e["DeviceId"], "FileName": e["FileName"]} for e in powershell]

    check = result.task("by group in check mode")
    assert check["changed"] is False and check["results"] == by_group["results"]

    # The first call met HTTP 429 and was sent again after Retry-After; every body is exactly {"Query": ...}.
    calls = hunts(emulator)
    assert [(e["method"], e["status"]) for e in calls] == [("POST", 429)] + [("POST", 200)] * 4
    assert [e["body"] for e in calls] == [{"Query": q} for q in (BY_GROUP, BY_GROUP, SERVERS, POWERSHELL, BY_GROUP)]
    assert calls[1]["time"] - calls[0]["time"] >= 1.0
    assert not [e for e in emulator.writes() if e["path"] != PATH]


def test_rejected_queries_fail_with_the_api_message_and_bad_input_makes_no_call(ansible, emulator):
    result = ansible.playbook(tasks=[
        failing("unknown table", query="DeviceNetworkEvents | take 1"),
        failing("unsupported operator", query="DeviceInfo | join kind=inner (DeviceProcessEvents) on DeviceId"),
        failing("empty query", query="   "),
        failing("timeout too long", query="DeviceInfo | take 1", timeout=600),
        failing("timeout zero", query="DeviceInfo | take 1", timeout=0),
    ])
    table = result.task("unknown table")
    assert table["failed"] is True and table["status"] == 400 and table["error_code"] == "BadRequest"
    assert "Unsupported table 'DeviceNetworkEvents'" in table["msg"]
    assert table["msg"].startswith("POST /api/advancedqueries/run failed: HTTP 400")
    assert table["error_message"].startswith("Unsupported table") and table["error_message"].rstrip(".") in table["msg"]
    operator = result.task("unsupported operator")
    assert operator["failed"] is True and "Unsupported operator" in operator["msg"] and "join" in operator["msg"]
    assert "query must not be empty" in result.task("empty query")["msg"]
    for name in ("timeout too long", "timeout zero"):
        res = result.task(name)
        assert res["failed"] is True and "timeout must be between 1 and 210" in res["msg"]
    # Only the two queries reached the API; the bad input made no call (and asked for no token).
    assert [(e["body"], e["status"]) for e in hunts(emulator)] == [
        ({"Query": "DeviceNetworkEvents | take 1"}, 400),
        ({"Query": "DeviceInfo | join kind=inner (DeviceProcessEvents) on DeviceId"}, 400)]


def test_an_app_without_advanced_query_permission_is_told_which_one(ansible, emulator):
    result = ansible.playbook(app="readonly", tasks=[failing("hunt", query="DeviceInfo | take 1")])
    res = result.task("hunt")
    assert res["failed"] is True and res["status"] == 403
    assert res["permission"] == "AdvancedQuery.Read.All" and "AdvancedQuery.Read.All" in res["msg"]
    assert [e["status"] for e in hunts(emulator)] == [403]
