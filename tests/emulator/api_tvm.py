"""Defender Vulnerability Management (TVM): missing KBs, vulnerabilities and recommendations per machine, the
tenant-wide vulnerability lists and the software vulnerabilities export (JSON, paged).

The data is derived deterministically from the seed machines (README, "Vulnerability management"): a catalogue of
KBs and CVEs below, assigned to onboarded machines by platform and list index. Associations, scores and exploit
levels are invented test data, not real advisories.
"""

import base64
import json
from urllib.parse import urlencode

from .common import ApiError, collection_response, page
from .odata import FieldSpec, compile_filter, parse_paging

VULN_READ = ("Vulnerability.Read.All",)
RECO_READ = ("SecurityRecommendation.Read.All",)
SOFTWARE_READ = ("Software.Read.All",)
EXPORT_DEFAULT_PAGE = 50000
EXPORT_MAX_PAGE = 200000

# KB id (as the API spells it: digits only) -> name, the product it patches, the CVEs it fixes.
# Per Windows platform an "October" KB (missed by machine i when i % 3 != 2) and a "November" KB (i % 2 == 0).
KBS = {
    "5031356": ("October 2023 Security Updates", "windows_10", ["CVE-2023-36884", "CVE-2023-41772"]),
    "5032189": ("November 2023 Security Updates", "windows_10", ["CVE-2023-36025", "CVE-2023-36397"]),
    "5031354": ("October 2023 Security Updates", "windows_11", ["CVE-2023-36884", "CVE-2023-41772"]),
    "5032190": ("November 2023 Security Updates", "windows_11", ["CVE-2023-36025", "CVE-2023-36397"]),
    "5031361": ("October 2023 Security Updates", "windows_server_2019", ["CVE-2023-36884", "CVE-2023-35349"]),
    "5032196": ("November 2023 Security Updates", "windows_server_2019", ["CVE-2023-36025"]),
    "5031364": ("October 2023 Security Updates", "windows_server_2022", ["CVE-2023-36884", "CVE-2023-35349"]),
    "5032198": ("November 2023 Security Updates", "windows_server_2022", ["CVE-2023-36025"]),
}
PLATFORM_KBS = {  # platform -> (october KB, november KB, OS software name, OS version prefix)
    "Windows10": ("5031356", "5032189", "windows_10", "10.0.19045"),
    "Windows11": ("5031354", "5032190", "windows_11", "10.0.22631"),
    "WindowsServer2019": ("5031361", "5032196", "windows_server_2019", "10.0.17763"),
    "WindowsServer2022": ("5031364", "5032198", "windows_server_2022", "10.0.20348"),
}
# CVE -> severity, cvssV3, exploitabilityLevel, published (date), description
CVES = {
    "CVE-2023-36884": ("High", 8.8, "ExploitIsVerified", "2023-07-11", "Office and Windows HTML remote code execution vulnerability."),
    "CVE-2023-41772": ("High", 7.8, "NoExploit", "2023-10-10", "Win32k elevation of privilege vulnerability."),
    "CVE-2023-36025": ("High", 8.8, "ExploitIsInKit", "2023-11-14", "Windows SmartScreen security feature bypass vulnerability."),
    "CVE-2023-36397": ("Critical", 9.8, "ExploitIsPublic", "2023-11-14", "Windows Pragmatic General Multicast remote code execution vulnerability."),
    "CVE-2023-35349": ("Critical", 9.8, "NoExploit", "2023-08-08", "Microsoft Message Queuing remote code execution vulnerability."),
    "CVE-2023-5217": ("High", 8.8, "ExploitIsVerified", "2023-09-28", "Heap buffer overflow in vp8 encoding in libvpx."),
    "CVE-2023-38545": ("Critical", 9.8, "ExploitIsPublic", "2023-10-18", "SOCKS5 heap buffer overflow in curl."),
    "CVE-2023-41064": ("High", 7.8, "ExploitIsInKit", "2023-09-07", "ImageIO buffer overflow processing a maliciously crafted image."),
    "CVE-2023-4863": ("Medium", 6.5, "NoExploit", "2023-09-12", "Heap buffer overflow in libwebp."),
}
# Third-party software (no KB): (vendor, name, installed version, recommended version, CVEs, platforms, rule(i))
SOFTWARE = (
    ("google", "chrome", "117.0.5938.92", "117.0.5938.132", ["CVE-2023-5217", "CVE-2023-4863"],
     ("Windows10", "Windows11"), lambda i: i % 4 == 1),
    ("haxx", "curl", "7.81.0", "8.4.0", ["CVE-2023-38545"], ("Linux",), lambda i: i % 2 == 1),
    ("apple", "macos", "13.5.1", "13.5.2", ["CVE-2023-41064"], ("macOS",), lambda i: i % 2 == 0),
)
EXPLOIT_FLAGS = {  # exploitabilityLevel -> (publicExploit, exploitVerified, exploitInKit)
    "NoExploit": (False, False, False),
    "ExploitIsPublic": (True, False, False),
    "ExploitIsVerified": (True, True, False),
    "ExploitIsInKit": (True, True, True),
}

