"""Bad input: a table of bad inputs across every module and the mde_machines inventory plugin.

Each one fails with a message naming the option and the problem, and the emulator receives no write. Input the
collection can judge by itself is refused before any request (not even a token request: the request log stays
empty); a bad `odata_filter`, an unknown machine or alert reach the API, which answers, and still nothing is written.

The table runs in four ansible runs (module tasks with ignore_errors in one playbook, inventory sources side by
side in one ansible-inventory run; each split into "no request at all" and "reaches the API"), then one
parametrized test per row reads its own result.
"""
import os
import re

import pytest
import yaml

from tests.integration.harness import Ansible

INFO = "defender.endpoint.mde_machine_info"
ACTION = "defender.endpoint.mde_machine_action"
ACTION_INFO = "defender.endpoint.mde_machine_action_info"
ALERT_INFO = "defender.endpoint.mde_alert_info"
ALERT = "defender.endpoint.mde_alert"
INDICATOR = "defender.endpoint.mde_indicator"
INDICATOR_INFO = "defender.endpoint.mde_indicator_info"
MACHINE = "defender.endpoint.mde_machine"
HUNTING = "defender.endpoint.mde_advanced_hunting"
DETECTION_RULE = "defender.endpoint.mde_detection_rule"
DETECTION_RULE_INFO = "defender.endpoint.mde_detection_rule_info"
# A custom detection rule whose every option is valid; each row below spoils one.
DR = dict(rule_id="ansible-bad-input", display_name="Bad input", frequency="1h",
          query="DeviceProcessEvents | project Timestamp, DeviceId, ReportId", alert=dict(title="Bad input"))
VULNERABILITIES = "defender.endpoint.mde_machine_vulnerability_info"
PLUGIN = "defender.endpoint.mde_machines"

MID = "d310d6fa99160c849d2b3aaf3417cb8110856623"  # well-formed, but no such machine in the emulator
UNKNOWN_MID = "0" * 40
SHA256 = "b5c2d8b43a0af9b0b5d1e1d4e2dac0a07e6f9d7c8a1f2b3c4d5e6f708192a3b4"
IND = dict(action="Block", title="Bad input", description="Bad input table")
NOT_A_PEM = "/etc/hostname"
# markers replaced by real paths when the table is run
CERT_ENCRYPTED, CERT_PLAIN, DIRECTORY = "@cert_encrypted@", "@cert_plain@", "@directory@"


def ind(indicator_type, value, **extra):
    args = dict(IND, indicator_type=indicator_type, indicator_value=value)
    args.update(extra)
    return args


