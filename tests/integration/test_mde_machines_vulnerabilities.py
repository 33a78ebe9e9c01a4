"""The mde_machines inventory's vulnerabilities option and the patch_by_missing_kb playbook, through real
ansible-inventory / ansible-playbook runs against the emulator (50 machines, seed 1).

Expectations come from the emulator's own vulnerability data (tests/emulator/api_tvm.py); the request log shows that
the tenant-wide export is read in pages, never with a call per machine.
"""
import json

import yaml

from tests.emulator import api_tvm
from tests.integration.test_mde_machines_inventory import expected_names, inventory

PLUGIN = "defender.endpoint.mde_machines"
EXPORT = "/api/machines/SoftwareVulnerabilitiesByMachine"


def api_calls(emulator):
    return [e for e in emulator.log if e["path"].startswith("/api/")]


def expected_hosts(emulator):
    """host name -> (missing KB ids, [(cve, severity, exploitability, kb)]) for the onboarded machines."""
    data = api_tvm.data(emulator.state)
    onboarded = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded"]
    out = {}
    for name, machine_id in expected_names(onboarded).items():
        vulns, seen = [], set()
        for _vendor, _software, _version, cve, kb, _rec in data.findings.get(machine_id, []):
            if cve and cve not in seen:
                seen.add(cve)
                vulns.append((cve, api_tvm.CVES[cve][0], api_tvm.CVES[cve][2], kb))
        out[name] = (data.machine_kbs.get(machine_id, []), vulns)
    return out


def members(data, group):
    return sorted((data.get(group) or {}).get("hosts") or [])


def test_hostvars_and_groups_from_the_paged_export(ansible, emulator):
    records = api_tvm.data(emulator.state).export_records()
    r = inventory(ansible, {"plugin": PLUGIN, "vulnerabilities": {"enabled": True, "page_size": 50}})
    assert r.rc == 0, r
    hostvars = r.data["_meta"]["hostvars"]
    hosts = expected_hosts(emulator)
    assert sorted(hostvars) == sorted(hosts)
    for name, (kbs, vulns) in hosts.items():
        assert hostvars[name]["mde_missing_kbs"] == kbs, name
        assert [(v["cve"], v["severity"], v["exploitability"], v["kb"]) for v in hostvars[name]["mde_vulnerabilities"]] \
            == vulns, name
    m0 = emulator.machines[0]["computerDnsName"]
    assert hostvars[m0]["mde_missing_kbs"] == ["5031356", "5032189"]
    first = hostvars[m0]["mde_vulnerabilities"][0]
    assert set(first) == {"cve", "severity", "cvss_score", "exploitability", "software", "kb"}
    assert first["software"].startswith("windows_10 ") and isinstance(first["cvss_score"], float)
    # one group per missing KB, and the critical exploitable group
    all_kbs = {kb for kbs, _v in hosts.values() for kb in kbs}
    assert len(all_kbs) == 8
    for kb in all_kbs:
        assert members(r.data, "mde_missing_kb_KB%s" % kb) == sorted(n for n, (kbs, _v) in hosts.items() if kb in kbs)
    critical = sorted(n for n, (_k, vulns) in hosts.items()
                      if any(sev == "Critical" and level != "NoExploit" for _c, sev, level, _kb in vulns))
    assert critical and m0 in critical and members(r.data, "mde_critical_exploitable") == critical
    assert len(critical) < len(hosts)
    # a machine with no CVE (listed in the export with null-CVE rows only) gets empty lists
    clean = [n for n, (kbs, vulns) in hosts.items() if not kbs and not vulns]
    assert clean and all(hostvars[n]["mde_missing_kbs"] == [] == hostvars[n]["mde_vulnerabilities"] for n in clean)
    # The export in pages of 50, following nextLink; one machine listing; no call per machine; one token.
    calls = api_calls(emulator)
    exports = [e for e in calls if e["path"] == EXPORT]
    assert len(exports) == (len(records) + 49) // 50
    assert exports[0]["query"] == {"pageSize": "50"} and all("$skiptoken" in e["query"] for e in exports[1:])
    assert {e["route"] for e in calls} == {"GET /api/machines", "GET " + EXPORT}
    assert len([e for e in calls if e["path"] == "/api/machines"]) == 1
    assert emulator.counters["token_requests"] == 1


def test_default_one_export_call_groups_off_disabled_and_bad_options(ansible, emulator):
    r = inventory(ansible, {"plugin": PLUGIN, "vulnerabilities": {"enabled": True, "groups": False},
                            "keyed_groups": [{"key": "mde_missing_kbs", "prefix": "kb"}]})
    assert r.rc == 0, r
    assert [e["query"] for e in api_calls(emulator) if e["path"] == EXPORT] == [{"pageSize": "200000"}]
    assert not [g for g in r.data if g.startswith("mde_missing_kb_") or g == "mde_critical_exploitable"]
    # the variables feed keyed_groups
    hosts = expected_hosts(emulator)
    assert members(r.data, "kb_5031356") == sorted(n for n, (kbs, _v) in hosts.items() if "5031356" in kbs)

    emulator.clear_log()
    off = inventory(ansible, {"plugin": PLUGIN})
    assert off.rc == 0, off
    assert not [e for e in api_calls(emulator) if e["path"] == EXPORT]
    assert not any("mde_missing_kbs" in v for v in off.data["_meta"]["hostvars"].values())

    emulator.clear_log()
    tokens = emulator.counters["token_requests"]
    env = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ENABLED": "auto"}
    for bad, text in (({"enabled": True, "page_size": 200001}, "vulnerabilities.page_size must be from 1 to 200000"),
                      ({"enabled": True, "pagesize": 10}, "unknown key(s) pagesize"),
                      ({"enabled": "maybe"}, "vulnerabilities.enabled must be a boolean")):
        res = inventory(ansible, {"plugin": PLUGIN, "vulnerabilities": bad}, env=env)
        assert res.rc != 0 and text in res.stderr, res
        assert "Traceback" not in res.stderr
    assert api_calls(emulator) == [] and emulator.counters["token_requests"] == tokens   # no call, not even a token


