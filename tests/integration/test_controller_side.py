"""Every module runs in the controller's worker: a play over remote hosts, as written.

The inventory's hosts are reachable by nothing: ssh to 127.0.0.1 port 1, where nothing listens. Any attempt to open a
connection to them would make the host unreachable. No task has delegate_to or connection: local.
"""
import json

import pytest
import yaml

GROUP = "group/defender.endpoint.mde"
M = "defender.endpoint."


def remote_inventory(tmp_path, machines):
    hosts = {}
    for n, machine in enumerate(machines):
        hosts["web%d" % n] = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
                              "ansible_user": "nobody", "mde_id": machine["id"],
                              "mde_name": machine["computerDnsName"]}
    path = tmp_path / "remote.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return str(path)


def every_module(alert):
    """One task of every module, each per host: the host's own machine where a module takes one."""
    return [
        {"name": "machine info", M + "mde_machine_info": {"machine_id": "{{ mde_id }}"}},
        {"name": "machine by name", M + "mde_machine_info": {"machine_name": "{{ mde_name }}"}},
        {"name": "isolate", M + "mde_machine_action": {"machine_id": "{{ mde_id }}", "action": "isolate",
                                                       "comment": "controller-side test"}},
        {"name": "action info", M + "mde_machine_action_info": {"machine_id": "{{ mde_id }}"}},
        {"name": "tags", M + "mde_machine": {"machine_id": "{{ mde_id }}", "tags": ["ctl-{{ inventory_hostname }}"]}},
        {"name": "vulnerabilities", M + "mde_machine_vulnerability_info": {"machine_id": "{{ mde_id }}"}},
        {"name": "indicator", M + "mde_indicator": {
            "indicator_value": "{{ inventory_hostname }}.bad.example.com", "indicator_type": "DomainName",
            "action": "Block", "title": "ctl", "description": "controller-side test"}},
        {"name": "indicator info", M + "mde_indicator_info": {"indicator_type": ["DomainName"]}},
        {"name": "alert info", M + "mde_alert_info": {"alert_id": alert["id"]}},
        {"name": "alert", M + "mde_alert": {"alert_id": alert["id"], "status": "InProgress"}},
        {"name": "hunting", M + "mde_advanced_hunting": {"query": "DeviceInfo | take 1"}},
    ]


MODULE_TASKS = ("machine info", "machine by name", "isolate", "action info", "tags", "vulnerabilities", "indicator",
                "indicator info", "alert info", "alert", "hunting")


def onboarded(emulator, count):
    return [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
            and m["healthStatus"] == "Active"][:count]


@pytest.fixture
def setup(ansible, emulator, tmp_path):
    machines = onboarded(emulator, 2)
    return machines, remote_inventory(tmp_path, machines), emulator.alerts[0]


def test_every_module_works_per_remote_host_without_connecting(ansible, emulator, setup):
    machines, inventory, alert = setup
    secret = emulator.apps["full"]["client_secret"]
    # The secret comes only through module_defaults of the action group, the API URL only through the play's
    # environment: keyword. Neither is in the process environment.
    plays = [{"name": "remote", "hosts": "all", "gather_facts": False,
              "environment": {"MDE_API_URL": emulator.url},
              "module_defaults": {GROUP: {"client_secret": secret}},
              "tasks": every_module(alert)}]
    result = ansible.playbook(plays=plays, inventory=inventory, env={"MDE_CLIENT_SECRET": None, "MDE_API_URL": None})
    assert result.rc == 0, result
    for host in ("web0", "web1"):
        tasks = result.tasks(host)
        for name in MODULE_TASKS:
            assert not tasks[name].get("failed") and not tasks[name].get("unreachable"), (host, name, tasks[name])
    assert result.stats["web0"]["unreachable"] == 0 and result.stats["web1"]["unreachable"] == 0
    # What the emulator received: each host's isolation and tags for its own machine.
    writes = emulator.writes()
    for n, machine in enumerate(machines):
        assert [w for w in writes if w["path"] == "/api/machines/%s/isolate" % machine["id"]]
        assert any(w["path"] == "/api/machines/%s/tags" % machine["id"] and
                   (w.get("body") or {}).get("Value") == "ctl-web%d" % n for w in writes), writes
    assert result.task("machine info", "web1")["machines"][0]["id"] == machines[1]["id"]

    # Check mode on the same play: nothing written, and it still says what would change.
    emulator.clear_log()
    check = ansible.playbook(plays=plays, inventory=inventory, check=True, diff=True,
                             env={"MDE_CLIENT_SECRET": None, "MDE_API_URL": None})
    assert check.rc == 0, check
    # A hunting query is a POST that changes nothing: it runs in check mode too.
    assert [w for w in emulator.writes() if w["path"] != "/api/advancedqueries/run"] == []
    plays[0]["tasks"] = [{"name": "tags", M + "mde_machine": {"machine_id": "{{ mde_id }}", "tags": ["new-tag"]}}]
    check = ansible.playbook(plays=plays, inventory=inventory, check=True, diff=True,
                             env={"MDE_CLIENT_SECRET": None, "MDE_API_URL": None})
    assert check.task("tags", "web0")["changed"] is True
    assert [w for w in emulator.writes() if w["path"] != "/api/advancedqueries/run"] == []


