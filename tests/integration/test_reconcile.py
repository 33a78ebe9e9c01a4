"""Ambiguous writes are reconciled: every write of the collection, its answer lost before or after the API
carried it out, ends in a task that succeeded with changed=true, and the emulator's request log shows exactly one
write that took effect. When the write sent once more fails ambiguously too, the task fails in one sentence, and
still nothing was written twice.

One ansible-playbook run per fault placement covers every write (each task meets its own fault once).
"""
import re

import pytest

TIMEOUT = 5
ACTION = "defender.endpoint.mde_machine_action"
MACHINE = "defender.endpoint.mde_machine"
INDICATOR = "defender.endpoint.mde_indicator"
ALERT = "defender.endpoint.mde_alert"
COMMENT = "Reconciled after a lost answer"

# placement -> inject_fault keyword arguments: before the API handles the write (no effect), or after (effect, answer
# lost)
PLACEMENTS = {
    "before: 503": dict(kind="status", status=503),
    "before: dropped connection": dict(kind="drop"),
    "after: dropped connection": dict(kind="drop_after"),
    "after: 504 from a gateway": dict(kind="status_after", status=504),
}


def took_effect(entry):
    """A request the API carried out with success, whether or not its answer reached the client."""
    status = entry.get("handled_status", entry["status"])
    return bool(entry.get("processed")) and status is not None and 200 <= status < 300


def attempts(emulator, method, path):
    return [e for e in emulator.log if e["method"] == method and e["path"] == path]


def one_sentence(msg):
    assert isinstance(msg, str) and msg.endswith(".") and "\n" not in msg.strip() and "Traceback" not in msg, msg
    assert not re.search(r"[.!?]\s+[A-Z]", msg[:-1]), "more than one sentence: %r" % msg


def setup(emulator):
    """Every write of the collection as a task, with the (method, path) it sends and a check of the state after."""
    machines = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
                and not m["computerDnsName"].startswith("dup-") and not m["machineTags"]][:7]
    assert len(machines) == 7
    new_alerts = [a for a in emulator.alerts if a["status"] == "New"][:3]
    seeded = [i for i in emulator.indicators if i["indicatorType"] == "DomainName"]
    doomed, gone = seeded[:2], seeded[2]
    tag = "reconciled"
    values = ["reconcile-%d.example.com" % n for n in range(3)]

    def spec(value, title="Reconcile"):
        return dict(indicator_value=value, indicator_type="DomainName", action="Block", title=title,
                    description="reconciled write")

    def actions_of(machine, kind):
        return [a for a in emulator.machine_actions if a["machineId"] == machine["id"] and a["type"] == kind]

    def machine(m):
        return next(x for x in emulator.machines if x["id"] == m["id"])

    def indicators_valued(value):
        return [i for i in emulator.indicators if i["indicatorValue"] == value]

    def comments(alert):
        found = next(a for a in emulator.alerts if a["id"] == alert["id"])
        return [c for c in found.get("comments") or [] if c.get("comment") == COMMENT]

    writes = [
        ("isolate", {ACTION: {"machine_id": machines[0]["id"], "action": "isolate", "comment": COMMENT}},
         "POST", "/api/machines/%s/isolate" % machines[0]["id"],
         lambda: len(actions_of(machines[0], "Isolate")) == 1),
        ("antivirus scan", {ACTION: {"machine_id": machines[1]["id"], "action": "antivirus_scan"}},
         "POST", "/api/machines/%s/runAntiVirusScan" % machines[1]["id"],
         lambda: len(actions_of(machines[1], "RunAntiVirusScan")) == 1),
        ("tag", {MACHINE: {"machine_id": machines[2]["id"], "tags": [tag]}},
         "POST", "/api/machines/%s/tags" % machines[2]["id"],
         lambda: machine(machines[2])["machineTags"] == [tag]),
        ("device value", {MACHINE: {"machine_id": machines[3]["id"], "device_value": "High"}},
         "POST", "/api/machines/%s/setDeviceValue" % machines[3]["id"],
         lambda: machine(machines[3])["deviceValue"] == "High"),
        ("bulk tags", {MACHINE: {"machine_ids": [machines[4]["id"], machines[5]["id"]], "tags": [tag]}},
         "POST", "/api/machines/AddOrRemoveTagForMultipleMachines",
         lambda: all(machine(m)["machineTags"] == [tag] for m in machines[4:6])),
        ("indicator", {INDICATOR: spec(values[0])},
         "POST", "/api/indicators",
         lambda: len(indicators_valued(values[0])) == 1),
        ("import", {INDICATOR: {"indicators": [spec(values[1]), spec(values[2])]}},
         "POST", "/api/indicators/import",
         lambda: all(len(indicators_valued(v)) == 1 for v in values[1:])),
        ("batch delete", {INDICATOR: {"state": "absent", "indicators": [
            dict(indicator_value=i["indicatorValue"], indicator_type="DomainName") for i in doomed]}},
         "POST", "/api/indicators/BatchDelete",
         lambda: not any(indicators_valued(i["indicatorValue"]) for i in doomed)),
        ("delete", {INDICATOR: dict(indicator_value=gone["indicatorValue"], indicator_type="DomainName",
                                    state="absent")},
         "DELETE", "/api/indicators/%s" % gone["id"],
         lambda: not indicators_valued(gone["indicatorValue"])),
        ("alert", {ALERT: {"alert_id": new_alerts[0]["id"], "status": "InProgress", "comment": COMMENT}},
         "PATCH", "/api/alerts/%s" % new_alerts[0]["id"],
         lambda: len(comments(new_alerts[0])) == 1),
        ("alerts batch", {ALERT: {"alert_ids": [a["id"] for a in new_alerts[1:]], "status": "InProgress",
                                  "comment": COMMENT}},
         "POST", "/api/alerts/batchUpdate",
         lambda: all(len(comments(a)) == 1 for a in new_alerts[1:])),
    ]
    tasks = []
    for name, module, _method, _path, _check in writes:
        task = {"name": name, "ignore_errors": True}
        for key, args in module.items():
            task[key] = dict(args, timeout=TIMEOUT)
        tasks.append(task)
    return writes, tasks


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_every_write_reconciled(ansible, emulator, placement):
    writes, tasks = setup(emulator)
    fault = PLACEMENTS[placement]
    for _name, _module, method, path, _check in writes:
        emulator.inject_fault("^%s$" % re.escape(path), method=method, **fault)
    result = ansible.playbook(tasks=tasks)
    assert "Traceback" not in result.stdout + result.stderr, result
    for name, _module, method, path, check in writes:
        task = result.task(name)
        assert not task.get("failed"), (name, task.get("msg"))
        assert task["changed"] is True, (name, task)
        tries = attempts(emulator, method, path)
        assert tries[0].get("fault") == fault["kind"], (name, tries)
        assert len([e for e in tries if took_effect(e)]) == 1, (name, tries)   # one write took effect
        if placement.startswith("before"):
            assert [e["processed"] for e in tries] == [False, True], (name, tries)   # sent once more
        else:
            assert len(tries) == 1, (name, tries)                                     # read back, not sent again
        assert check(), name


