"""The mde_alerts event source's pure logic: times, options, the $filter, dedupe state and the checkpoint file."""
import asyncio
import json
import os
import re
import pkgutil
import runpy
import stat

import pytest

from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts as src
from ansible_collections.defender.endpoint.plugins.module_utils import poller as pu
from ansible_collections.defender.endpoint.plugins.module_utils import unsafe_yaml
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible.parsing.yaml.loader import AnsibleLoader
import yaml

T = pu.time_ticks


def alert(ident, updated, **extra):
    data = {"id": ident, "lastUpdateTime": updated, "severity": "High", "status": "New"}
    data.update(extra)
    return data


# -- times ----------------------------------------------------------------------------------------------------
def test_times_compare_at_100ns_whatever_the_fraction_length_or_offset():
    assert pu.ticks_text(T("2021-01-26T20:33:57.7220239Z")) == "2021-01-26T20:33:57.7220239Z"
    assert T("2021-01-26T20:33:59.2Z") == T("2021-01-26T20:33:59.2000000Z") == T("2021-01-26T21:33:59.2+01:00")
    assert T("2021-01-26T20:33:59Z") < T("2021-01-26T20:33:59.0000001Z") < T("2021-01-26T20:33:59.000001Z")
    assert T("2021-01-26T20:33:59.123456789Z") == T("2021-01-26T20:33:59.1234567Z")   # beyond 100 ns: truncated
    assert T("2021-01-26T20:33:59") == T("2021-01-26T20:33:59Z")                      # no zone: UTC
    assert pu.filter_time(T("2021-01-26T20:33:59.9999999Z")) == "2021-01-26T20:33:59Z"  # floored, never later
    for bad in (None, "", "yesterday", "2021-01-26", "26/01/2021 20:33"):
        with pytest.raises(ValueError):
            T(bad)


def test_ages():
    assert pu.seconds_of(60, "interval") == 60
    assert pu.seconds_of("0.5", "interval") == 0.5
    assert [pu.seconds_of(v, "x") for v in ("30s", "5m", "1h", "2d", "1w", "0s")] == [30, 300, 3600, 172800, 604800, 0]
    for bad in ("soon", "-5", True, "5 minutes"):
        with pytest.raises(src.ConfigError, match="interval"):
            pu.seconds_of(bad, "interval")


# -- options --------------------------------------------------------------------------------------------------
ENV = {"MDE_TENANT_ID": "t-env", "AZURE_TENANT_ID": "t-azure", "MDE_CLIENT_ID": "c-env", "AZURE_CLIENT_SECRET": "s-azure",
       "MDE_VALIDATE_CERTS": "false", "MDE_TIMEOUT": "12"}


def test_options_fall_back_to_the_environment_as_the_modules_do():
    now = T("2026-01-31T08:00:00Z")
    c = src.AlertPoller.parse_args({"client_id": "c-arg", "severity": "High,Medium", "status": ["New"],
                                    "interval": "5", "eda_feedback_queue": object()}, ENV, now=now)
    assert c["auth"]["tenant_id"] == "t-env"            # MDE_* before AZURE_*
    assert c["auth"]["client_id"] == "c-arg"            # an argument wins over the environment
    assert c["auth"]["client_secret"] == "s-azure"
    assert c["auth"]["validate_certs"] is False and c["auth"]["timeout"] == 12
    assert c["auth"]["cloud"] == "global" and c["auth"]["token_cache"] is True and c["auth"]["access_token"] is None
    assert c["severity"] == ["High", "Medium"] and c["status"] == ["New"]
    assert c["interval"] == 5 and c["overlap"] == 120 and c["include_evidence"] is False
    assert c["start"] == T("2026-01-31T07:00:00Z")        # initial_lookback 1h
    assert c["checkpoint_path"] is None
    c = src.AlertPoller.parse_args({"initial_lookback": "2026-01-30T00:00:00Z", "checkpoint_path": "~/cp.json",
                                    "overlap": 0, "include_evidence": "yes"}, {}, now=now)
    assert c["start"] == T("2026-01-30T00:00:00Z") and c["overlap"] == 0 and c["include_evidence"] is True
    assert c["checkpoint_path"] == os.path.expanduser("~/cp.json")
    assert src.AlertPoller.parse_args({"checkpoint_path": ""}, {})["checkpoint_path"] is None   # the rulebook's default('')


