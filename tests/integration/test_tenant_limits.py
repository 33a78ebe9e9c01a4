"""Limits per tenant: a security provider's per-host play over machines of three tenants, each task in its host's
tenant. Tokens, the call budget and its waits are the tenant's own: a 429 in one tenant holds back no other."""
import json
import os
import time

import yaml

TENANTS = ("contoso", "fabrikam", "northwind")
PER_HOST = {"group/defender.endpoint.mde": {"tenant_id": "{{ mde_tenant_id }}"}}


def inventory(msp, tmp_path):
    """One host per tenant, with the variables the mde_machines inventory gives a host of a tenant list."""
    hosts = {}
    for name in TENANTS:
        machine = next(m for m in msp.tenant(name).machines if m["onboardingStatus"] == "Onboarded"
                       and m["osPlatform"].startswith("Windows"))
        hosts["%s_host" % name] = {"mde_id": machine["id"], "mde_tenant_id": msp.tenant_id_of(name), "mde_tenant": name,
                                   "ansible_connection": "local"}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return str(path), hosts


def play(tasks):
    return [{"name": "per host, each in its tenant", "hosts": "all", "gather_facts": False, "module_defaults": PER_HOST,
             "tasks": tasks}]


def test_a_429_in_one_tenant_holds_back_no_other(msp_ansible, msp, tmp_path):
    path, hosts = inventory(msp, tmp_path)
    msp.inject_fault(r"/isolate$", "status", status=429, retry_after=20, method="POST", tenant="fabrikam")
    isolate = {"name": "isolate", "defender.endpoint.mde_machine_action": {
        "machine_id": "{{ mde_id }}", "action": "isolate", "comment": "per tenant"}}
    started = time.time()
    result = msp_ansible.playbook(plays=play([isolate]), inventory=path, forks=3)
    assert result.rc == 0, result
    created = {}
    for name in TENANTS:
        posts = [e for e in msp.log_of(name) if e["method"] == "POST" and e["path"].endswith("/isolate")]
        # Each isolation reached its own tenant, for its own machine, once.
        assert [e["path"] for e in posts if e["status"] == 201] == ["/api/machines/%s/isolate" % hosts["%s_host" % name]["mde_id"]]
        assert [a["machineId"] for a in msp.tenant(name).actions] == [hosts["%s_host" % name]["mde_id"]]
        created[name] = next(e["time"] for e in posts if e["status"] == 201) - started
    assert [e["status"] for e in msp.log_of("fabrikam") if e["path"].endswith("/isolate")] == [429, 201]
    # fabrikam waited the 20 s it was told to; the others did not wait for it.
    assert created["fabrikam"] >= 20
    assert created["contoso"] < created["fabrikam"] - 15 and created["northwind"] < created["fabrikam"] - 15
    # The shared budget recorded the wait for fabrikam's key only (the key names the tenant and the app).
    budget = json.loads(open(os.path.join(msp_ansible.cache_dir, "ratelimit.json")).read())
    blocked = [key for key, entry in budget.items() if entry["blocked_until"] > started]
    assert len(blocked) == 1 and msp.tenant_id_of("fabrikam") in blocked[0], budget


def test_each_tenant_gets_its_own_token_once_and_the_cache_serves_the_next_run(msp_ansible, msp, tmp_path):
    path, hosts = inventory(msp, tmp_path)
    read = {"name": "read", "defender.endpoint.mde_machine_info": {"machine_id": "{{ mde_id }}"}}
    first = msp_ansible.playbook(plays=play([read]), inventory=path, forks=3)
    assert first.rc == 0, first
    for name in TENANTS:
        host = "%s_host" % name
        assert [m["id"] for m in first.task("read", host)["machines"]] == [hosts[host]["mde_id"]]
        tokens = [e for e in msp.log_of(name) if e["family"] == "token"]
        assert len(tokens) == 1 and tokens[0]["status"] == 200
    msp.clear_log()
    second = msp_ansible.playbook(plays=play([read]), inventory=path, forks=3)
    assert second.rc == 0, second
    assert not [e for e in msp.log if e["family"] == "token"]
    assert sorted(e["tenant"] for e in msp.log if e["path"].startswith("/api/")) == sorted(
        msp.tenant_id_of(name) for name in TENANTS)


def test_a_tenant_without_consent_fails_its_host_only_naming_the_admin_consent_page(msp_ansible, msp, tmp_path):
    path, _hosts = inventory(msp, tmp_path)
    adatum = next(m for m in msp.tenant("adatum").machines if m["onboardingStatus"] == "Onboarded")
    with open(path) as f:
        data = yaml.safe_load(f)
    data["all"]["hosts"]["adatum_host"] = {"mde_id": adatum["id"], "mde_tenant_id": msp.tenant_id_of("adatum"),
                                           "ansible_connection": "local"}
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    read = {"name": "read", "defender.endpoint.mde_machine_info": {"machine_id": "{{ mde_id }}"}}
    result = msp_ansible.playbook(plays=play([read]), inventory=path, forks=4)
    assert result.rc == 2
    failed = result.task("read", "adatum_host")
    assert failed["failed"] and "AADSTS7000229" in failed["msg"]
    assert "%s/%s/adminconsent?client_id=%s" % (msp.url, msp.tenant_id_of("adatum"), msp.apps["full"]["client_id"]) in failed["msg"]
    for name in TENANTS:
        assert not result.task("read", "%s_host" % name).get("failed")
    assert not [e for e in msp.log_of("adatum") if e["path"].startswith("/api/")]
