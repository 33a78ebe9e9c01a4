"""The mde_alerts event source's pure logic: times, options, the $filter, dedupe state and the checkpoint file."""
import asyncio
import json
import os
import stat

import pytest

from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts as src
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

T = src.time_ticks


def alert(ident, updated, **extra):
    data = {"id": ident, "lastUpdateTime": updated, "severity": "High", "status": "New"}
    data.update(extra)
    return data


# -- times ----------------------------------------------------------------------------------------------------
def test_times_compare_at_100ns_whatever_the_fraction_length_or_offset():
    assert src.ticks_text(T("2021-01-26T20:33:57.7220239Z")) == "2021-01-26T20:33:57.7220239Z"
    assert T("2021-01-26T20:33:59.2Z") == T("2021-01-26T20:33:59.2000000Z") == T("2021-01-26T21:33:59.2+01:00")
    assert T("2021-01-26T20:33:59Z") < T("2021-01-26T20:33:59.0000001Z") < T("2021-01-26T20:33:59.000001Z")
    assert T("2021-01-26T20:33:59.123456789Z") == T("2021-01-26T20:33:59.1234567Z")   # beyond 100 ns: truncated
    assert T("2021-01-26T20:33:59") == T("2021-01-26T20:33:59Z")                      # no zone: UTC
    assert src.filter_time(T("2021-01-26T20:33:59.9999999Z")) == "2021-01-26T20:33:59Z"  # floored, never later
    for bad in (None, "", "yesterday", "2021-01-26", "26/01/2021 20:33"):
        with pytest.raises(ValueError):
            T(bad)


def test_ages():
    assert src.seconds_of(60, "interval") == 60
    assert src.seconds_of("0.5", "interval") == 0.5
    assert [src.seconds_of(v, "x") for v in ("30s", "5m", "1h", "2d", "1w", "0s")] == [30, 300, 3600, 172800, 604800, 0]
    for bad in ("soon", "-5", True, "5 minutes"):
        with pytest.raises(src.ConfigError, match="interval"):
            src.seconds_of(bad, "interval")


# -- options --------------------------------------------------------------------------------------------------
ENV = {"MDE_TENANT_ID": "t-env", "AZURE_TENANT_ID": "t-azure", "MDE_CLIENT_ID": "c-env", "AZURE_CLIENT_SECRET": "s-azure",
       "MDE_VALIDATE_CERTS": "false", "MDE_TIMEOUT": "12"}


def test_options_fall_back_to_the_environment_as_the_modules_do():
    now = T("2026-01-31T08:00:00Z")
    c = src.parse_args({"client_id": "c-arg", "severity": "High,Medium", "status": ["New"], "interval": "5",
                        "eda_feedback_queue": object()}, ENV, now=now)
    assert c["auth"]["tenant_id"] == "t-env"            # MDE_* before AZURE_*
    assert c["auth"]["client_id"] == "c-arg"            # an argument wins over the environment
    assert c["auth"]["client_secret"] == "s-azure"
    assert c["auth"]["validate_certs"] is False and c["auth"]["timeout"] == 12
    assert c["auth"]["cloud"] == "global" and c["auth"]["token_cache"] is True and c["auth"]["access_token"] is None
    assert c["severity"] == ["High", "Medium"] and c["status"] == ["New"]
    assert c["interval"] == 5 and c["overlap"] == 120 and c["include_evidence"] is False
    assert c["start"] == T("2026-01-31T07:00:00Z")        # initial_lookback 1h
    assert c["checkpoint_path"] is None
    c = src.parse_args({"initial_lookback": "2026-01-30T00:00:00Z", "checkpoint_path": "~/cp.json", "overlap": 0,
                        "include_evidence": "yes"}, {}, now=now)
    assert c["start"] == T("2026-01-30T00:00:00Z") and c["overlap"] == 0 and c["include_evidence"] is True
    assert c["checkpoint_path"] == os.path.expanduser("~/cp.json")
    assert src.parse_args({"checkpoint_path": ""}, {})["checkpoint_path"] is None   # the rulebook's default('')


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
])
def test_bad_options_are_configuration_errors(args, message):
    with pytest.raises(src.ConfigError, match=message):
        src.parse_args(args, {})


