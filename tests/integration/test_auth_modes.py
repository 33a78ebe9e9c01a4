"""Every way an Entra ID application signs in, through real ansible-playbook / ansible-inventory runs
against the emulator: user context by device code (the sign-in message shown while the task waits, one sign-in for
a whole play with forks and both APIs, silent later runs, a refreshed token after expiry, a new sign-in after the
refresh token is revoked, delegated 403 texts, actions attributed to the analyst), managed identity (the instance
metadata service and the App Service endpoint, reached through the environment variables MSAL reads) and workload
identity federation (the federated token file as the client assertion). Refresh tokens, device codes, assertions
and identity headers never appear in -vvvv output.
"""
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest
import requests

from tests.integration.harness import BIN, Ansible
from tests.integration.test_eda import java_env, wait_for

INFO = "defender.endpoint.mde_machine_info"
ACTION = "defender.endpoint.mde_machine_action"
HUNT = "defender.endpoint.mde_advanced_hunting"
PLUGIN = "defender.endpoint.mde_machines"
GROUP = "group/defender.endpoint.mde"
ANALYST = "analyst@contoso.onmicrosoft.com"
CODE = re.compile(r"needs a user to sign in\. To sign in, use a web browser to open the page (\S+) and enter the code "
                  r"(\w+) to authenticate")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def admin(emulator, name, body=None, method="POST"):
    resp = requests.request(method, "%s/_emulator/%s" % (emulator.url, name), json=body, verify=emulator.ca_path,
                            timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def user_env(emulator, app="analyst"):
    """The public client app and its tenant; no secret at all: the analyst signs in."""
    return {"MDE_AUTH_MODE": "device_code", "MDE_CLIENT_ID": emulator.apps[app]["client_id"]}


def token_requests(emulator):
    return [e for e in emulator.log if e["family"] == "token"]


def grants(emulator):
    return [e["body"].get("grant_type") for e in token_requests(emulator)]


def device_code_requests(emulator):
    return [e for e in emulator.log if e["path"].endswith("/oauth2/v2.0/devicecode")]


def api_calls(emulator):
    return [e for e in emulator.log if e["family"] not in ("token", "discovery", "other", "managed_identity")
            and not e["path"].endswith("/devicecode")]


def user_cache(ansible):
    return os.path.join(ansible.cache_dir, "user_tokens.json")


def refresh_tokens(ansible):
    """The refresh tokens MSAL keeps in the private cache: what must never reach any output."""
    with open(user_cache(ansible)) as f:
        entries = json.load(f)
    found = []
    for entry in entries.values():
        cache = json.loads(entry["msal_cache"])
        found += [rt["secret"] for rt in cache.get("RefreshToken", {}).values()]
    return found


@pytest.fixture
def fast_sign_in(emulator):
    """Entra ID polls every 5 s; the emulator is told to answer every second, and restored afterwards."""
    admin(emulator, "devicecode/config", {"interval": 1, "expires_in": 900, "auto_approve": None})
    yield
    admin(emulator, "devicecode/config", {"interval": 5, "expires_in": 900, "auto_approve": None, "slow_down": 0})


def hosts_inventory(tmp_path, names):
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(names) + "\n")
    return str(path)


