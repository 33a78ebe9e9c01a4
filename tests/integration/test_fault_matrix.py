"""Fault matrix: every injected API fault, for a read, a state-changing action, a bulk indicator import
and an inventory listing, ends either in success with no duplicate write (the emulator's request log and state
prove it; a write whose answer is lost is reconciled, see test_reconcile.py) or in a failed task with one
clear sentence. Never a traceback, never a hang past the timeouts.

One ansible-playbook run per fault kind covers the four module tasks (each meets its fault once), a second run
re-runs the action the fault broke, and one ansible-inventory run covers the listing.
"""
import re
import time

import pytest

TIMEOUT = 2  # the modules' `timeout` option in these runs (seconds)
DELAY = 6  # a "read timeout" fault holds the answer this long: longer than TIMEOUT
RUN_BOUND = 60  # seconds: any playbook/inventory run of this file must finish well within this

INFO = "defender.endpoint.mde_machine_info"
ALERTS = "defender.endpoint.mde_alert_info"
ACTION = "defender.endpoint.mde_machine_action"
INDICATOR = "defender.endpoint.mde_indicator"
PLUGIN = "defender.endpoint.mde_machines"

# kind -> (inject_fault keyword arguments or None for the token expiry, what the first isolate POST fails with when
# the fault leaves open whether the API carried it out: the write is then reconciled)
FAULTS = {
    "429 with Retry-After": (dict(kind="status", status=429, retry_after=1), None),
    "429 without Retry-After": (dict(kind="status", status=429, retry_after=None), None),
    "500": (dict(kind="status", status=500), "HTTP 500 Internal Server Error (InternalServerError)"),
    "502": (dict(kind="status", status=502), "HTTP 502 Bad Gateway (InternalServerError)"),
    "503": (dict(kind="status", status=503), "HTTP 503 Service Unavailable (InternalServerError)"),
    "504": (dict(kind="status", status=504), "HTTP 504 Gateway Timeout (InternalServerError)"),
    "dropped connection": (dict(kind="drop"), "connection failed: the server closed it without an answer"),
    "read timeout": (dict(kind="delay", delay=DELAY), "no answer within the timeout of %d seconds" % TIMEOUT),
    "body not JSON": (dict(kind="invalid_json"), "HTTP 200 with a body that is not JSON"),
    "token expired mid-play": (None, None),
}
INDICATORS = [
    dict(indicator_value="fault-matrix-%d.example.com" % n, indicator_type="DomainName", action="Block",
         title="Fault matrix %d" % n, description="Fault matrix") for n in range(3)
]


def machines(emulator, count):
    found = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
             and not m["computerDnsName"].startswith("dup-")]
    return found[:count]


def expire_task(emulator):
    """A task that revokes every token the emulator issued: the next module run holds a cached, dead token."""
    return {"name": "expire tokens", "ansible.builtin.uri": {
        "url": emulator.url + "/_emulator/expire_tokens", "method": "POST", "ca_path": emulator.ca_path}}


def assert_one_sentence(msg, *fragments):
    """A failure message a user can act on: one line, one sentence, no traceback, naming what failed."""
    assert isinstance(msg, str) and msg, msg
    assert "Traceback" not in msg and "\n" not in msg.strip(), msg
    assert msg.endswith("."), msg
    assert not re.search(r"[.!?]\s+[A-Z]", msg[:-1]), "more than one sentence: %r" % msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def assert_clean(result):
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result
    for name, res in result.tasks().items():
        # ansible-core 2.19 adds exception: "(traceback unavailable)" to every failure; a real one is a traceback
        assert "Traceback" not in str(res.get("exception", "")) and "module_stderr" not in res, (name, res)


def timed(call, *args, **kwargs):
    start = time.monotonic()
    result = call(*args, **kwargs)
    elapsed = time.monotonic() - start
    assert elapsed < RUN_BOUND, "run took %.1f s: %r" % (elapsed, result)
    return result, elapsed


def accepted(emulator, method, path):
    """Requests the API carried out: a 2xx from its handler (an injected non-JSON 200 never reached it)."""
    return [e for e in emulator.log if e["method"] == method and e["path"] == path and e["status"] is not None
            and e["status"] < 300 and e.get("fault") in (None, "delay")]


def attempts(emulator, method, path):
    return [e for e in emulator.log if e["method"] == method and e["path"] == path]


