"""Unit tests of plugins/module_utils/alerts.py: enums, combinations, filters, update planning."""
import datetime

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import alerts, odata
from ansible_collections.defender.endpoint.plugins.modules import mde_alert
from tests.unit.helpers import refusal


# -- classification / determination ------------------------------------------------------------------
@pytest.mark.parametrize("classification,determination", [
    ("TruePositive", "Malware"), ("TruePositive", "MultiStagedAttack"), ("TruePositive", "Other"),
    ("InformationalExpectedActivity", "SecurityTesting"), ("InformationalExpectedActivity", "ConfirmedUserActivity"),
    ("InformationalExpectedActivity", "ConfirmedActivity"), ("FalsePositive", "Clean"),
    ("FalsePositive", "NotMalicious"), ("FalsePositive", "InsufficientData"), ("FalsePositive", "Other"),
])
def test_valid_combinations(classification, determination):
    assert alerts.combination_error(classification, determination) is None
    alerts.validate_update(classification=classification, determination=determination)
    assert refusal(mde_alert, dict(alert_id="da1", classification=classification, determination=determination)) == ""


@pytest.mark.parametrize("classification,determination", [
    ("FalsePositive", "Malware"), ("TruePositive", "Clean"), ("TruePositive", "SecurityTesting"),
    ("InformationalExpectedActivity", "Phishing"), ("FalsePositive", "ConfirmedActivity"),
])
def test_invalid_combinations(classification, determination):
    error = alerts.combination_error(classification, determination)
    assert error is not None and alerts.canonical_determination(determination) in error
    assert classification in error
    with pytest.raises(ValueError, match="does not go with classification %s" % classification):
        alerts.validate_update(classification=classification, determination=determination)


def test_aliases_are_sent_in_the_alerts_md_spelling():
    assert alerts.desired_fields(classification="FalsePositive", determination="NotMalicious") == {
        "classification": "FalsePositive", "determination": "Clean"}
    assert alerts.canonical_determination("ConfirmedActivity") == "ConfirmedUserActivity"
    assert "ConfirmedActivity" in alerts.DETERMINATION_CHOICES and "Apt" not in alerts.DETERMINATION_CHOICES
    # every canonical determination appears once, followed by the two aliases
    assert len(alerts.DETERMINATIONS) == len(set(alerts.DETERMINATIONS)) == 12


@pytest.mark.parametrize("kwargs,message", [
    (dict(status="Closed"), "status must be one of: New, InProgress, Resolved, got: Closed"),
    (dict(status="Unknown"), "status"),
    (dict(classification="Benign"), "classification must be one of: TruePositive"),
    (dict(classification="TruePositive", determination="Apt"), "determination must be one of: "),
    (dict(determination="Malware"), "missing parameter(s) required by 'determination': classification"),
    (dict(assigned_to="secop2"), "assigned_to must be"),
    (dict(assigned_to="sec op@contoso.com"), "assigned_to must be"),
    (dict(assigned_to="a@b@contoso.com"), "assigned_to must be"),
    (dict(comment="  "), "comment must not be empty"),
    (dict(), "one of the following is required: status, assigned_to, classification, determination, comment"),
    (dict(alert_ids=[], status="New"), "at least one alert id"),
    (dict(alert_ids=["da1_2", " "], status="New"), "alert_ids"),
])
def test_an_update_is_refused_before_any_call(kwargs, message):
    """By mde_alert's argument spec (choices, which option needs another, something to update) or by its checks."""
    args = dict(kwargs) if "alert_ids" in kwargs else dict(kwargs, alert_id="da1")
    assert message in refusal(mde_alert, args)


def test_validate_update_accepts_upns():
    for upn in ("secop2@contoso.com", "First.Last@contoso.onmicrosoft.com", "x@corp"):
        alerts.validate_update(assigned_to=upn)
        assert refusal(mde_alert, dict(alert_id="da1", assigned_to=upn)) == ""
    assert refusal(mde_alert, dict(alert_ids=["da1_2"], comment="triaged")) == ""


# -- planning --------------------------------------------------------------------------------------
ALERT = {"id": "da1_1", "status": "New", "assignedTo": "SecOp2@Contoso.com", "classification": "FalsePositive",
         "determination": "NotMalicious"}


def test_plan_update_only_what_differs():
    desired = alerts.desired_fields(status="InProgress", assigned_to="secop2@contoso.com",
                                    classification="FalsePositive", determination="Clean")
    assert alerts.plan_update(ALERT, desired) == {"status": "InProgress"}
    assert alerts.plan_update(dict(ALERT, status="InProgress"), desired) == {}
    assert alerts.plan_update(ALERT, {"assignedTo": "other@contoso.com"}) == {"assignedTo": "other@contoso.com"}


def test_resulting_combination():
    tp_malware = {"id": "x", "classification": "TruePositive", "determination": "Malware"}
    assert "Malware" in alerts.resulting_combination_error(tp_malware, {"classification": "FalsePositive"})
    assert alerts.resulting_combination_error(tp_malware, {"classification": "FalsePositive",
                                                           "determination": "Clean"}) is None
    assert alerts.resulting_combination_error(tp_malware, {"status": "Resolved"}) is None
    assert alerts.resulting_combination_error({"id": "y"}, {"classification": "FalsePositive"}) is None