# (case id, module, arguments, fragments the message must hold: the option and the problem)
# Rows whose id starts with "api:" reach the API on purpose; every other row must make no request at all.
MODULE_CASES = [
    # -- wrong types ---------------------------------------------------------------------------------
    ("info limit not a number", INFO, dict(limit="many"), ["limit", "int"]),
    ("info limit zero", INFO, dict(limit=0), ["limit", "at least 1", "0"]),
    ("action wait not a boolean", ACTION, dict(machine_id=MID, action="isolate", wait="perhaps"), ["wait", "bool"]),
    ("action wait_timeout not a number", ACTION, dict(machine_id=MID, action="isolate", wait=True,
                                                      wait_timeout="soon"), ["wait_timeout", "int"]),
    ("action wait_timeout negative", ACTION, dict(machine_id=MID, action="isolate", wait_timeout=-5),
     ["wait_timeout", "at least 1", "-5"]),
    ("alert_info incident_id not integers", ALERT_INFO, dict(incident_id=["INC-7"]), ["incident_id", "int"]),
    ("alert alert_ids not a list of strings", ALERT, dict(alert_ids={"a": 1}, status="Resolved"),
     ["alert_ids", "list"]),
    ("indicator generate_alert not a boolean", INDICATOR, ind("FileSha256", SHA256, generate_alert="sometimes"),
     ["generate_alert", "bool"]),
    ("indicator indicators not a list", INDICATOR, dict(indicators="evil.example.com"), ["option 'indicators'", "convert to dict"]),
    ("hunting timeout out of range", HUNTING, dict(query="DeviceInfo | take 1", timeout=500), ["timeout", "500"]),
    ("auth timeout zero", INFO, dict(timeout=0), ["timeout", "greater than 0"]),
    ("auth validate_certs not a boolean", INFO, dict(validate_certs="sometimes"), ["validate_certs", "bool"]),
    # -- unknown enum values ---------------------------------------------------------------------------
    ("info health_status", INFO, dict(health_status=["Sick"]), ["health_status", "Sick", "Active"]),
    ("info risk_score", INFO, dict(risk_score=["Critical"]), ["risk_score", "Critical"]),
    ("action action", ACTION, dict(machine_id=MID, action="explode"), ["action", "explode", "isolate"]),
    ("action isolation_type", ACTION, dict(machine_id=MID, action="isolate", isolation_type="Partial"),
     ["isolation_type", "Partial", "Selective"]),
    ("action scan_type", ACTION, dict(machine_id=MID, action="antivirus_scan", scan_type="Deep"),
     ["scan_type", "Deep", "Quick"]),
    ("action_info type", ACTION_INFO, dict(type=["Explode"]), ["type", "Explode", "Isolate"]),
    ("action_info status", ACTION_INFO, dict(status=["Done"]), ["status", "Done", "Succeeded"]),
    ("alert_info severity", ALERT_INFO, dict(severity=["Critical"]), ["severity", "Critical", "High"]),
    ("alert_info status", ALERT_INFO, dict(status=["Open"]), ["status", "Open", "New"]),
    ("alert status", ALERT, dict(alert_id="da1", status="Closed"), ["status", "Closed", "Resolved"]),
    ("alert classification", ALERT, dict(alert_id="da1", classification="Evil"), ["classification", "Evil"]),
    ("indicator indicator_type", INDICATOR, ind("FileSha512", SHA256), ["indicator_type", "FileSha512"]),
    ("indicator action", INDICATOR, ind("FileSha256", SHA256, action="Nuke"), ["action", "Nuke", "Block"]),
    ("indicator severity", INDICATOR, ind("FileSha256", SHA256, severity="Critical"), ["severity", "Critical"]),
    ("indicator_info indicator_type", INDICATOR_INFO, dict(indicator_type=["Hash"]), ["indicator_type", "Hash"]),
    ("machine device_value", MACHINE, dict(machine_id=MID, device_value="Critical"), ["device_value", "Critical"]),
    ("machine state", MACHINE, dict(machine_id=MID, tags=["x"], state="gone"), ["state", "gone"]),
    ("bad cloud", INFO, dict(cloud="mars"), ["cloud", "mars", "gcc_high"]),
    # -- malformed hashes, IPs, domains, URLs, datetimes ---------------------------------------------------
    ("action sha1 malformed", ACTION, dict(machine_id=MID, action="stop_and_quarantine_file", sha1="xyz",
                                           comment="c"), ["sha1", "SHA-1", "xyz"]),
    ("indicator FileSha256 too short", INDICATOR, ind("FileSha256", SHA256[:-1]), ["invalid FileSha256 value", "64 hexadecimal characters, got 63"]),
    ("indicator FileSha1 not hex", INDICATOR, ind("FileSha1", "g" * 40), ["invalid FileSha1 value", "40 hexadecimal characters"]),
    ("indicator FileMd5 wrong length", INDICATOR, ind("FileMd5", "abc123"), ["invalid FileMd5 value", "32 hexadecimal characters, got 6"]),
    ("indicator IpAddress out of range", INDICATOR, ind("IpAddress", "300.1.2.3"),
     ["IpAddress 300.1.2.3", "invalid IpAddress value", "not a valid IPv4 or IPv6"]),
    ("indicator IpAddress CIDR", INDICATOR, ind("IpAddress", "10.0.0.0/8"), ["IpAddress 10.0.0.0/8", "invalid IpAddress value", "CIDR"]),
    ("indicator DomainName malformed", INDICATOR, ind("DomainName", "bad_domain..com"),
     ["DomainName bad_domain..com", "invalid DomainName value"]),
    ("indicator Url malformed", INDICATOR, ind("Url", "http://"), ["Url http://", "invalid Url value", "no host name"]),
    ("indicator expiration_time", INDICATOR, ind("FileSha256", SHA256, expiration_time="next tuesday"),
     ["expiration_time", "next tuesday"]),
    ("indicator bulk item malformed", INDICATOR,
     dict(indicators=[ind("DomainName", "ok.example.com"), ind("IpAddress", "1.2.3")]), ["indicators[1]", "1.2.3"]),
    ("info last_seen_within", INFO, dict(last_seen_within="yesterday"), ["last_seen_within", "yesterday"]),
    ("action_info created_after", ACTION_INFO, dict(created_after="2024-13-45"), ["created_after", "2024-13-45"]),
    ("alert_info created_after", ALERT_INFO, dict(created_after="last week"), ["created_after", "last week"]),
    ("action_info action_id not a GUID", ACTION_INFO, dict(action_id="not-a-guid"), ["action_id", "GUID"]),
    ("alert assigned_to not a UPN", ALERT, dict(alert_id="da1", assigned_to="bob"), ["assigned_to", "bob"]),
    # -- missing, conflicting and contradicting options ---------------------------------------------------
    ("action no machine", ACTION, dict(action="isolate"), ["machine_id", "machine_name"]),
    ("action machine_id and machine_name", ACTION, dict(machine_id=MID, machine_name="ws-00000", action="isolate"),
     ["machine_id", "machine_name", "mutually exclusive"]),
    ("action machine_id empty", ACTION, dict(machine_id=" ", action="isolate"), ["machine_id", "empty"]),
    ("action sha1 with isolate", ACTION, dict(machine_id=MID, action="isolate", sha1="a" * 40),
     ["sha1", "stop_and_quarantine_file"]),
    ("action offboard without comment", ACTION, dict(machine_id=MID, action="offboard"), ["offboard", "comment"]),
    ("action_info dest without action_id", ACTION_INFO, dict(dest="/tmp/x.zip"), ["dest", "action_id"]),
    ("alert determination without classification", ALERT, dict(alert_id="da1", determination="Malware"),
     ["determination", "classification"]),
    ("alert nothing to update", ALERT, dict(alert_id="da1"), ["status", "comment"]),
    ("alert_info alert_id with a filter", ALERT_INFO, dict(alert_id="da1", severity=["High"]),
     ["alert_id", "severity", "mutually exclusive"]),
    ("indicator purge without a list", INDICATOR, dict(ind("FileSha256", SHA256), purge=True), ["purge", "indicators"]),
    ("machine nothing to do", MACHINE, dict(machine_id=MID), ["tags", "device_value"]),
    ("machine purge_tags without tags", MACHINE, dict(machine_id=MID, device_value="Low", purge_tags=True),
     ["purge_tags", "tags"]),
    ("hunting empty query", HUNTING, dict(query="  "), ["query", "empty"]),
    # -- custom detection rules -----------------------------------------------------------------------------
    ("detection rule id with a slash", DETECTION_RULE, dict(DR, rule_id="a/b"), ["rule_id", "'a/b'"]),
    ("detection rule id too long", DETECTION_RULE, dict(DR, rule_id="r" * 129), ["rule_id", "1 to 128"]),
    ("detection rule frequency not a duration", DETECTION_RULE, dict(DR, frequency="every hour"),
     ["frequency", "ISO 8601", "every hour"]),
    ("detection rule frequency too short", DETECTION_RULE, dict(DR, frequency="PT1M"),
     ["frequency", "5 minutes to 14 days"]),
    ("detection rule status autoDisabled", DETECTION_RULE, dict(DR, status="autoDisabled"),
     ["status", "enabled, disabled"]),
    ("detection rule severity", DETECTION_RULE, dict(DR, alert=dict(title="x", severity="critical")),
     ["severity", "critical"]),
    ("detection rule alert without title", DETECTION_RULE, dict(DR, alert=dict(severity="low")), ["title"]),
    ("detection rule unknown action", DETECTION_RULE, dict(DR, automated_actions={"isolate": [{"device_id_column": "DeviceId"}]}),
     ["automated_actions", "unknown key 'isolate'", "isolate_devices"]),
    ("detection rule isolation type", DETECTION_RULE,
     dict(DR, automated_actions={"isolate_devices": [{"device_id_column": "DeviceId", "isolation_type": "Full"}]}),
     ["isolation_type", "full, selective"]),
    ("detection rule unknown mapping key", DETECTION_RULE,
     dict(DR, alert=dict(title="x", entity_mappings={"hosts": [{"device_id": "DeviceId"}]})),
     ["alert.entity_mappings.hosts", "unknown key 'device_id'", "device_id_column"]),
    ("detection rule mapping column with a space", DETECTION_RULE,
     dict(DR, alert=dict(title="x", entity_mappings={"hosts": [{"device_id_column": "Device Id"}]})),
     ["device_id_column", "column name"]),
    ("detection rule title with a line break", DETECTION_RULE, dict(DR, alert=dict(title="x\r\ny")),
     ["alert.title", "one line"]),
    ("detection rule display name with an escape", DETECTION_RULE, dict(DR, display_name="x\x1b[31m"),
     ["display_name", "control characters"]),
    ("detection rule near real time with a join", DETECTION_RULE,
     dict(DR, frequency="0", query="DeviceInfo | join (DeviceProcessEvents) on DeviceId"),
     ["near-real-time", "join"]),
    ("detection rule custom detail not a column", DETECTION_RULE,
     dict(DR, alert=dict(title="x", custom_details={"Command": "not a column"})), ["custom_details.Command", "column"]),
    ("detection rule graph version", DETECTION_RULE, dict(DR, graph_version="v2"), ["graph_version", "v2"]),
    ("detection rule info bad id", DETECTION_RULE_INFO, dict(rule_id="x?y"), ["rule_id", "'x?y'"]),
    ("detection rule info id and filter", DETECTION_RULE_INFO, dict(rule_id="x", status=["enabled"]),
     ["rule_id", "status"]),
    ("vulnerability_info include", VULNERABILITIES, dict(machine_id=MID, include=["patches"]), ["include", "patches"]),
    ("vulnerability_info no machine", VULNERABILITIES, dict(), ["machine_id", "machine_name"]),
    # -- ids put into URL paths, tags, names (security review: input hardening) ----------------------------
    ("info machine_id dot", INFO, dict(machine_id="."), ["machine_id", "40 hexadecimal characters", "got '.'"]),
    ("info machine_id dot dot", INFO, dict(machine_id=".."), ["machine_id", "40 hexadecimal characters", "got '..'"]),
    ("action machine_id a path", ACTION, dict(machine_id="../machineactions", action="isolate"),
     ["machine_id", "40 hexadecimal characters", "'../machineactions'"]),
    ("action machine_id with a query", ACTION, dict(machine_id=MID + "?$top=1", action="isolate"),
     ["machine_id", "40 hexadecimal characters"]),
    ("action machine_name with LF", ACTION, dict(machine_name="ws-00000\nx", action="isolate"),
     ["machine_name", "control characters", "'ws-00000\\nx'"]),
    ("action_info machine_id an OData expression", ACTION_INFO, dict(machine_id="x' or machineId ne 'y"),
     ["machine_id", "40 hexadecimal characters"]),
    ("machine machine_id dot", MACHINE, dict(machine_id=".", tags=["x"]), ["machine_id", "40 hexadecimal characters"]),
    ("machine machine_ids bad items", MACHINE, dict(machine_ids=[MID, ".", "a/b"], tags=["x"]),
     ["machine_ids", "2 of the 3 items are not: item 2 '.', item 3 'a/b'"]),
    ("machine many bad machine_ids", MACHINE, dict(machine_ids=["m%d" % i for i in range(2000)], tags=["x"]),
     ["machine_ids", "2000 of the 2000 items", "and 1995 more"]),
    ("machine tag with CR LF", MACHINE, dict(machine_id=MID, tags=["ok", "bad\r\nX-Injected: 1"]),
     ["tags", "control characters", "item 2 'bad\\r\\nX-Injected: 1'"]),
    ("machine tag with NUL", MACHINE, dict(machine_ids=[MID], tags=["nul\x00"]), ["tags", "control characters"]),
    ("machine tag too long", MACHINE, dict(machine_id=MID, tags=["x" * 201]), ["tags", "at most 200", "201"]),
    ("vulnerability_info machine_id dot", VULNERABILITIES, dict(machine_id="."), ["machine_id", "40 hexadecimal"]),
    ("alert_info machine_id not hex", ALERT_INFO, dict(machine_id="ws-00000"), ["machine_id", "40 hexadecimal"]),
    ("alert_info alert_id dot dot", ALERT_INFO, dict(alert_id=".."), ["alert_id", "'..'"]),
    ("alert_info alert_id with a query", ALERT_INFO, dict(alert_id="da1?$expand=evidence"),
     ["alert_id", "?", "'da1?$expand=evidence'"]),
    ("alert alert_id a path", ALERT, dict(alert_id="da1/../../machines", status="Resolved"), ["alert_id", "/"]),
    ("alert alert_ids bad items", ALERT, dict(alert_ids=["da1_2", "da 3", "#x"], status="Resolved"),
     ["alert_ids", "2 of the 3 items are not: item 2 'da 3', item 3 '#x'"]),
    ("indicator Url with NUL", INDICATOR, ind("Url", "http://evil.example.net/a\x00b"),
     ["indicator_value", "control characters"]),
    # -- credentials and connection options -------------------------------------------------------------
    ("no credential", INFO, dict(client_secret=""), ["client_secret", "client_certificate_path", "access_token"]),
    # (a task's own credential replaces the environment's: two are two in the task itself)
    ("two credentials", INFO, dict(client_secret="s3cret-of-the-task", access_token="ey.not.used"),
     ["client_secret", "access_token", "one credential"]),
    ("certificate password without certificate", INFO, dict(client_certificate_password="pw"),
     ["client_certificate_password", "client_certificate_path"]),
    ("missing client_id", INFO, dict(client_id=""), ["client_id", "required"]),
    ("malformed tenant_id", INFO, dict(tenant_id="contoso tenant!"), ["tenant_id", "contoso tenant!"]),
    ("http api_url", INFO, dict(api_url="http://127.0.0.1:1"), ["api_url", "https://"]),
    ("api_url not a URL", INFO, dict(api_url="api.securitycenter"), ["api_url", "https://", "api.securitycenter"]),
    ("ca_path missing file", INFO, dict(ca_path="/nonexistent/ca.pem"), ["ca_path", "/nonexistent/ca.pem"]),
    ("unreadable certificate", INFO, dict(client_secret="", client_certificate_path="/nonexistent/app.pem"),
     ["client_certificate_path", "/nonexistent/app.pem", "cannot be read"]),
    ("certificate path is a directory", INFO, dict(client_secret="", client_certificate_path=DIRECTORY),
     ["client_certificate_path", "cannot be read"]),
    ("certificate file without a PEM", INFO, dict(client_secret="", client_certificate_path=NOT_A_PEM),
     ["client_certificate_path", NOT_A_PEM, "PEM"]),
    ("wrong certificate password", INFO, dict(client_secret="", client_certificate_path=CERT_ENCRYPTED,
                                              client_certificate_password="not-the-password"),
     ["client_certificate_password", "does not decrypt"]),
    ("encrypted key without password", INFO, dict(client_secret="", client_certificate_path=CERT_ENCRYPTED),
     ["client_certificate_password", "encrypted"]),
    ("password for an unencrypted key", INFO, dict(client_secret="", client_certificate_path=CERT_PLAIN,
                                                   client_certificate_password="pw"),
     ["client_certificate_password", "not encrypted"]),
    # -- reaching the API: the API refuses, nothing is written ---------------------------------------------
    ("api: info odata_filter unknown field", INFO, dict(odata_filter="colour eq 'red'"),
     ["GET /api/machines failed: HTTP 400", "ODataError"]),
    ("api: info odata_filter bad syntax", INFO, dict(odata_filter="healthStatus eq"), ["HTTP 400", "ODataError"]),
    ("api: alert_info odata_filter", ALERT_INFO, dict(odata_filter="machineId eq 'x'"),
     ["GET /api/alerts failed: HTTP 400", "ODataError"]),
    ("api: indicator_info odata_filter", INDICATOR_INFO, dict(odata_filter="color eq 'red'"),
     ["GET /api/indicators failed: HTTP 400", "ODataError"]),
    ("api: info unknown machine_id", INFO, dict(machine_id=UNKNOWN_MID), ["machine", UNKNOWN_MID]),
    ("api: action unknown machine_id", ACTION, dict(machine_id=UNKNOWN_MID, action="isolate"), ["machine", UNKNOWN_MID]),
    ("api: action unknown machine_name", ACTION, dict(machine_name="no-such-host.contoso.local", action="isolate"),
     ["machine", "no-such-host.contoso.local"]),
    ("api: machine unknown machine_id", MACHINE, dict(machine_id=UNKNOWN_MID, tags=["x"]), ["machine", UNKNOWN_MID]),
    ("api: vulnerability_info unknown machine_id", VULNERABILITIES, dict(machine_id=UNKNOWN_MID),
     ["machine", UNKNOWN_MID]),
    ("api: machine 3000 unknown machine_ids", MACHINE, dict(machine_ids=["%040x" % (i + 1) for i in range(3000)],
                                                            tags=["x"]),
     ["3000 of the 3000 machine ids are not in Defender for Endpoint", "%040x, " % 1, "and 2995 more"]),
    ("api: alert unknown alert_ids", ALERT, dict(alert_ids=["da%018d_%d" % (i, i) for i in range(1, 601)],
                                                 status="Resolved"),
     ["600 of the 600 alert ids are not in Defender for Endpoint", "da000000000000000001_1, ", "and 595 more"]),
    ("api: alert unknown alert_id", ALERT, dict(alert_id="da000000000000000000_1", status="Resolved"),
     ["da000000000000000000_1"]),
    # -- control characters in text options (a line break or a tab is allowed) ---------------------------
    ("action comment with NUL", ACTION, dict(machine_id=MID, action="isolate", comment="a\u0000b"),
     ["comment", "control characters", "'a\\x00b'"]),
    ("action comment with NEL", ACTION, dict(machine_id=MID, action="isolate", comment="x\u0085y"),
     ["comment", "control characters"]),
    ("alert comment with ESC", ALERT, dict(alert_id="da000000000000000000_1", comment="ok \u001b[2J"),
     ["comment", "control characters"]),
    ("indicator title with a line separator", INDICATOR, ind("DomainName", "evil.example.com", title="a\u2028b"),
     ["title", "control characters"]),
    ("indicator list description with DEL", INDICATOR, dict(indicators=[
        dict(indicator_type="DomainName", indicator_value="evil.example.com", action="Block", title="t",
             description="d\u007f")]), ["indicators item 1.description", "control characters"]),
    ("hunting query with NUL", HUNTING, dict(query="DeviceInfo\u0000| take 1"), ["query", "control characters"]),
]