@pytest.mark.parametrize("args, message", [
    ({"severity": ["Critical"]}, r"severity: 'Critical' is not one of UnSpecified, Informational, Low, Medium, High"),
    ({"status": "Open"}, r"status: 'Open' is not one of New, InProgress, Resolved"),
    ({"interval": 0}, "interval must be greater than 0"),
    ({"interval": "often"}, "interval must be a number of seconds"),
    ({"initial_lookback": "last week"}, "initial_lookback must be"),
    ({"overlap": "-1"}, "overlap must be"),
    ({"include_evidence": "maybe"}, "include_evidence must be a boolean"),
    ({"timeout": "slow"}, "timeout must be a whole number"),
    ({"cloud": "mars"}, "cloud must be one of"),
    ({"intervall": 5}, "Unknown option.*intervall"),
    ({"initial_lookback": "2099-01-01T00:00:00Z"}, "initial_lookback 2099-01-01T00:00:00Z is in the future"),
])
def test_bad_options_are_configuration_errors(args, message):
    with pytest.raises(src.ConfigError, match=message):
        src.AlertPoller.parse_args(args, {})


def test_filter_is_server_side_odata():
    state = pu.initial_state(T("2026-01-31T08:00:00.5Z"))
    assert pu.time_filter("lastUpdateTime", state, 0) == "lastUpdateTime ge 2026-01-31T08:00:00Z"
    assert pu.time_filter("lastUpdateTime", state, 120, ["High"], ["New", "InProgress"]) == (
        "lastUpdateTime ge 2026-01-31T07:58:00Z and severity eq 'High' and (status eq 'New' or status eq 'InProgress')")


# -- dedupe ---------------------------------------------------------------------------------------------------
def test_first_poll_emits_everything_from_the_watermark_oldest_first():
    state = pu.initial_state(T("2026-01-31T08:00:00Z"))
    page = [alert("b", "2026-01-31T08:05:00.1234567Z"), alert("old", "2026-01-31T07:59:59.9999999Z"),
            alert("a", "2026-01-31T08:00:00Z"), alert("c", "2026-01-31T08:05:00.1234567Z")]
    emit, new = src.AlertPoller.select_new(state, page, overlap=0)
    assert [a["id"] for a in emit] == ["a", "b", "c"]
    assert new == {"watermark": T("2026-01-31T08:05:00.1234567Z"),
                   "seen": {"b": T("2026-01-31T08:05:00.1234567Z"), "c": T("2026-01-31T08:05:00.1234567Z")}}
    assert state == {"watermark": T("2026-01-31T08:00:00Z"), "seen": {}}     # pure: the input is unchanged
    assert page[0]["id"] == "b"


def test_each_alert_version_is_emitted_once_across_polls():
    state = pu.initial_state(T("2026-01-31T08:00:00Z"))
    first = [alert("a", "2026-01-31T08:01:00Z"), alert("b", "2026-01-31T08:02:00Z")]
    emit, state = src.AlertPoller.select_new(state, first, overlap=0)
    assert [a["id"] for a in emit] == ["a", "b"]
    # The next poll (lastUpdateTime ge the watermark) sees b again: nothing to emit, the state stays.
    emit, again = src.AlertPoller.select_new(state, [alert("b", "2026-01-31T08:02:00Z")], overlap=0)
    assert emit == [] and again == state
    # Another alert with exactly the watermark's time is new; b still is not.
    emit, state = src.AlertPoller.select_new(state, [alert("b", "2026-01-31T08:02:00Z"), alert("d", "2026-01-31T08:02:00Z")], 0)
    assert [a["id"] for a in emit] == ["d"]
    assert state["seen"] == {"b": T("2026-01-31T08:02:00Z"), "d": T("2026-01-31T08:02:00Z")}
    # a changed: emitted again, with its new content; the watermark moves and forgets b and d.
    changed = alert("a", "2026-01-31T08:03:00Z", status="InProgress")
    emit, state = src.AlertPoller.select_new(state, [alert("b", "2026-01-31T08:02:00Z"), changed], overlap=0)
    assert emit == [changed]
    assert state == {"watermark": T("2026-01-31T08:03:00Z"), "seen": {"a": T("2026-01-31T08:03:00Z")}}
    # The same alert twice in one poll (a page boundary moved under it) is emitted once.
    twice = [alert("e", "2026-01-31T08:04:00Z"), alert("e", "2026-01-31T08:04:00Z")]
    emit, state = src.AlertPoller.select_new(state, twice, overlap=0)
    assert [a["id"] for a in emit] == ["e"]


