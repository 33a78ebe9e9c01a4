"""module_utils/detections.py: the converter, frequencies, the request body, comparison, the export's format, the
columns a rule's query must return, and the throttle family of the rules endpoints."""
import copy

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import detections as du
from ansible_collections.defender.endpoint.plugins.module_utils import throttle

RULE = {
    "id": "office-encoded-powershell", "displayName": "Encoded PowerShell", "description": "From Office",
    "status": "enabled", "createdBy": "alice@contoso.com",
    "queryCondition": {"queryText": "DeviceProcessEvents | project Timestamp, DeviceId, ReportId, FileName, SHA1"},
    "schedule": {"frequency": "P1D"},
    "detectionAction": {
        "alertTemplate": {"title": "PS on {{DeviceName}}", "description": None, "severity": "high",
                          "recommendedActions": None, "customDetails": {"Command file": "FileName"},
                          "tactics": [{"tactic": "Execution",
                                       "techniques": [{"technique": "T1059", "subTechniques": ["T1059.001"]}]}],
                          "entityMappings": {"hosts": [{"deviceIdColumn": "DeviceId"}],
                                             "files": [{"nameColumn": "FileName", "sha1Column": "SHA1"}]}},
        "automatedActions": {"isolateDevices": [{"deviceIdColumn": "DeviceId", "isolationType": "full"}],
                             "collectInvestigationPackages": []},
        "organizationalScope": None},
}


@pytest.mark.parametrize("snake,camel", [
    ("device_id_column", "deviceIdColumn"), ("o_auth_applications", "oAuthApplications"),
    ("sha1_column", "sha1Column"), ("sha256_column", "sha256Column"), ("aad_user_id_column", "aadUserIdColumn"),
    ("net_bios_name_column", "netBiosNameColumn"), ("sub_techniques", "subTechniques"), ("dns", "dns"),
    ("move_emails_to_deleted_items", "moveEmailsToDeletedItems"), ("o_auth_app_id_column", "oAuthAppIdColumn"),
])
def test_the_converter_works_both_ways(snake, camel):
    assert du.camel(snake) == camel and du.snake(camel) == snake


def test_every_documented_name_survives_a_round_trip():
    for table in (du.ENTITY_MAPPINGS, du.AUTOMATED_ACTIONS):
        for member, props in table.items():
            assert du.camel(du.snake(member)) == member
            assert all(du.camel(du.snake(p)) == p for p in props)
    nested = {"isolate_devices": [{"device_id_column": "DeviceId", "isolation_type": "full"}]}
    assert du.snake_keys(du.camel_keys(nested)) == nested


@pytest.mark.parametrize("given,seconds,sent", [
    ("0", 0, "PT0S"), ("nrt", 0, "PT0S"), ("PT0S", 0, "PT0S"), ("1h", 3600, "PT1H"), ("PT1H", 3600, "PT1H"),
    ("3h", 10800, "PT3H"), ("12H", 43200, "PT12H"), ("24h", 86400, "P1D"), ("PT24H", 86400, "P1D"),
    ("P1D", 86400, "P1D"), ("PT5M", 300, "PT5M"), ("P14D", 14 * 86400, "P14D"), ("P1DT6H", 108000, "P1DT6H"),
    ("p1d", 86400, "P1D"), ("P1W", 7 * 86400, "P7D"),
])
def test_frequencies_are_compared_by_value_and_sent_in_their_shortest_form(given, seconds, sent):
    assert du.frequency_seconds(given) == seconds
    assert du.format_frequency(seconds) == sent
    assert du.same_frequency(given, sent)


@pytest.mark.parametrize("given,fragment", [
    ("", "ISO 8601"), ("2h30", "ISO 8601"), ("P", "ISO 8601"), ("PT", "ISO 8601"), ("P1Y", "ISO 8601"),
    ("PT1M", "5 minutes to 14 days"), ("P15D", "5 minutes to 14 days"), ("PT1H\n", "control"), ("daily", "ISO 8601"),
])
def test_bad_frequencies_are_refused(given, fragment):
    with pytest.raises(ValueError) as err:
        du.frequency_seconds(given)
    assert "frequency" in str(err.value) and fragment in str(err.value)


def test_same_frequency_is_false_for_what_is_not_one():
    assert not du.same_frequency("P1D", None) and not du.same_frequency("PT1H", "P1D")


@pytest.mark.parametrize("rule_id", ["7506", "office-encoded-powershell", "a.b_c-D", "x" * 128,
                                     "4790e8ec-9488-3dde-c3a6-be0c4ba14cf9"])