def test_one_device_code_sign_in_serves_a_play_with_forks_both_apis_and_later_runs(emulator, tmp_path, fast_sign_in):
    ansible = Ansible(emulator, tmp_path, app="analyst")
    machines = emulator.machines[:4]
    inventory = hosts_inventory(tmp_path, ["h%d" % i for i in range(4)])
    tasks = [
        {"name": "info", INFO: {"machine_id": "{{ ids[inventory_hostname] }}"}},
        {"name": "hunt", HUNT: {"query": "DeviceInfo | count"}},
        {"name": "isolate", ACTION: {"machine_id": "{{ ids[inventory_hostname] }}", "action": "isolate",
                                     "comment": "INC-16", "wait": False}},
    ]
    plays = [{"name": "as the analyst", "hosts": "all", "gather_facts": False,
              "vars": {"ids": dict(("h%d" % i, m["id"]) for i, m in enumerate(machines))}, "tasks": tasks}]
    run = ansible.start_playbook(plays=plays, inventory=inventory, forks=4, env=user_env(emulator),
                                 extra_args=["-vvvv"])
    found = run.wait_for(CODE.pattern)
    uri, code = found.group(1), found.group(2)
    device_codes = list(emulator.user_auth.flows)  # the secret half of the flow, which MSAL polls with
    assert uri == emulator.url + "/devicelogin"
    # Nothing reached the API before the analyst signed in.
    assert not api_calls(emulator)
    admin(emulator, "devicecode/approve", {"user_code": code, "user": ANALYST})
    result = run.finish()
    assert result.rc == 0, result
    for i in range(4):
        host = "h%d" % i
        assert [m["id"] for m in result.task("info", host)["machines"]] == [machines[i]["id"]]
        assert result.task("hunt", host)["results"] == [{"Count": len(emulator.machines)}]
    # The sign-in message was shown once, for one fork; the others waited for it and used it.
    assert len(CODE.findall(result.stderr)) == 1, result.stderr
    assert len(device_code_requests(emulator)) == 1
    assert DEVICE_GRANT in grants(emulator)
    # One sign-in gave both APIs' tokens: Graph's came through the refresh token, not a second sign-in.
    assert grants(emulator).count("refresh_token") == 1
    # In user context the Action center names the analyst.
    actions = [a for a in emulator.machine_actions if a["requestorComment"] == "INC-16"]
    assert len(actions) == 4 and {a["requestor"] for a in actions} == {ANALYST}
    # MSAL's cache with the refresh token is private; the refresh token is in no output, even at -vvvv.
    mode = os.stat(user_cache(ansible)).st_mode
    assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(os.stat(ansible.cache_dir).st_mode) == 0o700
    secrets = refresh_tokens(ansible)
    assert secrets and device_codes
    for secret in secrets + device_codes:
        assert secret not in result.stdout and secret not in result.stderr

    # A later run signs in silently, from the saved access tokens: no message, no call to Entra ID.
    emulator.clear_log()
    again = ansible.playbook(plays=plays, inventory=inventory, forks=4, env=user_env(emulator), extra_args=["-vvvv"])
    assert again.rc == 0, again
    assert not CODE.search(again.stderr) and not device_code_requests(emulator) and not token_requests(emulator)

    # After the access tokens expire, the refresh token gets new ones: still no message.
    emulator.expire_tokens()
    emulator.clear_log()
    refreshed = ansible.playbook(plays=plays, inventory=inventory, forks=4, env=user_env(emulator),
                                 extra_args=["-vvvv"])
    assert refreshed.rc == 0, refreshed
    assert not CODE.search(refreshed.stderr) and not device_code_requests(emulator)
    # The API refused the expired token once per fork; the first fork to refresh did it for all (one refresh per API).
    assert grants(emulator) == ["refresh_token", "refresh_token"], grants(emulator)
    assert {e["status"] for e in api_calls(emulator)} <= {200, 401}
    for secret in refresh_tokens(ansible) + secrets:
        assert secret not in refreshed.stdout and secret not in refreshed.stderr


def test_a_revoked_refresh_token_asks_for_a_new_sign_in(emulator, tmp_path, fast_sign_in):
    ansible = Ansible(emulator, tmp_path, app="analyst")
    admin(emulator, "devicecode/config", {"interval": 1, "auto_approve": ANALYST})
    tasks = [{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}}]
    first = ansible.playbook(tasks=tasks, env=user_env(emulator))
    assert first.rc == 0 and len(CODE.findall(first.stderr)) == 1, first
    emulator.expire_tokens()
    admin(emulator, "revoke_refresh_tokens", {"user": ANALYST})
    emulator.clear_log()
    second = ansible.playbook(tasks=tasks, env=user_env(emulator))
    assert second.rc == 0, second
    # The refresh token was tried, refused, and the analyst was asked to sign in again.
    assert grants(emulator)[0] == "refresh_token" and DEVICE_GRANT in grants(emulator)
    assert len(CODE.findall(second.stderr)) == 1 and len(device_code_requests(emulator)) == 1


