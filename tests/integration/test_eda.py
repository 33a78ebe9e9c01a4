"""Event-Driven Ansible: the mde_alerts event source and the contain_on_high_severity rulebook against the emulator.

The rulebook test runs the real ansible-rulebook (Drools on Java) with the collection found by FQCN on
ANSIBLE_COLLECTIONS_PATH, as a user runs it; ansible-rulebook has no "run once", so the test watches the
emulator's request log until what it expects has happened (or a deadline passes) and then terminates it.
The restart test drives the source's main() directly with an asyncio queue.

The hostile-alert tests run once per ansible-core version: MDE_TEST_CORES, a comma-separated list of versions of
tests/cores.py (``MDE_TEST_CORES=2.16``; default: every version there). ansible-rulebook itself runs from the main
venv; the playbooks it starts (ansible-runner runs ``ansible-playbook`` from PATH) and the plain ansible-playbook runs
use that version's venv (tests/cores.py makes it when missing), and each test checks the version that really ran.
"""
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests import cores
from tests.integration.harness import BIN, COLLECTIONS, Ansible

from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts as src
from ansible_collections.defender.endpoint.plugins.module_utils import poller
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEConfigError

RULEBOOK = "defender.endpoint.contain_on_high_severity"
SOURCE_FILE = os.path.join("ansible_collections", "defender", "endpoint", "extensions", "eda", "plugins", "event_source",
                           "mde_alerts.py")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def touch(emulator, alert_id, comment, tenant=None):
    """Update an alert through the API (PATCH with a comment, in ``tenant``, default the home one): its
    lastUpdateTime becomes now."""
    resp = requests.patch("%s/api/alerts/%s" % (emulator.url, alert_id), json={"comment": comment},
                          headers={"Authorization": "Bearer " + emulator.token_for("full", tenant=tenant)},
                          verify=emulator.ca_path, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["lastUpdateTime"]


def alert_polls(emulator, status=200):
    return [e for e in emulator.log if e["method"] == "GET" and e["path"] == "/api/alerts" and e["status"] == status]


def isolations(emulator):
    return [w["path"].split("/")[3] for w in emulator.writes() if w["path"].endswith("/isolate")]


def wait_for(predicate, deadline, what, proc=None):
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("ansible-rulebook exited (rc %s) while waiting for %s:\n%s" % (
                proc.returncode, what, proc.stdout.read()[-6000:] if proc.stdout else ""))
        if time.time() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.2)


def java_env():
    """ansible-rulebook needs Java 17+ (drools_jpy); JAVA_HOME is derived from the java on PATH when unset."""
    java = shutil.which("java")
    assert java, "ansible-rulebook needs a Java 17 runtime on PATH (apt-get install -y default-jre-headless)"
    if os.environ.get("JAVA_HOME"):
        return {}
    return {"JAVA_HOME": os.path.dirname(os.path.dirname(os.path.realpath(java)))}


