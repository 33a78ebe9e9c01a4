"""Deterministic seed data: machines, alerts (with evidence), indicators, hunting events.

Everything is derived from ``seed`` and the emulator's ``base_time`` (its construction time), so two
emulators built with the same arguments hold the same data except for absolute timestamps.
See README.md, "Seed layout".
"""

import datetime
import hashlib
import random

PLATFORM_CYCLE = (["Windows10"] * 7 + ["Windows11"] * 4 + ["WindowsServer2019"] * 2 + ["WindowsServer2022"] * 2
                  + ["Linux"] * 3 + ["macOS"] * 2)
PREFIX = {"Windows10": "ws", "Windows11": "ws", "WindowsServer2019": "srv", "WindowsServer2022": "srv", "Linux": "lnx", "macOS": "mac"}
OS_DETAILS = {  # version, osBuild, agentVersion
    "Windows10": ("22H2", 19045, "10.8760.19041.4355"),
    "Windows11": ("23H2", 22631, "10.8760.22621.3527"),
    "WindowsServer2019": ("1809", 17763, "10.8760.17763.5696"),
    "WindowsServer2022": ("21H2", 20348, "10.8760.20348.2402"),
    "Linux": ("22.04", None, "101.24032.0007"),
    "macOS": ("14.4", None, "101.24032.0006"),
}
NON_ONBOARDED = ("CanBeOnboarded", "Unsupported", "InsufficientInfo")
RBAC_GROUPS = {"ws": (140, "The-A-Team"), "srv": (201, "Servers"), "lnx": (202, "NonWindows"), "mac": (202, "NonWindows")}
HEALTH_CYCLE = ["Active"] * 7 + ["Inactive", "ImpairedCommunication", "NoSensorData"]
RISK_CYCLE = ["None", "Informational", "Low", "Low", "Medium", "Medium", "High"]
EXPOSURE_CYCLE = ["Low", "Medium", "Medium", "High", "None"]
DEVICE_VALUE_CYCLE = ["Normal"] * 8 + ["Low", "High"]

ALERT_STATUS = ["New", "New", "InProgress", "Resolved"]
ALERT_SEVERITY = ["Informational", "Low", "Medium", "High", "Low", "Medium"]
ALERT_CATEGORY = ["Execution", "SuspiciousActivity", "Malware", "CredentialAccess", "Persistence", "LateralMovement",
                  "DefenseEvasion", "CommandAndControl"]
ALERT_SOURCE = ["WindowsDefenderAtp", "WindowsDefenderAv", "CustomDetection", "AutomatedInvestigation", "SmartScreen"]
ALERT_TITLES = {
    "Execution": "Low-reputation arbitrary code executed by signed executable",
    "SuspiciousActivity": "Suspicious 'Meterpreter' behavior was detected",
    "Malware": "'Mimikatz' malware was detected",
    "CredentialAccess": "Suspicious access to LSASS service",
    "Persistence": "Suspicious scheduled task registration",
    "LateralMovement": "Suspicious remote service installation",
    "DefenseEvasion": "Suspicious process injection observed",
    "CommandAndControl": "Connection to a custom network indicator",
}
INVESTIGATION_STATES = ["Queued", "Running", "SuccessfullyRemediated", "Benign", "PendingApproval", "UnsupportedAlertType"]
PROCESS_NAMES = [("powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"), ("rundll32.exe", "C:\\Windows\\SysWOW64"),
                 ("cmd.exe", "C:\\Windows\\System32"), ("csc.exe", "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319"),
                 ("mshta.exe", "C:\\Windows\\System32"), ("wmic.exe", "C:\\Windows\\System32\\wbem")]


def iso(dt):
    """Canonical MDE timestamp text: 7 fractional digits, 'Z'."""
    if dt.tzinfo is not datetime.timezone.utc:
        dt = dt.astimezone(datetime.timezone.utc)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d0Z" % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)


def sha1_hex(*parts):
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def det_uuid(*parts):
    digest = hashlib.md5(repr(parts).encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:])


def _mac(i, nic):
    return "00155D%02X%04X" % (nic, i & 0xFFFF)


def machine_ip(i):
    return "10.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


