"""Detections as code, through real ansible-playbook runs against the emulator: mde_detection_rule (the
body Graph receives, idempotence, check mode and diff, one PATCH per change, frequencies by value, absent twice, the
query check before any write, permissions, reconciled creates, beta), mde_detection_rule_info over several pages,
the detection_rules role (create, re-run, edit, purge by prefix) and the export playbook (export then apply writes
nothing)."""
import os

import pytest
import yaml

from tests import cores
from tests.emulator import detection_rules
from tests.integration.harness import Ansible
from tests.integration.role_helpers import QUERY, rule_args, write_rule

RULE = "defender.endpoint.mde_detection_rule"
INFO = "defender.endpoint.mde_detection_rule_info"
RULES = "/v1.0/security/rules/detectionRules"
HUNT = "/v1.0/security/runHuntingQuery"


def task(name, module=RULE, check=None, **args):
    out = {"name": name, module: args, "ignore_errors": True}
    if check is not None:
        out["check_mode"] = check
    return out


def rule_writes(emulator):
    return [(e["method"], e["path"]) for e in emulator.writes()]


def calls(emulator):
    return [(e["method"], e["path"].split("?")[0]) for e in emulator.log if e["family"] == "graph"]


def test_create_sends_camel_case_then_a_rerun_sends_nothing(ansible, emulator):
    first = ansible.playbook(tasks=[task("create", **rule_args())], diff=True)
    created = first.task("create")
    assert created["changed"] and not created.get("failed"), created
    assert calls(emulator) == [("GET", RULES + "/ansible-ps"), ("POST", HUNT), ("POST", RULES)]
    (post,) = emulator.writes()
    assert post["body"] == {
        "id": "ansible-ps", "displayName": "PowerShell ansible-ps", "status": "enabled",
        "queryCondition": {"queryText": QUERY}, "schedule": {"frequency": "P1D"},
        "detectionAction": {
            "alertTemplate": {"title": "PowerShell on a device (ansible-ps)", "recommendedActions":
                              "Look at the command line.", "severity": "medium",
                              "tactics": [{"tactic": "Execution", "techniques": [{"technique": "T1059",
                                                                                  "subTechniques": ["T1059.001"]}]}],
                              "customDetails": {"Device name": "DeviceName"},
                              "entityMappings": {"hosts": [{"deviceIdColumn": "DeviceId", "nameColumn": "DeviceName"}],
                                                 "files": [{"sha1Column": "SHA1"}]}},
            "automatedActions": {"isolateDevices": [{"deviceIdColumn": "DeviceId", "isolationType": "full"}]},
            "organizationalScope": {"deviceGroups": ["Servers"]}}}
    hunt = [e for e in emulator.log if e["path"] == HUNT][0]
    assert hunt["body"] == {"Query": QUERY + "\n| take 0", "Timespan": "PT1H"}
    assert created["rule"]["createdBy"] == "emulator-full" and created["rule"]["schedule"] == {"frequency": "P1D"}
    assert "DeviceId" in created["columns"]
    assert created["diff"]["before"] == {} and created["diff"]["after"]["frequency"] == "P1D"
    emulator.clear_log()
    again = ansible.playbook(tasks=[task("again", **rule_args(frequency="PT24H")),
                                    task("by value", **rule_args(frequency="P1D"))])
    assert not again.task("again")["changed"] and not again.task("by value")["changed"]
    assert emulator.writes() == [] and calls(emulator) == [("GET", RULES + "/ansible-ps")] * 2