def read_then_isolate(emulator, tmp_path, app, user, more=()):
    """As ``user`` signed in to ``app``: read a machine (allowed), then isolate it (refused with 403, nothing requested),
    then the tasks ``more``. Returns the run's result and the isolate task's."""
    ansible = Ansible(emulator, tmp_path, app=app)
    admin(emulator, "devicecode/config", {"interval": 1, "auto_approve": user})
    machine = emulator.machines[0]
    result = ansible.playbook(tasks=[
        {"name": "read", INFO: {"machine_id": machine["id"]}},
        {"name": "isolate", ACTION: {"machine_id": machine["id"], "action": "isolate", "comment": "x"},
         "ignore_errors": True},
    ] + list(more), env=user_env(emulator, app))
    assert [m["id"] for m in result.task("read")["machines"]] == [machine["id"]], result
    assert not [a for a in emulator.machine_actions if a["machineId"] == machine["id"] and a["type"] == "Isolate"]
    isolate = result.task("isolate")
    assert isolate["failed"] and isolate["status"] == 403, isolate
    return result, isolate


def test_a_delegated_403_names_the_delegated_permission(emulator, tmp_path, fast_sign_in):
    result, isolate = read_then_isolate(emulator, tmp_path, "analyst_readonly", ANALYST, more=[
        {"name": "hunt", HUNT: {"query": "DeviceInfo | count"}, "ignore_errors": True}])
    assert "delegated permission Machine.Isolate" in isolate["msg"] and "Machine.Isolate" in isolate["permission"]
    assert "application permission" not in isolate["msg"]
    # Nothing consented for Microsoft Graph: Entra ID refuses the token, and no second sign-in is asked for.
    hunt = result.task("hunt")
    assert hunt["failed"] and "AADSTS65001" in hunt["msg"], hunt
    assert "runHuntingQuery needs the Microsoft Graph delegated permission ThreatHunting.Read.All" in hunt["msg"]
    assert len(device_code_requests(emulator)) == 1


def test_the_users_defender_role_is_checked_too(emulator, tmp_path, fast_sign_in):
    """In user context the app's delegated permission is not enough: the responder (Defender role permissions View
    data and Alerts investigation only) may read and triage, not contain."""
    _result, isolate = read_then_isolate(emulator, tmp_path, "analyst", "responder@contoso.onmicrosoft.com")
    assert "role permission 'Active remediation actions'" in isolate["msg"] and "a Defender role" in isolate["msg"]


def test_a_graph_403_in_user_context_names_the_graph_delegated_permission(emulator, tmp_path, fast_sign_in):
    emulator.add_app("analyst_incidents", public_client=True, delegated=["Machine.Read", "SecurityIncident.Read.All"])
    ansible = Ansible(emulator, tmp_path, app="analyst_incidents")
    admin(emulator, "devicecode/config", {"interval": 1, "auto_approve": ANALYST})
    result = ansible.playbook(tasks=[{"name": "hunt", HUNT: {"query": "DeviceInfo | count"}, "ignore_errors": True}],
                              env=user_env(emulator, "analyst_incidents"))
    hunt = result.task("hunt")
    assert hunt["failed"] and hunt["status"] == 403, hunt
    assert "Microsoft Graph delegated permission ThreatHunting.Read.All" in hunt["msg"]
    assert "Missing scope permissions on the request" in hunt["msg"]
    # A Graph module's own permission keeps its Graph name in user context (Graph has no ".All"-less delegated form).
    incident = str(emulator.alerts[0]["incidentId"])
    emulator.clear_log()
    result = ansible.playbook(tasks=[{"name": "assign", "defender.endpoint.mde_incident": {
        "incident_id": incident, "assigned_to": "analyst@contoso.onmicrosoft.com"}, "ignore_errors": True}],
        env=user_env(emulator, "analyst_incidents"))
    assign = result.task("assign")
    assert assign["failed"] and assign["status"] == 403, assign
    assert "delegated permission SecurityIncident.ReadWrite.All" in assign["msg"]
    assert not re.search(r"SecurityIncident\.ReadWrite(?!\.All)", assign["msg"])
    assert assign["permission"] == "SecurityIncident.ReadWrite.All"


def test_a_sign_in_nobody_completes_fails_every_fork_with_one_code(emulator, tmp_path, fast_sign_in):
    """The forks waiting for a sign-in that expires fail with its message: no fork shows a code of its own."""
    ansible = Ansible(emulator, tmp_path, app="analyst")
    # Long enough for the other forks to be waiting on the lock before the code expires, even on a loaded machine.
    admin(emulator, "devicecode/config", {"interval": 1, "expires_in": 8})
    inventory = hosts_inventory(tmp_path, ["h0", "h1", "h2"])
    result = ansible.playbook(plays=[{"name": "p", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}, "ignore_errors": True}]}],
        inventory=inventory, forks=3, env=user_env(emulator))
    assert len(CODE.findall(result.stderr)) == 1 and len(device_code_requests(emulator)) == 1, result.stderr
    messages = [result.task("info", h)["msg"] for h in ("h0", "h1", "h2")]
    assert all("Nobody signed in with the code" in m for m in messages), messages
    assert sum("the sign-in another task of this run asked for" in m for m in messages) == 2
    assert not api_calls(emulator)


