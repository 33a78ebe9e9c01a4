"""Stand-in for Microsoft's ``mdatp`` command line, packaged by tests/integration/mdatp/repo.py as /usr/bin/mdatp.

It has no daemon: every call derives the state from the files the real product reads, as documented at
https://learn.microsoft.com/en-us/defender-endpoint/linux-install-with-ansible (onboarding file),
https://learn.microsoft.com/en-us/defender-endpoint/linux-preferences (managed settings) and
https://learn.microsoft.com/en-us/defender-endpoint/linux-resources (``mdatp health``, ``connectivity test``):

- onboarded to an organisation when /etc/opt/microsoft/mdatp/mdatp_onboard.json names one and no
  mdatp_offboard.json names the same one;
- real-time protection, passive mode and device tags from managed/mdatp_managed.json;
- faults a test injects through /var/opt/microsoft/mdatp/standin.json (``definitions_status``, ``health_issues``,
  ``connectivity_errors``).
Every call is appended to /var/opt/microsoft/mdatp/calls.log so a test can see what the role ran.
"""
import json
import os
import sys

ETC = "/etc/opt/microsoft/mdatp"
VAR = "/var/opt/microsoft/mdatp"
ENDPOINTS = ["https://x.cp.wd.microsoft.com/api/report", "https://cdn.x.cp.wd.microsoft.com/ping",
             "https://winatp-gw-cus.microsoft.com/test", "https://go.microsoft.com/fwlink/?linkid=2144709"]


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _org_id(path):
    """The orgId inside an onboarding/offboarding file: {"onboardingInfo": "<json with body: <json with orgId>>"}."""
    doc = _read_json(path) or {}
    info = doc.get("onboardingInfo") or doc.get("offboardingInfo") or "{}"
    try:
        body = json.loads(json.loads(info).get("body") or "{}")
    except (ValueError, AttributeError):
        return ""
    return body.get("orgId") or ""


def health():
    faults = _read_json(os.path.join(VAR, "standin.json")) or {}
    managed = _read_json(os.path.join(ETC, "managed", "mdatp_managed.json")) or {}
    org = _org_id(os.path.join(ETC, "mdatp_onboard.json"))
    if org and _org_id(os.path.join(ETC, "mdatp_offboard.json")) == org:
        org = ""
    level = (managed.get("antivirusEngine") or {}).get("enforcementLevel", "real_time")
    tags = (managed.get("edr") or {}).get("tags") or []
    issues = list(faults.get("health_issues", []))
    if not org:
        issues.append("missing license")
    return {
        "healthy": not issues,
        "health_issues": issues,
        "licensed": bool(org),
        "org_id": org,
        "app_version": VERSION,
        "release_ring": "Production",
        "real_time_protection_enabled": level == "real_time",
        "passive_mode_enabled": level == "passive",
        "definitions_status": faults.get("definitions_status", "up_to_date"),
        "definitions_updated_minutes_ago": 7,
        "edr_device_tags": tags,
        "edr_machine_id": "standin-" + org[:8] if org else "",
    }


def _show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value if value else "unavailable"
    return json.dumps(value)


def main(argv):
    os.makedirs(VAR, exist_ok=True)
    with open(os.path.join(VAR, "calls.log"), "a") as log:
        log.write(" ".join(argv) + "\n")
    if argv[:1] == ["health"]:
        state = health()
        if argv[1:2] == ["--field"] and len(argv) == 3:
            if argv[2] not in state:
                sys.stderr.write("Invalid field: %s\n" % argv[2])
                return 2
            print(_show(state[argv[2]]))
            return 0
        for key, value in state.items():
            print("%-44s: %s" % (key, _show(value)))
        return 0
    if argv[:2] == ["connectivity", "test"]:
        errors = set((_read_json(os.path.join(VAR, "standin.json")) or {}).get("connectivity_errors", []))
        for url in ENDPOINTS:
            print("Testing connection with %s ... [%s]" % (url, "ERROR" if url in errors else "OK"))
        return 1 if errors else 0
    if argv[:1] == ["version"]:
        print("Product version: " + VERSION)
        return 0
    sys.stderr.write("mdatp stand-in: unsupported command: %s\n" % " ".join(argv))
    return 2


VERSION = "@VERSION@"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