def test_good_rule_ids(rule_id):
    assert du.check_rule_id(rule_id) == rule_id


@pytest.mark.parametrize("rule_id", ["", "a b", "a/b", "..", ".", "x" * 129, "r\n1", "rule?x", "ru%2f"])
def test_bad_rule_ids(rule_id):
    with pytest.raises(ValueError) as err:
        du.check_rule_id(rule_id)
    assert "rule_id" in str(err.value)


def options(**extra):
    out = dict(rule_id="r1", display_name="R1", status="enabled", frequency="1h",
               query="DeviceProcessEvents | project Timestamp, DeviceId, ReportId",
               alert=dict(title="T", severity="low", entity_mappings={"hosts": [{"device_id_column": "DeviceId"}]}),
               automated_actions={"isolate_devices": [{"device_id_column": "DeviceId", "isolation_type": "full"}]},
               device_groups=None, description=None)
    out.update(extra)
    return out


def test_build_sends_camel_case_and_keeps_custom_detail_names():
    body = du.build(options(alert=dict(title="T", custom_details={"Command line": "ProcessCommandLine"},
                                       tactics=[{"tactic": "Execution",
                                                 "techniques": [{"technique": "T1059",
                                                                 "sub_techniques": ["T1059.001"]}]}])))
    assert body["schedule"] == {"frequency": "PT1H"} and body["queryCondition"]["queryText"].startswith("Device")
    template = body["detectionAction"]["alertTemplate"]
    assert template["customDetails"] == {"Command line": "ProcessCommandLine"}
    assert template["tactics"] == [{"tactic": "Execution", "techniques": [{"technique": "T1059",
                                                                           "subTechniques": ["T1059.001"]}]}]
    assert body["detectionAction"]["automatedActions"] == {"isolateDevices": [{"deviceIdColumn": "DeviceId",
                                                                               "isolationType": "full"}]}
    assert "organizationalScope" not in body["detectionAction"] and "description" not in body


@pytest.mark.parametrize("extra,fragment", [
    (dict(automated_actions={"isolate_device": []}), "automated_actions: unknown key 'isolate_device'"),
    (dict(automated_actions={"isolate_devices": [{"device_id_column": "DeviceId", "isolation_type": "Full"}]}),
     "isolation_type must be one of full, selective"),
    (dict(automated_actions={"isolate_devices": [{"device_id": "DeviceId"}]}), "unknown key 'device_id'"),
    (dict(alert=dict(title="T", entity_mappings={"hosts": [{"device_id_column": "Device Id"}]})), "column name"),
    (dict(alert=dict(title="T", entity_mappings={"hosts": "DeviceId"})), "must be a list"),
    (dict(alert=dict(title="T\r\n")), "alert.title must be one line"),
    (dict(display_name="a\tb"), "display_name must be one line"),
    (dict(alert=dict(title="T", tactics=[{"tactic": "Exec\nution"}])), "alert.tactics.tactic must be one line"),
    (dict(frequency="0", query="DeviceInfo | join (DeviceProcessEvents) on DeviceId"), "without join"),
    (dict(frequency="nrt", query="// comment\nDeviceInfo"), "comment lines"),
    (dict(alert=dict(title="T", severity="critical")), "alert.severity must be one of"),
    (dict(alert=dict(title="T", custom_details={"x": "not a column"})), "custom_details.x"),
    (dict(alert=dict(title="T", tactics=[{"tactic": "Execution", "technique": "T1059"}])), "alert.tactics"),
    (dict(device_groups=["ok", ""]), "device_groups must not be empty"),
])
def test_build_refuses_bad_input_with_one_sentence(extra, fragment):
    with pytest.raises(ValueError) as err:
        du.build(options(**extra))
    assert fragment in str(err.value), str(err.value)


def test_a_multiline_query_and_description_are_fine():
    body = du.build(options(query="DeviceProcessEvents\n| project Timestamp, DeviceId, ReportId\n",
                            description="two\nlines\twith a tab"))
    assert body["description"] == "two\nlines\twith a tab"


def test_create_needs_the_rule_s_parts():
    with pytest.raises(ValueError) as err:
        du.check_create(du.build(dict(rule_id="r1", status="enabled")))
    assert "display_name, query, frequency, alert.title" in str(err.value)


def test_the_export_applies_without_a_change():
    exported = du.to_options(RULE)
    assert list(exported) == ["rule_id", "display_name", "description", "status", "frequency", "query", "alert",
                              "automated_actions"]
    assert exported["alert"]["custom_details"] == {"Command file": "FileName"}
    assert exported["automated_actions"] == {"isolate_devices": [{"device_id_column": "DeviceId",
                                                                  "isolation_type": "full"}]}
    params = dict((k, None) for k in du.OPTION_ORDER)
    params.update(exported)
    assert du.plan(RULE, du.build(params)) == {}