def test_check_mode_diff_one_changed_field_disable_and_absent_twice(ansible, emulator):
    assert ansible.playbook(tasks=[task("create", **rule_args())]).rc == 0
    emulator.clear_log()
    new_title = rule_args()
    new_title["alert"] = dict(new_title["alert"], title="Renamed alert")
    check = ansible.playbook(tasks=[task("title", **new_title)], check=True, diff=True)
    planned = check.task("title")
    assert planned["changed"] and emulator.writes() == []
    assert planned["diff"]["before"]["alert"]["title"] == "PowerShell on a device (ansible-ps)"
    assert planned["diff"]["after"]["alert"]["title"] == "Renamed alert"
    assert planned["rule"]["detectionAction"]["alertTemplate"]["title"] == "Renamed alert"
    assert [p for _m, p in calls(emulator)] == [RULES + "/ansible-ps", HUNT]  # check mode validates too
    emulator.clear_log()
    run = ansible.playbook(tasks=[task("title", **new_title), task("disable", rule_id="ansible-ps", status="disabled"),
                                  task("no actions", rule_id="ansible-ps", status="disabled", automated_actions={},
                                       validate_query=False)])
    assert run.rc == 0, run
    patches = [e["body"] for e in emulator.writes()]
    assert patches == [{"detectionAction": {"alertTemplate": {"title": "Renamed alert"}}}, {"status": "disabled"},
                       {"detectionAction": {"automatedActions": {"isolateDevices": []}}}]
    rule = run.task("no actions")["rule"]
    assert rule["status"] == "disabled" and rule["detectionAction"]["alertTemplate"]["severity"] == "medium"
    emulator.clear_log()
    planned = ansible.playbook(tasks=[task("absent", rule_id="ansible-ps", state="absent")], check=True, diff=True)
    assert planned.task("absent")["changed"] and planned.task("absent")["diff"]["after"] == {}
    assert emulator.writes() == []
    gone = ansible.playbook(tasks=[task("absent", rule_id="ansible-ps", state="absent"),
                                   task("absent again", rule_id="ansible-ps", state="absent")], diff=True)
    assert gone.task("absent")["changed"] and not gone.task("absent again")["changed"]
    assert rule_writes(emulator) == [("DELETE", RULES + "/ansible-ps")]


def test_a_bad_query_or_a_missing_column_writes_no_rule(ansible, emulator):
    result = ansible.playbook(tasks=[
        task("does not parse", **rule_args("bad-1", query="DeviceProcessEvents | summarize by")),
        task("no ReportId", **rule_args("bad-2", query="DeviceProcessEvents | project Timestamp, DeviceId, DeviceName, "
                                                       "SHA1")),
        task("no DeviceId", **rule_args("bad-3", query="DeviceProcessEvents | project Timestamp, ReportId, DeviceName, SHA1")),
        task("mapping column", **rule_args(
            "bad-4", query="DeviceProcessEvents | project Timestamp, DeviceId, ReportId, DeviceName")),
    ], check=False)
    parse, report, device, mapping = (result.task(n) for n in ("does not parse", "no ReportId", "no DeviceId",
                                                               "mapping column"))
    assert parse["failed"] and "runHuntingQuery refused the query of rule bad-1" in parse["msg"], parse
    assert report["failed"] and "does not return ReportId" in report["msg"], report
    assert device["failed"] and "does not return DeviceId" in device["msg"], device
    assert "SHA1 (the entity mapping files names it)" in mapping["msg"], mapping
    assert emulator.writes() == []
    assert len([e for e in emulator.log if e["path"] == HUNT]) == 4


def test_permissions_are_named(ansible, emulator):
    emulator.add_app("rules_reader", roles=("CustomDetection.Read.All", "ThreatHunting.Read.All"))
    emulator.add_app("no_hunting", roles=("CustomDetection.ReadWrite.All",))
    emulator.add_app("no_rules", roles=("ThreatHunting.Read.All",))
    write = ansible.playbook(tasks=[task("create", **rule_args())], app="rules_reader").task("create")
    assert write["failed"] and write["status"] == 403 and "CustomDetection.ReadWrite.All" in write["msg"], write
    hunting = ansible.playbook(tasks=[task("create", **rule_args())], app="no_hunting").task("create")
    assert hunting["failed"] and "ThreatHunting.Read.All" in hunting["msg"] and "nothing was written" in hunting["msg"]
    read = ansible.playbook(tasks=[task("read", INFO)], app="no_rules").task("read")
    assert read["failed"] and read["status"] == 403 and "CustomDetection.Read.All" in read["msg"], read
    # The one write sent is the reader's create, refused; the query check stopped the other before any.
    assert [(e["method"], e["status"]) for e in emulator.writes()] == [("POST", 403)]