def test_nobody_signing_in_fails_the_task_with_a_clear_message(emulator, tmp_path, fast_sign_in):
    ansible = Ansible(emulator, tmp_path, app="analyst")
    admin(emulator, "devicecode/config", {"interval": 1, "expires_in": 3})
    result = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]},
                                      "ignore_errors": True}], env=user_env(emulator))
    info = result.task("info")
    assert info["failed"] and "Nobody signed in with the code" in info["msg"] and "run the task again" in info["msg"]
    assert not api_calls(emulator)


def test_polling_slows_down_when_entra_id_says_so(emulator, tmp_path, fast_sign_in):
    """RFC 8628 slow_down: the next polls wait 5 s longer; the sign-in still completes."""
    ansible = Ansible(emulator, tmp_path, app="analyst")
    admin(emulator, "devicecode/config", {"interval": 1, "slow_down": 1})
    run = ansible.start_playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}}],
                                 env=user_env(emulator))
    code = run.wait_for(CODE.pattern).group(2)
    wait_for(lambda: grants(emulator).count(DEVICE_GRANT) >= 2, time.time() + 30, "the poll after slow_down")
    admin(emulator, "devicecode/approve", {"user_code": code})
    result = run.finish()
    assert result.rc == 0, result
    polls = [e["time"] for e in token_requests(emulator) if e["body"].get("grant_type") == DEVICE_GRANT]
    assert polls[1] - polls[0] >= 5.5, polls   # 1 s interval + 5 s after slow_down


def test_the_inventory_shows_the_sign_in_on_stderr_and_shares_it_with_the_play(emulator, tmp_path, fast_sign_in):
    ansible = Ansible(emulator, tmp_path, app="analyst")
    admin(emulator, "devicecode/config", {"interval": 1, "auto_approve": ANALYST})
    result = ansible.inventory({"plugin": PLUGIN, "hostnames": ["id"]}, env=user_env(emulator))
    assert result.rc == 0, result
    # The JSON on stdout is whole; the message went to stderr.
    onboarded = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded"]
    assert len(result.data["_meta"]["hostvars"]) == len(onboarded)
    assert len(CODE.findall(result.stderr)) == 1 and "mde_machines" in result.stderr
    emulator.clear_log()
    play = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}}],
                            env=user_env(emulator))
    assert play.rc == 0 and not CODE.search(play.stderr) and not device_code_requests(emulator), play


def test_the_inventory_prefers_mde_variables_to_azure_ones(ansible, emulator):
    """AKS puts AZURE_CLIENT_ID in every pod; the credential's MDE_CLIENT_ID wins, as it does for the modules."""
    result = ansible.inventory({"plugin": PLUGIN, "hostnames": ["id"]}, env={
        "AZURE_CLIENT_ID": "11111111-1111-1111-1111-111111111111", "AZURE_TENANT_ID": "contoso.example",
        "AZURE_FEDERATED_TOKEN_FILE": "/nonexistent/token"})
    assert result.rc == 0, result
    assert {e["client_id"] for e in token_requests(emulator)} == {emulator.apps["full"]["client_id"]}


# -- managed identity ------------------------------------------------------------------------------------------
def managed_identity_env(emulator, **extra):
    """No tenant, no client, no secret: the platform's endpoint, as MSAL finds it in the environment."""
    env = {"MDE_AUTH_MODE": "managed_identity", "MDE_TENANT_ID": None, "MDE_CLIENT_ID": None,
           "MDE_CLIENT_SECRET": None}
    env.update(extra)
    return env


def mi_requests(emulator):
    return [e for e in emulator.log if e["family"] == "managed_identity"]


