# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: coverage_report
short_description: Compare inventory hosts with Defender for Endpoint machines
version_added: 0.2.0
description:
  - Matches inventory hosts with Defender machines (a listing from defender.endpoint.mde_machine_info) by C(mde_id),
    by name (C(computerDnsName), full or its first label, case-insensitive, against the inventory name, C(ansible_host)
    and the facts C(ansible_fqdn), C(ansible_nodename), C(ansible_hostname)) and by IP address (C(lastIpAddress) and
    C(ipAddresses) against C(ansible_host) and the IPv4/IPv6 address facts).
  - Classifies every host of the group - C(unprotected) (no onboarded machine), C(stale) (C(lastSeen) older than
    O(stale_days)), C(unhealthy) (C(healthStatus) not C(Active)), C(av_outdated) (C(defenderAvStatus) not C(Updated)),
    C(ok) - and lists the onboarded machines that no host of O(all_hosts) matches.
  - The companion filter C(defender.endpoint.coverage_report_render) renders the result as C(markdown), C(csv) or
    C(html) (a self-contained page with an inline SVG chart); every value from the API is escaped for its format.
author: defender.endpoint maintainers (@defender-endpoint)
options:
  _input:
    description: The machines, as defender.endpoint.mde_machine_info returns them.
    type: list
    elements: dict
    required: true
  hosts:
    description: The group's hosts, inventory name -> its hostvars (or a subset of them).
    type: dict
    required: true
  all_hosts:
    description: Every inventory host, name -> hostvars, for the machines no inventory host knows; defaults to O(hosts).
    type: dict
  stale_days:
    description: A machine not seen for more days than this is C(stale).
    type: int
    default: 7
  now:
    description: The time to measure ages against (ISO 8601); defaults to the current time.
    type: str
"""

EXAMPLES = r"""
- name: Compare the linux group with Defender
  ansible.builtin.set_fact:
    coverage: >-
      {{ machines.machines | defender.endpoint.coverage_report(
           hosts=dict(groups['linux'] | zip(groups['linux'] | map('extract', hostvars))),
           all_hosts=dict(groups['all'] | zip(groups['all'] | map('extract', hostvars))), stale_days=14) }}

- name: Write the HTML page
  ansible.builtin.copy:
    content: "{{ coverage | defender.endpoint.coverage_report_render('html') }}"
    dest: coverage.html
    mode: "0644"
"""

RETURN = r"""
_value:
  description: C(hosts) (one row per host), C(unknown_machines), C(counts) and C(generated), C(stale_days), C(total_machines).
  type: dict