@contextlib.contextmanager
def rulebook_running(rulebook, env, tmp_path, inventory=None):
    """ansible-rulebook running ``rulebook`` (a path or a collection's rulebook) until the block ends, its standard
    output and error written to ``<tmp_path>/rulebook.out``; yields ``(proc, output)``, ``output()`` what it wrote
    so far. Ends it (its process group) whatever happens."""
    rulebook_bin = os.path.join(BIN, "ansible-rulebook")
    assert os.path.exists(rulebook_bin), "ansible-rulebook is not installed (tests/requirements-dev.txt)"
    if inventory is None:
        inventory = tmp_path / "inventory.yml"
        inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    out = tmp_path / "rulebook.out"
    with open(str(out), "w") as sink:
        proc = subprocess.Popen([rulebook_bin, "--rulebook", str(rulebook), "-i", str(inventory), "-v"], env=env,
                                cwd=str(tmp_path), stdout=sink, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    try:
        yield proc, out.read_text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the rulebook -------------------------------------------------------------------------------------------
def test_rulebook_contains_the_machine_of_each_new_high_severity_alert_once(emulator, tmp_path):
    rulebook_bin = os.path.join(BIN, "ansible-rulebook")
    assert os.path.exists(rulebook_bin), "ansible-rulebook is not installed (tests/requirements-dev.txt)"
    alerts = emulator.alerts
    new_high = [a for a in alerts if (a["severity"], a["status"]) == ("High", "New")]
    start = utcnow() - datetime.timedelta(seconds=1)
    first, changed_later, new_later = new_high[0], new_high[0], new_high[1]
    first_batch = [first, new_high[2]]
    for a in first_batch:
        touch(emulator, a["id"], "fresh")
    # Updated too, but filtered out by the API: a New Low alert and a Resolved High alert.
    low = next(a for a in alerts if (a["severity"], a["status"]) == ("Low", "New"))
    resolved = next(a for a in alerts if (a["severity"], a["status"]) == ("High", "Resolved"))
    touch(emulator, low["id"], "fresh")
    touch(emulator, resolved["id"], "fresh")
    # Every New High alert updated since the first poll's start (less the default 2m overlap) is due: the two just
    # updated and any seed alert that happens to be that recent.
    cutoff = poller.time_ticks(iso(start)) - 120 * poller.TICKS
    due = [a for a in emulator.alerts if (a["severity"], a["status"]) == ("High", "New")
           and poller.time_ticks(a["lastUpdateTime"]) >= cutoff]
    assert {a["id"] for a in first_batch} <= {a["id"] for a in due} and new_later not in due
    due_machines = {a["machineId"] for a in due}
    assert low["machineId"] not in due_machines | {new_later["machineId"]}
    assert resolved["machineId"] not in due_machines | {new_later["machineId"]}
    emulator.clear_log()

    checkpoint = tmp_path / "state" / "mde_alerts.json"
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({
        "mde_alerts_interval": 1, "mde_alerts_initial_lookback": iso(start),
        "mde_alerts_checkpoint_path": str(checkpoint)}))
    # ansible-runner (run_module) brings its own stdout callback: not the harness's JSON one.
    env = Ansible(emulator, tmp_path).env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    began = time.time()
    proc = subprocess.Popen([rulebook_bin, "--rulebook", RULEBOOK, "-i", str(tmp_path / "inventory.yml"),
                             "--vars", str(tmp_path / "vars.yml"), "-v"],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: due_machines <= set(isolations(emulator)), began + 90, "the first isolations", proc)
        first_done = time.time() - began
        # While it runs: one contained alert changes (emitted again; its machine is already isolated) and another
        # New High alert appears.
        touch(emulator, changed_later["id"], "changed")
        touch(emulator, new_later["id"], "fresh")

        def runs(machine_id):
            return len([e for e in emulator.log if e["path"] == "/api/machineactions"
                        and "'%s'" % machine_id in e["query"].get("$filter", "")])

        wait_for(lambda: new_later["machineId"] in isolations(emulator) and runs(changed_later["machineId"]) >= 2,
                 time.time() + 60, "the second isolation", proc)
        polls = len(alert_polls(emulator))
        wait_for(lambda: len(alert_polls(emulator)) >= polls + 3, time.time() + 30, "three more polls", proc)
        total = time.time() - began
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0]

    # Exactly the machines of the New High alerts, each isolated once, across all those polls.
    posted = isolations(emulator)
    assert sorted(posted) == sorted(due_machines | {new_later["machineId"]}), output[-6000:]
    # One module run per emitted alert version: the changed alert ran the module again (no write: already isolated).
    expected_runs = dict((m, len([a for a in due if a["machineId"] == m])) for m in due_machines)
    expected_runs[changed_later["machineId"]] += 1
    expected_runs[new_later["machineId"]] = expected_runs.get(new_later["machineId"], 0) + 1
    assert dict((m, runs(m)) for m in expected_runs) == expected_runs
    body = [w["body"] for w in emulator.writes() if w["path"] == "/api/machines/%s/isolate" % new_later["machineId"]]
    assert body == [{"Comment": "Isolated by Event-Driven Ansible (defender.endpoint): high-severity alert %s"
                                % new_later["id"], "IsolationType": "Full"}]
    # Server-side filters; one token for the source and every module run (the shared token cache).
    filters = [e["query"]["$filter"] for e in alert_polls(emulator)]
    assert filters[0] == "lastUpdateTime ge %s and severity eq 'High' and status eq 'New'" % poller.filter_time(cutoff)
    assert all(f.endswith(" and severity eq 'High' and status eq 'New'") for f in filters)
    assert emulator.counters["token_requests"] == 1
    # The rulebook wrote nothing but isolations (the alert PATCHes are the test's own).
    assert {w["path"].split("/")[-1] for w in emulator.writes() if w["method"] != "PATCH"} == {"isolate"}
    assert stat.S_IMODE(os.stat(str(checkpoint)).st_mode) == 0o600
    saved = json.loads(checkpoint.read_text())
    assert saved["watermark"] == max(a["lastUpdateTime"] for a in emulator.alerts
                                     if (a["severity"], a["status"]) == ("High", "New"))
    print("ansible-rulebook: first isolations after %.1fs, whole run %.1fs, %d polls" % (
        first_done, total, len(filters)))