def test_a_create_that_took_effect_is_not_an_error(ansible, emulator):
    emulator.inject_fault(RULES + "$", "status_after", status=409, method="POST")
    emulator.inject_fault(RULES + "$", "status_after", status=500, method="POST", skip=1)
    result = ansible.playbook(tasks=[task("lost 409", **rule_args("r-409")), task("lost 500", **rule_args("r-500"))])
    for name in ("lost 409", "lost 500"):
        assert result.task(name)["changed"] and not result.task(name).get("failed"), result.task(name)
    assert rule_writes(emulator) == [("POST", RULES), ("POST", RULES)]
    taken = ansible.playbook(tasks=[task("taken name", **rule_args("r-other", display_name="PowerShell r-409"))])
    failed = taken.task("taken name")
    assert failed["failed"] and failed["status"] == 409 and "display name" in failed["msg"], failed


def test_beta_sends_the_same_new_fields(ansible, emulator):
    result = ansible.playbook(tasks=[task("beta", graph_version="beta", **rule_args("beta-1")),
                                     task("beta again", graph_version="beta", **rule_args("beta-1")),
                                     task("legacy", INFO, rule_id="7506", graph_version="beta")])
    assert result.task("beta")["changed"] and not result.task("beta again")["changed"]
    (post,) = emulator.writes()
    assert post["path"] == "/beta/security/rules/detectionRules" and "isEnabled" not in post["body"]
    legacy = result.task("legacy")["rules"][0]
    assert legacy["isEnabled"] is True and legacy["schedule"]["period"] == "24H"


def test_info_reads_every_page_and_filters(ansible, emulator):
    for n in range(120):
        detection_rules.add_rule(emulator.state, dict(rule_id_body("bulk-%03d" % n)))
    result = ansible.playbook(tasks=[task("all", INFO), task("one", INFO, rule_id="bulk-007"),
                                     task("missing", INFO, rule_id="no-such-rule"),
                                     task("named", INFO, display_name="Bulk bulk-042"),
                                     task("auto", INFO, status=["autoDisabled"])])
    assert len(result.task("all")["rules"]) == 124
    pages = [e for e in emulator.log if e["path"] == RULES and e["method"] == "GET"]
    assert len([e for e in pages if "$filter" not in e["query"]]) == 3  # 50 a page, @odata.nextLink
    assert [e["query"]["$filter"] for e in pages if "$filter" in e["query"]] == [
        "displayName eq 'Bulk bulk-042'", "status eq 'autoDisabled'"]
    assert [r["id"] for r in result.task("one")["rules"]] == ["bulk-007"]
    assert result.task("missing")["rules"] == [] and not result.task("missing").get("failed")
    assert [r["id"] for r in result.task("named")["rules"]] == ["bulk-042"]
    assert [r["id"] for r in result.task("auto")["rules"]] == ["rare-parent-process"]


def rule_id_body(ident):
    return {"id": ident, "displayName": "Bulk %s" % ident, "status": "enabled",
            "queryCondition": {"queryText": QUERY}, "schedule": {"frequency": "PT1H"},
            "detectionAction": {"alertTemplate": {"title": "Bulk alert %s" % ident}}}


ROLE_PLAY = [{"name": "rules", "hosts": "localhost", "gather_facts": False,
              "roles": [{"role": "defender.endpoint.detection_rules"}],
              "post_tasks": [{"name": "result", "ansible.builtin.debug": {"var": "detection_rules_result"}}]}]