VULN_FIELDS = {name: FieldSpec(name, ftype=ftype) for name, ftype in (
    ("id", "str"), ("name", "str"), ("description", "str"), ("cvssV3", "num"), ("publishedOn", "datetime"),
    ("severity", "str"), ("updatedOn", "datetime"))}
MACHINE_VULN_FIELDS = {name: FieldSpec(name) for name in (
    "id", "cveId", "machineId", "fixingKbId", "productName", "productVersion", "severity", "productVendor")}


def kb_url(kb):
    return "https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB%s" % kb


def _stamp(iso_text):
    """Export timestamps are 'YYYY-MM-DD HH:MM:SS' (documented sample)."""
    return iso_text[:19].replace("T", " ") if iso_text else None


def machine_findings(index, machine):
    """[(vendor, software, version, cve or None, kb or None, recommended version or None)] of one machine."""
    if machine["onboardingStatus"] != "Onboarded":
        return []
    platform = machine["osPlatform"]
    rows = []
    if platform in PLATFORM_KBS:
        october, november, os_name, os_version = PLATFORM_KBS[platform]
        version = "%s.%d" % (os_version, 3000 + index % 500)
        missing = ([october] if index % 3 != 2 else []) + ([november] if index % 2 == 0 else [])
        found = [(kb, cve) for kb in missing for cve in KBS[kb][2]]
        rows.extend(("microsoft", os_name, version, cve, kb, None) for kb, cve in found)
        if not found:
            rows.append(("microsoft", os_name, version, None, None, None))
    for vendor, name, version, recommended, cves, platforms, rule in SOFTWARE:
        if platform in platforms:
            if rule(index):
                rows.extend((vendor, name, version, cve, None, recommended) for cve in cves)
            else:
                rows.append((vendor, name, recommended, None, None, None))
    return rows


