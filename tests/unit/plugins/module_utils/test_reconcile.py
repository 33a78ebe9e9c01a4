"""Reconciled writes (MDEClient.write and each domain's read back), over a scripted session: a write whose answer is
lost is read back, then reported or sent once more, never sent a third time."""
import datetime
import re

import pytest
import requests

from ansible_collections.defender.endpoint.plugins.module_utils import alerts, indicators as ti
from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma, machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from tests.unit.plugins.module_utils.test_client import FakeResponse, err, make

ISOLATE = "/api/machines/m1/isolate"
DROPPED = requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed'))")


def one_sentence(text):
    assert text.endswith(".") and "\n" not in text, text
    assert not re.search(r"[.!?]\s+[A-Z]", text[:-1]), "more than one sentence: %r" % text


class Reads:
    """A reconcile function answering from a script (a value, or an exception to raise); counts its calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


# -- the client ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [err(503, "ServiceUnavailable", "busy"), DROPPED,
                                     FakeResponse(200, raw="<html>proxy</html>")],
                         ids=["503", "dropped", "not JSON"])
def test_not_taken_effect_is_sent_once_more(failure):
    t = make(failure, FakeResponse(201, {"id": "a2"}))
    reads = Reads(None)
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a2"}
    assert [c["method"] for c in t.session.calls] == ["POST", "POST"]
    assert reads.calls == 1 and t.client.reconciled == 0


@pytest.mark.parametrize("failure", [err(502, "BadGateway", ""), err(504, "GatewayTimeout", ""), DROPPED])
def test_taken_effect_is_reported_without_a_second_send(failure):
    t = make(failure)
    reads = Reads({"id": "a1", "type": "Isolate"})
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a1", "type": "Isolate"}
    assert len(t.session.calls) == 1 and t.client.reconciled == 1


def test_two_ambiguous_failures_fail_in_one_sentence_and_are_not_sent_a_third_time():
    t = make(err(503, "ServiceUnavailable", "busy"), DROPPED, FakeResponse(201, {"id": "never"}))
    reads = Reads(None, None)
    with pytest.raises(MDEError) as e:
        t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads)
    assert len(t.session.calls) == 2 and reads.calls == 2
    text = str(e.value)
    one_sentence(text)
    assert text.startswith("POST %s failed: HTTP 503" % ISOLATE)
    assert "sent once more and failed again (connection failed: the server closed it without an answer)" in text
    assert text.endswith("it was not sent a third time.")
    assert e.value.method == "POST" and e.value.path == ISOLATE and e.value.to_dict()["sends"] == 2


def test_second_send_that_took_effect_is_found():
    t = make(err(503, "ServiceUnavailable", ""), DROPPED)
    reads = Reads(None, {"id": "a2"})
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a2"}
    assert len(t.session.calls) == 2


@pytest.mark.parametrize("status", [400, 403, 404])
def test_4xx_fails_at_once_without_reading_back(status):
    t = make(err(status, "BadRequest", "no"))
    reads = Reads()
    with pytest.raises(MDEError) as e:
        t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads)
    assert e.value.status == status and reads.calls == 0 and len(t.session.calls) == 1
    assert "not repeated" not in str(e.value)


def test_429_and_rejected_token_are_retried_without_reading_back():
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": "1"}), err(401, "Unauthorized", "expired"),
             FakeResponse(201, {"id": "a"}))
    reads = Reads()
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a"}
    assert reads.calls == 0 and len(t.session.calls) == 3


def test_refused_resend_reads_back_once_more():
    """The first send landed later than the read back could see: the resend is refused as a duplicate."""
    t = make(err(503, "ServiceUnavailable", ""), err(400, "ActiveRequestAlreadyExists", "Action is already in progress"))
    reads = Reads(None, {"id": "a1"})
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a1"}
    t = make(err(503, "ServiceUnavailable", ""), err(400, "BadRequest", "bad"))
    with pytest.raises(MDEError) as e:
        t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=Reads(None, None))
    assert e.value.status == 400


def test_failed_read_back_is_not_repeated_and_says_so():
    t = make(err(500, "InternalServerError", "boom"))
    reads = Reads(MDEError("GET /api/machineactions failed: HTTP 503 Service Unavailable.", status=503))
    with pytest.raises(MDEError) as e:
        t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads)
    one_sentence(str(e.value))
    assert "reading the state back to learn whether it took effect failed too (GET /api/machineactions failed" \
        in str(e.value)
    assert str(e.value).endswith("it was not repeated, as the API may have carried it out.")
    assert len(t.session.calls) == 1 and e.value.status == 500


def test_read_timeout_reads_back_until_the_request_deadline_before_sending_again():
    now = [0.0]
    t = make(requests.exceptions.ReadTimeout("Read timed out."), FakeResponse(201, {"id": "a2"}))
    t.session.deadline = 20
    t.client.clock = lambda: now[0]

    def sleep(seconds):
        t.sleeps.append(seconds)
        now[0] += seconds

    t.client.sleep = sleep
    reads = Reads(None, None, None, {"id": "late"})
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "late"}
    assert len(t.session.calls) == 1 and t.sleeps == [1.0, 2.0, 4.0]
    reads = Reads(*[None] * 10)
    now[0] = 0.0
    t = make(requests.exceptions.ReadTimeout("Read timed out."), FakeResponse(201, {"id": "a2"}))
    t.session.deadline = 5
    t.client.clock = lambda: now[0]
    t.client.sleep = sleep
    assert t.client.post(ISOLATE, json={"Comment": "x"}, reconcile=reads) == {"id": "a2"}
    assert now[0] >= 5 and len(t.session.calls) == 2


def test_without_reconcile_an_ambiguous_post_keeps_failing_as_before():
    t = make(err(503, "ServiceUnavailable", "busy"))
    with pytest.raises(MDEError) as e:
        t.client.post(ISOLATE, json={"Comment": "x"})
    assert str(e.value).endswith("; it was not repeated, as the API may have carried it out.")


# -- each domain's read back -------------------------------------------------------------------------------------
def listing(*items):
    return FakeResponse(200, {"value": list(items)})


def test_machine_action_read_back_finds_ours_by_type_time_comment_and_unknown_id():
    now = datetime.datetime(2026, 1, 31, 8, 0, tzinfo=datetime.timezone.utc)
    old = {"id": "0a000000-0000-4000-8000-000000000001", "type": "Isolate", "requestorComment": "incident 7", "creationDateTimeUtc": "2026-01-31T07:59:50Z"}
    other = {"id": "0a000000-0000-4000-8000-000000000002", "type": "Isolate", "requestorComment": "someone else", "creationDateTimeUtc": "2026-01-31T08:00:01Z"}
    ours = {"id": "0a000000-0000-4000-8000-000000000003", "type": "Isolate", "requestorComment": "incident 7", "creationDateTimeUtc": "2026-01-31T08:00:01Z"}
    t = make(DROPPED, listing(old, other, ours))
    body = ma.build_body("isolate", "incident 7")
    found = ma.request_action(t.client, "isolate", "m1", body, dict(isolation_type="Full"), known_ids=["0a000000-0000-4000-8000-000000000001"], now=now)
    assert found == ours and len(t.session.calls) == 2
    query = t.session.calls[1]["params"]["$filter"]
    assert query == "machineId eq 'm1' and type eq 'Isolate' and creationDateTimeUtc ge 2026-01-31T07:59:00Z"


def test_machine_action_not_found_is_sent_once_more():
    t = make(err(503, "ServiceUnavailable", ""), listing(), FakeResponse(201, {"id": "0a000000-0000-4000-8000-000000000004", "type": "Isolate"}))
    found = ma.request_action(t.client, "isolate", "m1", ma.build_body("isolate"), {})
    assert found["id"] == "0a000000-0000-4000-8000-000000000004" and [c["method"] for c in t.session.calls] == ["POST", "GET", "POST"]


@pytest.mark.parametrize("action, tags, found", [("Add", ["a", "x"], True), ("Add", ["a"], False),
                                                 ("Remove", ["a"], True), ("Remove", ["a", "x"], False)])
def test_tag_read_back(action, tags, found):
    machine = {"id": "m1", "machineTags": tags}
    t = make(DROPPED, FakeResponse(200, machine), FakeResponse(200, dict(machine, again=True)))
    answer = mu.change_tag(t.client, "m1", "x", action)
    assert [c["method"] for c in t.session.calls] == (["POST", "GET"] if found else ["POST", "GET", "POST"])
    assert answer.get("again") is (None if found else True)


def test_bulk_tags_read_back_needs_every_machine():
    body = {"Value": "x", "Action": "Add", "MachineIds": ["m1", "m2"]}
    t = make(DROPPED, listing({"id": "m1", "machineTags": ["x"]}, {"id": "m2", "machineTags": ["x"]}))
    assert mu.change_tags_of_many(t.client, body) == {"value": [{"id": "m1", "machineTags": ["x"]},
                                                                {"id": "m2", "machineTags": ["x"]}]}
    t = make(DROPPED, listing({"id": "m1", "machineTags": ["x"]}, {"id": "m2", "machineTags": []}),
             FakeResponse(200, {"value": []}))
    mu.change_tags_of_many(t.client, body)
    assert [c["method"] for c in t.session.calls] == ["POST", "GET", "POST"]


def test_device_value_read_back():
    t = make(err(504, "GatewayTimeout", ""), FakeResponse(200, {"id": "m1", "deviceValue": "High"}))
    assert mu.set_device_value(t.client, "m1", "High")["deviceValue"] == "High"
    assert len(t.session.calls) == 2


def indicator(**kw):
    base = {"id": "1001", "indicatorValue": "evil.example.com", "indicatorType": "DomainName", "action": "Block",
            "title": "t", "description": "d"}
    base.update(kw)
    return base


def test_indicator_submit_read_back_compares_the_fields():
    body = {k: v for k, v in indicator().items() if k != "id"}
    t = make(DROPPED, listing(indicator(title="older")), FakeResponse(200, indicator()))
    assert ti.submit(t.client, body)["id"] == "1001"
    assert [c["method"] for c in t.session.calls] == ["POST", "GET", "POST"]
    t = make(DROPPED, listing(indicator(indicatorValue="EVIL.example.com")))
    assert ti.submit(t.client, body)["id"] == "1001" and len(t.session.calls) == 2


def test_import_read_back_builds_the_per_item_results():
    bodies = [{k: v for k, v in indicator(indicatorValue=v).items() if k != "id"} for v in ("a.example.com",
                                                                                            "b.example.com")]
    t = make(DROPPED, listing(indicator(id="7", indicatorValue="a.example.com"),
                              indicator(id="8", indicatorValue="b.example.com")))
    answer = ti.import_batch(t.client, bodies)
    assert answer == {"value": [
        {"id": "7", "indicator": "a.example.com", "isFailed": False, "failureReason": None},
        {"id": "8", "indicator": "b.example.com", "isFailed": False, "failureReason": None}]}
    assert len(t.session.calls) == 2


def test_batch_delete_read_back():
    t = make(DROPPED, listing(indicator(id="9")))
    assert ti.batch_delete(t.client, ["1", "2"]) == 1
    assert [c["method"] for c in t.session.calls] == ["POST", "GET"]


def alert(**kw):
    base = {"id": "da1_1", "status": "New", "assignedTo": None, "classification": None, "determination": None,
            "comments": [{"comment": "seen", "createdBy": "x", "createdTime": "2026-01-01T00:00:00Z"}]}
    base.update(kw)
    return base


def test_alert_patch_counts_the_comment_so_it_is_never_added_twice():
    before = alert()
    done = alert(status="Resolved", comments=before["comments"] * 2)
    t = make(DROPPED, FakeResponse(200, done))
    assert alerts.update(t.client, before, {"status": "Resolved"}, "seen") == done
    assert [c["method"] for c in t.session.calls] == ["PATCH", "GET"]
    # fields already as asked but the comment not added: it did not take effect, sent once more
    t = make(DROPPED, FakeResponse(200, alert(status="Resolved")), FakeResponse(200, done))
    alerts.update(t.client, before, {"status": "Resolved"}, "seen")
    assert [c["method"] for c in t.session.calls] == ["PATCH", "GET", "PATCH"]


def test_batch_update_sends_again_only_to_the_alerts_without_the_change():
    first, second = alert(id="da1_1"), alert(id="da2_2", comments=[])
    t = make(DROPPED, listing(alert(id="da1_1", status="Resolved", comments=first["comments"] * 2), second),
             FakeResponse(200))
    assert alerts.batch_update(t.client, [first, second], {"status": "Resolved"}, "seen") == 2
    assert [c["method"] for c in t.session.calls] == ["POST", "GET", "POST"]
    assert t.session.calls[2]["json"] == {"alertIds": ["da2_2"], "status": "Resolved", "comment": "seen"}