def test_filter_is_server_side_odata():
    state = src.initial_state(T("2026-01-31T08:00:00.5Z"))
    assert src.build_filter(state, 0) == "lastUpdateTime ge 2026-01-31T08:00:00Z"
    assert src.build_filter(state, 120, ["High"], ["New", "InProgress"]) == (
        "lastUpdateTime ge 2026-01-31T07:58:00Z and severity eq 'High' and (status eq 'New' or status eq 'InProgress')")


# -- dedupe ---------------------------------------------------------------------------------------------------
def test_first_poll_emits_everything_from_the_watermark_oldest_first():
    state = src.initial_state(T("2026-01-31T08:00:00Z"))
    page = [alert("b", "2026-01-31T08:05:00.1234567Z"), alert("old", "2026-01-31T07:59:59.9999999Z"),
            alert("a", "2026-01-31T08:00:00Z"), alert("c", "2026-01-31T08:05:00.1234567Z")]
    emit, new = src.select_new(state, page, overlap=0)
    assert [a["id"] for a in emit] == ["a", "b", "c"]
    assert new == {"watermark": T("2026-01-31T08:05:00.1234567Z"),
                   "seen": {"b": T("2026-01-31T08:05:00.1234567Z"), "c": T("2026-01-31T08:05:00.1234567Z")}}
    assert state == {"watermark": T("2026-01-31T08:00:00Z"), "seen": {}}     # pure: the input is unchanged
    assert page[0]["id"] == "b"


def test_each_alert_version_is_emitted_once_across_polls():
    state = src.initial_state(T("2026-01-31T08:00:00Z"))
    first = [alert("a", "2026-01-31T08:01:00Z"), alert("b", "2026-01-31T08:02:00Z")]
    emit, state = src.select_new(state, first, overlap=0)
    assert [a["id"] for a in emit] == ["a", "b"]
    # The next poll (lastUpdateTime ge the watermark) sees b again: nothing to emit, the state stays.
    emit, again = src.select_new(state, [alert("b", "2026-01-31T08:02:00Z")], overlap=0)
    assert emit == [] and again == state
    # Another alert with exactly the watermark's time is new; b still is not.
    emit, state = src.select_new(state, [alert("b", "2026-01-31T08:02:00Z"), alert("d", "2026-01-31T08:02:00Z")], 0)
    assert [a["id"] for a in emit] == ["d"]
    assert state["seen"] == {"b": T("2026-01-31T08:02:00Z"), "d": T("2026-01-31T08:02:00Z")}
    # a changed: emitted again, with its new content; the watermark moves and forgets b and d.
    changed = alert("a", "2026-01-31T08:03:00Z", status="InProgress")
    emit, state = src.select_new(state, [alert("b", "2026-01-31T08:02:00Z"), changed], overlap=0)
    assert emit == [changed]
    assert state == {"watermark": T("2026-01-31T08:03:00Z"), "seen": {"a": T("2026-01-31T08:03:00Z")}}
    # The same alert twice in one poll (a page boundary moved under it) is emitted once.
    twice = [alert("e", "2026-01-31T08:04:00Z"), alert("e", "2026-01-31T08:04:00Z")]
    emit, state = src.select_new(state, twice, overlap=0)
    assert [a["id"] for a in emit] == ["e"]


def test_overlap_catches_late_alerts_without_repeating_seen_ones():
    state = src.initial_state(T("2026-01-31T08:00:00Z"))
    emit, state = src.select_new(state, [alert("a", "2026-01-31T08:10:00Z"), alert("b", "2026-01-31T08:09:30Z")], 120)
    assert [a["id"] for a in emit] == ["b", "a"]
    assert set(state["seen"]) == {"a", "b"}                               # both within 2 minutes of the watermark
    late = alert("late", "2026-01-31T08:09:00Z")                          # visible only now, older than the watermark
    stale = alert("a", "2026-01-31T08:05:00Z")                            # an older copy of a: never emitted again
    too_old = alert("x", "2026-01-31T08:07:59Z")                          # before watermark - overlap
    emit, state = src.select_new(state, [alert("a", "2026-01-31T08:10:00Z"), alert("b", "2026-01-31T08:09:30Z"),
                                         late, stale, too_old], 120)
    assert emit == [late]
    emit, state = src.select_new(state, [alert("c", "2026-01-31T08:13:00Z")], 120)
    assert [a["id"] for a in emit] == ["c"]
    assert state["seen"] == {"c": T("2026-01-31T08:13:00Z")}             # older entries pruned with the window