def test_environment_keyword_reaches_the_client_and_does_not_leak(ansible, emulator, setup):
    machines, inventory, _alert = setup
    dead_proxy = "http://127.0.0.1:9"
    plays = [{"name": "proxies", "hosts": "web0", "gather_facts": False, "tasks": [
        {"name": "through a dead proxy", M + "mde_machine_info": {"machine_id": "{{ mde_id }}", "timeout": 5},
         "environment": {"HTTPS_PROXY": dead_proxy}, "ignore_errors": True},
        {"name": "proxy bypassed for the API host", M + "mde_machine_info": {"machine_id": "{{ mde_id }}"},
         "environment": {"HTTPS_PROXY": dead_proxy, "NO_PROXY": "127.0.0.1"}},
        {"name": "no environment", M + "mde_machine_info": {"machine_id": "{{ mde_id }}"}},
    ]}]
    calls_before = len(emulator.log)
    result = ansible.playbook(plays=plays, inventory=inventory, env={"HTTPS_PROXY": None, "https_proxy": None,
                                                                     "NO_PROXY": None, "no_proxy": None})
    proxied = result.task("through a dead proxy", "web0")
    assert proxied["failed"] and "port=9" in proxied["msg"], proxied  # it went to the dead proxy
    assert not result.task("proxy bypassed for the API host", "web0").get("failed")
    assert not result.task("no environment", "web0").get("failed"), "the proxy leaked into the next task"
    assert len(emulator.log) > calls_before


def test_async_is_refused_clearly(ansible, emulator, setup):
    machines, inventory, _alert = setup
    plays = [{"name": "async", "hosts": "web0", "gather_facts": False, "tasks": [
        {"name": "async", M + "mde_machine_info": {"machine_id": "{{ mde_id }}"}, "async": 30, "poll": 0,
         "ignore_errors": True}]}]
    result = ansible.playbook(plays=plays, inventory=inventory)
    task = result.task("async", "web0")
    assert task["failed"] and "does not support async" in task["msg"], task
    assert result.stats["web0"]["unreachable"] == 0


def test_secrets_stay_out_of_vvvv_on_remote_hosts(ansible, emulator, setup, tmp_path):
    machines, inventory, alert = setup
    secret = emulator.apps["full"]["client_secret"]
    plays = [{"name": "remote", "hosts": "all", "gather_facts": False,
              "module_defaults": {GROUP: {"client_secret": "{{ lookup('ansible.builtin.env', 'PROBE') }}"}},
              "tasks": every_module(alert)}]
    result = ansible.playbook(plays=plays, inventory=inventory, extra_args=["-vvvv"], diff=True,
                              env={"MDE_CLIENT_SECRET": None, "PROBE": secret})
    assert secret not in result.stdout and secret not in result.stderr
    token_cache = tmp_path / "token-cache" / "tokens.json"
    tokens = [e["access_token"] for e in json.loads(token_cache.read_text()).values()]
    assert tokens, "the run used the token cache"
    for token in tokens:
        assert token not in result.stdout and token not in result.stderr
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.stdout, "the invocation shows the secret masked"
