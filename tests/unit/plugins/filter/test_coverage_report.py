"""The coverage report's files come from the coverage_report role's templates; API text stays text in each format."""
import csv
import io
import re

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.defender.endpoint.plugins.filter.coverage_report import (
    coverage_report, coverage_report_render, coverage_report_tenants)

HOSTILE = "<script>alert(1)</script>{{ lookup('pipe', 'id') }}|*_`#[x](y)\\ & \"q\" 'a'"
MACHINES = [
    {"id": "a" * 40, "computerDnsName": "web1.contoso.com", "onboardingStatus": "Onboarded", "healthStatus": "Active",
     "defenderAvStatus": "Updated", "lastSeen": "2026-01-30T08:00:00.1234567Z", "osPlatform": "Linux"},
    {"id": "b" * 40, "computerDnsName": HOSTILE + ".evil", "onboardingStatus": "Onboarded", "healthStatus": "Inactive",
     "defenderAvStatus": "Updated", "lastSeen": "2026-01-01T08:00:00Z", "osPlatform": "=HYPERLINK(\"x\")\nsecond line"},
]
NOW = "2026-01-31T08:00:00Z"


def report():
    return coverage_report(MACHINES, {"WEB1.contoso.com": {}, "ghost": {}}, now=NOW)


def test_times_are_read_by_the_collections_time_parser():
    r = report()
    web1 = next(row for row in r["hosts"] if row["host"] == "WEB1.contoso.com")
    assert web1["days_since_seen"] == 1.0 and web1["problems"] == ["ok"] and r["generated"] == NOW
    # An offset is converted to UTC; a date alone is its midnight.
    assert coverage_report(MACHINES, {}, now="2026-01-31T09:00:00+01:00")["generated"] == NOW
    assert coverage_report(MACHINES, {}, now="2026-01-31")["generated"] == "2026-01-31T00:00:00Z"
    for bad in ("yesterday", "2026-13-01", "7d"):
        with pytest.raises(AnsibleFilterError, match="now is not an ISO 8601 time"):
            coverage_report(MACHINES, {}, now=bad)


def test_markdown_escapes_api_text():
    md = coverage_report_render(report(), "markdown")
    assert md.startswith("# Defender for Endpoint coverage\n\nGenerated 2026-01-31T08:00:00Z; 2 inventory hosts, ")
    assert "| No onboarded machine | 1 |" in md and md.endswith("\n") and not md.endswith("\n\n\n")
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\{\\{ lookup\\(" in md and "\\|\\*\\_\\`\\#\\[x\\]" in md
    assert "second line" in md and "\nsecond line" not in md                 # one line per row
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") + 1 == rows[0].count(" | ") + 1 for line in rows[2:4])


def test_csv_has_no_formula_and_one_line_per_row():
    rows = list(csv.reader(io.StringIO(coverage_report_render(report(), "csv"))))
    assert rows[0][:3] == ["kind", "host", "status"] and len(rows) == 1 + 2 + 1
    unknown = rows[-1]
    assert unknown[0] == "unknown_machine" and unknown[6] == "b" * 40
    assert unknown[-1] == "'=HYPERLINK(\"x\") second line"


def test_html_escapes_api_text_and_draws_the_counts():
    page = coverage_report_render(report(), "html")
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</body></html>\n")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page                                       # the page's own policy, unescaped
    bars = dict(re.findall(r'<rect class="bar" data-key="(\w+)" x="280" y="\d+" width="(\d+)"', page))
    assert bars == {"unprotected": "420", "stale": "0", "unhealthy": "0", "av_outdated": "0", "ok": "420",
                    "unknown": "420"}
    assert page.count("<tr") == 1 + 2 + 1 + 1


def test_unknown_format_or_input():
    with pytest.raises(AnsibleFilterError, match="format must be one of csv, html, markdown"):
        coverage_report_render(report(), "pdf")
    with pytest.raises(AnsibleFilterError, match="expects the result"):
        coverage_report_render({"x": 1}, "html")


def test_tenants_match_hosts_only_with_their_own_machines_and_show_a_failed_tenant():
    results = [
        {"item": {"tenant_id": "t-1", "name": "one"}, "machines": MACHINES, "changed": False},
        {"item": {"tenant_id": "t-2", "name": "two"}, "machines": [], "changed": False},
        {"item": {"tenant_id": "t-3", "name": "three"}, "failed": True, "msg": "AADSTS7000229 \x1b[31m<b>" + HOSTILE},
    ]
    hosts = {"web1.contoso.com": {"mde_tenant_id": "t-1"}, "web1": {"mde_tenant_id": "t-2", "mde_id": "a" * 40},
             "nowhere": {}}
    r = coverage_report_tenants(results, hosts, now=NOW)
    assert [(t["name"], t["status"]) for t in r["tenants"]] == [("one", "ok"), ("two", "ok"), ("three", "failed")]
    assert sorted((row["tenant"], row["host"], row["status"]) for row in r["hosts"]) == [
        ("one", "web1.contoso.com", "ok"), ("two", "web1", "unprotected")]   # t-1's machine is not t-2's
    assert r["failed_tenants"] == ["three"] and r["total_machines"] == 2 and r["counts"]["hosts"] == 2
    assert r["unassigned_hosts"] == ["nowhere"]                           # in no tenant: compared with none
    reason = r["tenants"][2]["reason"]
    assert "\x1b" not in reason and "\\x1b[31m" in reason
    page = coverage_report_render(r, "html")
    assert "<b>" not in page and "<script>" not in page and "&lt;b&gt;" in page
    md = coverage_report_render(r, "markdown")
    assert re.search(r"^\| three \| failed \| t-3 \|.*AADSTS7000229", md, re.M) and "<script>" not in md


def test_a_tenant_entry_group_adds_to_the_tenants_hosts_within_the_report_group():
    """A host is the tenant's by its mde_tenant_id or by the entry's group, and only hosts of the report's group are
    reported: a host of the entry's group outside the report's group is not, and a host of the tenant outside the
    entry's group is not called unassigned."""
    all_hosts = {"web1": {"mde_tenant_id": "T1"}, "db1": {"mde_tenant_id": "T1"}, "lab1": {}}
    hosts = {"web1": all_hosts["web1"], "db1": all_hosts["db1"]}
    groups = {"fab": ["lab1", "web1"], "prod": ["web1", "db1"]}
    r = coverage_report_tenants([{"item": {"tenant_id": "T1", "name": "fab", "group": "fab"}, "machines": []}],
                                hosts, all_hosts=all_hosts, groups=groups, now=NOW)
    assert sorted(h["host"] for h in r["hosts"]) == ["db1", "web1"]
    assert r["unassigned_hosts"] == []
