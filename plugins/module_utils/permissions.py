# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which permission each call needs, as Microsoft documents it, for the sentence a 403 fails with.
Plain Python: no Ansible import."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# The application permission each endpoint needs, as the "Permissions" section of its page documents it (the list of
# pages: https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list), used to say which permission is
# missing when the API answers 403. First match wins.
_ANY_ACTION = "one of Machine.Isolate, Machine.RestrictExecution, Machine.Scan, Machine.CollectForensics, " \
              "Machine.Offboard, Machine.StopAndQuarantine, Machine.LiveResponse"
PERMISSIONS = [
    ("POST", r"^/api/machines/[^/]+/(isolate|unisolate)$", "Machine.Isolate"),
    ("POST", r"^/api/machines/[^/]+/(restrictCodeExecution|unrestrictCodeExecution)$", "Machine.RestrictExecution"),
    ("POST", r"^/api/machines/[^/]+/runAntiVirusScan$", "Machine.Scan"),
    ("POST", r"^/api/machines/[^/]+/collectInvestigationPackage$", "Machine.CollectForensics"),
    ("POST", r"^/api/machines/[^/]+/offboard$", "Machine.Offboard"),
    ("POST", r"^/api/machines/[^/]+/StopAndQuarantineFile$", "Machine.StopAndQuarantine"),
    ("POST", r"^/api/machines/[^/]+/runliveresponse$", "Machine.LiveResponse"),
    ("POST", r"^/api/machineactions/[^/]+/cancel$", _ANY_ACTION),
    ("POST", r"^/api/machines/[^/]+/startInvestigation$", "Alert.ReadWrite.All"),
    # Two reads whose delegated permission is not the read's (the fourth item): the investigation package
    # (https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri) and a live response result
    # (https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result).
    ("GET", r"^/api/machineactions/[^/]+/getPackageUri$", "Machine.Read.All or Machine.ReadWrite.All",
     "Machine.CollectForensics"),
    ("GET", r"^/api/machineactions/[^/]+/GetLiveResponseResultDownloadLink", "Machine.Read.All or Machine.ReadWrite.All",
     "Machine.LiveResponse"),
    ("GET", r"^/api/machineactions", "Machine.Read.All or Machine.ReadWrite.All"),
    ("POST", r"^/api/machines/", "Machine.ReadWrite.All"),
    ("PATCH", r"^/api/machines/", "Machine.ReadWrite.All"),
    ("GET", r"^/api/machines/[^/]+/alerts$", "Alert.Read.All or Alert.ReadWrite.All"),
    ("GET", r"^/api/machines/[^/]+/logonusers$", "User.Read.All"),
    ("GET", r"^/api/machines/[^/]+/getmissingkbs$", "Software.Read.All"),
    ("GET", r"^/api/machines/[^/]+/recommendations$", "SecurityRecommendation.Read.All"),
    ("GET", r"^/api/machines/SoftwareVulnerabilitiesByMachine$", "Vulnerability.Read.All"),
    ("GET", r"^/api/machines/[^/]+/vulnerabilities$", "Vulnerability.Read.All"),
    ("GET", r"^/api/vulnerabilities", "Vulnerability.Read.All"),
    ("GET", r"^/api/recommendations", "SecurityRecommendation.Read.All"),
    ("GET", r"^/api/machines", "Machine.Read.All or Machine.ReadWrite.All"),
    ("GET", r"^/api/alerts/[^/]+/machine$", "Machine.Read.All or Machine.ReadWrite.All"),
    ("GET", r"^/api/alerts", "Alert.Read.All or Alert.ReadWrite.All"),
    (None, r"^/api/alerts", "Alert.ReadWrite.All"),
    (None, r"^/api/indicators", "Ti.ReadWrite.All (or Ti.ReadWrite for the indicators this application created)"),
    (None, r"^/api/advancedqueries", "AdvancedQuery.Read.All"),
    ("GET", r"^/api/investigations", "Alert.Read.All or Alert.ReadWrite.All"),
    ("GET", r"^/api/(files|domains)/[^/]+/machines$", "Machine.Read.All or Machine.ReadWrite.All"),
    ("GET", r"^/api/users/[^/]+/machines$", "Machine.ReadWrite.All"),
    ("GET", r"^/api/domains/[^/]+/alerts$", "Alert.ReadWrite.All"),
    ("GET", r"^/api/(files|ips|users)/[^/]+/alerts$", "Alert.Read.All or Alert.ReadWrite.All"),
    (None, r"^/api/files", "File.Read.All"),
    (None, r"^/api/ips", "Ip.Read.All"),
    (None, r"^/api/domains", "URL.Read.All"),
    (None, r"^/api/users", "User.Read.All"),
    (None, r"^/api/libraryfiles", "Library.Manage"),
    # Microsoft Graph (the client's second API, MDEClient.graph): the "Permissions" section of each page, e.g.
    # https://learn.microsoft.com/en-us/graph/api/security-security-runhuntingquery and
    # https://learn.microsoft.com/en-us/graph/api/security-list-incidents.
    ("POST", r"^/v1\.0/security/runHuntingQuery$", "ThreatHunting.Read.All"),
    ("GET", r"^/v1\.0/security/incidents", "SecurityIncident.Read.All or SecurityIncident.ReadWrite.All"),
    (None, r"^/v1\.0/security/incidents", "SecurityIncident.ReadWrite.All"),
    # https://learn.microsoft.com/en-us/graph/api/security-detectionrule-get and its create, update, delete pages.
    ("GET", r"^/(v1\.0|beta)/security/rules/detectionRules", "CustomDetection.Read.All or CustomDetection.ReadWrite.All"),
    (None, r"^/(v1\.0|beta)/security/rules/detectionRules", "CustomDetection.ReadWrite.All"),
]


# A user-context token carries delegated permissions, named as the "Delegated (work or school account)" row of each
# page's table: Machine.Read.All -> Machine.Read, Alert.ReadWrite.All -> Alert.ReadWrite..., while a few keep the
# application name (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-nativeapp,
# https://learn.microsoft.com/en-us/defender-endpoint/api/get-file-information). Ti.ReadWrite.All has no delegated form.
_DELEGATED_SAME = frozenset(["File.Read.All", "Ip.Read.All", "URL.Read.All", "User.Read.All"])
_DELEGATED_TEXT = {
    "Ti.ReadWrite.All (or Ti.ReadWrite for the indicators this application created)": "Ti.ReadWrite",
}


def delegated_permission(text):
    """The delegated permission(s) of the Defender for Endpoint API that stand for the application ones in ``text``."""
    if text in _DELEGATED_TEXT:
        return _DELEGATED_TEXT[text]

    def one(match):
        name = match.group(0)
        if name in _DELEGATED_SAME or not name.endswith(".All"):
            return name
        return name[:-len(".All")]
    return re.sub(r"\b[A-Z][A-Za-z]*\.[A-Za-z.]*[A-Za-z]", one, text)


def required_permission(method, path, delegated=False):
    """The permission the call needs, as its page documents it: the application one, or with ``delegated`` the
    delegated one (for the Defender for Endpoint API; Microsoft Graph names both alike)."""
    path = re.sub(r"^/api/v1\.0/", "/api/", path)
    for entry in PERMISSIONS:
        m, pattern, permission = entry[:3]
        if (m is None or m == method) and re.search(pattern, path):
            if delegated and path.startswith("/api/"):
                return entry[3] if len(entry) > 3 else delegated_permission(permission)
            return permission
    return None