# -- the source, restarted -----------------------------------------------------------------------------------
def run_source(args, stop, deadline=30):
    """Run main() until ``stop(events)`` is true, then cancel it; returns the events it put on the queue."""
    async def drive():
        queue = asyncio.Queue()
        task = asyncio.create_task(src.main(queue, args))
        events = []
        limit = time.time() + deadline
        while not stop(events):
            if task.done():
                task.result()
            assert time.time() < limit, "timed out; events so far: %s" % [e["mde_alert"]["id"] for e in events]
            await asyncio.sleep(0.05)
            while not queue.empty():
                events.append(queue.get_nowait())
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        while not queue.empty():
            events.append(queue.get_nowait())
        return events

    return asyncio.run(drive())


@pytest.fixture
def mde_env(emulator, tmp_path, monkeypatch):
    """The credentials in MDE_* environment variables, as EDA Controller or a shell would set them."""
    env = Ansible(emulator, tmp_path).env()
    for k in list(os.environ):
        if k.startswith(("MDE_", "AZURE_")):
            monkeypatch.delenv(k)
    for k, v in env.items():
        if k.startswith("MDE_"):
            monkeypatch.setenv(k, v)
    return env


def test_a_restarted_source_emits_nothing_it_already_emitted(emulator, tmp_path, mde_env, caplog):
    checkpoint = str(tmp_path / "mde_alerts.json")
    args = {"severity": ["High"], "interval": 0.2, "initial_lookback": "30d", "checkpoint_path": checkpoint}
    high = sorted((a for a in emulator.alerts if a["severity"] == "High"), key=lambda a: (a["lastUpdateTime"], a["id"]))
    assert len(high) > 10

    def polls(n):
        return lambda events: len(alert_polls(emulator)) >= n

    events = run_source(args, polls(3))
    # Every High alert of the last 30 days (any status), once, oldest update first, as the API returns it.
    assert [e["mde_alert"]["id"] for e in events] == [a["id"] for a in high]
    assert all(set(e) == {"mde_alert"} for e in events)
    assert events[0]["mde_alert"] == dict((k, v) for k, v in high[0].items() if not k.startswith("_"))
    saved = json.load(open(checkpoint))
    assert stat.S_IMODE(os.stat(checkpoint).st_mode) == 0o600
    assert saved["watermark"] == high[-1]["lastUpdateTime"] and high[-1]["id"] in saved["seen"]

    # While it is stopped: one emitted alert changes; the next start's first poll fails (logged, not fatal).
    changed = high[3]
    touch(emulator, changed["id"], "changed while the source was stopped")
    emulator.inject_fault(r"^/api/alerts$", "status", count=1, status=400)
    emulator.clear_log()
    events = run_source(args, polls(3))
    assert [e["mde_alert"]["id"] for e in events] == [changed["id"]]
    assert events[0]["mde_alert"]["comments"][-1]["comment"] == "changed while the source was stopped"
    assert len([e for e in emulator.log if e["path"] == "/api/alerts" and e["status"] == 400]) == 1
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(failed) == 1 and failed[0].startswith("mde_alerts: poll failed, retrying in 0.2s: GET /api/alerts "
                                                     "failed: HTTP 400")
    # The restarted source asked from its checkpoint (less the overlap), not from initial_lookback.
    resumed = poller.filter_time(poller.time_ticks(high[-1]["lastUpdateTime"]) - 120 * poller.TICKS)
    assert {e["query"]["$filter"] for e in alert_polls(emulator)} >= {
        "lastUpdateTime ge %s and severity eq 'High'" % resumed}
    assert json.load(open(checkpoint))["watermark"] == emulator.alerts[emulator.alerts.index(changed)]["lastUpdateTime"]

    # A third start with nothing new emits nothing; one token served all three runs (the token cache).
    emulator.clear_log()
    assert run_source(args, polls(2)) == []
    assert emulator.counters["token_requests"] == 1