def test_overlap_catches_late_alerts_without_repeating_seen_ones():
    state = pu.initial_state(T("2026-01-31T08:00:00Z"))
    emit, state = src.AlertPoller.select_new(state, [alert("a", "2026-01-31T08:10:00Z"), alert("b", "2026-01-31T08:09:30Z")], 120)
    assert [a["id"] for a in emit] == ["b", "a"]
    assert set(state["seen"]) == {"a", "b"}                               # both within 2 minutes of the watermark
    late = alert("late", "2026-01-31T08:09:00Z")                          # visible only now, older than the watermark
    stale = alert("a", "2026-01-31T08:05:00Z")                            # an older copy of a: never emitted again
    too_old = alert("x", "2026-01-31T08:07:59Z")                          # before watermark - overlap
    emit, state = src.AlertPoller.select_new(
        state, [alert("a", "2026-01-31T08:10:00Z"), alert("b", "2026-01-31T08:09:30Z"), late, stale, too_old], 120)
    assert emit == [late]
    emit, state = src.AlertPoller.select_new(state, [alert("c", "2026-01-31T08:13:00Z")], 120)
    assert [a["id"] for a in emit] == ["c"]
    assert state["seen"] == {"c": T("2026-01-31T08:13:00Z")}             # older entries pruned with the window


def test_alerts_without_an_id_or_a_time_are_skipped():
    state = pu.initial_state(T("2026-01-31T08:00:00Z"))
    emit, new = src.AlertPoller.select_new(state, [{"lastUpdateTime": "2026-01-31T08:01:00Z"}, alert("a", None), alert("b", "x")])
    assert emit == [] and new == state


# -- checkpoint -----------------------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_atomic_and_private(tmp_path):
    path = str(tmp_path / "sub" / "cp.json")
    assert src.AlertPoller.load_checkpoint(path) is None
    state = {"watermark": T("2026-01-31T08:03:00.1234567Z"), "seen": {"a": T("2026-01-31T08:03:00.1234567Z")}}
    pu.save_checkpoint(path, state)
    assert src.AlertPoller.load_checkpoint(path) == state
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert json.load(open(path)) == {"version": 1, "watermark": "2026-01-31T08:03:00.1234567Z",
                                     "seen": {"a": "2026-01-31T08:03:00.1234567Z"}}
    state2 = {"watermark": T("2026-01-31T09:00:00Z"), "seen": {}}
    pu.save_checkpoint(path, state2)
    assert src.AlertPoller.load_checkpoint(path) == state2
    # The file and the lock of its files.StateStore; no temporary file left behind.
    assert sorted(os.listdir(os.path.dirname(path))) == ["cp.json", "cp.lock"]


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 2, "watermark": "2026-01-31T08:00:00Z", "seen": {}}',
                                     '{"version": 1, "watermark": "soon", "seen": {}}',
                                     '{"version": 1, "watermark": "2026-01-31T08:00:00Z", "seen": []}'])
def test_an_unusable_checkpoint_is_a_configuration_error(tmp_path, content):
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(src.ConfigError, match="checkpoint file .*cp.json is not usable"):
        src.AlertPoller.load_checkpoint(str(path))


