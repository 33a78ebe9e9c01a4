# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Defender Vulnerability Management: a machine's missing KBs, vulnerabilities and recommendations, and the
tenant-wide software vulnerabilities export summarised per machine.

Plain Python (no Ansible import), used by the mde_machine_vulnerability_info module and the mde_machines inventory
plugin. Paths, fields and limits are those of Microsoft's documentation:
``GET /api/machines/{id}/getmissingkbs`` (Software.Read.All,
https://learn.microsoft.com/en-us/defender-endpoint/api/get-missing-kbs-machine),
``GET /api/machines/{id}/vulnerabilities`` (Vulnerability.Read.All,
https://learn.microsoft.com/en-us/defender-endpoint/api/get-discovered-vulnerabilities),
``GET /api/machines/{id}/recommendations`` (SecurityRecommendation.Read.All,
https://learn.microsoft.com/en-us/defender-endpoint/api/get-security-recommendations) and
``GET /api/machines/SoftwareVulnerabilitiesByMachine`` (Vulnerability.Read.All; ``pageSize`` up to 200,000, pages
by ``@odata.nextLink``; 30 calls a minute, 1,000 an hour;
https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities).
Every read goes through the client's one paging loop (MDEClient.pages / list).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

SECTIONS = ("missing_kbs", "vulnerabilities", "recommendations")
PATHS = {
    "missing_kbs": "/api/machines/%s/getmissingkbs",
    "vulnerabilities": "/api/machines/%s/vulnerabilities",
    "recommendations": "/api/machines/%s/recommendations",
}
PERMISSIONS = {
    "missing_kbs": "Software.Read.All",
    "vulnerabilities": "Vulnerability.Read.All",
    "recommendations": "SecurityRecommendation.Read.All",
}
EXPORT_PATH = "/api/machines/SoftwareVulnerabilitiesByMachine"
EXPORT_PERMISSION = "Vulnerability.Read.All"
EXPORT_MAX_PAGE_SIZE = 200000
SEVERITIES = ("Low", "Medium", "High", "Critical")
# exploitabilityLevel values of the export, weakest first
EXPLOITABILITY = ("NoExploit", "ExploitIsPublic", "ExploitIsVerified", "ExploitIsInKit")
_KB_RE = re.compile(r"^(?:KB)?(\d{4,10})$", re.I)


def normalize_kb(value):
    """``KB5031356``, ``kb5031356`` or ``5031356`` -> ``5031356`` (the API's spelling). ValueError otherwise."""
    match = _KB_RE.match(str(value or "").strip())
    if not match:
        raise ValueError("%r is not a KB number (expected digits, optionally prefixed with KB, such as KB5031356)" % (value,))
    return match.group(1)


def exploitability(vulnerability):
    """The export's exploitabilityLevel for a Vulnerability entity, from its publicExploit/exploitVerified/exploitInKit."""
    if vulnerability.get("exploitInKit"):
        return "ExploitIsInKit"
    if vulnerability.get("exploitVerified"):
        return "ExploitIsVerified"
    if vulnerability.get("publicExploit"):
        return "ExploitIsPublic"
    return "NoExploit"


def is_exploitable(level):
    """An exploit is known (public, verified or in a kit)."""
    return bool(level) and level != "NoExploit"


def with_permission(error, permission):
    """The client names a machine-read permission for any 403 under /api/machines; name the TVM one instead."""
    if isinstance(error, MDEError) and error.status == 403:
        if error.permission and error.permission in error.message:
            error.message = error.message.replace(error.permission, permission)
        elif "permission" not in error.message:
            error.message = error.message.rstrip(".") + ". The Entra ID application needs the WindowsDefenderATP " \
                "application permission %s, granted with admin consent." % permission
        error.permission = permission
    return error


def machine_sections(client, machine_id, sections):
    """{section: [entities]} for one machine, one GET per section asked for."""
    out = {}
    for section in sections:
        try:
            out[section] = list(client.list(PATHS[section] % machine_id, use_top=False))
        except MDEError as e:
            raise with_permission(e, PERMISSIONS[section])
    return out


def summarize(missing_kbs=None, vulnerabilities=None, recommendations=None):
    """The counts and ids a playbook decides on (snake_case keys; values as the API spells them)."""
    summary = {}
    if missing_kbs is not None:
        summary["missing_kb_ids"] = [kb.get("id") for kb in missing_kbs]
        summary["missing_kb_count"] = len(missing_kbs)
    if vulnerabilities is not None:
        cves = [dict(cve=v.get("id"), severity=v.get("severity"), cvss_v3=v.get("cvssV3"),
                     exploitability=exploitability(v)) for v in vulnerabilities]
        summary["cves"] = cves
        summary["vulnerability_count"] = len(cves)
        summary["severity_counts"] = dict((s, sum(1 for c in cves if c["severity"] == s)) for s in SEVERITIES)
        summary["exploitable_cve_ids"] = [c["cve"] for c in cves if is_exploitable(c["exploitability"])]
        summary["critical_exploitable_cve_ids"] = [c["cve"] for c in cves
                                                   if c["severity"] == "Critical" and is_exploitable(c["exploitability"])]
    if recommendations is not None:
        summary["recommendation_count"] = len(recommendations)
    return summary


# -- tenant-wide export, for the inventory ---------------------------------------------------------------------
def export_pages(client, page_size=EXPORT_MAX_PAGE_SIZE):
    """Yield the record lists of the software vulnerabilities export, ``page_size`` records a call, following
    @odata.nextLink until the last page (the export takes ``pageSize``, not ``$top``/``$skip``)."""
    page_size = max(1, min(int(page_size), EXPORT_MAX_PAGE_SIZE))
    try:
        yield from client.pages(EXPORT_PATH, params={"pageSize": page_size}, use_top=False)
    except MDEError as e:
        raise with_permission(e, EXPORT_PERMISSION)


def per_machine(records):
    """{deviceId: {"missing_kbs": [KB ids], "vulnerabilities": [{cve, severity, cvss_score, exploitability, software,
    kb}]}} from export records. A CVE found in two products of one machine is listed once (its first product)."""
    machines = {}
    for record in records:
        device = record.get("deviceId")
        if not device:
            continue
        entry = machines.setdefault(device, {"missing_kbs": [], "vulnerabilities": []})
        kb = record.get("recommendedSecurityUpdateId")
        cve = record.get("cveId")
        if kb and cve and kb not in entry["missing_kbs"]:
            entry["missing_kbs"].append(kb)
        if cve and cve not in [v["cve"] for v in entry["vulnerabilities"]]:
            entry["vulnerabilities"].append(dict(
                cve=cve, severity=record.get("vulnerabilitySeverityLevel"), cvss_score=record.get("cvssScore"),
                exploitability=record.get("exploitabilityLevel") or "NoExploit",
                software="%s %s" % (record.get("softwareName"), record.get("softwareVersion")), kb=kb))
    return machines


def severity_rank(severity):
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1