def test_bad_configuration_fails_at_start_without_any_api_call(emulator, tmp_path, mde_env, monkeypatch):
    bad_checkpoint = tmp_path / "bad.json"
    bad_checkpoint.write_text("{}")
    cases = [
        ({"severity": ["Critical"]}, "severity: 'Critical' is not one of"),
        ({"interval": 0}, "interval must be greater than 0"),
        ({"checkpoint_path": str(bad_checkpoint)}, "is not usable"),
        ({"api_url": "http://insecure.example"}, "api_url must be an https:// URL"),
    ]
    for args, message in cases:
        with pytest.raises((src.ConfigError, MDEConfigError), match=message):
            run_source(args, lambda events: False, deadline=5)
    monkeypatch.delenv("MDE_CLIENT_SECRET")
    with pytest.raises(MDEConfigError, match="No credential given"):
        run_source({}, lambda events: False, deadline=5)
    assert emulator.log == []


@pytest.mark.parametrize("name", ["mde_alerts", "mde_incidents"])
def test_the_source_file_imports_the_client_from_an_installed_collection(name):
    """ansible-rulebook runs the file with runpy, without the collections path on sys.path."""
    path = os.path.join(COLLECTIONS, os.path.dirname(SOURCE_FILE), name + ".py")
    assert os.path.exists(path), path
    code = ("import runpy, sys; g = runpy.run_path(sys.argv[1]); print(g['poller'].__name__, g['main'].__self__.NAME); "
            "from ansible_collections.defender.endpoint.plugins.module_utils import connect; print(connect.__name__)")
    out = subprocess.run([sys.executable, "-I", "-c", code, path], capture_output=True, text=True, cwd="/",
                         check=False, env={"PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ansible_collections.defender.endpoint.plugins.module_utils.poller", name,
                                  "ansible_collections.defender.endpoint.plugins.module_utils.connect"]


# -- alert text controlled by a device: never templated by Ansible ----------------------------------------------
def cores_under_test():
    wanted = os.environ.get("MDE_TEST_CORES")
    versions = [v.strip() for v in wanted.split(",") if v.strip()] if wanted else list(cores.CORES)
    unknown = [v for v in versions if v not in cores.CORES]
    assert not unknown, "MDE_TEST_CORES: %s not in tests/cores.py (%s)" % (unknown, ", ".join(cores.CORES))
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def hostile_title(marker):
    """A title a compromised device could give its alert: templated, it creates ``marker`` on the controller."""
    return "Suspicious PowerShell {{ lookup('pipe', 'touch %s') }} on host" % marker


# The playbook a user's rule runs with the event: it shows the title (templated lazily, on every core) and comments the
# alert with it, so the emulator receives what the playbook saw.
EVENT_PLAYBOOK = [{
    "name": "Triage the alert of the event",
    "hosts": "localhost",
    "gather_facts": False,
    "tasks": [
        {"name": "Show the title", "ansible.builtin.debug": {"msg": "{{ ansible_eda.event.mde_alert.title }}"}},
        {"name": "Take the alert",
         "defender.endpoint.mde_alert": {
             "alert_id": "{{ ansible_eda.event.mde_alert.id }}",
             "status": "InProgress",
             "comment": "run_playbook on {{ ansible_version.full }}: {{ ansible_eda.event.mde_alert.title }}"}},
    ],
}]


def make_hostile(emulator, alert, title):
    """The alert gets ``title`` and is New, updated now (the API sets lastUpdateTime on a PATCH)."""
    touch(emulator, alert["id"], "fresh")
    alert["title"] = title
    alert["status"] = "New"
    return alert


def alert_patches(emulator, alert_id):
    return [w["body"] for w in emulator.writes() if w["method"] == "PATCH" and w["path"] == "/api/alerts/" + alert_id]


@pytest.mark.parametrize("core", cores_under_test())
def test_control_a_hostile_title_in_plain_extra_vars_runs_on_the_controller(emulator, tmp_path, core):
    """Without the !unsafe marking, this core runs the title's template: what the next test guards against."""
    marker = tmp_path / "pwned"
    alert = make_hostile(emulator, emulator.alerts[0], hostile_title(marker))
    event = {"mde_alert": json.loads(json.dumps(dict((k, v) for k, v in alert.items() if not k.startswith("_"))))}
    emulator.clear_log()
    # What ansible-rulebook 1.3.2 writes to env/extravars (yaml.dump of plain data), without the source's marking.
    extravars = tmp_path / "extravars"
    extravars.write_text(yaml.dump({"ansible_eda": {"ruleset": "r", "rule": "x", "event": event}},
                                   Dumper=yaml.SafeDumper))
    ansible = Ansible(emulator, tmp_path, core=core)
    (tmp_path / "event.yml").write_text(yaml.safe_dump(EVENT_PLAYBOOK, sort_keys=False))
    proc = subprocess.run([os.path.join(ansible.bin, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(tmp_path / "event.yml"), "-e", "@%s" % extravars],
                          env=ansible.env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None),
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    release = cores.CORES[core][0]
    assert marker.exists(), "ansible-core %s did not run the title's lookup" % release
    # The comment the API received lost the title's template (it was run, and rendered as "").
    assert alert_patches(emulator, alert["id"]) == [{
        "status": "InProgress", "comment": "run_playbook on %s: Suspicious PowerShell  on host" % release}]


@pytest.mark.parametrize("core", cores_under_test())
def test_a_hostile_alert_title_reaches_the_playbook_intact_and_is_never_run(emulator, tmp_path, core):
    """The real ansible-rulebook, the source and two rules: run_playbook (the event as extra vars) and run_module (the
    title inside the module's arguments). Nothing of the titles runs; both reach the API as written."""
    rulebook_bin = os.path.join(BIN, "ansible-rulebook")
    release = cores.CORES[core][0]
    markers = [tmp_path / "pwned-playbook", tmp_path / "pwned-module"]
    start = utcnow() - datetime.timedelta(seconds=1)
    by_playbook = make_hostile(emulator, emulator.alerts[0], hostile_title(markers[0]))
    by_module = make_hostile(emulator, emulator.alerts[1], "{%% if lookup('pipe', 'touch %s') %%}{%% endif %%}"
                                                           "Credential theft" % markers[1])
    emulator.clear_log()
    ansible = Ansible(emulator, tmp_path, core=core)
    (tmp_path / "event.yml").write_text(yaml.safe_dump(EVENT_PLAYBOOK, sort_keys=False))
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    rulebook = [{
        "name": "Triage alerts",
        "hosts": "localhost",
        "sources": [{"name": "mde_alerts", "defender.endpoint.mde_alerts": {
            "interval": 1, "initial_lookback": iso(start), "checkpoint_path": str(tmp_path / "cp.json")}}],
        "rules": [
            {"name": "Run a playbook with the event",
             "condition": 'event.mde_alert.id == "%s" and event.mde_alert.status == "New"' % by_playbook["id"],
             "action": {"run_playbook": {"name": str(tmp_path / "event.yml")}}},
            {"name": "Run a module with the title in its arguments",
             "condition": 'event.mde_alert.id == "%s" and event.mde_alert.status == "New"' % by_module["id"],
             "action": {"run_module": {"name": "defender.endpoint.mde_alert", "module_args": {
                 "alert_id": "{{ event.mde_alert.id }}", "status": "InProgress",
                 "comment": "run_module: {{ event.mde_alert.title }}"}}}},
        ],
    }]
    (tmp_path / "rulebook.yml").write_text(yaml.safe_dump(rulebook, sort_keys=False))
    env = ansible.env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    proc = subprocess.Popen([rulebook_bin, "--rulebook", str(tmp_path / "rulebook.yml"), "-i",
                             str(tmp_path / "inventory.yml"), "-v"],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: alert_patches(emulator, by_playbook["id"]) and alert_patches(emulator, by_module["id"]),
                 time.time() + 180, "both alerts taken", proc)
        polls = len(alert_polls(emulator))
        wait_for(lambda: len(alert_polls(emulator)) >= polls + 2, time.time() + 30, "two more polls", proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0]

    assert [m.name for m in markers if m.exists()] == [], output[-6000:]
    # The titles arrived intact, once each; the playbook ran on the core under test.
    assert alert_patches(emulator, by_playbook["id"]) == [{
        "status": "InProgress", "comment": "run_playbook on %s: %s" % (release, by_playbook["title"])}], output[-6000:]
    assert alert_patches(emulator, by_module["id"]) == [{
        "status": "InProgress", "comment": "run_module: %s" % by_module["title"]}], output[-6000:]
    assert "has template syntax" in output and by_playbook["id"] in output