# (case id, inventory configuration, fragments): the inventory plugin's options, each source one file.
INVENTORY_CASES = [
    ("inventory filters unknown key", dict(filters={"colour": "red"}), ["filters", "colour"]),
    ("inventory filters bad health_status", dict(filters={"health_status": "Sick"}), ["health_status", "Sick"]),
    ("inventory filters bad last_seen_within", dict(filters={"last_seen_within": "yesterday"}),
     ["last_seen_within", "yesterday"]),
    ("inventory filters not a dict", dict(filters="Windows"), ["filters"]),
    ("inventory hostnames empty", dict(hostnames=[]), ["hostnames"]),
    ("inventory bad cloud", dict(cloud="mars"), ["cloud", "mars"]),
    ("inventory http api_url", dict(api_url="http://127.0.0.1:1"), ["api_url", "https://"]),
    ("inventory no credential", dict(client_secret=""), ["client_secret", "client_certificate_path", "access_token"]),
    ("inventory wrong certificate password", dict(client_secret="", client_certificate_path=CERT_ENCRYPTED,
                                                  client_certificate_password="not-the-password"),
     ["client_certificate_password", "does not decrypt"]),
    ("inventory timeout not a number", dict(timeout="soon"), ["timeout"]),
    ("api: inventory odata_filter", dict(odata_filter="colour eq 'red'"),
     ["GET /api/machines failed: HTTP 400", "ODataError"]),
]


