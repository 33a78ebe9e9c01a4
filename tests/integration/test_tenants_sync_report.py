"""A security provider's roles over several customers' tenants, through real ansible-playbook runs against the
multi-tenant emulator: the coverage report with a summary row and a section per tenant (each tenant read with its
own token, no host matched with another tenant's machine, a tenant without consent shown failed with the reason),
and the detection rules role applying one folder of rules to two tenants."""
import csv
import datetime
import io
import re

import yaml

from tests.emulator import detection_rules
from tests.integration.role_helpers import STALE_DAYS, expected_status, make_hostile, rule_args, write_rule

TENANTS = ("contoso", "fabrikam", "northwind")
RULES = "/v1.0/security/rules/detectionRules"


def onboarded(msp, name):
    return [m for m in msp.tenant(name).machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
            and not m["computerDnsName"].startswith("dup-")]


def coverage_inventory(msp, tmp_path, names):
    """Per tenant: two hosts of its machines (by name) and a host with ANOTHER tenant's machine id, each with the
    mde_tenant_id the mde_machines inventory gives a host of a tenant list."""
    hosts, expected = {}, {}
    for index, name in enumerate(names):
        tid = msp.tenant_id_of(name)
        mine = onboarded(msp, name)[:2]
        other = onboarded(msp, names[(index + 1) % len(names)])[-1]
        for machine in mine:
            hosts[machine["computerDnsName"]] = {"mde_tenant_id": tid, "mde_tenant": name}
            expected[machine["computerDnsName"]] = (name, machine)
        # Another tenant's machine is not this tenant's, even by its id: this host has none in its own tenant.
        alias = "foreign-in-%s" % name
        hosts[alias] = {"mde_tenant_id": tid, "mde_tenant": name, "mde_id": other["id"]}
        expected[alias] = (name, None)
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return str(path), expected


def coverage_play(msp, names, report_dir, **extra):
    tenants = [{"tenant_id": msp.tenant_id_of(n), "name": n} for n in names]
    return [{"name": "coverage", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "coverage", "ansible.builtin.include_role": {"name": "defender.endpoint.coverage_report"},
         "vars": dict({"coverage_report_tenants": tenants, "coverage_report_dir": str(report_dir),
                       "coverage_report_stale_days": STALE_DAYS}, **extra)}]}]


def role_tasks(result):
    """The role's task results by task name (without the role's prefix)."""
    return {n.split(" : ", 1)[-1]: res for n, res in result.tasks().items()}


