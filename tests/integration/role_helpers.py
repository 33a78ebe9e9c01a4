"""Helpers shared by the tests of the coverage_report and detection_rules roles (one tenant and several)."""
import datetime
import os

import yaml

STALE_DAYS = 7
QUERY = "DeviceProcessEvents | where FileName == \"powershell.exe\" | project Timestamp, DeviceId, ReportId, DeviceName, SHA1"


def parse_time(value):
    return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)


def expected_status(machine, now):
    """What the coverage report must say of a host that matched ``machine`` (None: no machine)."""
    if machine is None or machine["onboardingStatus"] != "Onboarded":
        return ["unprotected"]
    problems = []
    if (now - parse_time(machine["lastSeen"])).total_seconds() > STALE_DAYS * 86400:
        problems.append("stale")
    if machine["healthStatus"] != "Active":
        problems.append("unhealthy")
    if machine["defenderAvStatus"] != "Updated":
        problems.append("av_outdated")
    return problems or ["ok"]


def make_hostile(state, machine, marker):
    """API data is untrusted: markup, a template and a spreadsheet formula in a machine's fields."""
    machine["computerDnsName"] = "<script>alert(1)</script>{{ lookup('ansible.builtin.pipe', 'touch %s') }}.evil" % marker
    machine["osPlatform"] = "=HYPERLINK(\"http://evil.example\")"
    state._index_machines()  # pylint: disable=protected-access
    state.touch_machine(machine)


def rule_args(rule_id="ansible-ps", **extra):
    """A custom detection rule's options for mde_detection_rule (and a rule file of the detection_rules role)."""
    args = dict(rule_id=rule_id, display_name="PowerShell %s" % rule_id, frequency="24h", query=QUERY,
                alert=dict(title="PowerShell on a device (%s)" % rule_id, severity="medium",
                           recommended_actions="Look at the command line.",
                           tactics=[dict(tactic="Execution", techniques=[dict(technique="T1059",
                                                                              sub_techniques=["T1059.001"])])],
                           custom_details={"Device name": "DeviceName"},
                           entity_mappings=dict(hosts=[dict(device_id_column="DeviceId", name_column="DeviceName")],
                                                files=[dict(sha1_column="SHA1")])),
                automated_actions=dict(isolate_devices=[dict(device_id_column="DeviceId", isolation_type="full")]),
                device_groups=["Servers"])
    args.update(extra)
    return args


def write_rule(folder, name, **options):
    with open(os.path.join(folder, name), "w") as f:
        yaml.safe_dump(options, f, sort_keys=False)
