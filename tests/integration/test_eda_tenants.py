"""Event-Driven Ansible across tenants: the mde_alerts source with a tenant list, in real ansible-rulebook runs against
the multi-tenant emulator (tests/emulator/fixtures.py MSP_TENANTS). Each tenant is polled with its own token, side by
side, with its own checkpoint entry; every event names its tenant; a tenant without consent is warned about once and
a throttled one holds back no other."""
import json
import re
import time

import yaml

from tests.integration.harness import Ansible
from tests.integration.test_eda import iso, java_env, rulebook_running, touch, utcnow, wait_for

from ansible_collections.defender.endpoint.plugins.module_utils import poller

EVENT_LINE = re.compile(r"EVENT tenant=(\w+) id=([0-9a-f-]+) alert=(\S+)")


def fresh_alerts(msp, tenant, count):
    """``count`` High alerts of ``tenant`` updated now (the test's own PATCHes), as {id: lastUpdateTime}."""
    chosen = [a for a in msp.tenant(tenant).alerts if a["severity"] == "High"][:count]
    assert len(chosen) == count, tenant
    return dict((a["id"], touch(msp, a["id"], "fresh", tenant=tenant)) for a in chosen)


def write_rulebook(tmp_path, tenants, checkpoint, start, **more):
    source = {"severity": ["High"], "interval": 1, "overlap": "0s", "initial_lookback": iso(start),
              "checkpoint_path": str(checkpoint), "tenants": tenants}
    source.update(more)
    rulebook = [{
        "name": "Alerts of the customers' tenants",
        "hosts": "localhost",
        "sources": [{"name": "mde_alerts", "defender.endpoint.mde_alerts": source}],
        "rules": [{"name": "Show each event", "condition": "event.mde_alert.id is defined",
                   "action": {"debug": {"msg": "EVENT tenant={{ event.mde_tenant }} id={{ event.mde_tenant_id }} "
                                               "alert={{ event.mde_alert.id }}"}}}],
    }]
    path = tmp_path / "rulebook.yml"
    path.write_text(yaml.safe_dump(rulebook, sort_keys=False))
    return path


def events(output):
    return [m.groups() for m in EVENT_LINE.finditer(output)]


def tenant_polls(msp, tenant, status=200):
    return [e for e in msp.log_of(tenant) if e["method"] == "GET" and e["path"] == "/api/alerts" and e["status"] == status]


def entry(msp, tenants):
    return [{"tenant_id": msp.tenant_id_of(name), "name": name} for name in tenants]


def test_two_tenants_in_one_rulebook_each_event_names_its_tenant_and_a_restart_replays_nothing(msp, tmp_path):
    start = utcnow()
    time.sleep(0.05)
    due = {"fabrikam": fresh_alerts(msp, "fabrikam", 2), "northwind": fresh_alerts(msp, "northwind", 3)}
    msp.clear_log()
    checkpoint = tmp_path / "state" / "mde_alerts.json"
    rulebook = write_rulebook(tmp_path, entry(msp, ("fabrikam", "northwind")), checkpoint, start)
    env = Ansible(msp, tmp_path).env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    expected = sorted((name, msp.tenant_id_of(name), ident) for name, alerts in due.items() for ident in alerts)
    with rulebook_running(rulebook, env, tmp_path) as (proc, output):
        wait_for(lambda: sorted(events(output())) == expected, time.time() + 120, "both tenants' events", proc)
        polls = dict((name, len(tenant_polls(msp, name))) for name in due)
        wait_for(lambda: all(len(tenant_polls(msp, name)) >= polls[name] + 2 for name in due), time.time() + 30,
                 "two more polls of each tenant", proc)
        text = output()
    # Each event once, with its tenant's id and label beside the alert; nothing from another tenant.
    assert sorted(events(text)) == expected, text[-6000:]
    # Each tenant was read with its own token, from its own watermark; the home tenant not at all.
    for name in due:
        filters = [e["query"]["$filter"] for e in tenant_polls(msp, name)]
        assert filters[0] == "lastUpdateTime ge %s and severity eq 'High'" % poller.filter_time(poller.time_ticks(iso(start)))
        assert filters[-1] == "lastUpdateTime ge %s and severity eq 'High'" % poller.filter_time(
            poller.time_ticks(max(due[name].values())))
    assert tenant_polls(msp, "contoso") == [] and tenant_polls(msp, "adatum") == []
    # One file, one entry per tenant id, each with that tenant's own watermark and alerts.
    saved = json.loads(checkpoint.read_text())
    assert sorted(saved) == sorted(["version"] + [msp.tenant_id_of(name).lower() for name in due])
    for name, alerts in due.items():
        mine = saved[msp.tenant_id_of(name).lower()]
        # (with overlap 0s, seen keeps the alerts of the watermark's time only)
        assert mine["watermark"] == max(alerts.values()) and max(alerts, key=alerts.get) in mine["seen"]
        assert set(mine["seen"]) <= set(alerts)

    # A second run with the same checkpoint replays nothing; an alert changed meanwhile in one tenant comes once.
    changed = next(iter(due["northwind"]))
    touch(msp, changed, "changed while stopped", tenant="northwind")
    msp.clear_log()
    with rulebook_running(rulebook, env, tmp_path) as (proc, output):
        wait_for(lambda: events(output()), time.time() + 120, "the changed alert", proc)
        wait_for(lambda: all(len(tenant_polls(msp, name)) >= 3 for name in due), time.time() + 30,
                 "three polls of each tenant", proc)
        text = output()
    assert events(text) == [("northwind", msp.tenant_id_of("northwind"), changed)], text[-6000:]
    assert "resuming from checkpoint" in text