def summary_rows(page):
    """The summary table of the HTML page: tenant name -> its cells."""
    table = re.search(r'<table id="summary">.*?</table>', page, re.S).group(0)
    rows = re.findall(r'<tr class="(\w+)" data-tenant="(\w+)">(.*?)</tr>', table, re.S)
    return {tenant: (status, [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", cells, re.S)])
            for status, tenant, cells in rows}


def test_one_report_over_three_tenants_a_row_and_a_section_each(msp_ansible, msp, tmp_path):
    path, expected = coverage_inventory(msp, tmp_path, TENANTS)
    marker = tmp_path / "pwned"
    hostile = onboarded(msp, "fabrikam")[3]
    make_hostile(msp.tenant("fabrikam"), hostile, marker)
    report_dir = tmp_path / "report"
    result = msp_ansible.playbook(plays=coverage_play(msp, TENANTS, report_dir), inventory=path)
    assert result.rc == 0, result.stdout[-3000:]
    assert not marker.exists(), "API data was run as a template"
    now = datetime.datetime.now(datetime.timezone.utc)
    for name in TENANTS:
        # each tenant read once, with its own token: its requests are in its own log
        reads = [e for e in msp.log_of(name) if e["method"] == "GET" and e["path"].lower().startswith("/api/machines")]
        assert len(reads) == 1, (name, reads)
    assert msp.writes() == []

    tasks = role_tasks(result)
    report = tasks["Compare each tenant's hosts with its machines"]["ansible_facts"]["coverage_report_result"]
    assert [t["name"] for t in report["tenants"]] == list(TENANTS) and report["failed_tenants"] == []
    for tenant in report["tenants"]:
        machines = msp.tenant(tenant["name"]).machines
        assert tenant["status"] == "ok" and tenant["tenant_id"] == msp.tenant_id_of(tenant["name"])
        assert tenant["report"]["total_machines"] == len(machines)
        assert tenant["report"]["onboarded_machines"] == len([m for m in machines if m["onboardingStatus"] == "Onboarded"])
        assert tenant["report"]["counts"]["hosts"] == 3
    rows = {(r["tenant"], r["host"]): r for r in report["hosts"]}
    assert set(rows) == {(tenant, host) for host, (tenant, _m) in expected.items()}
    for host, (tenant, machine) in expected.items():
        row = rows[(tenant, host)]
        assert row["problems"] == expected_status(machine, now), host
        assert row["machine_id"] == (machine["id"] if machine else ""), host
    assert report["counts"]["unprotected"] == len(TENANTS)

    page = (report_dir / "coverage.html").read_text()
    summary = summary_rows(page)
    assert list(summary) == list(TENANTS)
    for name in TENANTS:
        status, cells = summary[name]
        machines = msp.tenant(name).machines
        assert status == "ok" and cells[:6] == [name, "ok", msp.tenant_id_of(name), str(len(machines)), str(len(
            [m for m in machines if m["onboardingStatus"] == "Onboarded"])), "3"]
    sections = re.findall(r'<section id="tenant-\d" data-tenant="(\w+)"><h2>Tenant (\w+) \(([0-9a-f-]+)\)</h2>', page)
    assert sections == [(n, n, msp.tenant_id_of(n)) for n in TENANTS]
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<!DOCTYPE html>") == 1 and page.count('<rect class="bar" data-key="unprotected"') == 3
    md = (report_dir / "coverage.md").read_text()
    assert md.count("# Defender for Endpoint coverage by tenant") == 1
    head = md.split("## Tenant ", 1)[0]
    assert re.findall(r"^\| (\w+) \| ok \| [0-9a-f-]+ \| (\d+) \|", head, re.M) == [
        (n, str(len(msp.tenant(n).machines))) for n in TENANTS]
    assert re.findall(r"^## Tenant (\w+)", md, re.M) == list(TENANTS)
    rows_csv = list(csv.reader(io.StringIO((report_dir / "coverage.csv").read_text())))
    assert rows_csv[0][:3] == ["tenant", "kind", "host"]
    hostile_row = next(r for r in rows_csv if r[1] == "unknown_machine" and r[7] == hostile["id"])
    assert hostile_row[0] == "fabrikam" and hostile_row[-1] == "'" + hostile["osPlatform"]
    assert sorted((r[0], r[2]) for r in rows_csv if r[1] == "host") == sorted((t, h) for h, (t, _m) in expected.items())
    summary_task = tasks["Summary"]["msg"]
    assert any("fabrikam: %d machines" % len(msp.tenant("fabrikam").machines) in line for line in summary_task)


def test_a_tenant_without_consent_is_shown_failed_and_the_others_reported(msp_ansible, msp, tmp_path):
    names = TENANTS + ("adatum",)
    path, expected = coverage_inventory(msp, tmp_path, names)
    report_dir = tmp_path / "report"
    result = msp_ansible.playbook(plays=coverage_play(msp, names, report_dir, coverage_report_formats=["html", "markdown"]),
                                  inventory=path)
    assert result.rc == 2, result.stdout[-3000:]
    consent = "%s/%s/adminconsent?client_id=%s" % (msp.url, msp.tenant_id_of("adatum"), msp.apps["full"]["client_id"])
    failed = role_tasks(result)["Fail when a tenant could not be read"]
    assert failed["failed"] and "adatum: failed: " in failed["msg"] and "AADSTS7000229" in failed["msg"], failed
    page = (report_dir / "coverage.html").read_text()
    summary = summary_rows(page)
    assert list(summary) == list(names)
    assert [summary[n][0] for n in names] == ["ok", "ok", "ok", "failed"]
    reason = summary["adatum"][1][-1]
    assert "AADSTS7000229" in reason and consent.replace("&", "&amp;") in reason
    for name in TENANTS:
        assert summary[name][1][3] == str(len(msp.tenant(name).machines))
    assert re.search(r'data-tenant="adatum"><h2>Tenant adatum .*?<p class="failed">Not read: [^<]*AADSTS7000229', page, re.S)
    md = (report_dir / "coverage.md").read_text()
    assert re.search(r"^\| adatum \| failed \| .*AADSTS7000229", md, re.M)
    assert not (report_dir / "coverage.csv").exists()
    assert not [e for e in msp.log_of("adatum") if e["path"].startswith("/api/")]
    # the hosts of the tenants that were read are reported; adatum's section has no table, its hosts are in no row
    report = role_tasks(result)["Compare each tenant's hosts with its machines"]["ansible_facts"]["coverage_report_result"]
    assert "<table" not in page.split('data-tenant="adatum"><h2>')[1]
    assert sorted((r["tenant"], r["host"]) for r in report["hosts"]) == sorted(
        (t, h) for h, (t, _m) in expected.items() if t != "adatum")
    # warn instead of failing
    warned = msp_ansible.playbook(plays=coverage_play(msp, names, report_dir, coverage_report_formats=[],
                                                      coverage_report_fail_on_tenant_error=False), inventory=path)
    assert warned.rc == 0, warned.stdout[-3000:]
    assert "WARNING: 1 of 4 tenants could not be read" in role_tasks(warned)["Warn that a tenant could not be read"]["msg"]


def rules_play(tenants, folder, **extra):
    return [{"name": "rules", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "rules", "ansible.builtin.include_role": {"name": "defender.endpoint.detection_rules"},
         "vars": dict({"detection_rules_tenants": tenants, "detection_rules_dir": folder,
                       "detection_rules_purge": True, "detection_rules_id_prefix": "msp-"}, **extra)}]},
        {"name": "result", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "result", "ansible.builtin.debug": {"var": "detection_rules_result"}}]}]


