"""The coverage_report role and playbook against the emulator's tenant: one listing of the machines,
matching by name and IP, the report files (the HTML page opened in a real headless Chromium), API data escaped,
and the unprotected hosts handed to a second play as a group.

Chromium is Debian's package (``apt-get install -y chromium``, installed by the Makefile); the test fails, never
skips, without it.
"""
import csv
import datetime
import io
import os
import re
import shutil
import subprocess

import yaml

from tests.integration.role_helpers import STALE_DAYS, expected_status, make_hostile

ROLE = "defender.endpoint.coverage_report"


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise AssertionError("the HTML report is checked in a headless Chromium: apt-get install -y chromium")


def test_coverage_report_on_the_emulators_tenant(ansible, emulator, tmp_path):
    machines = emulator.machines
    onboarded = [m for m in machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
                 and not m["computerDnsName"].startswith("dup-")]
    by_fqdn, by_short, by_ip, other_group, hostile = onboarded[0], onboarded[1], onboarded[2], onboarded[3], onboarded[4]
    not_onboarded = next(m for m in machines if m["onboardingStatus"] != "Onboarded" and m["computerDnsName"])
    marker = tmp_path / "pwned"
    make_hostile(emulator.state, hostile, marker)
    inventory = {"all": {"children": {
        "linux": {"hosts": {
            by_fqdn["computerDnsName"].upper(): {},
            by_short["computerDnsName"].split(".")[0]: {},
            "db-by-ip": {"ansible_host": by_ip["lastIpAddress"]},
            "ghost.example.net": {},
            not_onboarded["computerDnsName"]: {},
        }},
        "windows": {"hosts": {other_group["computerDnsName"]: {}}},
    }}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    report_dir = tmp_path / "report"
    plays = [
        {"name": "coverage", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "coverage", "ansible.builtin.include_role": {"name": ROLE},
             "vars": {"coverage_report_group": "linux", "coverage_report_dir": str(report_dir),
                      "coverage_report_stale_days": STALE_DAYS}}]},
        {"name": "onboard", "hosts": "mde_unprotected", "gather_facts": False, "tasks": [
            {"name": "would onboard", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}}]},
    ]
    result = ansible.playbook(plays=plays, inventory=str(tmp_path / "hosts.yml"))
    assert result.rc == 0, result
    now = datetime.datetime.now(datetime.timezone.utc)
    assert not marker.exists(), "API data was run as a template"

    # one listing of the machines, nothing written
    reads = [e for e in emulator.log if e["method"] == "GET" and e["path"].lower().startswith("/api/machines")]
    assert len(reads) == 1 and emulator.writes() == []

    tasks = {name.split(" : ", 1)[-1]: res for name, res in result.tasks().items()}
    report = tasks["Compare the group with Defender"]["ansible_facts"]["coverage_report_result"]
    rows = {r["host"]: r for r in report["hosts"]}
    expected = {
        by_fqdn["computerDnsName"].upper(): (by_fqdn, "name"),
        by_short["computerDnsName"].split(".")[0]: (by_short, "name"),
        "db-by-ip": (by_ip, "ip"),
        "ghost.example.net": (None, ""),
        not_onboarded["computerDnsName"]: (not_onboarded, "name"),
    }
    assert set(rows) == set(expected)
    for host, (machine, how) in expected.items():
        assert rows[host]["problems"] == expected_status(machine, now), host
        assert rows[host]["matched_by"] == how, host
        assert rows[host]["machine_id"] == (machine["id"] if machine else ""), host
    unprotected = sorted(h for h, (m, _how) in expected.items() if expected_status(m, now) == ["unprotected"])
    assert unprotected == sorted(["ghost.example.net", not_onboarded["computerDnsName"]])

    # the other way round: onboarded machines no group knows (the windows group's machine is known)
    known = {by_fqdn["id"], by_short["id"], by_ip["id"], other_group["id"]}
    all_onboarded = [m for m in machines if m["onboardingStatus"] == "Onboarded"]
    assert sorted(r["machine_id"] for r in report["unknown_machines"]) == sorted(
        m["id"] for m in all_onboarded if m["id"] not in known)
    counts = report["counts"]
    assert counts["unprotected"] == 2 and counts["unknown"] == len(all_onboarded) - 4 and counts["hosts"] == 5

    # the second play ran on exactly the unprotected hosts
    ran = sorted(h for h in expected if "would onboard" in result.tasks(h))
    assert ran == unprotected
    summary = tasks["Summary"]["msg"]
    assert summary[0].startswith("5 hosts in linux: ") and ("Unprotected: " + ", ".join(unprotected)) in summary

    # the files: Markdown, CSV (no formula, one line per row), HTML
    md = (report_dir / "coverage.md").read_text()
    assert "| No onboarded machine | 2 |" in md and "<script>" not in md
    rows_csv = list(csv.reader(io.StringIO((report_dir / "coverage.csv").read_text())))
    assert rows_csv[0][:3] == ["kind", "host", "status"]
    assert len([r for r in rows_csv if r[0] == "host"]) == 5
    assert len([r for r in rows_csv if r[0] == "unknown_machine"]) == counts["unknown"]
    hostile_row = next(r for r in rows_csv if r[0] == "unknown_machine" and r[6] == hostile["id"])
    assert hostile_row[-1] == "'" + hostile["osPlatform"]                 # a formula is no formula
    page = (report_dir / "coverage.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    # the page in a real browser: the DOM it builds, and a screenshot a person can look at
    browser = chromium()
    url = "file://" + str(report_dir / "coverage.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1100"]
    dom = subprocess.run([browser] + flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<script" not in dom                                            # no element came from the API's text
    bars = dict(re.findall(r'<rect class="bar" data-key="(\w+)" x="\d+" y="\d+" width="(\d+)"', dom))
    assert set(bars) == {"unprotected", "stale", "unhealthy", "av_outdated", "ok", "unknown"}
    biggest = max(counts[k] for k in bars)
    assert all(int(bars[k]) == round(420 * counts[k] / biggest) for k in bars)
    assert dom.count("<tr") == 1 + 5 + 1 + counts["unknown"]
    shot = tmp_path / "coverage.png"
    subprocess.run([browser] + flags + ["--screenshot=" + str(shot), url], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
    keep = os.environ.get("MDE_TEST_KEEP_SCREENSHOT")
    if keep:
        shutil.copyfile(str(shot), keep)
        shutil.copyfile(str(report_dir / "coverage.html"), os.path.splitext(keep)[0] + ".html")