def test_second_send_failing_too_fails_clearly_and_writes_nothing_twice(ansible, emulator):
    writes, tasks = setup(emulator)
    for _name, _module, method, path, _check in writes:
        emulator.inject_fault("^%s$" % re.escape(path), method=method, kind="status", status=503, count=2)
    result = ansible.playbook(tasks=tasks)
    assert "Traceback" not in result.stdout + result.stderr, result
    for name, _module, method, path, _check in writes:
        task = result.task(name)
        assert task.get("failed") is True, (name, task)
        one_sentence(task["msg"])
        assert "%s %s failed: HTTP 503" % (method, path) in task["msg"], (name, task["msg"])
        assert "it was not sent a third time" in task["msg"], (name, task["msg"])
        tries = attempts(emulator, method, path)
        assert len(tries) == 2 and not any(took_effect(e) for e in tries), (name, tries)


def test_second_send_whose_answer_is_lost_is_found(ansible, emulator):
    """Before, then after: the first send did nothing, the second took effect and lost its answer."""
    writes, tasks = setup(emulator)
    (name, _module, method, path, check), task = writes[0], tasks[0]
    emulator.inject_fault("^%s$" % re.escape(path), method=method, kind="status", status=502)
    emulator.inject_fault("^%s$" % re.escape(path), method=method, kind="drop_after")
    result = ansible.playbook(tasks=[task])
    outcome = result.task(name)
    assert not outcome.get("failed") and outcome["changed"] is True, outcome
    tries = attempts(emulator, method, path)
    assert [e.get("fault") for e in tries] == ["status", "drop_after"] and check()
    assert len([e for e in tries if took_effect(e)]) == 1
    assert outcome["machine_action"]["type"] == "Isolate" and outcome["machine_action"]["requestorComment"] == COMMENT