def test_one_folder_of_rules_applied_in_two_tenants_then_a_rerun_writes_nothing(msp_ansible, msp, tmp_path):
    folder = tmp_path / "rules"
    own = tmp_path / "northwind-rules"
    folder.mkdir()
    own.mkdir()
    for n in (1, 2):
        write_rule(str(folder), "r%d.yml" % n, **rule_args("msp-r%d" % n))
    write_rule(str(own), "only.yml", **rule_args("msp-northwind"))
    tenants = [{"tenant_id": msp.tenant_id_of("fabrikam"), "name": "fabrikam"},
               {"tenant_id": msp.tenant_id_of("northwind"), "name": "northwind", "dir": str(own)}]
    before = set(detection_rules.rules(msp.state))
    run = msp_ansible.playbook(plays=rules_play(tenants, str(folder)))
    assert run.rc == 0, run.stdout[-3000:]
    fabrikam, northwind = (detection_rules.rules(msp.tenant(n)) for n in ("fabrikam", "northwind"))
    assert {"msp-r1", "msp-r2"} <= set(fabrikam) and "msp-northwind" not in fabrikam
    assert "msp-northwind" in northwind and not {"msp-r1", "msp-r2"} & set(northwind)
    assert set(detection_rules.rules(msp.state)) == before          # the home tenant was not touched
    for name, ids in (("fabrikam", ["msp-r1", "msp-r2"]), ("northwind", ["msp-northwind"])):
        posts = [e["path"] for e in msp.log_of(name) if e["method"] == "POST" and e["path"].endswith("/detectionRules")]
        assert len(posts) == len(ids), (name, posts)
    result = run.task("result")["detection_rules_result"]
    assert result["failed_tenants"] == []
    assert [(t["name"], t["status"], t["changed"]) for t in result["tenants"]] == [
        ("fabrikam", "ok", ["msp-r1", "msp-r2"]), ("northwind", "ok", ["msp-northwind"])]

    msp.clear_log()
    again = msp_ansible.playbook(plays=rules_play(tenants, str(folder)))
    assert again.rc == 0, again.stdout[-3000:]
    assert msp.writes() == []
    assert [(t["name"], t["changed"], t["deleted"]) for t in again.task("result")["detection_rules_result"]["tenants"]] == [
        ("fabrikam", [], []), ("northwind", [], [])]

    # a tenant without consent fails alone: the others are applied, the role fails at the end naming it
    write_rule(str(folder), "r3.yml", **rule_args("msp-r3"))
    adatum = tenants[:1] + [{"tenant_id": msp.tenant_id_of("adatum"), "name": "adatum"}]
    mixed = msp_ansible.playbook(plays=rules_play(list(reversed(adatum)), str(folder)))
    assert mixed.rc == 2 and "msp-r3" in detection_rules.rules(msp.tenant("fabrikam"))
    assert "could not be applied in 1 of 2 tenants" in mixed.stdout and "adatum" in mixed.stdout
    assert not [e for e in msp.log_of("adatum") if e["family"] == "graph"]