def test_a_tenant_without_consent_or_throttled_holds_back_no_other(msp, tmp_path):
    start = utcnow()
    time.sleep(0.05)
    fabrikam = fresh_alerts(msp, "fabrikam", 1)
    northwind = fresh_alerts(msp, "northwind", 1)
    msp.clear_log()
    # northwind's first poll is throttled with a long Retry-After; adatum's admin never consented to the app.
    msp.inject_fault(r"^/api/alerts$", "status", status=429, retry_after=20, method="GET", tenant="northwind")
    rulebook = write_rulebook(tmp_path, entry(msp, ("northwind", "adatum", "fabrikam")), tmp_path / "cp.json", start)
    env = Ansible(msp, tmp_path).env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None, **java_env())
    with rulebook_running(rulebook, env, tmp_path) as (proc, output):
        wait_for(lambda: tenant_polls(msp, "northwind", 429), time.time() + 120, "northwind's throttled poll", proc)
        throttled = tenant_polls(msp, "northwind", 429)[0]["time"]
        wait_for(lambda: any(e[0] == "fabrikam" for e in events(output())), time.time() + 60, "fabrikam's event", proc)
        fabrikam_seen = time.time()
        wait_for(lambda: any(e[0] == "northwind" for e in events(output())), time.time() + 60, "northwind's event",
                 proc)
        northwind_seen = time.time()
        polls = len(tenant_polls(msp, "fabrikam"))
        wait_for(lambda: len(tenant_polls(msp, "fabrikam")) >= polls + 3, time.time() + 30, "more polls", proc)
        text = output()
    assert sorted(events(text)) == sorted([("fabrikam", msp.tenant_id_of("fabrikam"), next(iter(fabrikam))),
                                           ("northwind", msp.tenant_id_of("northwind"), next(iter(northwind)))])
    # fabrikam's event came while northwind waited out its 20 s; northwind's after it, from the retry.
    assert fabrikam_seen < throttled + 15 < northwind_seen, (throttled, fabrikam_seen, northwind_seen)
    assert [e["status"] for e in msp.log_of("northwind") if e["path"] == "/api/alerts"][:2] == [429, 200]
    # adatum: one warning naming it and the admin-consent URL, though its token was asked for at every poll.
    warned = [line for line in text.splitlines() if "tenant adatum" in line and "adminconsent" in line]
    assert len(warned) == 1, text[-6000:]
    assert "mde_alerts: tenant adatum: no token:" in warned[0]
    assert "/%s/adminconsent?client_id=" % msp.tenant_id_of("adatum") in warned[0] or "adminconsent" in warned[0]
    token_requests = [e for e in msp.log_of("adatum") if e["path"].endswith("/token")]
    assert len(token_requests) >= 2 and tenant_polls(msp, "adatum") == [] and tenant_polls(msp, "adatum", 401) == []