def _resolve(value, emulator, tmp):
    if isinstance(value, dict):
        return dict((k, _resolve(v, emulator, tmp)) for k, v in value.items())
    if isinstance(value, list):
        return [_resolve(v, emulator, tmp) for v in value]
    return {CERT_ENCRYPTED: emulator.apps["cert_encrypted"]["cert_path"], CERT_PLAIN: emulator.apps["cert"]["cert_path"],
            DIRECTORY: str(tmp)}.get(value, value) if isinstance(value, str) else value


def _slug(case_id):
    return re.sub(r"[^a-z0-9]+", "_", case_id.lower()).strip("_")


def _inventory_messages(result, paths):
    """The message ansible-inventory gives for each failed source (its warning lines, joined)."""
    # A warning runs until the next line that starts with "["; before ansible-core 2.19 it wraps at 80 columns, long
    # paths included, so paths are compared without white space.
    warnings = re.sub(r"\n(?!\[)", " ", result.stderr).splitlines()
    out = {}
    for case_id, path in paths.items():
        found = [w for w in warnings if path in "".join(w.split()) and "Failed to parse" in w]
        out[case_id] = " ".join(found)
    return out


@pytest.fixture(scope="module")
def outcome(emulator_session, tmp_path_factory):
    """Run the whole table once; per case, its message and the requests the emulator saw."""
    emulator = emulator_session
    tmp = tmp_path_factory.mktemp("bad-input")
    ansible = Ansible(emulator, tmp)
    results = {}
    for reaches_api in (False, True):
        emulator.reset()
        cases = [c for c in MODULE_CASES if c[0].startswith("api:") is reaches_api]
        tasks = [{"name": case_id, module: _resolve(args, emulator, tmp), "ignore_errors": True}
                 for case_id, module, args, _fragments in cases]
        run = ansible.playbook(tasks=tasks)
        log = emulator.log
        for case_id, _module, _args, _fragments in cases:
            results[case_id] = dict(run=run, result=run.tasks().get(case_id), log=log, writes=emulator.writes())

        emulator.reset()
        cases = [c for c in INVENTORY_CASES if c[0].startswith("api:") is reaches_api]
        paths = {}
        for case_id, config, _fragments in cases:
            path = tmp / ("%s_mde.yml" % _slug(case_id))
            config = dict(_resolve(config, emulator, tmp), plugin=PLUGIN)
            path.write_text(yaml.safe_dump(config))
            paths[case_id] = str(path)
        args = []
        for path in list(paths.values())[1:]:
            args += ["-i", path]
        first = list(paths.values())[0]
        run = ansible.inventory(open(first).read(), name=os.path.basename(first), extra_args=args + ["--list"],
                                env={"ANSIBLE_INVENTORY_ENABLED": PLUGIN})
        messages = _inventory_messages(run, paths)
        log = emulator.log
        for case_id, _config, _fragments in cases:
            results[case_id] = dict(run=run, result={"failed": bool(messages[case_id]), "msg": messages[case_id]},
                                    log=log, writes=emulator.writes())
    return results


