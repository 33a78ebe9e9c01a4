"""The mde_incidents event source against the emulator: new or changed incidents once each, across a restart, with
server-side filters and their alerts; it shares mde_alerts' machinery (module_utils/poller.py)."""
import asyncio
import time

import requests

from ansible_collections.defender.endpoint.plugins.module_utils import poller
from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_incidents as src


def args(emulator, checkpoint, **more):
    app = emulator.apps["full"]
    out = dict(tenant_id=emulator.tenant_id, client_id=app["client_id"], client_secret=app["client_secret"],
               api_url=emulator.url, graph_url=emulator.url, authority_host=emulator.url, ca_path=emulator.ca_path,
               token_cache=False, interval=1, initial_lookback="30d", checkpoint_path=str(checkpoint))
    out.update(more)
    return out


def run(arguments, stop, deadline=30):
    async def drive():
        queue = asyncio.Queue()
        task = asyncio.create_task(src.main(queue, arguments))
        events = []
        limit = time.time() + deadline
        while not stop(events):
            if task.done():
                task.result()
            assert time.time() < limit, "timed out; %d events" % len(events)
            await asyncio.sleep(0.05)
            while not queue.empty():
                events.append(queue.get_nowait())
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return events
    return asyncio.run(drive())


def incident_polls(emulator):
    return [e for e in emulator.log if e["path"] == "/v1.0/security/incidents" and e["status"] == 200]


def test_new_or_changed_incidents_once_each_across_a_restart(emulator, tmp_path):
    assert issubclass(src.IncidentPoller, poller.Poller)
    checkpoint = tmp_path / "incidents.json"
    incidents = requests.get(emulator.url + "/v1.0/security/incidents", params={"$filter": "severity eq 'high'"},
                             verify=emulator.ca_path, timeout=30, headers={
                                 "Authorization": "Bearer " + emulator.token_for("full", "https://graph.microsoft.com/.default")}
                             ).json()["value"]
    high = [i["id"] for i in incidents]
    emulator.clear_log()
    first = run(args(emulator, checkpoint, severity=["high"]),
                lambda events: len(events) >= len(high) and len(incident_polls(emulator)) >= 2)
    assert sorted(e["mde_incident"]["id"] for e in first) == sorted(high)
    assert all(e["mde_incident"]["alerts"] for e in first)
    assert all(p["query"]["$filter"].endswith(" and severity eq 'high'") and p["query"]["$expand"] == "alerts"
               for p in incident_polls(emulator))
    # Restarted: nothing again until an incident changes; then that one only.
    emulator.clear_log()
    requests.post(emulator.url + "/v1.0/security/incidents/%s/comments" % high[0], verify=emulator.ca_path, timeout=30,
                  json={"comment": "changed"}, headers={
                      "Authorization": "Bearer " + emulator.token_for("full", "https://graph.microsoft.com/.default")})
    second = run(args(emulator, checkpoint, severity=["high"]), lambda events: len(incident_polls(emulator)) >= 3)
    assert [e["mde_incident"]["id"] for e in second] == [high[0]]


def test_bad_options_fail_before_any_call(emulator, tmp_path):
    for bad, text in (({"severity": ["High"]}, "severity"), ({"include_evidence": True}, "include_alerts"),
                      ({"interval": "soon"}, "interval")):
        try:
            src.setup(args(emulator, tmp_path / "x.json", **bad))
        except src.ConfigError as e:
            assert text in str(e)
        else:
            raise AssertionError(bad)
    assert emulator.log == []


