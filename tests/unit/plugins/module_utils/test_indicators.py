"""Indicator validation, comparison, planning and batching (plugins/module_utils/indicators.py)."""
import datetime

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import indicators as ti
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
SHA1 = "220e7d15b011d7fac48f2bd61114db1022197f7f"
SHA256 = "881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def spec(**kw):
    base = dict(indicator_value=SHA256, indicator_type="FileSha256", action="Block", title="t", description="d")
    base.update(kw)
    return base


@pytest.mark.parametrize("itype,value", [
    ("FileSha1", SHA1), ("FileSha1", SHA1.upper()), ("FileSha256", SHA256), ("FileMd5", MD5),
    ("CertificateThumbprint", SHA1.upper()),
    ("IpAddress", "12.13.14.15"), ("IpAddress", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ("IpAddress", "2001:db8:0:0:0:ff00:42:8329"),
    ("DomainName", "contoso.com"), ("DomainName", "a-b.sub.contoso.co.uk"), ("DomainName", "xn--80ak6aa92e.xn--p1ai"),
    ("Url", "http://phish.example.org/login"), ("Url", "https://contoso.com:8443/a?b=c#d"), ("Url", "example.org/path"),
    ("Url", "http://10.1.2.3/x"),
])
def test_valid_values(itype, value):
    assert ti.value_error(itype, value) is None


@pytest.mark.parametrize("itype,value,reason", [
    ("FileSha1", SHA1[:-1], "40 hexadecimal characters, got 39"),
    ("FileSha1", SHA256, "got 64"),
    ("FileSha256", SHA256[:-1] + "g", "hexadecimal"),
    ("FileMd5", SHA1, "32 hexadecimal"),
    ("CertificateThumbprint", ":".join(SHA1[i:i + 2] for i in range(0, 40, 2)), "without separators"),
    ("CertificateThumbprint", SHA256, "got 64"),
    ("IpAddress", "10.0.0.0/8", "CIDR"),
    ("IpAddress", "10.0.0.1-10.0.0.9", "ranges"),
    ("IpAddress", "256.1.1.1", "not a valid"),
    ("IpAddress", "contoso.com", "not a valid"),
    ("DomainName", "*.contoso.com", "wildcards"),
    ("DomainName", "http://contoso.com", "no scheme"),
    ("DomainName", "contoso", "not a valid domain"),
    ("DomainName", "-bad.contoso.com", "not a valid domain"),
    ("DomainName", "under_score.com", "not a valid domain"),
    ("Url", "ftp://contoso.com/x", "only http"),
    ("Url", "http://conto so.com/", "whitespace"),
    ("Url", "http:///path", "no host"),
    ("Url", "http://*.contoso.com/", "wildcards"),
    ("Url", "http://bad_host/", "neither a domain"),
    ("Url", "", "empty"),
])
def test_invalid_values(itype, value, reason):
    error = ti.value_error(itype, value)
    assert error is not None and reason in error


def test_build_single_body_camel_case():
    body, warnings = ti.build(spec(severity="High", rbac_group_names=["b", "a"], generate_alert=False,
                                   recommended_actions="r", application="app", expiration_time="2030-01-01T02:00:00+02:00",
                                   educate_url="https://intranet/why"), "present", "indicator", now=NOW)
    assert warnings == []
    assert body == {"indicatorValue": SHA256, "indicatorType": "FileSha256", "action": "Block", "title": "t",
                    "description": "d", "severity": "High", "recommendedActions": "r", "generateAlert": False,
                    "application": "app", "educateUrl": "https://intranet/why", "rbacGroupNames": ["b", "a"],
                    "expirationTime": "2030-01-01T00:00:00Z"}


def test_build_strips_value_and_omits_unset_fields():
    body, _unused = ti.build(spec(indicator_value="  %s " % SHA256), "present", "indicator", now=NOW)
    assert body == {"indicatorValue": SHA256, "indicatorType": "FileSha256", "action": "Block", "title": "t", "description": "d"}


def test_absent_needs_only_value_and_type():
    body, _unused = ti.build(dict(indicator_value="contoso.com", indicator_type="DomainName"), "absent", "x", now=NOW)
    assert body == {"indicatorValue": "contoso.com", "indicatorType": "DomainName"}


@pytest.mark.parametrize("kw,text", [
    (dict(action=None), "action is required"),
    (dict(title=""), "title is required"),
    (dict(description=None), "description is required"),
    (dict(indicator_type=None), "indicator_type is required"),
    (dict(indicator_value=None), "indicator_value is required"),
    (dict(action="Audit"), "Audit requires generate_alert: true"),
    (dict(action="Audit", generate_alert=False), "Audit requires generate_alert: true"),
    (dict(indicator_type="CertificateThumbprint", indicator_value=SHA1, action="Block"),
     "action Block is not supported for CertificateThumbprint"),
    (dict(indicator_type="IpAddress", indicator_value="1.2.3.4", action="BlockAndRemediate"), "not supported for IpAddress"),
    (dict(expiration_time="2020-01-01T00:00:00Z"), "in the past"),
    (dict(expiration_time="next tuesday"), "ISO 8601"),
    (dict(educate_url="https://x/y", action="Allowed"), "only used with action Block or Warn"),
    (dict(educate_url="intranet/why"), "http:// or https://"),
    (dict(severity="Critical"), "severity must be one of"),
    (dict(indicator_value="abc"), "invalid FileSha256 value"),
    (dict(rbac_group_names=["ok", ""]), "rbac_group_names"),
])
def test_build_errors_name_the_item(kw, text):
    with pytest.raises(ValueError) as err:
        ti.build(spec(**kw), "present", "indicators[7]", now=NOW)
    assert text in str(err.value)
    assert str(err.value).startswith("indicators[7]")


def test_audit_with_generate_alert_and_legacy_action_warning():
    body, warnings = ti.build(spec(action="Audit", generate_alert=True), "present", "i", now=NOW)
    assert body["generateAlert"] is True and warnings == []
    body, warnings = ti.build(spec(indicator_type="CertificateThumbprint", indicator_value=SHA1, action="AlertAndBlock"),
                              "present", "i", now=NOW)
    assert body["action"] == "AlertAndBlock" and "legacy" in warnings[0]


def test_build_all_rejects_duplicates_case_insensitively():
    with pytest.raises(ValueError) as err:
        ti.build_all([spec(), spec(indicator_value=SHA256.upper())], "present", now=NOW)
    assert "indicators[1]" in str(err.value) and "indicators[0]" in str(err.value)
    # URLs are case-sensitive: two spellings are two indicators
    bodies, _unused = ti.build_all([dict(indicator_value="http://a.com/X", indicator_type="Url"),
                                    dict(indicator_value="http://a.com/x", indicator_type="Url")], "absent", now=NOW)
    assert len(bodies) == 2
    with pytest.raises(ValueError) as err:
        ti.build_all([spec(), "oops"], "present", now=NOW)
    assert "indicators[1]: each indicator must be a dictionary" in str(err.value)


@pytest.mark.parametrize("text,expected", [
    ("2030-01-01T00:00:00Z", datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
    ("2030-01-01T00:00:00.1234567Z", datetime.datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=datetime.timezone.utc)),
    ("2030-01-01", datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
    ("2030-01-01T01:00:00+01:00", datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
    ("2030-01-01T00:00:00", datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
])
def test_expiration_times_are_read_by_the_one_time_parser(text, expected):
    assert odata.parse_time(text, "expiration_time", relative=False) == expected
    body, _unused = ti.build(spec(expiration_time=text), "present", "indicators[0]", now=NOW)
    assert odata.parse_time(body["expirationTime"]) == expected


def existing(**kw):
    base = {"id": "5", "indicatorValue": SHA256, "indicatorType": "FileSha256", "action": "Block", "title": "t",
            "description": "d", "severity": "Informational", "recommendedActions": None, "rbacGroupNames": ["a", "b"],
            "expirationTime": "2030-01-01T00:00:00.0000000Z", "generateAlert": False, "application": "x",
            "createdBy": "APP-ID"}
    base.update(kw)
    return base


def test_differences_only_compare_given_fields_and_normalise():
    body = {"indicatorValue": SHA256, "indicatorType": "FileSha256", "action": "Block", "title": "t", "description": "d",
            "rbacGroupNames": ["b", "a"], "expirationTime": "2030-01-01T00:00:00Z", "application": "other",
            "recommendedActions": "", "generateAlert": False}
    assert ti.differences(body, existing()) == []
    assert ti.differences(dict(body, title="T2", severity="High"), existing()) == ["title", "severity"]
    assert ti.differences(dict(body, expirationTime="2031-01-01T00:00:00Z"), existing()) == ["expirationTime"]
    # a field the API does not return counts as unset
    no_flag = existing()
    del no_flag["generateAlert"]
    assert ti.differences(dict(body, generateAlert=True), no_flag) == ["generateAlert"]
    assert ti.differences(dict(body, educateUrl="https://x/y"), existing()) == ["educateUrl"]


def test_plan_present_absent_and_purge():
    bodies, _unused = ti.build_all([spec(), spec(indicator_value=SHA1, indicator_type="FileSha1", title="new title"),
                                    spec(indicator_value=MD5, indicator_type="FileMd5")], "present", now=NOW)
    current = [existing(indicatorValue=SHA256.upper()), existing(id="6", indicatorValue=SHA1, indicatorType="FileSha1"),
               existing(id="7", indicatorValue="1.2.3.4", indicatorType="IpAddress", createdBy="app-id"),
               existing(id="8", indicatorValue="5.6.7.8", indicatorType="IpAddress", createdBy="someone@contoso.com")]
    plan = ti.plan(bodies, current, "present")
    assert [i["result"] for i in plan.items] == ["unchanged", "updated", "created"]
    assert plan.items[1]["changes"] == ["title"]
    assert plan.counts() == dict(created=1, updated=1, deleted=0, unchanged=1, failed=0)
    purge = ti.plan(bodies, current, "present", purge=True, owner="App-Id")
    assert [(i["result"], i["existing"]["id"]) for i in purge.deletes] == [("deleted", "7")]
    assert purge.deletes[0]["purged"] is True
    absent = ti.plan(bodies, current, "absent", purge=True, owner="app-id")
    assert [i["result"] for i in absent.items] == ["deleted", "deleted", "unchanged"]


def test_limit_error():
    bodies, _unused = ti.build_all([spec(), spec(indicator_value=SHA1, indicator_type="FileSha1")], "present", now=NOW)
    plan = ti.plan(bodies, [], "present")
    assert ti.limit_error(14998, plan) is None
    message = ti.limit_error(14999, plan)
    assert "15001" in message and "limit of 15000 per tenant" in message and "Nothing was written" in message


def test_value_filter_has_case_variants_except_urls():
    bodies = [{"indicatorValue": "AbC.com", "indicatorType": "DomainName"},
              {"indicatorValue": "http://x.com/P'Q", "indicatorType": "Url"}]
    assert ti.value_filter(bodies) == ("(indicatorValue eq 'AbC.com' or indicatorValue eq 'abc.com' or "
                                       "indicatorValue eq 'ABC.COM' or indicatorValue eq 'http://x.com/P''Q')")
    assert ti.value_filter([{"indicatorValue": "1.2.3.4", "indicatorType": "IpAddress"}]) == "indicatorValue eq '1.2.3.4'"


def test_chunks():
    assert [len(c) for c in odata.chunks(range(1201), ti.BATCH_SIZE)] == [500, 500, 201]
    assert list(odata.chunks([], ti.BATCH_SIZE)) == []


def test_pair_results_by_position_and_by_value():
    chunk = [{"indicatorValue": "a.com"}, {"indicatorValue": "b.com"}]
    ok = {"value": [{"id": "1", "indicator": "a.com", "isFailed": False}, {"id": None, "indicator": "b.com", "isFailed": True,
                                                                           "failureReason": "nope"}]}
    assert [r["id"] for _b, r in ti.pair_results(chunk, ok)] == ["1", None]
    swapped = {"value": list(reversed(ok["value"]))}
    assert [r["id"] for _b, r in ti.pair_results(chunk, swapped)] == ["1", None]
    missing = ti.pair_results(chunk, {"value": [ok["value"][0]]})
    assert missing[1][1]["isFailed"] is True and "no result" in missing[1][1]["failureReason"]


def test_merged_keeps_identity_and_application_of_existing():
    body = {"indicatorValue": SHA256, "indicatorType": "FileSha256", "title": "new", "application": "other"}
    out = ti.merged(existing(indicatorValue=SHA256.upper()), body)
    assert out["title"] == "new" and out["application"] == "x" and out["indicatorValue"] == SHA256.upper()
    assert ti.merged(None, body) == body


class FakeClient:
    """Records calls; BatchDelete answers from a script (None = success, an int = that HTTP status)."""

    def __init__(self, present, answers):
        self.present = set(present)
        self.answers = list(answers)
        self.calls = []

    def post(self, path, json=None, reconcile=None):
        self.calls.append(("POST", path, json, reconcile))
        answer = self.answers.pop(0) if self.answers else None
        if answer == "lost":  # the API deleted them, but the answer was lost: the client reads back (MDEClient.write)
            self.present -= set(json["IndicatorIds"])
            assert reconcile() is True
            return None
        if answer is not None:
            raise MDEError("POST %s failed: HTTP %d." % (path, answer), status=answer, method="POST", path=path)
        self.present -= set(json["IndicatorIds"])

    def list(self, path, page_size=None):
        self.calls.append(("GET", path, None, None))
        return [{"id": i} for i in sorted(self.present)]


def test_batch_delete_chunks_of_500():
    ids = [str(i) for i in range(1, 1202)]
    client = FakeClient(ids, [])
    assert ti.batch_delete(client, ids) == 3
    assert [len(c[2]["IndicatorIds"]) for c in client.calls] == [500, 500, 201]
    assert all(c[1] == "/api/indicators/BatchDelete" and callable(c[3]) for c in client.calls)
    assert client.present == set()


def test_batch_delete_after_lost_answer_rereads_and_sends_nothing_more():
    client = FakeClient(["1", "2", "9"], ["lost"])
    ti.batch_delete(client, ["1", "2"])
    assert [c[0] for c in client.calls] == ["POST", "GET"]
    assert client.present == {"9"}


def test_batch_delete_404_deletes_the_ids_still_there():
    client = FakeClient(["1", "9"], [404])  # "2" was deleted meanwhile by someone else
    ti.batch_delete(client, ["1", "2"])
    assert [(c[0], c[2]) for c in client.calls] == [("POST", {"IndicatorIds": ["1", "2"]}), ("GET", None),
                                                    ("POST", {"IndicatorIds": ["1"]})]
    assert client.present == {"9"}


def test_batch_delete_other_errors_raise():
    client = FakeClient(["1"], [403])
    with pytest.raises(MDEError):
        ti.batch_delete(client, ["1"])


@pytest.mark.parametrize("itype,value", [
    ("Url", "http://evil.example.net/a\x00b"),
    ("Url", "http://evil.example.net/a\u2028b"),
    ("DomainName", "evil\x07.example.net"),
])
def test_values_with_control_characters_are_refused_and_shown_escaped(itype, value):
    with pytest.raises(ValueError) as err:
        ti.build(spec(indicator_type=itype, indicator_value=value, action="Block"), "present", "indicators[2]", now=NOW)
    text = str(err.value)
    assert "control characters" in text and repr(value) in text
    assert not any(c in text for c in "\x00\x07\u2028")


def test_a_long_bad_value_is_shown_cut_in_the_message():
    value = "g" * 100000
    with pytest.raises(ValueError) as err:
        ti.build(spec(indicator_value=value), "present", "indicators[0]", now=NOW)
    text = str(err.value)
    assert "(100000 characters)" in text and "invalid FileSha256 value" in text and len(text) < 400


# -- what users paste: compressed IPv6, upper case, a trailing dot -------------------------------------------
@pytest.mark.parametrize("itype, given, sent", [
    ("IpAddress", "2001:db8::77", "2001:db8:0:0:0:0:0:77"),
    ("IpAddress", "2001:DB8:0000:0000:0000:0000:0000:0077", "2001:db8:0:0:0:0:0:77"),
    ("IpAddress", "::1", "0:0:0:0:0:0:0:1"),
    ("IpAddress", " 203.0.113.7 ", "203.0.113.7"),
    ("DomainName", "Contoso.COM.", "contoso.com"),
    ("FileSha256", "A" * 64, "a" * 64),
    ("Url", "https://Contoso.com/Path", "https://Contoso.com/Path"),
])
def test_values_are_sent_in_the_form_the_api_wants(itype, given, sent):
    body, _warnings = ti.build(dict(indicator_value=given, indicator_type=itype, action="Allowed", title="t",
                                    description="d"), "present", "indicator")
    assert body["indicatorValue"] == sent


def test_one_indicator_whatever_its_spelling():
    assert ti.match_key("IpAddress", "2001:db8::77") == ti.match_key("IpAddress", "2001:DB8:0:0:0:0:0:77")
    assert ti.match_key("DomainName", "Contoso.com.") == ti.match_key("DomainName", "contoso.com")
    assert ti.match_key("Url", "https://a.example/X") != ti.match_key("Url", "https://a.example/x")
    assert "2001:db8::77" in ti.value_variants("IpAddress", "2001:db8:0:0:0:0:0:77")