def test_missing_vulnerability_permission_is_named(ansible, emulator):
    env = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ENABLED": "auto"}
    r = inventory(ansible, {"plugin": PLUGIN, "vulnerabilities": {"enabled": True}}, app="readonly", env=env)
    assert r.rc != 0 and "Traceback" not in r.stderr
    assert r.said("GET %s failed: HTTP 403" % EXPORT)
    assert r.said("application permission Vulnerability.Read.All,")


# -- patch_by_missing_kb ------------------------------------------------------------------------------------------
RECORD = [{"name": "Record", "ansible.builtin.debug": {"msg": {
    "host": "{{ inventory_hostname }}", "kb": "{{ patch_by_missing_kb_kb_id }}",
    "connection": "{{ patch_by_missing_kb_use_connection }}", "cves": "{{ patch_by_missing_kb_cves }}",
    "batch": "{{ ansible_play_batch }}", "check_mode": "{{ ansible_check_mode }}"}}}]


def test_patch_by_missing_kb_batches_the_machines_missing_it(ansible, emulator, tmp_path):
    inv = tmp_path / "mde.yml"
    inv.write_text(yaml.safe_dump({"plugin": PLUGIN, "vulnerabilities": {"enabled": True}}))
    record = tmp_path / "record.yml"
    record.write_text(yaml.safe_dump(RECORD))
    hosts = expected_hosts(emulator)
    missing = sorted(n for n, (kbs, _v) in hosts.items() if "5031356" in kbs)
    assert len(missing) >= 5

    # Check mode against hosts that cannot be reached: a local connection (an extra variable wins over the play's)
    # and a tasks file that records what each host would get. The KB is given with its "KB" prefix.
    overrides = {"ansible_connection": "local", "patch_by_missing_kb": "kb5031356", "patch_by_missing_kb_serial": 4,
                 "patch_by_missing_kb_tasks": str(record)}
    r = ansible.playbook(plays=[{"import_playbook": "defender.endpoint.patch_by_missing_kb"}], check=True,
                         inventory=str(inv), extra_args=["-e", json.dumps(overrides)])
    assert r.rc == 0, r
    plan = r.task("Show the batches")["msg"]
    assert len(plan) == (len(missing) + 3) // 4
    recorded = {h: r.task("Record", host=h)["msg"] for h in missing}
    for host, rec in recorded.items():
        fixed = [cve for cve, _s, _l, kb in hosts[host][1] if kb == "5031356"]
        assert (rec["kb"], rec["connection"], rec["cves"], rec["check_mode"]) == ("5031356", "winrm", fixed, True), host
    batches = [sorted(t["hosts"]) for play in r.data["plays"] for t in play["tasks"] if t["task"]["name"] == "Record"]
    assert sorted(h for b in batches for h in b) == missing and max(len(b) for b in batches) == 4
    planned = [sorted(entry.split(" (")[0] for entry in line.split(": ", 1)[1].split(", ")) for line in plan]
    assert planned == batches
    # Only reads: the machine listing and the export, once each.
    assert sorted(e["route"] for e in api_calls(emulator)) == ["GET /api/machines", "GET " + EXPORT]

    # A KB nobody misses: nothing to patch. No KB at all: the first play stops before any host is touched.
    none = ansible.playbook(plays=[{"import_playbook": "defender.endpoint.patch_by_missing_kb"}], check=True,
                            inventory=str(inv), extra_args=["-e", json.dumps(dict(overrides, patch_by_missing_kb="5999999"))])
    assert none.rc == 0, none
    assert none.task("Show the batches")["msg"] == ["no host in mde_missing_kb_KB5999999: no machine misses KB5999999"]
    bad = ansible.playbook(plays=[{"import_playbook": "defender.endpoint.patch_by_missing_kb"}], check=True,
                           inventory=str(inv), extra_args=["-e", json.dumps(dict(overrides, patch_by_missing_kb="latest"))])
    assert bad.rc != 0
    assert "Set patch_by_missing_kb to the KB to install" in bad.task("Check the KB")["msg"]
    assert not [name for play in bad.data["plays"] for t in play["tasks"] if t["task"]["name"] == "Record"
                for name in t["hosts"]]


def test_cache_holds_the_export_summary_too(ansible, emulator, tmp_path):
    cache_dir = tmp_path / "inv-cache"
    config = {"plugin": PLUGIN, "vulnerabilities": {"enabled": True}, "cache": True,
              "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(cache_dir), "cache_timeout": 3600}
    first = inventory(ansible, config)
    assert first.rc == 0, first
    assert len([e for e in api_calls(emulator) if e["path"] == EXPORT]) == 1
    emulator.clear_log()
    second = inventory(ansible, config)
    assert second.rc == 0, second
    assert emulator.log == [] and second.data == first.data        # no call at all, same hosts, variables, groups
    text = "".join(p.read_text() for p in cache_dir.iterdir())
    assert emulator.apps["full"]["client_secret"] not in text and "eyJ" not in text
    third = inventory(ansible, config, extra_args=("--list", "--flush-cache"))
    assert third.rc == 0, third
    assert len([e for e in api_calls(emulator) if e["path"] == EXPORT]) == 1
