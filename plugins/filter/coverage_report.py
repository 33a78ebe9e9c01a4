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
  - The companion filter C(defender.endpoint.coverage_report_tenants) makes one report per tenant (from the registered
    loop of defender.endpoint.mde_machine_info over a tenant list, each result's C(item) a C(tenant_id), C(name) and
    optional C(group)) and a summary over them; a host belongs to a tenant by its C(mde_tenant_id) variable or by the
    tenant's C(group), so no host is matched with another tenant's machine. A tenant that could not be read is
    C(failed) with the module's message as its C(reason).
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
import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.plugin_utils.untrusted import untrusted

STATUSES = ("unprotected", "stale", "unhealthy", "av_outdated", "ok")
LABELS = {"unprotected": "No onboarded machine", "stale": "Not seen recently", "unhealthy": "Sensor unhealthy",
          "av_outdated": "Antivirus not updated", "ok": "Protected", "unknown": "Onboarded, in no inventory group"}
HOST_NAME_VARS = ("inventory_hostname", "ansible_host", "ansible_fqdn", "ansible_nodename", "ansible_hostname")
IGNORED_IPS = ("127.", "::1", "fe80:", "169.254.")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
REASON_MAX = 2000


def _text(value):
    return "" if value is None else str(value)


def _ip(value):
    try:
        return str(ipaddress.ip_address(_text(value).strip()))
    except ValueError:
        return None


def _usable_ip(ip):
    return ip and not ip.startswith(IGNORED_IPS)


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
    try:
        moment = odata.parse_time(now, "now", relative=False) if now else odata.utcnow()
    except ValueError:
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
        best = max(active or found, key=lambda m: odata.time_or_none(m.get("lastSeen")) or datetime.datetime.min.replace(
            tzinfo=datetime.timezone.utc)) if found else None
        seen = odata.time_or_none(best.get("lastSeen")) if best else None
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


def _escape_control(text):
    """API text with its control characters (but line breaks) shown as \\xNN, never sent to a terminal or a page raw."""
    return CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), _text(text))


def _tenant_hosts(tenant, hosts, all_hosts, groups):
    """A tenant's hosts: those whose mde_tenant_id (as the mde_machines inventory sets it for a tenant list) is the
    tenant's, and every host of the tenant entry's own group. No host is compared with another tenant's machines."""
    tid = _text(tenant.get("tenant_id")).lower()
    group = tenant.get("group")
    members = set(groups.get(group) or []) if group else set()

    def mine(source):
        out = {}
        for name, hostvars in source.items():
            hv = hostvars if isinstance(hostvars, Mapping) else {}
            if name in members or (_text(hv.get("mde_tenant_id")).lower() == tid and tid):
                out[name] = hostvars
        return out

    everyone = all_hosts if isinstance(all_hosts, Mapping) else hosts
    # The report's hosts (coverage_report_group) of the tenant, by its group or its mde_tenant_id, and every host of
    # the tenant (any group), against which its machines are matched.
    return mine(hosts), mine(everyone)


def coverage_report_tenants(results, hosts, all_hosts=None, groups=None, stale_days=7, now=None):
    """One report per tenant from the registered loop of mde_machine_info over the tenant list (each result's C(item)
    the tenant entry), and the summary over them: the tenants that could not be read carry the module's message."""
    if isinstance(results, Mapping):
        results = results.get("results")
    if not isinstance(results, list) or not isinstance(hosts, Mapping):
        raise AnsibleFilterError("coverage_report_tenants expects the registered loop over the tenants and hosts=<dict>")
    groups = groups if isinstance(groups, Mapping) else {}
    tenants, rows, unknown, assigned = [], [], [], set()
    for result in results:
        tenant = result.get("item") if isinstance(result, Mapping) else None
        if not isinstance(tenant, Mapping) or not tenant.get("tenant_id"):
            raise AnsibleFilterError("coverage_report_tenants: every result's item must be a tenant entry with tenant_id")
        entry = {"name": _text(tenant.get("name") or tenant.get("tenant_id")), "tenant_id": _text(tenant["tenant_id"]),
                 "status": "ok", "reason": "", "report": None}
        if result.get("failed") or not isinstance(result.get("machines"), list):
            reason = _escape_control(result.get("msg") or "the machines could not be read")
            entry.update(status="failed", reason=untrusted(reason if len(reason) <= REASON_MAX else reason[:REASON_MAX] + "..."))
        else:
            own, own_all = _tenant_hosts(tenant, hosts, all_hosts, groups)
            assigned.update(own)
            report = coverage_report(result["machines"], own, all_hosts=own_all, stale_days=stale_days, now=now)
            entry["report"] = report
            rows.extend(dict(r, tenant=entry["name"]) for r in report["hosts"])
            unknown.extend(dict(r, tenant=entry["name"]) for r in report["unknown_machines"])
        tenants.append(entry)
    reports = [t["report"] for t in tenants if t["report"]]
    moment = odata.parse_time(now, "now", relative=False) if now else odata.utcnow()
    counts = dict((k, sum(r["counts"][k] for r in reports)) for k in STATUSES + ("unknown", "hosts"))
    return {"generated": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "stale_days": int(stale_days), "counts": counts,
            "total_machines": sum(r["total_machines"] for r in reports),
            "onboarded_machines": sum(r["onboarded_machines"] for r in reports), "hosts": rows,
            "unknown_machines": unknown, "tenants": tenants,
            "failed_tenants": [t["name"] for t in tenants if t["status"] == "failed"],
            "unassigned_hosts": sorted(_text(h) for h in hosts if h not in assigned)}