def test_batch_groups_by_exact_changes():
    plans = [("a", {"status": "Resolved"}), ("b", {"status": "Resolved", "assignedTo": "x@c.com"}),
             ("c", {"status": "Resolved"}), ("d", {})]
    assert alerts.batch_groups(plans) == [({"status": "Resolved"}, ["a", "c"]),
                                          ({"status": "Resolved", "assignedTo": "x@c.com"}, ["b"]),
                                          ({}, ["d"])]


def test_unique_chunks_entity():
    assert odata.unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert list(odata.chunks(list(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert odata.entity({"@odata.context": "x", "id": "a"}) == {"id": "a"}


# -- filters ---------------------------------------------------------------------------------------
def test_alert_filter_builds_one_expression():
    f = alerts.alert_filter(dict(status=["New", "InProgress"], severity=["High"], category=["Malware"],
                                 detection_source=["WindowsDefenderAv", "CustomDetection"],
                                 assigned_to=["o'neil@contoso.com"], incident_id=[1001, 1002],
                                 created_after="2026-01-31T08:00:00+01:00", updated_after="2026-02-01T00:00:00Z"),
                            "investigationId eq 5")
    assert f == ("(status eq 'New' or status eq 'InProgress') and severity eq 'High' and category eq 'Malware' and "
                 "(detectionSource eq 'WindowsDefenderAv' or detectionSource eq 'CustomDetection') and "
                 "assignedTo eq 'o''neil@contoso.com' and (incidentId eq 1001 or incidentId eq 1002) and "
                 "alertCreationTime ge 2026-01-31T07:00:00Z and lastUpdateTime ge 2026-02-01T00:00:00Z and "
                 "(investigationId eq 5)")


def test_alert_filter_empty_and_relative(monkeypatch):
    assert alerts.alert_filter({}) is None
    assert alerts.alert_filter(dict(status=[], category=None)) is None
    now = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(odata, "utcnow", lambda: now)
    assert alerts.alert_filter(dict(created_after="7d")) == "alertCreationTime ge 2026-02-22T12:00:00Z"
    assert alerts.alert_filter(dict(updated_after="30m")) == "lastUpdateTime ge 2026-03-01T11:30:00Z"


@pytest.mark.parametrize("filters,message", [
    (dict(status=["Open"]), "status: 'Open' is not one of"),
    (dict(severity=["Critical"]), "severity: 'Critical'"),
    (dict(created_after="yesterday"), "created_after must be an ISO 8601 time"),
    (dict(incident_id=["x"]), "incident_id: 'x' is not a number"),
])
def test_alert_filter_rejects(filters, message):
    with pytest.raises(ValueError, match=message):
        alerts.alert_filter(filters)


class FakeClient:
    def __init__(self, known):
        self.known = known
        self.calls = []

    def list(self, path, odata_filter=None, params=None, **kwargs):
        self.calls.append((path, odata_filter, params))
        for ident in self.known:
            if "'%s'" % ident in odata_filter:
                yield {"id": ident}


def test_read_by_ids_chunks_the_or_filter():
    ids = ["da%d_1" % i for i in range(120)]
    client = FakeClient(ids[:-1])
    found = alerts.read_by_ids(client, ids, expand=True)
    assert len(client.calls) == 3
    assert all(path == "/api/alerts" and params == {"$expand": "evidence"} for path, _f, params in client.calls)
    assert client.calls[0][1].count(" or ") == alerts.ID_CHUNK - 1
    assert client.calls[2][1] == "(%s)" % " or ".join("id eq '%s'" % i for i in ids[100:])
    assert sorted(found) == sorted(i.lower() for i in ids[:-1])


# -- alert ids put into URL paths ------------------------------------------------------------------------
@pytest.mark.parametrize("value,message", [
    (".", "alert_id must be an id, not '.'"),
    ("..", "alert_id must be an id, not '..'"),
    ("da1/../../machines", "alert_id must not contain whitespace or any of / \\ ? # %, got 'da1/../../machines'"),
    ("da1?$expand=evidence", "got 'da1?$expand=evidence'"),
    ("da1#x", "got 'da1#x'"),
    ("da1%2F..", "got 'da1%2F..'"),
    ("da1\\x", "alert_id must not contain whitespace"),
    ("da 1", "alert_id must not contain whitespace"),
    ("da1\r\nX: y", "alert_id must not contain control characters such as CR, LF or NUL, got 'da1\\r\\nX: y'"),
    ("  ", "alert_id must not be empty"),
])
def test_check_alert_id_refuses_what_cannot_be_one_path_segment(value, message):
    with pytest.raises(ValueError) as err:
        alerts.check_alert_id(value)
    assert message in str(err.value)


@pytest.mark.parametrize("value", ["da637472900382838869_1364969609", "637472900382838869_-136", "ed1234abc",
                                   " da1_2 "])
def test_check_alert_id_accepts_the_documented_forms(value):
    assert alerts.check_alert_id(value) == value.strip()
    assert odata.path_segment(alerts.check_alert_id(value)) == value.strip()


def test_check_alert_ids_names_the_first_bad_items_and_the_count():
    with pytest.raises(ValueError) as err:
        alerts.check_alert_ids(["da1_2"] + ["x/%d" % i for i in range(5000)])
    text = str(err.value)
    assert text.startswith("alert_ids must be ids without whitespace, control characters or / \\ ? # %; 5000 of the "
                           "5001 items are not: item 2 'x/0', item 3 'x/1'")
    assert text.endswith("and 4995 more") and len(text) < 300
    with pytest.raises(ValueError, match="at least one alert id"):
        alerts.check_alert_ids([])
    assert alerts.check_alert_ids([" da1_2", "da3_4 "]) == ["da1_2", "da3_4"]