"""

import csv
from collections.abc import Mapping
import datetime
import html
import io
import ipaddress

from ansible.errors import AnsibleFilterError

STATUSES = ("unprotected", "stale", "unhealthy", "av_outdated", "ok")
LABELS = {"unprotected": "No onboarded machine", "stale": "Not seen recently", "unhealthy": "Sensor unhealthy",
          "av_outdated": "Antivirus not updated", "ok": "Protected", "unknown": "Onboarded, in no inventory group"}
HOST_NAME_VARS = ("inventory_hostname", "ansible_host", "ansible_fqdn", "ansible_nodename", "ansible_hostname")
IGNORED_IPS = ("127.", "::1", "fe80:", "169.254.")


def _text(value):
    return "" if value is None else str(value)


def _ip(value):
    try:
        return str(ipaddress.ip_address(_text(value).strip()))
    except ValueError:
        return None


def _usable_ip(ip):
    return ip and not ip.startswith(IGNORED_IPS)


def _parse_time(value):
    text = _text(value).strip()
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:                                   # the API sends up to 7 fractional digits
        head, _dot, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _host_keys(name, hostvars):
    """The names (full and first label, lower case) and the IP addresses a host is known by."""
    hv = hostvars if isinstance(hostvars, Mapping) else {}
    facts = hv.get("ansible_facts") if isinstance(hv.get("ansible_facts"), Mapping) else {}

    def var(key):
        return hv.get(key) if hv.get(key) is not None else facts.get(key[len("ansible_"):] if key.startswith("ansible_") else key)

    names, ips = set(), set()
    for key in HOST_NAME_VARS:
        value = name if key == "inventory_hostname" else var(key)
        text = _text(value).strip().lower().rstrip(".")
        if not text:
            continue
        ip = _ip(text)
        if ip:
            ips.add(ip)
            continue
        names.add(text)
        names.add(text.split(".", 1)[0])
    for key in ("ansible_all_ipv4_addresses", "ansible_all_ipv6_addresses"):
        for value in var(key) or []:
            ip = _ip(value)
            if _usable_ip(ip):
                ips.add(ip)
    default = var("ansible_default_ipv4")
    if isinstance(default, Mapping) and _ip(default.get("address")):
        ips.add(_ip(default.get("address")))
    return names, ips, _text(var("mde_id")).lower()


def _machine_keys(machine):
    dns = _text(machine.get("computerDnsName")).strip().lower().rstrip(".")
    ips = set()
    for value in [machine.get("lastIpAddress")] + [a.get("ipAddress") for a in machine.get("ipAddresses") or [] if isinstance(a, dict)]:
        ip = _ip(value)
        if _usable_ip(ip):
            ips.add(ip)
    return dns, ips


def _match(name, hostvars, machines):
    """The machines a host matches and how: by id, else by name, else by IP."""
    names, ips, mde_id = _host_keys(name, hostvars)
    if mde_id:
        found = [m for m in machines if _text(m.get("id")).lower() == mde_id]
        if found:
            return found, "id"
    by_name = [m for m in machines if m["_dns"] and (m["_dns"] in names or m["_dns"].split(".", 1)[0] in names)]
    full = [m for m in by_name if m["_dns"] in names]
    if full or by_name:
        return full or by_name, "name"
    by_ip = [m for m in machines if m["_ips"] & ips]
    return by_ip, ("ip" if by_ip else "")


def coverage_report(machines, hosts, all_hosts=None, stale_days=7, now=None):
    if not isinstance(machines, list) or not isinstance(hosts, Mapping):
        raise AnsibleFilterError("coverage_report expects a list of machines and hosts=<dict of name -> hostvars>")
    try:
        stale_days = int(stale_days)
    except (TypeError, ValueError):
        raise AnsibleFilterError("coverage_report: stale_days must be a number of days, got %r" % (stale_days,))
    moment = _parse_time(now) if now else datetime.datetime.now(datetime.timezone.utc)
    if moment is None:
        raise AnsibleFilterError("coverage_report: now is not an ISO 8601 time: %r" % (now,))
    pool = []
    for m in machines:
        if isinstance(m, Mapping):
            dns, ips = _machine_keys(m)
            pool.append(dict(m, _dns=dns, _ips=ips))
    onboarded = [m for m in pool if m.get("onboardingStatus") == "Onboarded"]

    rows = []
    for name in sorted(hosts, key=lambda n: _text(n).lower()):
        found, how = _match(name, hosts[name], pool)
        active = [m for m in found if m.get("onboardingStatus") == "Onboarded"]
        # a re-imaged device can be there twice: the most recently seen one counts
        best = max(active or found, key=lambda m: _parse_time(m.get("lastSeen")) or datetime.datetime.min.replace(
            tzinfo=datetime.timezone.utc)) if found else None
        seen = _parse_time(best.get("lastSeen")) if best else None
        age = (moment - seen).total_seconds() / 86400.0 if seen else None
        problems = []
        if not active:
            problems.append("unprotected")
        else:
            if age is None or age > stale_days:
                problems.append("stale")
            if best.get("healthStatus") != "Active":
                problems.append("unhealthy")
            if best.get("defenderAvStatus") != "Updated":
                problems.append("av_outdated")
        rows.append({
            "host": _text(name), "status": problems[0] if problems else "ok", "problems": problems or ["ok"],
            "matched_by": how, "machine_id": _text(best.get("id")) if best else "",
            "computer_dns_name": _text(best.get("computerDnsName")) if best else "",
            "onboarding_status": _text(best.get("onboardingStatus")) if best else "",
            "health_status": _text(best.get("healthStatus")) if best else "",
            "defender_av_status": _text(best.get("defenderAvStatus")) if best else "",
            "last_seen": _text(best.get("lastSeen")) if best else "",
            "days_since_seen": round(age, 1) if age is not None else None,
            "os_platform": _text(best.get("osPlatform")) if best else "",
            "matches": len(active or found),
        })

    known = set()
    for name, hostvars in (all_hosts if isinstance(all_hosts, Mapping) else hosts).items():
        found, _how = _match(name, hostvars, onboarded)
        known.update(id(m) for m in found)
    unknown = [{"machine_id": _text(m.get("id")), "computer_dns_name": _text(m.get("computerDnsName")),
                "last_ip_address": _text(m.get("lastIpAddress")), "health_status": _text(m.get("healthStatus")),
                "defender_av_status": _text(m.get("defenderAvStatus")), "last_seen": _text(m.get("lastSeen")),
                "os_platform": _text(m.get("osPlatform"))}
               for m in onboarded if id(m) not in known]
    unknown.sort(key=lambda r: (r["computer_dns_name"].lower(), r["machine_id"]))
    counts = dict((s, sum(1 for r in rows if s in r["problems"])) for s in STATUSES)
    counts["unknown"] = len(unknown)
    counts["hosts"] = len(rows)
    return {"generated": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "stale_days": stale_days, "counts": counts,
            "total_machines": len(pool), "onboarded_machines": len(onboarded), "hosts": rows,
            "unknown_machines": unknown}


# -- rendering -------------------------------------------------------------------------------------------------
HOST_COLUMNS = ("host", "status", "problems", "matched_by", "computer_dns_name", "machine_id", "health_status",
                "defender_av_status", "last_seen", "days_since_seen", "os_platform")
UNKNOWN_COLUMNS = ("computer_dns_name", "machine_id", "last_ip_address", "health_status", "defender_av_status",
                   "last_seen", "os_platform")


def _cell(row, key):
    value = row.get(key)
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return _text(value)


def _csv_safe(text):
    """One line, and no spreadsheet formula (OWASP CSV injection): a leading = + - @ is quoted with '."""
    text = " ".join(text.splitlines())
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _render_csv(report):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("kind",) + HOST_COLUMNS)
    for row in report["hosts"]:
        writer.writerow(("host",) + tuple(_csv_safe(_cell(row, k)) for k in HOST_COLUMNS))
    for row in report["unknown_machines"]:
        writer.writerow(("unknown_machine", "", "unknown", "", "")
                        + tuple(_csv_safe(_cell(row, k)) for k in ("computer_dns_name", "machine_id", "health_status",
                                                                   "defender_av_status", "last_seen"))
                        + ("", _csv_safe(_cell(row, "os_platform"))))
    return out.getvalue()


