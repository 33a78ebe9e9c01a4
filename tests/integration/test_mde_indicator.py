"""mde_indicator and mde_indicator_info through real ansible-playbook runs against the emulator."""
import hashlib

import yaml

from tests.emulator import Emulator
from tests.integration.harness import Ansible

M = "defender.endpoint.mde_indicator"
INFO = "defender.endpoint.mde_indicator_info"
SHA256 = "B5C2D8B43A0AF9B0B5D1E1D4E2DAC0A07E6F9D7C8A1F2B3C4D5E6F708192A3B4"


def task(name, args, module=M, **extra):
    out = {"name": name, module: args}
    out.update(extra)
    return out


def indicator_api_writes(emulator):
    return [e for e in emulator.writes() if e["path"].startswith("/api/indicators")]


def indicator_gets(emulator):
    return [e for e in emulator.log if e["method"] == "GET" and e["path"] == "/api/indicators"]


def test_single_create_rerun_update_delete(ansible, emulator):
    base = dict(indicator_value=SHA256, indicator_type="FileSha256", action="Block", title="Dropper",
                description="Seen in incident 4711", rbac_group_names=["Servers"])
    r = ansible.playbook(tasks=[
        task("create (check)", base, check_mode=True),
        task("create", base),
        task("rerun", base),
        # lower-case spelling of the same hash: the same indicator, found again
        task("update severity", dict(base, indicator_value=SHA256.lower(), severity="High")),
        task("info", dict(indicator_value=SHA256.lower(), indicator_type="FileSha256"), module=INFO),
        task("delete", dict(indicator_value=SHA256, indicator_type="FileSha256", state="absent")),
        task("delete again", dict(indicator_value=SHA256, indicator_type="FileSha256", state="absent")),
    ], diff=True)
    assert r.rc == 0, r
    check, create, rerun = r.task("create (check)"), r.task("create"), r.task("rerun")
    assert check["changed"] and check["counts"]["created"] == 1 and "id" not in check["indicator"]
    assert create["changed"] and create["counts"] == dict(created=1, updated=0, deleted=0, unchanged=0, failed=0)
    ident = create["indicator"]["id"]
    assert create["indicator"]["indicatorValue"] == SHA256.lower() and create["diff"]["before"] == {}
    assert not rerun["changed"] and rerun["counts"]["unchanged"] == 1 and rerun["indicator"]["id"] == ident
    update = r.task("update severity")
    assert update["changed"] and update["counts"]["updated"] == 1 and update["indicator"]["id"] == ident
    assert update["indicator"]["severity"] == "High"
    assert update["diff"]["before"]["severity"] == "Informational" and update["diff"]["after"]["severity"] == "High"
    assert [i["id"] for i in r.task("info")["indicators"]] == [ident]
    delete, again = r.task("delete"), r.task("delete again")
    assert delete["changed"] and delete["counts"]["deleted"] == 1 and delete["indicator"]["id"] == ident
    assert not again["changed"] and again["indicator"] is None and again["counts"]["unchanged"] == 1

    # Exactly three writes: create, update, delete. Check mode, the re-run and the second delete wrote nothing.
    writes = indicator_api_writes(emulator)
    assert [(w["method"], w["path"]) for w in writes] == [
        ("POST", "/api/indicators"), ("POST", "/api/indicators"), ("DELETE", "/api/indicators/%s" % ident)]
    assert writes[0]["body"] == {"indicatorValue": SHA256.lower(), "indicatorType": "FileSha256", "action": "Block",
                                 "title": "Dropper", "description": "Seen in incident 4711", "rbacGroupNames": ["Servers"]}
    assert writes[1]["body"]["severity"] == "High"
    # each state read is one filtered list call, never a scan of all indicators
    gets = indicator_gets(emulator)
    assert len(gets) == 7
    assert gets[0]["query"]["$filter"] == "(indicatorValue eq '%s' or indicatorValue eq '%s')" % (SHA256.lower(), SHA256)
    assert all(g["query"].get("$filter") for g in gets)
    assert SHA256.lower() not in [i["indicatorValue"].lower() for i in emulator.indicators]