def test_rulebook_contains_the_devices_of_a_new_high_severity_incident(emulator, tmp_path):
    """The real ansible-rulebook with contain_incident_devices: a new high-severity active incident has its devices
    isolated and is set in progress with one comment (triage_incident), once."""
    import datetime
    import os
    import signal
    import subprocess
    import time

    import yaml

    from tests.integration.harness import BIN, Ansible
    from tests.integration.test_eda import iso, java_env, wait_for

    graph = {"Authorization": "Bearer " + emulator.token_for("full", "https://graph.microsoft.com/.default")}
    listed = requests.get(emulator.url + "/v1.0/security/incidents", verify=emulator.ca_path, timeout=30, headers=graph,
                          params={"$filter": "severity eq 'high' and status eq 'active'", "$expand": "alerts"})
    candidates = [i for i in listed.json()["value"]
                  if any(e.get("mdeDeviceId") for a in i.get("alerts") or [] for e in a.get("evidence") or [])]
    assert candidates, "the emulator seeds active high-severity incidents with device evidence"
    incident = candidates[0]
    devices = sorted({e["mdeDeviceId"] for a in incident["alerts"] for e in a.get("evidence") or []
                      if e.get("mdeDeviceId")})
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    requests.post(emulator.url + "/v1.0/security/incidents/%s/comments" % incident["id"], verify=emulator.ca_path,
                  timeout=30, json={"comment": "new evidence"}, headers=graph)   # its lastUpdateDateTime becomes now
    emulator.clear_log()

    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({
        "mde_incidents_interval": 1, "mde_incidents_initial_lookback": iso(start),
        "mde_incidents_checkpoint_path": str(tmp_path / "incidents.json")}))
    env = Ansible(emulator, tmp_path).env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    proc = subprocess.Popen([os.path.join(BIN, "ansible-rulebook"), "--rulebook",
                             "defender.endpoint.contain_incident_devices", "-i", str(tmp_path / "inventory.yml"),
                             "--vars", str(tmp_path / "vars.yml")],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def patched():
        return [w for w in emulator.writes() if w["method"] == "PATCH"
                and w["path"] == "/v1.0/security/incidents/%s" % incident["id"]]

    try:
        wait_for(patched, time.time() + 120, "the incident to be triaged", proc)
        polls = len(incident_polls(emulator))
        wait_for(lambda: len(incident_polls(emulator)) >= polls + 3, time.time() + 30, "three more polls", proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0]
    isolated = sorted(w["path"].split("/")[3] for w in emulator.writes() if w["path"].endswith("/isolate"))
    assert isolated == devices, output[-6000:]
    assert len(patched()) == 1 and patched()[0]["body"].get("status") == "inProgress", output[-6000:]
    comments = [w for w in emulator.writes() if w["path"].endswith("/%s/comments" % incident["id"])]
    assert len(comments) == 1, output[-6000:]


def test_two_tenants_each_incident_once_with_its_tenant(msp, tmp_path):
    """One source over two customers' tenants: each tenant's high-severity incidents once, each event naming its
    tenant, each tenant polled with its own token; the checkpoint has one entry per tenant id."""
    import json

    names = ("fabrikam", "northwind")
    graph = "https://graph.microsoft.com/.default"
    high = {}
    for name in names:
        listed = requests.get(msp.url + "/v1.0/security/incidents", params={"$filter": "severity eq 'high'"},
                              verify=msp.ca_path, timeout=30,
                              headers={"Authorization": "Bearer " + msp.token_for("full", graph, tenant=name)})
        high[name] = sorted(i["id"] for i in listed.json()["value"])
        assert high[name], name
    msp.clear_log()
    checkpoint = tmp_path / "incidents.json"
    tenants = [{"tenant_id": msp.tenant_id_of(name), "name": name} for name in names]

    def polls(name):
        return [e for e in msp.log_of(name) if e["path"] == "/v1.0/security/incidents" and e["status"] == 200]

    events = run(args(msp, checkpoint, severity=["high"], tenants=tenants),
                 lambda got: len(got) >= sum(len(v) for v in high.values()) and all(len(polls(n)) >= 2 for n in names))
    for name in names:
        mine = [e for e in events if e["mde_tenant"] == name]
        assert sorted(e["mde_incident"]["id"] for e in mine) == high[name]
        assert {e["mde_tenant_id"] for e in mine} == {msp.tenant_id_of(name)}
    assert len(events) == sum(len(v) for v in high.values())
    assert not [e for e in msp.log_of("contoso") if e["path"] == "/v1.0/security/incidents"]
    saved = json.loads(checkpoint.read_text())
    assert sorted(k for k in saved if k != "version") == sorted(msp.tenant_id_of(name).lower() for name in names)