def _md(text):
    """Markdown table cell: one line, no HTML, the characters Markdown gives a meaning escaped."""
    text = " ".join(_text(text).splitlines())
    text = html.escape(text, quote=False)
    for ch in "\\`*_{}[]()#+!|<>~":
        text = text.replace(ch, "\\" + ch) if ch not in "<>" else text
    return text


def _md_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_md(_cell(row, k)) for k in columns) + " |")
    return "\n".join(lines)


def _render_markdown(report):
    c = report["counts"]
    parts = ["# Defender for Endpoint coverage", "",
             "Generated %s; %d inventory hosts, %d Defender machines (%d onboarded); stale after %d days." % (
                 report["generated"], c["hosts"], report["total_machines"], report["onboarded_machines"],
                 report["stale_days"]), "",
             "| status | count |", "|---|---|"]
    parts += ["| %s | %d |" % (LABELS[s], c[s]) for s in STATUSES + ("unknown",)]
    parts += ["", "## Inventory hosts", "", _md_table(report["hosts"], HOST_COLUMNS), "",
              "## Onboarded machines in no inventory group", "",
              _md_table(report["unknown_machines"], UNKNOWN_COLUMNS) if report["unknown_machines"] else "None.", ""]
    return "\n".join(parts)


COLOURS = {"unprotected": "#c62828", "stale": "#ef6c00", "unhealthy": "#ad1457", "av_outdated": "#6a1b9a",
           "ok": "#2e7d32", "unknown": "#1565c0"}