def generate_machines(count, seed, base, domain="contoso.local"):
    """Return the list of machine dicts (live state). See README for the layout. ``domain``: the DNS suffix of every
    machine (each emulated tenant has its own; the host part is the same in every tenant)."""
    rng = random.Random("machines-%s" % seed)
    machines = []
    for i in range(count):
        platform = PLATFORM_CYCLE[i % len(PLATFORM_CYCLE)]
        prefix = PREFIX[platform]
        version, build, agent = OS_DETAILS[platform]
        onboarded = i % 20 != 5
        first_seen = base - datetime.timedelta(days=30 + rng.randint(0, 300), seconds=rng.randint(0, 86399))
        last_seen = base - datetime.timedelta(seconds=rng.randint(60, 29 * 86400))
        rbac_id, rbac_name = RBAC_GROUPS[prefix]
        if i % 10 == 9:
            rbac_id, rbac_name = 0, None
        tags = []
        if i % 4 == 0:
            tags.append("Finance")
        if i % 4 == 1:
            tags.append("Engineering")
        if i % 5 == 1:
            tags.append("VPN")
        is_windows = platform.startswith("Windows")
        ip = machine_ip(i)
        ip_list = [
            {"ipAddress": ip, "macAddress": _mac(i, 1), "type": "Ethernet", "operationalStatus": "Up"},
            {"ipAddress": "fe80::%x:%x" % (i >> 16, i & 0xFFFF), "macAddress": _mac(i, 1), "type": "Ethernet", "operationalStatus": "Up"},
            {"ipAddress": "127.0.0.1", "macAddress": None, "type": "SoftwareLoopback", "operationalStatus": "Up"},
        ]
        vm = None
        if prefix == "srv":
            vm = {"vmId": det_uuid(seed, "vm", i), "cloudProvider": "Azure",
                  "resourceId": "/subscriptions/%s/resourceGroups/rg-servers/providers/Microsoft.Compute/virtualMachines/%s-%05d"
                  % (det_uuid(seed, "sub"), prefix, i),
                  "subscriptionId": det_uuid(seed, "sub")}
        machine = {
            "id": sha1_hex(seed, i),
            "mergedIntoMachineId": None,
            "isPotentialDuplication": False,
            "isExcluded": False,
            "exclusionReason": None,
            "computerDnsName": "%s-%05d.%s" % (prefix, i, domain),
            "firstSeen": iso(first_seen),
            "lastSeen": iso(last_seen),
            "osPlatform": platform,
            "osVersion": None,
            "osProcessor": "x64",
            "version": version,
            "lastIpAddress": ip,
            "lastExternalIpAddress": "203.0.113.%d" % (i % 250 + 1),
            "agentVersion": agent,
            "osBuild": build,
            "healthStatus": HEALTH_CYCLE[rng.randrange(len(HEALTH_CYCLE))],
            "deviceValue": DEVICE_VALUE_CYCLE[i % len(DEVICE_VALUE_CYCLE)],
            "rbacGroupId": rbac_id,
            "rbacGroupName": rbac_name,
            "riskScore": RISK_CYCLE[rng.randrange(len(RISK_CYCLE))],
            "exposureLevel": EXPOSURE_CYCLE[rng.randrange(len(EXPOSURE_CYCLE))],
            "isAadJoined": is_windows and prefix == "ws",
            "aadDeviceId": det_uuid(seed, "aad", i) if is_windows and prefix == "ws" else None,
            "machineTags": tags,
            "defenderAvStatus": "Updated" if rng.random() < 0.9 else "NotUpdated",
            "onboardingStatus": "Onboarded" if onboarded else NON_ONBOARDED[(i // 20) % 3],
            "osArchitecture": "64-bit",
            "managedBy": "Intune" if prefix == "ws" else "MicrosoftDefenderForEndpoint",
            "managedByStatus": "Success" if prefix == "ws" else "Unknown",
            "ipAddresses": ip_list,
            "vmMetadata": vm,
        }
        if not onboarded:
            machine.update({"healthStatus": "Inactive", "riskScore": "None", "exposureLevel": None, "agentVersion": None,
                            "defenderAvStatus": "Unknown", "managedBy": "Unknown", "managedByStatus": "Unknown"})
        machines.append(machine)
    _apply_special_machines(machines, base, domain)
    return machines


def _apply_special_machines(machines, base, domain):
    if machines:
        machines[0].update({"healthStatus": "Active", "riskScore": "High", "exposureLevel": "High", "deviceValue": "High",
                            "machineTags": ["Finance", "VIP"], "lastSeen": iso(base - datetime.timedelta(minutes=5))})
    if len(machines) > 1:
        machines[1].update({"computerDnsName": None, "healthStatus": "Active"})
    if len(machines) > 3:
        for idx, age in ((2, 20), (3, 1)):
            machines[idx].update({"computerDnsName": "dup-00002.%s" % domain, "healthStatus": "Active", "onboardingStatus": "Onboarded",
                                  "lastSeen": iso(base - datetime.timedelta(days=age))})


def _alert_id(seed, j):
    signed = int(sha1_hex(seed, "alert", j)[:8], 16) - 2 ** 31
    return "da%018d_%d" % (637472900382838869 + j * 1000003, signed)


# The first alerts were created in the last day, relative to when the emulator started (or was reset): with the
# severity and status cycles, that is every severity, each with a New one (alert 9 is a New High), so that a first
# playbook such as "New High alerts of the last 24 hours" finds something.
RECENT_ALERTS = 12


def generate_alerts(count, machines, seed, base, tenant_id):
    """Return alert dicts linked to onboarded machines; evidence is produced by :func:`alert_evidence`."""
    rng = random.Random("alerts-%s" % seed)
    targets = [m for m in machines if m["onboardingStatus"] == "Onboarded"]
    alerts = []
    if not targets:
        return alerts
    for j in range(count):
        machine = targets[j % len(targets)]
        category = ALERT_CATEGORY[j % len(ALERT_CATEGORY)]
        status = ALERT_STATUS[j % len(ALERT_STATUS)]
        age = rng.randint(120, 29 * 86400)
        if j < RECENT_ALERTS:
            age = 120 + age % (23 * 3600)  # the same draw, folded into the last 23 hours: the other alerts keep theirs
        created = base - datetime.timedelta(seconds=age)
        first_event = created - datetime.timedelta(seconds=rng.randint(60, 600))
        last_event = first_event + datetime.timedelta(seconds=rng.randint(1, 60))
        updated = created + datetime.timedelta(seconds=rng.randint(1, 3600))
        updated = min(updated, base)
        resolved = status == "Resolved"
        user = "user%04d" % (j % 500)
        alerts.append({
            "id": _alert_id(seed, j),
            "incidentId": 1000 + j // 3,
            "investigationId": 700000 + j if j % 3 else None,
            "assignedTo": "secop%d@contoso.com" % (j % 3) if status != "New" else None,
            "severity": ALERT_SEVERITY[j % len(ALERT_SEVERITY)],
            "status": status,
            "classification": ("TruePositive" if j % 2 else "FalsePositive") if resolved else None,
            "determination": ("Malware" if j % 2 else "Clean") if resolved else None,
            "investigationState": INVESTIGATION_STATES[j % len(INVESTIGATION_STATES)],
            "detectionSource": ALERT_SOURCE[j % len(ALERT_SOURCE)],
            "detectorId": det_uuid("detector", category),
            "category": category,
            "threatFamilyName": "Meterpreter" if category in ("Malware", "SuspiciousActivity") else None,
            "title": ALERT_TITLES[category],
            "description": "Emulated alert %d: %s on %s." % (j, ALERT_TITLES[category], machine["computerDnsName"]),
            "alertCreationTime": iso(created),
            "firstEventTime": iso(first_event),
            "lastEventTime": iso(last_event),
            "lastUpdateTime": iso(updated),
            "resolvedTime": iso(updated) if resolved else None,
            "machineId": machine["id"],
            "computerDnsName": machine["computerDnsName"],
            "rbacGroupName": machine["rbacGroupName"],
            "aadTenantId": tenant_id,
            "threatName": "HackTool:Win32/Mimikatz" if category == "Malware" else None,
            "mitreTechniques": ["T1059", "T1218"][: 1 + j % 2],
            "relatedUser": {"userName": user, "domainName": "CONTOSO"},
            "comments": [],
            "evidence": [],
            "_index": j,
        })
    return alerts


EVIDENCE_FIELDS = ("entityType", "evidenceCreationTime", "sha1", "sha256", "fileName", "filePath", "processId", "processCommandLine",
                   "processCreationTime", "parentProcessId", "parentProcessCreationTime", "parentProcessFileName", "parentProcessFilePath",
                   "ipAddress", "url", "registryKey", "registryHive", "registryValueType", "registryValue", "accountName", "domainName",
                   "userSid", "aadUserId", "userPrincipalName", "detectionStatus")


def alert_evidence(alert, seed):
    """Deterministic evidence list (User, Process, File) for one alert, shaped as in the docs."""
    j = alert["_index"]
    created = alert["alertCreationTime"]
    proc, folder = PROCESS_NAMES[j % len(PROCESS_NAMES)]
    blank = dict.fromkeys(EVIDENCE_FIELDS)
    user = dict(blank, entityType="User", evidenceCreationTime=created, accountName=alert["relatedUser"]["userName"],
                domainName="CONTOSO", userSid="S-1-5-21-1111607-1111760036-109187956-%d" % (1000 + j % 500),
                aadUserId=det_uuid(seed, "user", j % 500), userPrincipalName="%s@contoso.com" % alert["relatedUser"]["userName"])
    process = dict(blank, entityType="Process", evidenceCreationTime=created, sha1=sha1_hex(seed, "proc", proc),
                   sha256=hashlib.sha256(proc.encode()).hexdigest(), fileName=proc, filePath=folder, processId=1000 + j % 60000,
                   processCommandLine="%s -enc SQBFAFgA" % proc, processCreationTime=alert["firstEventTime"], parentProcessId=800,
                   parentProcessCreationTime=alert["firstEventTime"], parentProcessFileName="explorer.exe",
                   parentProcessFilePath="C:\\Windows", detectionStatus="Detected")
    payload = "payload%04d.dll" % (j % 1000)
    file_ev = dict(blank, entityType="File", evidenceCreationTime=created, sha1=sha1_hex(seed, "file", j % 1000),
                   sha256=hashlib.sha256(payload.encode()).hexdigest(), fileName=payload, filePath="c:\\temp",
                   detectionStatus="Detected")
    return [user, process, file_ev]


INDICATOR_SAMPLES = [
    ("FileSha1", lambda k: sha1_hex("ioc", k)),
    ("FileSha256", lambda k: hashlib.sha256(("ioc%d" % k).encode()).hexdigest()),
    ("IpAddress", lambda k: "198.51.100.%d" % (k % 250 + 1)),
    ("DomainName", lambda k: "malicious%d.example.net" % k),
    ("Url", lambda k: "http://phish%d.example.org/login" % k),
    ("FileMd5", lambda k: hashlib.md5(("ioc%d" % k).encode()).hexdigest()),
    ("CertificateThumbprint", lambda k: sha1_hex("cert", k).upper()),
]
INDICATOR_ACTIONS = {"FileSha1": "BlockAndRemediate", "FileSha256": "Block", "IpAddress": "Block", "DomainName": "Audit",
                     "Url": "Warn", "FileMd5": "Allowed", "CertificateThumbprint": "Allowed"}


def generate_indicators(count, creators, base):
    """Indicators; ``creators`` is a list of (createdBy, source, sourceType) tuples used round-robin."""
    result = []
    for k in range(count):
        itype, make = INDICATOR_SAMPLES[k % len(INDICATOR_SAMPLES)]
        created_by, source, source_type = creators[k % len(creators)]
        action = INDICATOR_ACTIONS[itype]
        created = iso(base - datetime.timedelta(days=1 + k % 20, hours=k % 24))
        result.append({
            "id": str(1000 + k),
            "indicatorValue": make(k),
            "indicatorType": itype,
            "action": action,
            "application": "demo-app" if k % 3 == 0 else None,
            "source": source,
            "sourceType": source_type,
            "createdBy": created_by,
            "severity": ["Informational", "Low", "Medium", "High"][k % 4],
            "title": "Seed indicator %d" % k,
            "description": "Seeded %s indicator" % itype,
            "recommendedActions": "Investigate",
            "creationTimeDateTimeUtc": created,
            "expirationTime": None,
            "lastUpdateTime": created,
            "lastUpdatedBy": source,
            "rbacGroupNames": [],
            "rbacGroupIds": [],
            "generateAlert": action == "Audit",
            "externalID": None,
        })
    return result


def generate_process_events(machines, seed, base, per_machine=3, max_machines=2000):
    """DeviceProcessEvents rows for the first onboarded Windows machines (advanced hunting)."""
    rng = random.Random("ah-%s" % seed)
    rows = []
    windows = [m for m in machines if m["onboardingStatus"] == "Onboarded" and m["osPlatform"].startswith("Windows")][:max_machines]
    for m in windows:
        for k in range(per_machine):
            proc, folder = PROCESS_NAMES[(len(rows) + k) % len(PROCESS_NAMES)]
            parent = "powershell.exe" if proc != "powershell.exe" else "explorer.exe"
            ts = base - datetime.timedelta(seconds=rng.randint(60, 29 * 86400))
            rows.append({
                "Timestamp": iso(ts), "DeviceId": m["id"], "DeviceName": m["computerDnsName"], "ActionType": "ProcessCreated",
                "FileName": proc, "FolderPath": folder + "\\" + proc, "SHA1": sha1_hex(seed, "proc", proc),
                "ProcessCommandLine": proc + " /c whoami", "AccountName": "user%04d" % (len(rows) % 500), "AccountDomain": "contoso",
                "InitiatingProcessFileName": parent, "ProcessId": 1000 + len(rows) % 60000,
            })
    rows.sort(key=lambda r: r["Timestamp"])
    return rows