CASES = [(c[0], c[3]) for c in MODULE_CASES] + [(c[0], c[2]) for c in INVENTORY_CASES]
PARAMS = [pytest.param(case_id, fragments, id=case_id) for case_id, fragments in CASES]


def test_table_size():
    assert len(MODULE_CASES) + len(INVENTORY_CASES) >= 40
    modules = set(c[1] for c in MODULE_CASES)
    assert modules == {INFO, ACTION, ACTION_INFO, ALERT_INFO, ALERT, INDICATOR, INDICATOR_INFO, MACHINE, HUNTING,
                       VULNERABILITIES, DETECTION_RULE, DETECTION_RULE_INFO}


@pytest.mark.parametrize("case_id,fragments", PARAMS)
def test_bad_input(outcome, case_id, fragments):
    got = outcome[case_id]
    run, result = got["run"], got["result"]
    assert "Traceback" not in run.stdout and "Traceback" not in run.stderr, run
    assert result is not None and result.get("failed") is True, result
    assert "Traceback" not in str(result.get("exception", "")) and "module_stderr" not in result, result
    msg = result["msg"]
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert "Unexpected error" not in msg, msg
    assert len(msg) < 2000, "a message of %d characters" % len(msg)
    assert got["writes"] == []
    if not case_id.startswith("api:"):
        assert got["log"] == [], "validation made requests: %s" % [(e["method"], e["path"]) for e in got["log"]]