def test_managed_identity_through_the_instance_metadata_service(ansible, emulator, tmp_path):
    system = emulator.config()["managed_identities"]["system"]
    result = ansible.playbook(tasks=[
        {"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}},
        {"name": "hunt", HUNT: {"query": "DeviceInfo | count"}},
        {"name": "info again", INFO: {"machine_id": emulator.machines[1]["id"]}},
    ], env=managed_identity_env(emulator, AZURE_POD_IDENTITY_AUTHORITY_HOST=emulator.url), extra_args=["-vvvv"])
    assert result.rc == 0, result
    assert result.task("hunt")["results"] == [{"Count": len(emulator.machines)}]
    asked = mi_requests(emulator)
    # One token per resource for the whole play, from IMDS, for the system-assigned identity.
    assert sorted(e["query"]["resource"] for e in asked) == ["https://api.securitycenter.microsoft.com",
                                                             "https://graph.microsoft.com"]
    assert all(e["path"] == "/metadata/identity/oauth2/token" and "client_id" not in e["query"] for e in asked)
    assert not token_requests(emulator)
    assert {e["client_id"] for e in api_calls(emulator)} == {system["client_id"]}


def test_a_user_assigned_identity_through_the_app_service_endpoint(ansible, emulator):
    config = emulator.config()
    automation, readonly = config["managed_identities"]["automation"], config["managed_identities"]["mi_readonly"]
    machine = emulator.machines[0]
    env = managed_identity_env(emulator, IDENTITY_ENDPOINT=config["identity_endpoint"],
                               IDENTITY_HEADER=config["identity_header"], MDE_CLIENT_ID=automation["client_id"])
    result = ansible.playbook(tasks=[{"name": "isolate", ACTION: {"machine_id": machine["id"], "action": "isolate",
                                                                  "comment": "mi", "wait": False}}],
                              env=env, extra_args=["-vvvv"])
    assert result.rc == 0, result
    asked = mi_requests(emulator)
    assert [e["query"].get("client_id") for e in asked] == [automation["client_id"]]
    assert config["identity_header"] not in result.stdout + result.stderr
    assert {e["client_id"] for e in api_calls(emulator)} == {automation["client_id"]}
    # An identity without the permission gets the application permission named.
    emulator.clear_log()
    other = emulator.machines[1]
    denied = ansible.playbook(tasks=[{"name": "isolate", ACTION: {"machine_id": other["id"], "action": "isolate",
                                                                  "comment": "mi"}, "ignore_errors": True}],
                              env=dict(env, MDE_CLIENT_ID=readonly["client_id"]))
    task = denied.task("isolate")
    assert task["failed"] and task["status"] == 403 and "application permission Machine.Isolate" in task["msg"]


def test_an_unknown_user_assigned_identity_fails_clearly(ansible, emulator):
    env = managed_identity_env(emulator, AZURE_POD_IDENTITY_AUTHORITY_HOST=emulator.url,
                               MDE_CLIENT_ID="00000000-0000-0000-0000-0000000000aa")
    result = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]},
                                      "ignore_errors": True}], env=env)
    info = result.task("info")
    assert info["failed"] and "user-assigned managed identity 00000000-0000-0000-0000-0000000000aa" in info["msg"]
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST" in info["msg"]
    assert not api_calls(emulator)


# -- workload identity federation ------------------------------------------------------------------------------
def federated_env(emulator, token_file):
    """What the AKS workload identity webhook injects; no MDE_ variable and no auth_mode: the file implies it."""
    app = emulator.apps["workload"]
    return {"MDE_TENANT_ID": None, "MDE_CLIENT_ID": None, "MDE_CLIENT_SECRET": None, "MDE_AUTHORITY_HOST": None,
            "AZURE_TENANT_ID": emulator.tenant_id, "AZURE_CLIENT_ID": app["client_id"],
            "AZURE_AUTHORITY_HOST": emulator.url + "/", "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}


def test_workload_identity_sends_the_federated_token_as_the_client_assertion(ansible, emulator, tmp_path):
    subject = emulator.apps["workload"]["federated"][0]["subject"]
    token = admin(emulator, "federated_token", {"subject": subject})["token"]
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(token)
    result = ansible.playbook(tasks=[
        {"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}},
        {"name": "hunt", HUNT: {"query": "DeviceInfo | count"}},
    ], env=federated_env(emulator, token_file), extra_args=["-vvvv"])
    assert result.rc == 0, result
    asked = token_requests(emulator)
    assert len(asked) == 2 and all(e["body"]["client_assertion_type"] ==
                                   "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" for e in asked)
    assert {e["client_id"] for e in asked} == {emulator.apps["workload"]["client_id"]}
    assert token not in result.stdout + result.stderr


def test_a_federated_token_for_another_subject_is_refused_with_entra_ids_reason(ansible, emulator, tmp_path):
    token = admin(emulator, "federated_token", {"subject": "system:serviceaccount:other:intruder"})["token"]
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(token)
    result = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]},
                                      "ignore_errors": True}], env=federated_env(emulator, token_file))
    info = result.task("info")
    assert info["failed"] and "AADSTS700213" in info["msg"] and "workload identity" in info["msg"]
    assert token not in result.stdout + result.stderr
    assert not api_calls(emulator)