def test_plan_sends_only_what_differs():
    params = options(rule_id=RULE["id"], display_name=RULE["displayName"], frequency="24h",
                     query=RULE["queryCondition"]["queryText"] + "\n", alert=None, automated_actions=None)
    assert du.plan(RULE, du.build(params)) == {}
    changed = du.plan(RULE, du.build(dict(params, frequency="PT12H", status="disabled")))
    assert changed == {"schedule": {"frequency": "PT12H"}, "status": "disabled"}
    cleared = du.plan(RULE, du.build(dict(params, automated_actions={})))
    assert cleared == {"detectionAction": {"automatedActions": {"isolateDevices": []}}}
    alert = du.plan(RULE, du.build(dict(params, alert=dict(title="New title", entity_mappings={
        "hosts": [{"device_id_column": "DeviceId"}]}))))
    assert alert == {"detectionAction": {"alertTemplate": {
        "title": "New title", "entityMappings": {"files": []}}}}
    after = du.merged(RULE, alert)
    assert after["detectionAction"]["alertTemplate"]["severity"] == "high"
    assert after["detectionAction"]["alertTemplate"]["entityMappings"] == {"hosts": [{"deviceIdColumn": "DeviceId"}],
                                                                           "files": []}
    assert RULE["detectionAction"]["alertTemplate"]["title"] == "PS on {{DeviceName}}"  # not changed in place


def test_disabled_is_satisfied_by_auto_disabled():
    rule = dict(copy.deepcopy(RULE), status="autoDisabled")
    assert du.plan(rule, {"id": "x", "status": "disabled"}) == {}
    assert du.plan(rule, {"id": "x", "status": "enabled"}) == {"status": "enabled"}
    assert du.to_options(rule)["status"] == "disabled"


@pytest.mark.parametrize("columns,table,missing", [
    (["Timestamp", "DeviceId", "ReportId", "FileName", "SHA1"], "DeviceProcessEvents", []),
    (["TimeGenerated", "DeviceId", "ReportId", "FileName", "SHA1"], "DeviceProcessEvents", []),
    (["Timestamp", "DeviceId", "FileName", "SHA1"], "DeviceProcessEvents", ["ReportId"]),
    (["DeviceId", "ReportId", "FileName", "SHA1"], "DeviceProcessEvents", ["Timestamp or TimeGenerated"]),
    (["Timestamp", "DeviceId", "ReportId", "SHA1"], "DeviceProcessEvents", ["FileName"]),
    (["Timestamp", "DeviceId", "FileName", "SHA1"], "AlertEvidence", []),
    (["Timestamp", "DeviceId", "FileName", "SHA1"], "ObservationsTable", ["ObservationId"]),
    (["Timestamp", "DeviceId", "FileName", "SHA1"], "EmailEvents", ["ReportId"]),
])
def test_the_columns_a_query_must_return(columns, table, missing):
    got = du.missing_columns(RULE, columns, table)
    assert [text.split(" (")[0] for text in got] == missing


def test_the_source_table_skips_comment_lines():
    assert du.source_table("// hello\nDeviceInfo | take 1") == "DeviceInfo"
    assert du.nrt_problem("DeviceInfo | where DeviceName has 'join'") is None


def test_ids_from_answers_are_checked_before_they_make_a_path_or_a_file_name():
    assert du.answer_id({"id": "7506"}) == "7506"
    with pytest.raises(Exception) as err:
        du.answer_id({"id": "../../etc/passwd"})
    assert "was not used" in str(err.value)
    assert du.file_name("office-encoded-powershell") == "office-encoded-powershell.yml"
    assert du.file_name("..") == "rule.yml"


def test_the_rules_endpoints_are_one_budget_family():
    families = {throttle.family(m, p) for m, p in (
        ("GET", "/v1.0/security/rules/detectionRules"), ("POST", "/v1.0/security/rules/detectionRules"),
        ("GET", "/v1.0/security/rules/detectionRules/office-encoded-powershell?$select=id"),
        ("PATCH", "/beta/security/rules/detectionRules/7506"), ("DELETE", "/v1.0/security/rules/detectionRules/x"))}
    assert families == {throttle.DETECTION_RULES}
    assert throttle.limits_for(throttle.DETECTION_RULES) == (150, 9000)
    assert throttle.family("GET", "/v1.0/security/incidents/7") == "GET /v1.0/security/incidents/{id}"