def test_default_checkpoint_path_depends_on_what_is_read(tmp_path):
    auth = {"tenant_id": "t", "client_id": "c"}
    one = src.AlertPoller.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High"], ["New"])
    assert one.startswith(str(tmp_path / "eda" / "mde_alerts-")) and one.endswith(".json")
    assert one == src.AlertPoller.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High"], ["New"])
    assert one != src.AlertPoller.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High", "Medium"], ["New"])
    assert one != src.AlertPoller.default_checkpoint_path(str(tmp_path), "https://api", dict(auth, client_id="d"), ["High"], ["New"])
    token = src.AlertPoller.default_checkpoint_path(str(tmp_path), "https://api", {"access_token": "secret-token"}, [], [])
    assert "secret-token" not in token


# -- the loop -------------------------------------------------------------------------------------------------
class FakeClient:
    """Answers list() from a script of results (a list of alerts, or an exception to raise)."""

    api_url = "https://api.example"

    def __init__(self, script):
        self.script = list(script)
        self.filters = []

    def list(self, path, odata_filter=None, params=None):
        assert path == "/api/alerts"
        self.filters.append((odata_filter, params))
        result = self.script.pop(0) if self.script else []
        if isinstance(result, Exception):
            raise result  # pylint: disable=raising-bad-type
        return iter(result)


def test_a_failed_poll_is_logged_on_one_line_and_the_next_one_goes_on(tmp_path, caplog):
    config = src.AlertPoller.parse_args({"interval": 0.01, "severity": ["High"], "include_evidence": True}, {})
    updated = pu.ticks_text(config["start"] + 1800 * pu.TICKS)      # half an hour after the first poll's start
    client = FakeClient([MDEError("GET /api/alerts failed: HTTP 503 Service Unavailable.", status=503),
                         [alert("a", updated)], RuntimeError("boom\nsecond line"), [alert("a", updated)]])
    poller = src.AlertPoller(client, config, str(tmp_path / "cp.json"), pu.initial_state(config["start"]))
    queue = asyncio.Queue()

    async def drive():
        task = asyncio.create_task(poller.run(queue))
        while len(client.filters) < 5:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(drive())
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    assert events == [{"mde_alert": alert("a", updated)}]
    failures = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert failures == ["mde_alerts: poll failed, retrying in 0.01s: GET /api/alerts failed: HTTP 503 Service Unavailable.",
                        "mde_alerts: poll failed, retrying in 0.01s: RuntimeError: boom"]
    start = pu.filter_time(config["start"] - 120 * pu.TICKS)
    after = "lastUpdateTime ge %s and severity eq 'High'" % pu.filter_time(T(updated) - 120 * pu.TICKS)
    assert [f[0] for f in client.filters] == ["lastUpdateTime ge %s and severity eq 'High'" % start] * 2 + [after] * 3
    assert all(f[1] == {"$expand": "evidence"} for f in client.filters)
    assert src.AlertPoller.load_checkpoint(str(tmp_path / "cp.json"))["watermark"] == T(updated)


# -- alerts dated in the future -------------------------------------------------------------------------------
class FilteringClient:
    """A fake API that answers ``lastUpdateTime ge <time>`` as the real one does, from a list the test changes."""

    api_url = "https://api.example"

    def __init__(self, alerts):
        self.alerts = alerts
        self.filters = []

    def list(self, path, odata_filter=None, params=None):
        assert path == "/api/alerts"
        self.filters.append(odata_filter)
        since = T(re.match(r"^lastUpdateTime ge (\S+)$", odata_filter).group(1))
        return iter([a for a in self.alerts if T(a["lastUpdateTime"]) >= since])