def _svg_chart(counts):
    keys = STATUSES + ("unknown",)
    top = max([counts[k] for k in keys] + [1])
    bar_h, gap, label_w, width = 26, 10, 280, 420
    height = len(keys) * (bar_h + gap) + gap
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="counts">'
           % (label_w + width + 60, height)]
    for i, key in enumerate(keys):
        y = gap + i * (bar_h + gap)
        w = int(round(width * counts[key] / float(top)))
        out.append('<text x="%d" y="%d" text-anchor="end" font-size="14">%s</text>'
                   % (label_w - 8, y + 18, html.escape(LABELS[key])))
        out.append('<rect class="bar" data-key="%s" x="%d" y="%d" width="%d" height="%d" fill="%s"/>'
                   % (key, label_w, y, w, bar_h, COLOURS[key]))
        out.append('<text x="%d" y="%d" font-size="14">%d</text>' % (label_w + w + 6, y + 18, counts[key]))
    out.append("</svg>")
    return "\n".join(out)


def _html_table(rows, columns, status_key=None):
    e = html.escape
    head = "".join("<th>%s</th>" % e(k) for k in columns)
    body = []
    for row in rows:
        cls = ' class="%s"' % e(row.get(status_key, "")) if status_key else ""
        body.append("<tr%s>%s</tr>" % (cls, "".join("<td>%s</td>" % e(_cell(row, k)) for k in columns)))
    return "<table><thead><tr>%s</tr></thead><tbody>\n%s\n</tbody></table>" % (head, "\n".join(body))


def _render_html(report):
    e = html.escape
    c = report["counts"]
    css = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
           "th,td{border:1px solid #ccc;padding:.25em .5em;font-size:13px;text-align:left}th{background:#eee}"
           + "".join("tr.%s td:nth-child(2){color:%s;font-weight:bold}" % (k, v) for k, v in COLOURS.items()))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # nothing from outside the page: no script, no remote style or image
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>Defender for Endpoint coverage</title><style>%s</style></head><body>" % css,
        "<h1>Defender for Endpoint coverage</h1>",
        "<p>Generated %s: %d inventory hosts, %d Defender machines (%d onboarded); stale after %d days.</p>" % (
            e(report["generated"]), c["hosts"], report["total_machines"], report["onboarded_machines"],
            report["stale_days"]),
        _svg_chart(c),
        "<h2>Inventory hosts</h2>", _html_table(report["hosts"], HOST_COLUMNS, "status"),
        "<h2>Onboarded machines in no inventory group</h2>",
        _html_table(report["unknown_machines"], UNKNOWN_COLUMNS) if report["unknown_machines"] else "<p>None.</p>",
        "</body></html>", ""])


def coverage_report_render(report, fmt):
    renderers = {"markdown": _render_markdown, "csv": _render_csv, "html": _render_html}
    if fmt not in renderers:
        raise AnsibleFilterError("coverage_report_render: format must be one of %s" % ", ".join(sorted(renderers)))
    if not isinstance(report, dict) or "hosts" not in report:
        raise AnsibleFilterError("coverage_report_render expects the result of defender.endpoint.coverage_report")
    return renderers[fmt](report)


class FilterModule(object):
    def filters(self):
        return {"coverage_report": coverage_report, "coverage_report_render": coverage_report_render}