class TvmData:
    """Everything TVM for the current machines, built once per state reset (state.tvm)."""

    def __init__(self, machines, base_time):
        self.base_time = base_time
        self.findings = {}          # machine id -> findings
        self.machine_kbs = {}       # machine id -> [kb ids], catalogue order
        self.kb_machines = {}       # kb id -> count of machines missing it
        self.cve_machines = {}      # cve -> set of machine ids
        self.software_machines = {}  # (vendor, name) -> (installed on count, exposed count)
        for index, machine in enumerate(machines):
            rows = machine_findings(index, machine)
            if not rows:
                continue
            self.findings[machine["id"]] = rows
            kbs = []
            for vendor, name, _version, cve, kb, _rec in rows:
                if kb and kb not in kbs:
                    kbs.append(kb)
                if cve:
                    self.cve_machines.setdefault(cve, set()).add(machine["id"])
            self.machine_kbs[machine["id"]] = kbs
            for kb in kbs:
                self.kb_machines[kb] = self.kb_machines.get(kb, 0) + 1
            for key in {(r[0], r[1]) for r in rows}:
                total, exposed = self.software_machines.get(key, (0, 0))
                vulnerable = any(r[3] for r in rows if (r[0], r[1]) == key)
                self.software_machines[key] = (total + 1, exposed + (1 if vulnerable else 0))
        self.machines = {m["id"]: m for m in machines}

    # -- entities ---------------------------------------------------------------------------------------
    def vulnerability(self, cve):
        severity, cvss, level, published, description = CVES[cve]
        public, verified, in_kit = EXPLOIT_FLAGS[level]
        return {"id": cve, "name": cve, "description": description, "severity": severity, "cvssV3": cvss,
                "cvssVector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", "exposedMachines": len(self.cve_machines.get(cve, ())),
                "publishedOn": "%sT00:00:00Z" % published, "updatedOn": "%sT00:00:00Z" % published, "publicExploit": public,
                "exploitVerified": verified, "exploitInKit": in_kit, "exploitTypes": ["Remote code execution"] if public else [],
                "exploitUris": ["https://example.com/exploits/%s" % cve] if public else []}

    def product_fix(self, kb):
        name, product, cves = KBS[kb]
        return {"id": kb, "name": name, "productsNames": [product], "url": kb_url(kb),
                "machineMissedOn": self.kb_machines.get(kb, 0), "cveAddressed": len(cves)}

    def recommendation(self, vendor, name, rows):
        cves = sorted({r[3] for r in rows if r[3]})
        total, exposed = self.software_machines.get((vendor, name), (0, 0))
        recommended = next((r[5] for r in rows if r[5]), "")
        levels = [CVES[c][2] for c in cves]
        pretty = name.replace("_", " ").title()
        return {"id": "va-_-%s-_-%s" % (vendor, name), "productName": name,
                "recommendationName": "Update %s%s" % (pretty, " to version %s" % recommended if recommended else ""),
                "weaknesses": len(cves), "vendor": vendor, "recommendedVersion": recommended, "recommendedProgram": None,
                "recommendedVendor": None, "recommendationCategory": "Application", "subCategory": "",
                "severityScore": max(CVES[c][1] for c in cves), "publicExploit": any(lv != "NoExploit" for lv in levels),
                "activeAlert": False, "associatedThreats": [], "remediationType": "Update", "status": "Active",
                "configScoreImpact": 0, "exposureImpact": round(len(cves) * 0.75, 2), "totalMachineCount": total,
                "exposedMachinesCount": exposed, "nonProductivityImpactedAssets": 0, "relatedComponent": pretty}

    def machine_vulnerabilities(self, machine_id):
        cves = []
        for row in self.findings.get(machine_id, []):
            if row[3] and row[3] not in cves:
                cves.append(row[3])
        return [self.vulnerability(c) for c in cves]

    def machine_recommendations(self, machine_id):
        groups = {}
        for row in self.findings.get(machine_id, []):
            if row[3]:
                groups.setdefault((row[0], row[1]), []).append(row)
        return [self.recommendation(vendor, name, rows) for (vendor, name), rows in groups.items()]

    def export_records(self):
        """SoftwareVulnerabilitiesByMachine rows, machine list order."""
        out = []
        for machine_id, rows in self.findings.items():
            machine = self.machines[machine_id]
            for vendor, name, version, cve, kb, recommended in rows:
                severity, cvss, level = (CVES[cve][:3] if cve else (None, None, "NoExploit"))
                out.append({
                    "id": "%s_%s_%s_%s_" % (machine_id, name, version, cve or ""),
                    "deviceId": machine_id, "rbacGroupName": machine["rbacGroupName"] or "Unassigned",
                    "deviceName": machine["computerDnsName"], "osPlatform": machine["osPlatform"],
                    "osVersion": version if vendor == "microsoft" else machine["version"], "osArchitecture": "x64",
                    "softwareVendor": vendor, "softwareName": name, "softwareVersion": version, "cveId": cve,
                    "cvssScore": cvss, "vulnerabilitySeverityLevel": severity,
                    "recommendedSecurityUpdate": KBS[kb][0] if kb else None, "recommendedSecurityUpdateId": kb,
                    "recommendedSecurityUpdateUrl": kb_url(kb) if kb else None, "diskPaths": [], "registryPaths": [],
                    "lastSeenTimestamp": _stamp(machine["lastSeen"]), "firstSeenTimestamp": _stamp(machine["firstSeen"]),
                    "exploitabilityLevel": level, "recommendationReference": "va-_-%s-_-%s" % (vendor, name),
                    "securityUpdateAvailable": bool(kb or recommended)})
        return out

    def machine_vulnerability_records(self):
        """/api/vulnerabilities/machinesVulnerabilities rows (PublicAssetVulnerabilityDto)."""
        out = []
        for machine_id, rows in self.findings.items():
            for vendor, name, version, cve, kb, _rec in rows:
                if cve:
                    out.append({"id": "%s-_-%s-_-%s-_-%s-_-%s-_-%s" % (machine_id, cve, vendor, name, version, kb or ""),
                                "cveId": cve, "machineId": machine_id, "fixingKbId": kb, "productName": name,
                                "productVendor": vendor, "productVersion": version, "severity": CVES[cve][0]})
        return out


def data(state):
    """The TVM data of ``state`` (built on first use after a reset)."""
    if getattr(state, "tvm", None) is None:
        state.tvm = TvmData(state.machines, state.base_time)
    return state.tvm


def _machine(ctx, ident):
    machine = ctx.state.find_machine(ident)
    if machine is None:
        raise ApiError(404, "ResourceNotFound", "Machine %s was not found" % ident)
    return machine