# -- Event-Driven Ansible --------------------------------------------------------------------------------------
def test_the_event_source_signs_in_once_and_a_restart_is_silent(emulator, tmp_path, fast_sign_in):
    """The real ansible-rulebook with the mde_alerts source in user context: the sign-in message on its standard
    error at start, the polls with the analyst's token; a restarted rulebook signs in silently from the cache."""
    admin(emulator, "devicecode/config", {"interval": 1, "auto_approve": ANALYST})
    rulebook = tmp_path / "rulebook.yml"
    rulebook.write_text("""---
- name: Watch alerts as the analyst
  hosts: all
  sources:
    - defender.endpoint.mde_alerts:
        interval: 1
        initial_lookback: 1h
        checkpoint_path: %s
  rules:
    - name: Print
      condition: event.mde_alert is defined
      action:
        print_event:
          pretty: false
""" % (tmp_path / "checkpoint.json"))
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    env = Ansible(emulator, tmp_path, app="analyst").env(ANSIBLE_STDOUT_CALLBACK=None, ANSIBLE_CALLBACK_PLUGINS=None,
                                                         **dict(user_env(emulator), **java_env()))
    outputs = []
    for run in range(2):
        emulator.clear_log()
        proc = subprocess.Popen([os.path.join(BIN, "ansible-rulebook"), "--rulebook", str(rulebook), "-i",
                                 str(tmp_path / "inventory.yml")], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_for(lambda: len([e for e in emulator.log if e["path"] == "/api/alerts"]) >= 2, time.time() + 90,
                     "two polls", proc)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            outputs.append(proc.communicate(timeout=30)[0])
        polls = [e for e in emulator.log if e["path"] == "/api/alerts"]
        assert {e["client_id"] for e in polls} == {emulator.apps["analyst"]["client_id"]}
        assert {e["status"] for e in polls} == {200}
        assert len(device_code_requests(emulator)) == (1 if run == 0 else 0)
    assert "event source needs a user to sign in" in outputs[0] and "enter the code" in outputs[0]
    assert "sign in" not in outputs[1]


def test_an_authority_that_sends_escape_codes_in_its_sign_in_message_cannot_forge_output(emulator, tmp_path,
                                                                                         fast_sign_in):
    """The prompt is built from verification_uri and user_code; the authority's free text is never shown."""
    ansible = Ansible(emulator, tmp_path, app="analyst")
    emulator.inject_fault(r"/oauth2/v2.0/devicecode$", "tamper", fields={
        "message": "\x1b[2J\x1b[Hfatal: [localhost]: FAILED! => open http://evil.example and type your password"})
    run = ansible.start_playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]}}],
                                 env=user_env(emulator))
    code = run.wait_for(CODE.pattern).group(2)
    admin(emulator, "devicecode/approve", {"user_code": code})
    result = run.finish()
    assert result.rc == 0, result
    output = result.stdout + result.stderr
    assert "\x1b" not in output and "evil.example" not in output and "FAILED! =>" not in output
    assert "open the page %s/devicelogin and enter the code %s" % (emulator.url, code) in output
    # A verification page that is not https is refused before anyone is asked to sign in.
    emulator.inject_fault(r"/oauth2/v2.0/devicecode$", "tamper", fields={"verification_uri": "http://evil.example/x"})
    env = dict(user_env(emulator), MDE_TOKEN_CACHE_DIR=str(tmp_path / "other"))
    refused = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_id": emulator.machines[0]["id"]},
                                       "ignore_errors": True}], env=env)
    info = refused.task("info")
    assert info["failed"] and "not a plain https:// URL" in info["msg"] and "no sign-in was started" in info["msg"]
    assert not CODE.search(refused.stderr)