def test_the_role_applies_a_folder_and_purges_only_its_prefix(ansible, emulator, tmp_path):
    folder = str(tmp_path / "rules")
    os.makedirs(folder)
    for n in (1, 2, 3):
        args = rule_args("ansible-r%d" % n)
        if n == 3:  # a dynamic alert title: sent as written, not rendered as a template
            args["alert"] = dict(args["alert"], title="Rule 3 on {{DeviceName}}")
        write_rule(folder, "r%d.yml" % n, **args)
    detection_rules.add_rule(emulator.state, dict(rule_id_body("ansible-stale")))
    extra = ["-e", "detection_rules_dir=%s" % folder, "-e", "detection_rules_purge=true",
             "-e", "detection_rules_id_prefix=ansible-"]
    check = ansible.playbook(plays=ROLE_PLAY, extra_args=extra, check=True, diff=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert emulator.writes() == []
    assert check.task("result")["detection_rules_result"]["changed"] == ["ansible-r1", "ansible-r2", "ansible-r3"]
    run = ansible.playbook(plays=ROLE_PLAY, extra_args=extra)
    assert run.rc == 0, run.stdout[-3000:]
    writes = rule_writes(emulator)
    assert writes == [("POST", RULES)] * 3 + [("DELETE", RULES + "/ansible-stale")]
    bodies = [e["body"] for e in emulator.writes()]
    assert bodies[2]["detectionAction"]["alertTemplate"]["title"] == "Rule 3 on {{DeviceName}}"
    assert run.task("result")["detection_rules_result"]["deleted"] == ["ansible-stale"]
    assert "7506" in detection_rules.rules(emulator.state) and "office-encoded-powershell" in detection_rules.rules(
        emulator.state)
    emulator.clear_log()
    again = ansible.playbook(plays=ROLE_PLAY, extra_args=extra)
    assert again.rc == 0 and emulator.writes() == []
    assert again.task("result")["detection_rules_result"] == {"declared": 3, "changed": [], "deleted": []}
    write_rule(folder, "r2.yml", **rule_args("ansible-r2", status="disabled"))
    os.remove(os.path.join(folder, "r1.yml"))
    edited = ansible.playbook(plays=ROLE_PLAY, extra_args=extra)
    assert edited.rc == 0, edited.stdout[-3000:]
    assert [(e["method"], e["path"], e["body"]) for e in emulator.writes()] == [
        ("PATCH", RULES + "/ansible-r2", {"status": "disabled"}), ("DELETE", RULES + "/ansible-r1", None)]
    refused = ansible.playbook(plays=ROLE_PLAY, extra_args=["-e", "detection_rules_dir=%s" % folder,
                                                            "-e", "detection_rules_purge=true"])
    assert refused.rc != 0 and "detection_rules_id_prefix" in refused.stdout


# The oldest and the newest core: API data reaches Ansible marked as data differently before and after 2.19.
@pytest.mark.parametrize("core", sorted({cores.OLDEST, cores.NEWEST}))
def test_export_then_apply_writes_nothing(emulator, tmp_path, core):
    ansible = Ansible(emulator, tmp_path, core=core)
    folder = str(tmp_path / "exported")
    # API data is data: a rule whose texts look like templates is exported and applied as written, never rendered.
    marker = tmp_path / "rendered"
    hostile = "{{ lookup('ansible.builtin.pipe', 'touch %s') }}" % marker
    detection_rules.add_rule(emulator.state, dict(rule_id_body("hostile-texts"), displayName=hostile,
                                                  description="{%% raw %%}{{ 7 * 7 }}{%% endraw %%} %s" % hostile))
    export = ansible.playbook(plays=[{"import_playbook": "defender.endpoint.export_detection_rules"}],
                              extra_args=["-e", "detection_rules_dir=%s" % folder])
    assert export.rc == 0, export.stdout[-3000:]
    assert sorted(os.listdir(folder)) == ["7506.yml", "hostile-texts.yml", "new-server-onboarded.yml",
                                          "office-encoded-powershell.yml", "rare-parent-process.yml"]
    with open(os.path.join(folder, "hostile-texts.yml")) as f:
        assert yaml.safe_load(f)["display_name"] == hostile
    with open(os.path.join(folder, "office-encoded-powershell.yml")) as f:
        text = f.read()
    data = yaml.safe_load(text)
    assert list(data)[:4] == ["rule_id", "display_name", "description", "status"]
    assert data["alert"]["title"] == "Encoded PowerShell from Office on {{DeviceName}}"
    assert data["alert"]["custom_details"] == {"Command file": "FileName"}
    assert data["automated_actions"]["isolate_devices"] == [{"device_id_column": "DeviceId", "isolation_type": "full"}]
    with open(os.path.join(folder, "rare-parent-process.yml")) as f:
        assert yaml.safe_load(f)["status"] == "disabled"
    emulator.clear_log()
    applied = ansible.playbook(plays=ROLE_PLAY, extra_args=["-e", "detection_rules_dir=%s" % folder])
    assert applied.rc == 0, applied.stdout[-3000:]
    assert emulator.writes() == []
    assert applied.task("result")["detection_rules_result"]["changed"] == []
    assert not marker.exists()