def drain(queue):
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def test_an_alert_dated_2099_is_emitted_once_and_does_not_silence_the_source(tmp_path, caplog):
    checkpoint = str(tmp_path / "cp.json")
    config = src.AlertPoller.parse_args({"initial_lookback": "1h"}, {})
    now = pu.now_ticks()
    future = alert("da-future", "2099-01-01T00:00:00Z", title="clock of a tampered device")
    recent = alert("da-recent", pu.ticks_text(now - 600 * pu.TICKS))
    client = FilteringClient([future, recent])
    poller = src.AlertPoller(client, config, checkpoint, pu.initial_state(config["start"]))
    queue = asyncio.Queue()

    assert asyncio.run(poller.poll(queue)) == 2
    assert [e["mde_alert"]["id"] for e in drain(queue)] == ["da-recent", "da-future"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "alert da-future has lastUpdateTime 2099-01-01T00:00:00Z, more than 60s ahead" in (
        warnings[0])
    # The watermark, in memory and in the checkpoint file, is at most now + the skew, not 2099.
    limit = pu.now_ticks() + pu.FUTURE_SKEW * pu.TICKS
    assert now - 600 * pu.TICKS < poller.state["watermark"] <= limit
    saved = src.AlertPoller.load_checkpoint(checkpoint, config["overlap"])                      # as a restart reads it
    assert saved["watermark"] == poller.state["watermark"] and saved["seen"]["da-future"] == T("2099-01-01T00:00:00Z")

    # An alert updated after that poll is emitted by the next one; the 2099 alert is not emitted again.
    caplog.clear()
    later = alert("da-later", pu.ticks_text(pu.now_ticks()))
    client.alerts.append(later)
    assert asyncio.run(poller.poll(queue)) == 1
    assert [e["mde_alert"]["id"] for e in drain(queue)] == ["da-later"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert T(client.filters[-1].split()[-1]) <= limit      # it asked from before now + skew, not from 2099
    assert asyncio.run(poller.poll(queue)) == 0


def test_the_watermark_cap_is_now_plus_the_skew_or_the_overlap(caplog):
    now = T("2026-01-31T08:00:00Z")
    state = pu.initial_state(now - 3600 * pu.TICKS)
    near = alert("near", "2026-01-31T08:00:30Z")          # within the skew (the API's clock a little ahead)
    emit, new = src.AlertPoller.select_new(state, [near], overlap=120, now=now)
    assert emit == [near] and new["watermark"] == T("2026-01-31T08:00:30Z")
    assert not caplog.records
    far = alert("far", "2026-01-31T09:00:00Z")
    emit, new = src.AlertPoller.select_new(new, [far], overlap=120, now=now)
    assert emit == [far] and new["watermark"] == now + 60 * pu.TICKS            # now + FUTURE_SKEW
    assert new["seen"] == {"near": T("2026-01-31T08:00:30Z"), "far": T("2026-01-31T09:00:00Z")}
    emit, again = src.AlertPoller.select_new(new, [far], overlap=120, now=now)
    assert emit == [] and again == new
    # With a smaller overlap the cap is now + overlap, so the next poll (from watermark - overlap) starts at now.
    emit, new = src.AlertPoller.select_new(state, [far], overlap=10, now=now)
    assert new["watermark"] == now + 10 * pu.TICKS
    emit, new = src.AlertPoller.select_new(state, [far], overlap=0, now=now)
    assert new["watermark"] == now
    assert pu.time_filter("lastUpdateTime", new, 0) == "lastUpdateTime ge 2026-01-31T08:00:00Z"


def test_a_checkpoint_holding_a_future_watermark_is_capped_on_load(tmp_path, caplog):
    path = str(tmp_path / "cp.json")
    now = T("2026-01-31T08:00:00Z")
    pu.save_checkpoint(path, {"watermark": T("2099-01-01T00:00:00Z"), "seen": {"x": T("2099-01-01T00:00:00Z")}})
    written = T("2026-01-30T08:00:00Z")                 # the older version last wrote it a day ago
    os.utime(path, (written / pu.TICKS, written / pu.TICKS))
    state = src.AlertPoller.load_checkpoint(path, 120, now=now)
    assert state == {"watermark": written, "seen": {"x": T("2099-01-01T00:00:00Z")}}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and path in warnings[0] and "2099-01-01T00:00:00.0000000Z" in warnings[0]
    assert "2026-01-30T08:00:00.0000000Z" in warnings[0]
    # A file whose modification time is in the future too: capped at now + the skew.
    os.utime(path, (T("2099-01-01T00:00:00Z") / pu.TICKS,) * 2)
    assert src.AlertPoller.load_checkpoint(path, 120, now=now)["watermark"] == now + pu.FUTURE_SKEW * pu.TICKS
    assert src.AlertPoller.load_checkpoint(path, 0, now=now)["watermark"] == now
    # A checkpoint that is not in the future loads as saved, without a warning.
    caplog.clear()
    pu.save_checkpoint(path, {"watermark": now - 60 * pu.TICKS, "seen": {}})
    assert src.AlertPoller.load_checkpoint(path, 120, now=now) == {"watermark": now - 60 * pu.TICKS, "seen": {}}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# -- alert text reaches Ansible marked unsafe -----------------------------------------------------------------
HOSTILE = "{{ lookup('pipe', 'id') }}"


def test_alert_text_with_template_syntax_is_written_unsafe_in_the_playbook_extra_vars(tmp_path, caplog):
    """ansible-rulebook (run_playbook) writes the event into env/extravars with yaml.dump(); so does this test."""
    registry = unsafe_yaml.install_yaml_marking()
    config = src.AlertPoller.parse_args({"initial_lookback": "1h"}, {})
    hostile = alert("da-hostile", pu.ticks_text(pu.now_ticks()), title="Malware " + HOSTILE,
                    computerDnsName="ws-1.contoso.local", evidence=[{"fileName": "{% raw %}x.exe"}])
    poller = src.AlertPoller(FakeClient([[hostile]]), config, str(tmp_path / "cp.json"),
                             pu.initial_state(config["start"]), registry)
    queue = asyncio.Queue()
    asyncio.run(poller.poll(queue))
    event = json.loads(json.dumps(drain(queue)[0]))            # what comes back from the rule engine: plain JSON
    assert event["mde_alert"] == hostile                        # passed on unchanged
    text = yaml.dump({"ansible_eda": {"event": event, "ruleset": "r", "rule": "x"},
                      "note": "Alert Malware %s on ws-1" % HOSTILE,  # a rulebook put the title inside its own text
                      "wrapper": "{{ module_result }}"})             # ansible-rulebook's own template: untouched
    assert "title: !unsafe \"Malware {{ lookup('pipe', 'id') }}\"" in text
    assert "fileName: !unsafe \"{% raw %}x.exe\"" in text
    assert "note: !unsafe \"Alert Malware {{ lookup('pipe', 'id') }} on ws-1\"" in text
    assert "wrapper: '{{ module_result }}'" in text
    assert "computerDnsName: ws-1.contoso.local" in text and "!unsafe" not in text.split("evidence")[0]
    # ansible-core reads it back as the same text, marked unsafe.
    data = AnsibleLoader(text).get_single_data()
    title = data["ansible_eda"]["event"]["mde_alert"]["title"]
    assert title == "Malware " + HOSTILE
    assert data["wrapper"] == "{{ module_result }}"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["mde_alerts: alert da-hostile has template syntax ({{, {%, {#) in "
                        "mde_alert.evidence[0].fileName, mde_alert.title; passed on unchanged and marked !unsafe for "
                        "Ansible."]


def test_every_copy_of_the_source_in_a_process_shares_one_marking(tmp_path, monkeypatch):
    """ansible-rulebook loads the source file with runpy once per source of a rulebook."""
    path = src.__file__
    # Once another test has loaded ansible-core's collection loader, its path hook claims every path and run_path
    # would take the file for a directory; ansible-rulebook's process has no such hook.
    monkeypatch.setattr(pkgutil, "get_importer", lambda path_name: None)
    first = runpy.run_path(path)["poller"].unsafe_yaml.install_yaml_marking()
    second = runpy.run_path(path)["poller"].unsafe_yaml.install_yaml_marking()
    assert first is second is unsafe_yaml.install_yaml_marking()
    second.add("{{ other source }}")
    assert yaml.dump(["x {{ other source }}"]) == "- !unsafe \"x {{ other source }}\"\n"
    assert yaml.safe_dump(["{{ other source }}"]) == "- '{{ other source }}'\n"   # only yaml.Dumper is changed


def test_the_remembered_text_is_bounded():
    registry = unsafe_yaml.UntrustedText(limit=3)
    for n in range(5):
        registry.add("{{ %d }}" % n)
    assert len(registry) == 3
    assert not registry.taints("{{ 0 }}") and registry.taints("a {{ 4 }} b")
    assert not registry.taints("no template here")


def test_a_flood_of_alerts_does_not_unmark_an_event_dumped_late():
    """The memory of emitted strings holds the newest 10,000; an event dumped after a larger flood is still marked."""
    registry = unsafe_yaml.install_yaml_marking()
    first = {"mde_alert": {"id": "da-first", "title": "Malware " + HOSTILE}}
    unsafe_yaml.mark_untrusted(first["mde_alert"], registry, "mde_alerts", "alert", "mde_alert")
    for n in range(registry.limit + 50):
        registry.add("{{ flood %d }}" % n)
    assert not registry.taints(first["mde_alert"]["title"])        # evicted from the bounded memory...
    text = yaml.dump({"ansible_eda": {"event": json.loads(json.dumps(first))},
                      "note": "Alert %s" % first["mde_alert"]["title"], "wrapper": "{{ module_result }}"})
    assert "title: !unsafe \"Malware {{ lookup('pipe', 'id') }}\"" in text    # ... and marked all the same
    assert "note: !unsafe \"Alert Malware {{ lookup('pipe', 'id') }}\"" in text
    assert "wrapper: '{{ module_result }}'" in text
    data = AnsibleLoader(text).get_single_data()
    assert data["ansible_eda"]["event"]["mde_alert"]["title"] == "Malware " + HOSTILE


# -- every source logs its own name and noun ------------------------------------------------------------------
def test_the_incident_source_logs_its_own_name_and_noun(tmp_path, caplog):
    from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_incidents

    class IncidentClient:
        def __init__(self, incidents):
            self.incidents = incidents

    updated = pu.ticks_text(pu.now_ticks())
    incident = {"id": "42", "lastUpdateDateTime": updated, "title": "Incident " + HOSTILE}
    config = mde_incidents.IncidentPoller.parse_args({"initial_lookback": "1h"}, {})
    poller = mde_incidents.IncidentPoller(IncidentClient([incident]), config, str(tmp_path / "cp.json"),
                                          pu.initial_state(config["start"]))
    poller.fetch = lambda odata_filter: [incident, {"id": "43", "lastUpdateDateTime": "soon"}]
    queue = asyncio.Queue()
    caplog.set_level("INFO")
    assert asyncio.run(poller.poll(queue)) == 1
    assert drain(queue) == [{"mde_incident": incident}]
    lines = [r.getMessage() for r in caplog.records]
    assert "mde_incidents: ignoring incident 43: its lastUpdateDateTime soon is not a time." in lines
    assert any(line.startswith("mde_incidents: incident 42 has template syntax") and "in mde_incident.title" in line
               for line in lines), lines
    assert any(line.startswith("mde_incidents: 2 incident(s) read, 1 emitted, watermark ") for line in lines), lines
    assert not [line for line in lines if "mde_alerts" in line or "alert(s)" in line]
    assert [r.name for r in caplog.records] == ["defender.endpoint.mde_incidents"] * len(lines)
    assert mde_incidents.IncidentPoller.load_checkpoint(str(tmp_path / "cp.json"))["seen"] == {"42": pu.time_ticks(updated)}


def test_the_checkpoint_is_read_as_the_collection_reads_its_state_files(tmp_path):
    """No symbolic link followed, nothing but a regular file (a FIFO would block the source at start)."""
    real = tmp_path / "real.json"
    pu.save_checkpoint(str(real), pu.initial_state(pu.now_ticks()))
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(src.ConfigError, match="checkpoint file .*link.json cannot be used: .*symbolic link"):
        src.AlertPoller.load_checkpoint(str(link))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(str(fifo))
    with pytest.raises(src.ConfigError, match="checkpoint file .*fifo.json cannot be read"):
        src.AlertPoller.load_checkpoint(str(fifo))
    # The format is the one every earlier version wrote: a file written before this one is read as it was.
    (tmp_path / "old.json").write_text(json.dumps({"version": 1, "watermark": "2026-01-31T08:00:00.1234567Z",
                                                   "seen": {"a": "2026-01-31T08:00:00.1234567Z"}}))
    assert src.AlertPoller.load_checkpoint(str(tmp_path / "old.json"), now=T("2026-02-01T00:00:00Z")) == {
        "watermark": T("2026-01-31T08:00:00.1234567Z"), "seen": {"a": T("2026-01-31T08:00:00.1234567Z")}}