def test_alerts_without_an_id_or_a_time_are_skipped():
    state = src.initial_state(T("2026-01-31T08:00:00Z"))
    emit, new = src.select_new(state, [{"lastUpdateTime": "2026-01-31T08:01:00Z"}, alert("a", None), alert("b", "x")])
    assert emit == [] and new == state


# -- checkpoint -----------------------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_atomic_and_private(tmp_path):
    path = str(tmp_path / "sub" / "cp.json")
    assert src.load_checkpoint(path) is None
    state = {"watermark": T("2026-01-31T08:03:00.1234567Z"), "seen": {"a": T("2026-01-31T08:03:00.1234567Z")}}
    src.save_checkpoint(path, state)
    assert src.load_checkpoint(path) == state
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert json.load(open(path)) == {"version": 1, "watermark": "2026-01-31T08:03:00.1234567Z",
                                     "seen": {"a": "2026-01-31T08:03:00.1234567Z"}}
    state2 = {"watermark": T("2026-01-31T09:00:00Z"), "seen": {}}
    src.save_checkpoint(path, state2)
    assert src.load_checkpoint(path) == state2
    assert os.listdir(os.path.dirname(path)) == ["cp.json"]              # no temporary file left behind


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 2, "watermark": "2026-01-31T08:00:00Z", "seen": {}}',
                                     '{"version": 1, "watermark": "soon", "seen": {}}',
                                     '{"version": 1, "watermark": "2026-01-31T08:00:00Z", "seen": []}'])
def test_an_unusable_checkpoint_is_a_configuration_error(tmp_path, content):
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(src.ConfigError, match="checkpoint file .*cp.json is not usable"):
        src.load_checkpoint(str(path))


def test_default_checkpoint_path_depends_on_what_is_read(tmp_path):
    auth = {"tenant_id": "t", "client_id": "c"}
    one = src.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High"], ["New"])
    assert one.startswith(str(tmp_path / "eda" / "mde_alerts-")) and one.endswith(".json")
    assert one == src.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High"], ["New"])
    assert one != src.default_checkpoint_path(str(tmp_path), "https://api", auth, ["High", "Medium"], ["New"])
    assert one != src.default_checkpoint_path(str(tmp_path), "https://api", dict(auth, client_id="d"), ["High"], ["New"])
    token = src.default_checkpoint_path(str(tmp_path), "https://api", {"access_token": "secret-token"}, [], [])
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
    config = src.parse_args({"interval": 0.01, "severity": ["High"], "include_evidence": True}, {})
    client = FakeClient([MDEError("GET /api/alerts failed: HTTP 503 Service Unavailable.", status=503),
                         [alert("a", "2030-01-01T00:00:00Z")], RuntimeError("boom\nsecond line"),
                         [alert("a", "2030-01-01T00:00:00Z")]])
    poller = src.AlertPoller(client, config, str(tmp_path / "cp.json"), src.initial_state(config["start"]))
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
    assert events == [{"mde_alert": alert("a", "2030-01-01T00:00:00Z")}]
    failures = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert failures == ["mde_alerts: poll failed, retrying in 0.01s: GET /api/alerts failed: HTTP 503 Service Unavailable.",
                        "mde_alerts: poll failed, retrying in 0.01s: RuntimeError: boom"]
    start = src.filter_time(config["start"] - 120 * src.TICKS)
    after = "lastUpdateTime ge 2029-12-31T23:58:00Z and severity eq 'High'"    # the watermark less the 2m overlap
    assert [f[0] for f in client.filters] == ["lastUpdateTime ge %s and severity eq 'High'" % start] * 2 + [after] * 3
    assert all(f[1] == {"$expand": "evidence"} for f in client.filters)
    assert src.load_checkpoint(str(tmp_path / "cp.json"))["watermark"] == T("2030-01-01T00:00:00Z")