def wait_answered(emulator, method, path, seconds=DELAY + 5):
    """Wait until the emulator has answered every request to ``path`` (a delayed one finishes after the client gave up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(e["status"] is not None or e.get("fault") in ("drop", "drop_after")
               for e in attempts(emulator, method, path)):
            return
        time.sleep(0.2)
    raise AssertionError("the emulator never answered %s %s" % (method, path))


def assert_timeout_honoured(emulator, method, path):
    """The faulted request was given up after about TIMEOUT seconds, not after DELAY: the next attempt came sooner."""
    tries = attempts(emulator, method, path)
    assert tries[0].get("fault") == "delay" and len(tries) >= 2, tries
    assert tries[1]["time"] - tries[0]["time"] < DELAY - 1, tries


@pytest.mark.parametrize("kind", list(FAULTS))
def test_read_action_and_bulk_import(ansible, emulator, kind):
    fault, _action_failure = FAULTS[kind]
    read_machine, target = machines(emulator, 2)
    isolate = "/api/machines/%s/isolate" % target["id"]
    read_path = "/api/machines/%s" % read_machine["id"]
    if fault:
        emulator.inject_fault("^%s$" % read_path, method="GET", **fault)
        emulator.inject_fault("^/api/alerts$", method="GET", **fault)
        emulator.inject_fault("^%s$" % isolate, method="POST", **fault)
        emulator.inject_fault("^/api/indicators/import$", method="POST", **fault)
    expire = [expire_task(emulator)] if fault is None else []
    tasks = [
        {"name": "warm the token cache", INFO: {"machine_id": machines(emulator, 3)[2]["id"], "timeout": TIMEOUT}},
    ] + expire + [
        {"name": "read machine", INFO: {"machine_id": read_machine["id"], "timeout": TIMEOUT}, "ignore_errors": True},
    ] + expire + [
        {"name": "read alerts", ALERTS: {"severity": ["High"], "limit": 5, "timeout": TIMEOUT}, "ignore_errors": True},
    ] + expire + [
        {"name": "isolate", ACTION: {"machine_id": target["id"], "action": "isolate", "timeout": TIMEOUT},
         "ignore_errors": True},
    ] + expire + [
        {"name": "import", INDICATOR: {"indicators": INDICATORS, "timeout": TIMEOUT}, "ignore_errors": True},
    ]
    result, _elapsed = timed(ansible.playbook, tasks=tasks)
    assert_clean(result)

    # The reads are retried (GET is safe to repeat; 429 and a rejected cached token always are): they succeed.
    machine = result.task("read machine")
    assert not machine.get("failed"), machine.get("msg")
    assert [m["id"] for m in machine["machines"]] == [read_machine["id"]]
    alerts = result.task("read alerts")
    assert not alerts.get("failed"), alerts.get("msg")
    assert alerts["alerts"] and all(a["severity"] == "High" for a in alerts["alerts"])

    # The bulk import and the isolate POST are writes: an ambiguous failure is reconciled (read back, then sent once
    # more or reported), a 429 or a rejected token is simply repeated (the API did nothing with those). Either way
    # the task succeeds and exactly one write took effect.
    imported = result.task("import")
    assert not imported.get("failed"), imported.get("msg")
    assert imported["changed"] is True and imported["counts"]["created"] == 3, imported
    values = [i["indicatorValue"] for i in emulator.indicators]
    for spec in INDICATORS:
        assert values.count(spec["indicator_value"]) == 1
    action = result.task("isolate")
    assert not action.get("failed"), action.get("msg")
    assert action["changed"] is True and action["machine_action"]["type"] == "Isolate"
    assert len(accepted(emulator, "POST", isolate)) == 1
    if fault is None:
        # each module run after an expiry: one rejected request, one new token, then on as before
        assert emulator.counters["token_requests"] == 5
        assert len([e for e in emulator.log if e["status"] == 401]) == 4
    elif kind == "read timeout":
        # The reads gave up after TIMEOUT and were repeated; each write's answer timed out, but the API carried it
        # out later: read back until its deadline, it was found and never sent again.
        assert_timeout_honoured(emulator, "GET", read_path)
        for path in (isolate, "/api/indicators/import"):
            assert [e.get("fault") for e in attempts(emulator, "POST", path)] == ["delay"]
    else:
        for method, path in (("GET", read_path), ("POST", "/api/indicators/import"), ("POST", isolate)):
            assert [e.get("fault") for e in attempts(emulator, method, path)] == [fault["kind"], None]

    # A re-run sends no write: the isolation was requested once in all.
    wait_answered(emulator, "POST", isolate)
    wait_answered(emulator, "POST", "/api/indicators/import")
    rerun, _elapsed = timed(ansible.playbook, tasks=[
        {"name": "isolate", ACTION: {"machine_id": target["id"], "action": "isolate", "timeout": TIMEOUT}},
        {"name": "import", INDICATOR: {"indicators": INDICATORS, "timeout": TIMEOUT}},
    ])
    assert_clean(rerun)
    assert rerun.rc == 0, rerun
    assert rerun.task("isolate")["changed"] is False
    assert rerun.task("import")["changed"] is False
    assert len(accepted(emulator, "POST", isolate)) == 1
    isolations = [a for a in emulator.machine_actions if a["machineId"] == target["id"] and a["type"] == "Isolate"]
    assert len(isolations) == 1


def expected_hosts(emulator):
    """Default hostnames of the onboarded machines (a name held by two machines names one host)."""
    return set(m["computerDnsName"] or m["id"] for m in emulator.machines if m["onboardingStatus"] == "Onboarded")


def machine_lists(emulator):
    return attempts(emulator, "GET", "/api/machines")


@pytest.mark.parametrize("kind", list(FAULTS))
def test_inventory_listing(ansible, emulator, kind):
    fault, _action_failure = FAULTS[kind]
    config = {"plugin": PLUGIN, "timeout": TIMEOUT}
    env = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ENABLED": PLUGIN}
    if fault:
        emulator.inject_fault("^/api/machines$", method="GET", **fault)
    else:
        # a first listing leaves a token in the cache; then every token is revoked, as when one expires
        warm, _elapsed = timed(ansible.inventory, config, env=env)
        assert warm.rc == 0, warm
        emulator.expire_tokens()
        emulator.clear_log()
    result, _elapsed = timed(ansible.inventory, config, env=env)
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result
    assert result.rc == 0, result
    # every host, each once, from one listing that succeeded after the fault
    assert set(result.data["_meta"]["hostvars"]) == expected_hosts(emulator)
    lists = machine_lists(emulator)
    if fault is None:
        assert [e["status"] for e in lists] == [401, 200]
        assert len([e for e in emulator.log if e["family"] == "token"]) == 1
    else:
        assert [e.get("fault") for e in lists] == [fault["kind"], None], lists
        assert lists[1]["status"] == 200
        if kind == "read timeout":
            assert_timeout_honoured(emulator, "GET", "/api/machines")
    assert emulator.writes() == []