def feed(count, title="Feed"):
    items = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            value, itype = hashlib.sha256(b"feed%d" % i).hexdigest(), "FileSha256"
        elif kind == 1:
            value, itype = "10.%d.%d.%d" % (i // 65536 % 256, i // 256 % 256, i % 256), "IpAddress"
        elif kind == 2:
            value, itype = "host%d.bad.example.com" % i, "DomainName"
        else:
            value, itype = "http://phish%d.example.net/login" % i, "Url"
        items.append(dict(indicator_value=value, indicator_type=itype, action="Block", title=title,
                          description="Feed item %d" % i, severity="Medium"))
    return items


def feed_play(ansible, name, items, tasks):
    (ansible.tmp_path / name).write_text(yaml.safe_dump({"feed": items}))
    return [{"name": name, "hosts": "localhost", "gather_facts": False, "vars_files": [name], "tasks": tasks}]


def test_1200_indicators_in_three_imports_then_no_write(ansible, emulator):
    items = feed(1200)
    args = {"indicators": "{{ feed }}"}
    r = ansible.playbook(plays=feed_play(ansible, "feed.yml", items, [
        task("sync (check)", args, check_mode=True), task("sync", args), task("rerun", args)]))
    assert r.rc == 0, r
    check, sync, rerun = r.task("sync (check)"), r.task("sync"), r.task("rerun")
    assert check["changed"] and check["counts"]["created"] == 1200
    assert sync["changed"] and sync["counts"] == dict(created=1200, updated=0, deleted=0, unchanged=0, failed=0)
    assert [i["result"] for i in sync["indicators"]] == ["created"] * 1200
    assert sync["indicators"][5]["entity"]["id"] and sync["indicators"][5]["indicator_value"] == items[5]["indicator_value"]
    assert not rerun["changed"] and rerun["counts"]["unchanged"] == 1200
    writes = indicator_api_writes(emulator)
    assert [w["path"] for w in writes] == ["/api/indicators/import"] * 3
    assert [len(w["body"]["Indicators"]) for w in writes] == [500, 500, 200]
    assert writes[0]["body"]["Indicators"][1] == {
        "indicatorValue": items[1]["indicator_value"], "indicatorType": "IpAddress", "action": "Block", "title": "Feed",
        "description": "Feed item 1", "severity": "Medium"}
    # one list call per run (1,220 indicators fit one page of 10,000)
    assert len(indicator_gets(emulator)) == 3 and all(g["query"]["$top"] == "10000" for g in indicator_gets(emulator))
    assert len(emulator.indicators) == 1220

    # One changed title -> one indicator imported; then 600 removed -> two BatchDelete calls.
    emulator.clear_log()
    changed = [dict(item) for item in items]
    changed[7]["title"] = "Feed (revised)"
    absent = [dict(indicator_value=i["indicator_value"], indicator_type=i["indicator_type"]) for i in items[:600]]
    (ansible.tmp_path / "absent.yml").write_text(yaml.safe_dump({"gone": absent}))
    plays = feed_play(ansible, "feed2.yml", changed, [
        task("one changed", {"indicators": "{{ feed }}"}),
        task("remove 600", {"indicators": "{{ gone }}", "state": "absent"}),
        task("remove 600 again", {"indicators": "{{ gone }}", "state": "absent"})])
    plays[0]["vars_files"].append("absent.yml")
    r = ansible.playbook(plays=plays, diff=True)
    assert r.rc == 0, r
    one = r.task("one changed")
    assert one["counts"] == dict(created=0, updated=1, deleted=0, unchanged=1199, failed=0)
    assert one["indicators"][7]["result"] == "updated" and one["indicators"][7]["changes"] == ["title"]
    key = "Url %s" % items[7]["indicator_value"]
    assert one["diff"]["before"] == {key: {"indicatorValue": items[7]["indicator_value"], "indicatorType": "Url",
                                           "action": "Block", "title": "Feed", "description": "Feed item 7",
                                           "severity": "Medium"}}
    assert one["diff"]["after"][key]["title"] == "Feed (revised)"
    assert r.task("remove 600")["counts"]["deleted"] == 600
    assert not r.task("remove 600 again")["changed"] and r.task("remove 600 again")["counts"]["unchanged"] == 600
    writes = indicator_api_writes(emulator)
    assert [(w["path"], len(w["body"].get("Indicators") or w["body"].get("IndicatorIds"))) for w in writes] == [
        ("/api/indicators/import", 1), ("/api/indicators/BatchDelete", 500), ("/api/indicators/BatchDelete", 100)]
    assert writes[0]["body"]["Indicators"][0]["title"] == "Feed (revised)"
    assert len(emulator.indicators) == 620


def test_purge_removes_only_what_this_app_created(ansible, emulator):
    full_id = emulator.apps["full"]["client_id"]
    before = {i["id"]: i for i in emulator.indicators}
    mine = sorted(i for i, ind in before.items() if ind["createdBy"] == full_id)
    others = sorted(i for i, ind in before.items() if ind["createdBy"] != full_id)
    assert len(mine) >= 3 and {before[i]["createdBy"] for i in others} >= {"secop@contoso.com", emulator.apps["ti_own"]["client_id"]}
    keep = before[mine[0]]
    desired = [dict(indicator_value=keep["indicatorValue"], indicator_type=keep["indicatorType"], action=keep["action"],
                    title=keep["title"], description=keep["description"])] + feed(2, title="New")
    args = {"indicators": desired, "purge": True}
    r = ansible.playbook(tasks=[task("purge (check)", args, check_mode=True), task("purge", args), task("rerun", args)])
    assert r.rc == 0, r
    check, purge, rerun = r.task("purge (check)"), r.task("purge"), r.task("rerun")
    expected = dict(created=2, updated=0, deleted=len(mine) - 1, unchanged=1, failed=0)
    assert check["counts"] == expected and purge["counts"] == expected
    purged = [i for i in purge["indicators"] if i.get("purged")]
    assert sorted(i["entity"]["id"] for i in purged) == mine[1:] and all(i["result"] == "deleted" for i in purged)
    assert not rerun["changed"] and rerun["counts"] == dict(created=0, updated=0, deleted=0, unchanged=3, failed=0)
    writes = indicator_api_writes(emulator)
    assert [w["path"] for w in writes] == ["/api/indicators/BatchDelete", "/api/indicators/import"]
    assert sorted(writes[0]["body"]["IndicatorIds"]) == mine[1:]
    after = {i["id"] for i in emulator.indicators}
    assert set(others) <= after and mine[0] in after and not after & set(mine[1:])


def test_invalid_values_fail_before_any_call(ansible, emulator):
    good = dict(action="Block", title="t", description="d")
    cases = {
        "FileSha1": ("FileSha1", "220e7d15b011d7fac48f2bd61114db1022197f7", "40 hexadecimal characters, got 39"),
        "FileSha256": ("FileSha256", "zz" * 32, "hexadecimal"),
        "FileMd5": ("FileMd5", "d41d8cd98f00b204e9800998ecf8427e00", "32 hexadecimal characters, got 34"),
        "CertificateThumbprint": ("CertificateThumbprint", "AB:CD:EF", "without separators"),
        "IpAddress CIDR": ("IpAddress", "10.0.0.0/8", "CIDR"),
        "DomainName": ("DomainName", "*.contoso.com", "wildcards"),
        "Url": ("Url", "ftp://contoso.com/x", "only http"),
    }
    tasks = [task(name, dict(good, indicator_value=value, indicator_type=itype), ignore_errors=True)
             for name, (itype, value, _text) in cases.items()]
    items = feed(3)
    items[2]["indicator_value"] = "host 2.bad.example.com"
    tasks += [
        task("list item", {"indicators": items}, ignore_errors=True),
        task("audit without alert", dict(good, indicator_value="1.2.3.4", indicator_type="IpAddress", action="Audit"),
             ignore_errors=True),
        task("cert block", dict(good, indicator_value="A" * 40, indicator_type="CertificateThumbprint"), ignore_errors=True),
        task("purge without client id", {"indicators": [], "purge": True}, ignore_errors=True,
             environment={"MDE_CLIENT_ID": ""}),
        task("info bad limit", {"limit": 0}, module=INFO, ignore_errors=True),
    ]
    r = ansible.playbook(tasks=tasks)
    assert r.rc == 0, r
    for name, (itype, value, text) in cases.items():
        res = r.task(name)
        assert res.get("failed") and text in res["msg"] and value in res["msg"] and itype in res["msg"], (name, res)
    assert r.task("list item")["msg"].startswith("indicators[2] (DomainName host 2.bad.example.com): invalid DomainName")
    assert "Audit requires generate_alert: true" in r.task("audit without alert")["msg"]
    assert "action Block is not supported for CertificateThumbprint" in r.task("cert block")["msg"]
    assert "purge" in r.task("purge without client id")["msg"] and "client_id" in r.task("purge without client id")["msg"]
    assert r.task("info bad limit")["failed"]
    assert emulator.log == [] and emulator.counters["token_requests"] == 0


def test_ti_readwrite_app_sees_and_touches_only_its_own(ansible, emulator):
    own_id = emulator.apps["ti_own"]["client_id"]
    before = {i["id"]: i for i in emulator.indicators}
    own = sorted(i for i, ind in before.items() if ind["createdBy"] == own_id)
    foreign = before[next(i for i, ind in before.items() if ind["createdBy"] != own_id)]
    foreign_args = dict(indicator_value=foreign["indicatorValue"], indicator_type=foreign["indicatorType"])
    r = ansible.playbook(app="ti_own", tasks=[
        task("list", {}, module=INFO),
        task("absent (not visible)", dict(foreign_args, state="absent")),
        task("overwrite foreign", dict(foreign_args, action="Allowed", title="x", description="y"), ignore_errors=True),
        task("import foreign and new", {"indicators": [dict(foreign_args, action="Allowed", title="x", description="y")]
                                        + feed(1, title="Own")}, ignore_errors=True),
        task("purge all own", {"indicators": [], "purge": True}),
    ])
    assert r.rc == 0, r
    assert sorted(i["id"] for i in r.task("list")["indicators"]) == own
    assert not r.task("absent (not visible)")["changed"]
    failed = r.task("overwrite foreign")
    assert failed["failed"] and failed["status"] == 403 and "Ti.ReadWrite.All" in failed["msg"]
    mixed = r.task("import foreign and new")
    assert mixed["failed"] and mixed["changed"] and mixed["counts"]["created"] == 1 and mixed["counts"]["failed"] == 1
    assert mixed["msg"].startswith("Defender refused 1 of 2 indicators written: indicators[0] (%s %s): Forbidden"
                                   % (foreign["indicatorType"], foreign["indicatorValue"]))
    assert [i["result"] for i in mixed["indicators"]] == ["failed", "created"]
    new_id = mixed["indicators"][1]["entity"]["id"]
    assert r.task("purge all own")["counts"]["deleted"] == len(own) + 1
    writes = indicator_api_writes(emulator)
    assert [w["path"] for w in writes] == ["/api/indicators", "/api/indicators/import", "/api/indicators/BatchDelete"]
    assert sorted(writes[2]["body"]["IndicatorIds"]) == sorted(own + [new_id])
    after = {i["id"]: i for i in emulator.indicators}
    assert set(after) == set(before) - set(own) and after[foreign["id"]] == foreign


def test_info_filters(ansible, emulator):
    full_id = emulator.apps["full"]["client_id"]
    cert = next(i for i in emulator.indicators if i["indicatorType"] == "CertificateThumbprint")
    r = ansible.playbook(tasks=[
        task("by type, action, creator", {"indicator_type": ["FileSha1", "IpAddress"], "action": ["BlockAndRemediate", "Block"],
                                          "created_by": full_id}, module=INFO),
        task("by value, lower case", {"indicator_value": cert["indicatorValue"].lower()}, module=INFO),
        task("limit", {"limit": 3, "odata_filter": "severity ne 'High'"}, module=INFO),
    ])
    assert r.rc == 0, r
    expected = sorted(i["id"] for i in emulator.indicators if i["indicatorType"] in ("FileSha1", "IpAddress")
                      and i["action"] in ("BlockAndRemediate", "Block") and i["createdBy"] == full_id)
    first = r.task("by type, action, creator")
    assert expected and sorted(i["id"] for i in first["indicators"]) == expected
    assert first["filter"] == ("(indicatorType eq 'FileSha1' or indicatorType eq 'IpAddress') and "
                               "(action eq 'BlockAndRemediate' or action eq 'Block') and createdBy eq '%s'" % full_id)
    assert [i["id"] for i in r.task("by value, lower case")["indicators"]] == [cert["id"]]
    limited = r.task("limit")["indicators"]
    assert len(limited) == 3 and all(i["severity"] != "High" for i in limited)
    assert emulator.writes() == []


def test_tenant_limit_fails_before_writing(tmp_path):
    with Emulator(state_dir=tmp_path / "emu", machines=5, indicators=14995) as emu:
        ansible = Ansible(emu, tmp_path)
        small = feed(6)  # 6 new (filtered read + a count of every indicator)
        big = feed(20)   # 20 new (one read of every indicator)
        r = ansible.playbook(tasks=[task("small", {"indicators": small}, ignore_errors=True),
                                    task("big", {"indicators": big}, ignore_errors=True),
                                    task("fits", {"indicators": small[:5]})])
        assert r.rc == 0, r
        for name, n in (("small", 6), ("big", 20)):
            res = r.task(name)
            assert res["failed"] and "limit of 15000" in res["msg"] and "Nothing was written" in res["msg"], res
            assert res["counts"]["created"] == n
        assert r.task("fits")["counts"]["created"] == 5
        writes = [e for e in emu.writes() if e["path"].startswith("/api/indicators")]
        assert [(w["path"], len(w["body"]["Indicators"])) for w in writes] == [("/api/indicators/import", 5)]
        assert len(emu.indicators) == 15000


def test_import_retried_after_server_error_and_failed_call_reported(ansible, emulator):
    emulator.inject_fault(r"^/api/indicators/import$", "status", count=1, status=503)
    r = ansible.playbook(tasks=[task("retried", {"indicators": feed(3)})])
    assert r.rc == 0, r
    assert r.task("retried")["counts"]["created"] == 3
    assert [w["status"] for w in indicator_api_writes(emulator)] == [503, 200]
    emulator.clear_log()
    emulator.inject_fault(r"^/api/indicators/import$", "status", count=1, status=400)
    r = ansible.playbook(tasks=[task("refused", {"indicators": feed(5)}, ignore_errors=True)])
    res = r.task("refused")
    assert res["failed"] and not res["changed"] and res["status"] == 400
    assert "0 of the 2 indicators to change had been changed before this call" in res["msg"]
    assert res["updated_ids"] == [] and res["counts"]["created"] == 2
    assert len(indicator_api_writes(emulator)) == 1


def test_values_as_users_paste_them_are_one_indicator(ansible, emulator):
    """Compressed IPv6, upper-case domains with a trailing dot, upper-case hashes: sent in the form the API wants
    (IPv6 in 8 groups, which the API requires), and a re-run with another spelling changes nothing."""
    common = dict(action="Block", title="pasted", description="pasted")
    first = ansible.playbook(tasks=[
        task("ipv6", dict(common, indicator_value="2001:db8::77", indicator_type="IpAddress")),
        task("domain", dict(common, indicator_value="Evil.Example.COM.", indicator_type="DomainName")),
        task("hash", dict(common, indicator_value=SHA256, indicator_type="FileSha256")),
    ])
    assert first.rc == 0, first
    sent = sorted(w["body"]["indicatorValue"] for w in indicator_api_writes(emulator))
    assert sent == sorted(["2001:db8:0:0:0:0:0:77", "evil.example.com", SHA256.lower()])
    emulator.clear_log()
    again = ansible.playbook(tasks=[
        task("ipv6", dict(common, indicator_value="2001:DB8:0:0:0:0:0:0077", indicator_type="IpAddress")),
        task("domain", dict(common, indicator_value="evil.example.com", indicator_type="DomainName")),
        task("hash", dict(common, indicator_value=SHA256.lower(), indicator_type="FileSha256")),
    ])
    assert again.rc == 0, again
    assert [again.task(n)["changed"] for n in ("ipv6", "domain", "hash")] == [False, False, False]
    assert indicator_api_writes(emulator) == []