def coverage_report_tenant_line(tenant):
    """One tenant's summary line (a row of coverage_report_tenants' C(tenants)) for the role's output."""
    if not isinstance(tenant, Mapping) or "status" not in tenant:
        raise AnsibleFilterError("coverage_report_tenant_line expects a tenant of defender.endpoint.coverage_report_tenants")
    if not tenant.get("report"):
        return "%s: failed: %s" % (tenant["name"], tenant["reason"])
    report = tenant["report"]
    return "%s: %d machines (%d onboarded), %d hosts, %d unprotected, %d in no inventory group" % (
        tenant["name"], report["total_machines"], report["onboarded_machines"], report["counts"]["hosts"],
        report["counts"]["unprotected"], report["counts"]["unknown"])


# -- rendering -------------------------------------------------------------------------------------------------
# The report's Markdown, CSV and HTML are the templates of the coverage_report role (roles/coverage_report/templates/
# coverage.<md|csv|html>.j2), rendered here with jinja2 alone: the report holds API data (machine names, platforms),
# which Ansible's templating must never evaluate, and the HTML template renders with autoescape on.
HOST_COLUMNS = ("host", "status", "problems", "matched_by", "computer_dns_name", "machine_id", "health_status",
                "defender_av_status", "last_seen", "days_since_seen", "os_platform")
UNKNOWN_COLUMNS = ("computer_dns_name", "machine_id", "last_ip_address", "health_status", "defender_av_status",
                   "last_seen", "os_platform")
UNKNOWN_CSV_COLUMNS = ("computer_dns_name", "machine_id", "health_status", "defender_av_status", "last_seen")
COLOURS = {"unprotected": "#c62828", "stale": "#ef6c00", "unhealthy": "#ad1457", "av_outdated": "#6a1b9a",
           "ok": "#2e7d32", "unknown": "#1565c0"}
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles",
                         "coverage_report", "templates")
FORMATS = {"markdown": "coverage.md.j2", "csv": "coverage.csv.j2", "html": "coverage.html.j2"}
TENANT_FORMATS = {"markdown": "coverage_tenants.md.j2", "csv": "coverage_tenants.csv.j2", "html": "coverage_tenants.html.j2"}


def _cell(row, key):
    value = row.get(key)
    if isinstance(value, list):
        return ", ".join(_escape_control(v) for v in value)
    return _escape_control(value)


def _csv_safe(text):
    """One line, and no spreadsheet formula (OWASP CSV injection): a leading = + - @ is quoted with '."""
    text = " ".join(text.splitlines())
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(values):
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def _md(text):
    """Markdown table cell: one line, no HTML, the characters Markdown gives a meaning escaped."""
    text = html.escape(" ".join(_text(text).splitlines()), quote=False)
    for ch in "\\`*_{}[]()#+!|~":
        text = text.replace(ch, "\\" + ch)
    return text


def _environment(fmt):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=fmt == "html", trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True, undefined=StrictUndefined)
    env.filters.update(cell=_cell, extract_cell=lambda key, row: _cell(row, key), csv_safe=_csv_safe, csv_row=_csv_row,
                       md=_md)
    return env


def coverage_report_render(report, fmt):
    if fmt not in FORMATS:
        raise AnsibleFilterError("coverage_report_render: format must be one of %s" % ", ".join(sorted(FORMATS)))
    if not isinstance(report, dict) or "hosts" not in report:
        raise AnsibleFilterError("coverage_report_render expects the result of defender.endpoint.coverage_report")
    template = (TENANT_FORMATS if "tenants" in report else FORMATS)[fmt]
    return _environment(fmt).get_template(template).render(
        report=report, keys=STATUSES + ("unknown",), labels=LABELS, colours=COLOURS, host_columns=HOST_COLUMNS,
        unknown_columns=UNKNOWN_COLUMNS, unknown_csv_columns=UNKNOWN_CSV_COLUMNS)


class FilterModule(object):
    def filters(self):
        return {"coverage_report": coverage_report, "coverage_report_tenants": coverage_report_tenants,
                "coverage_report_tenant_line": coverage_report_tenant_line,
                "coverage_report_render": coverage_report_render}