def _json_items(items):
    return [json.dumps(item) for item in items]


def missing_kbs(ctx, ident):
    machine = _machine(ctx, ident)
    tvm = data(ctx.state)
    return collection_response(ctx, "Collection(microsoft.windowsDefenderATP.api.PublicProductFixDto)",
                               _json_items(tvm.product_fix(kb) for kb in tvm.machine_kbs.get(machine["id"], [])))


def machine_vulnerabilities(ctx, ident):
    machine = _machine(ctx, ident)
    return collection_response(ctx, "Collection(Analytics.Contracts.PublicAPI.PublicVulnerabilityDto)",
                               _json_items(data(ctx.state).machine_vulnerabilities(machine["id"])))


def machine_recommendations(ctx, ident):
    machine = _machine(ctx, ident)
    return collection_response(ctx, "Recommendations", _json_items(data(ctx.state).machine_recommendations(machine["id"])))


def list_vulnerabilities(ctx):
    top, skip = parse_paging(ctx.query, max_top=8000)
    pred = compile_filter(ctx.query.get("$filter"), VULN_FIELDS)
    tvm = data(ctx.state)
    items = [tvm.vulnerability(c) for c in CVES if tvm.cve_machines.get(c)]
    items = [v for v in items if pred is None or pred(v)]
    return collection_response(ctx, "Vulnerabilities", _json_items(page(items, 8000 if top is None else top, skip)))


def machines_vulnerabilities(ctx):
    top, skip = parse_paging(ctx.query, max_top=10000)
    pred = compile_filter(ctx.query.get("$filter"), MACHINE_VULN_FIELDS)
    items = [r for r in data(ctx.state).machine_vulnerability_records() if pred is None or pred(r)]
    return collection_response(ctx, "Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)",
                               _json_items(page(items, 10000 if top is None else top, skip)))


def _query_value(query, name):
    for key, value in query.items():
        if key.lower() == name.lower():
            return key, value
    return None, None


def _int_param(query, name, low, high):
    _key, value = _query_value(query, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ApiError(400, "BadRequest", "Invalid value '%s' for %s: an integer from %d to %d is expected" % (value, name, low, high))
    return number


def software_vulnerabilities_by_machine(ctx):
    page_size = _int_param(ctx.query, "pageSize", 1, EXPORT_MAX_PAGE) or EXPORT_DEFAULT_PAGE
    top = _int_param(ctx.query, "$top", 0, EXPORT_MAX_PAGE)
    _key, token = _query_value(ctx.query, "$skiptoken")
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))["LineStoppedAt"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "BadRequest", "Invalid $skiptoken") from exc
    records = data(ctx.state).export_records()
    next_link = None
    if top is not None:
        chunk = records[:min(top, page_size)]
    else:
        chunk = records[offset:offset + page_size]
        if offset + page_size < len(records):
            token = base64.urlsafe_b64encode(json.dumps({"ExportFileIndex": 0, "LineStoppedAt": offset + page_size}).encode()).decode().rstrip("=")
            query = {k: v for k, v in ctx.query.items() if k.lower() != "$skiptoken"}
            query["$skiptoken"] = token
            next_link = "%s%s?%s" % (ctx.base_url, ctx.path, urlencode(query))
    return collection_response(ctx, "Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)", _json_items(chunk), next_link)


ROUTES = [
    # Listed before api_machines: /machines/{id} would otherwise take /machines/SoftwareVulnerabilitiesByMachine.
    ("GET", r"/machines/SoftwareVulnerabilitiesByMachine", "/api/machines/SoftwareVulnerabilitiesByMachine",
     software_vulnerabilities_by_machine, VULN_READ, "tvmExport"),
    ("GET", r"/machines/(?P<ident>[^/]+)/getmissingkbs", "/api/machines/{id}/getmissingkbs", missing_kbs, SOFTWARE_READ, "default"),
    ("GET", r"/machines/(?P<ident>[^/]+)/vulnerabilities", "/api/machines/{id}/vulnerabilities", machine_vulnerabilities, VULN_READ,
     "tvmMachineVulnerabilities"),
    ("GET", r"/machines/(?P<ident>[^/]+)/recommendations", "/api/machines/{id}/recommendations", machine_recommendations, RECO_READ,
     "default"),
    ("GET", r"/vulnerabilities/machinesVulnerabilities", "/api/vulnerabilities/machinesVulnerabilities", machines_vulnerabilities,
     VULN_READ, "default"),
    ("GET", r"/vulnerabilities", "/api/vulnerabilities", list_vulnerabilities, VULN_READ, "default"),
]
