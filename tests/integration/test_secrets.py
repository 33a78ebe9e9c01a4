"""Secrets never leak.

client_secret, client_certificate_password, access_token and the tokens Entra ID issued must not appear in -vvvv
output, task results, --diff output, the JSON callback's output, exception texts, the inventory cache, or any file
written during the runs other than the 0600 token cache. Every module and the inventory plugin run with -vvvv and
--diff; HOME, Ansible's local and remote temp directories and its log file all point into the test's own directory,
so "every file written" is every file under it.
"""
import json
import os
import stat
import uuid

INFO = "defender.endpoint.mde_machine_info"
ACTION = "defender.endpoint.mde_machine_action"
ACTION_INFO = "defender.endpoint.mde_machine_action_info"
ALERT_INFO = "defender.endpoint.mde_alert_info"
ALERT = "defender.endpoint.mde_alert"
INDICATOR = "defender.endpoint.mde_indicator"
INDICATOR_INFO = "defender.endpoint.mde_indicator_info"
MACHINE = "defender.endpoint.mde_machine"
HUNTING = "defender.endpoint.mde_advanced_hunting"
PLUGIN = "defender.endpoint.mde_machines"
GROUP = "group/defender.endpoint.mde"

# A distinctive password for the certificate's key (the seed app's one is a readable word).
CERT_PASSWORD = "pw-%s" % uuid.uuid4().hex
BAD_TOKEN = "probe-rejected-token-%s" % uuid.uuid4().hex


def probe_apps(emulator):
    """Two extra apps with every permission: one with a secret, one with a password-protected certificate."""
    roles = emulator.apps["full"]["roles"]
    if "secret_probe" not in emulator.apps:
        emulator.add_app("secret_probe", roles, secret=True)
    if "cert_probe" not in emulator.apps:
        emulator.add_app("cert_probe", roles, secret=False, cert=True, cert_password=CERT_PASSWORD)
    return emulator.apps["secret_probe"], emulator.apps["cert_probe"]


def contained_env(tmp_path):
    """Every place Ansible writes to, inside the test's directory; -vvvv also goes to a log file there."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_KEEP_REMOTE_FILES": "0",
        "ANSIBLE_LOG_PATH": str(tmp_path / "ansible.log"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }


def module_tasks(emulator, machine, alert):
    """Every module, the state-changing ones with --diff, plus failures whose texts come from exceptions."""
    return [
        {"name": "machine info", INFO: {"machine_id": machine["id"]}},
        {"name": "isolate", ACTION: {"machine_id": machine["id"], "action": "isolate"}},
        {"name": "action info", ACTION_INFO: {"machine_id": machine["id"]}},
        {"name": "alert info", ALERT_INFO: {"alert_id": alert["id"]}},
        {"name": "alert update", ALERT: {"alert_id": alert["id"], "status": "InProgress",
                                         "comment": "secrets probe"}},
        {"name": "indicator", INDICATOR: {"indicator_value": "secrets-probe.example.com", "indicator_type": "DomainName",
                                          "action": "Block", "title": "probe", "description": "secrets probe"}},
        {"name": "indicators", INDICATOR: {"indicators": [
            {"indicator_value": "203.0.113.77", "indicator_type": "IpAddress", "action": "Block", "title": "probe",
             "description": "secrets probe"}]}},
        {"name": "indicator info", INDICATOR_INFO: {"indicator_type": ["DomainName"]}},
        {"name": "machine tags", MACHINE: {"machine_id": machine["id"], "tags": ["secrets-probe"]}},
        # api: mde: a ready access_token has the Defender audience only (Graph would refuse it, as in production).
        {"name": "hunting", HUNTING: {"query": "DeviceInfo | take 2", "api": "mde"}},
        {"name": "api error", ALERT: {"alert_id": "da000000000000000000_1", "status": "Resolved"},
         "ignore_errors": True},
        {"name": "config error", INFO: {"api_url": "http://127.0.0.1:1"}, "ignore_errors": True},
    ]


def with_json(run):
    """-vvvv lines come before the JSON callback's document on stdout: read the document from its first line."""
    if run.data is None:
        start = run.stdout.find("\n{\n")
        if start >= 0:
            run.data = json.loads(run.stdout[start + 1:])
    return run


def all_files(root):
    for dirpath, _dirs, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield path


def leaks(text, secrets):
    return [label for label, value in secrets.items() if value and value in text]


def test_no_secret_in_any_output_or_file(ansible, emulator, tmp_path):
    secret_app, cert_app = probe_apps(emulator)
    secret = secret_app["client_secret"]
    access_token = emulator.token_for("full")
    machine = [m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]][4]
    alert = emulator.alerts[0]
    env = contained_env(tmp_path)
    runs = {}

    # 1. client_secret from the environment (as AWX injects it): every module, -vvvv --diff.
    runs["secret"] = ansible.playbook(tasks=module_tasks(emulator, machine, alert), diff=True, app="secret_probe",
                                      extra_args=["-vvvv"], env=env)
    # 2. a certificate and its password as module options (through module_defaults and lookups, so the
    #    playbook file itself holds neither): every module again.
    plays = [{"name": "certificate", "hosts": "localhost", "gather_facts": False,
              "module_defaults": {GROUP: {
                  "client_certificate_path": "{{ lookup('ansible.builtin.env', 'PROBE_CERT') }}",
                  "client_certificate_password": "{{ lookup('ansible.builtin.env', 'PROBE_PASSWORD') }}"}},
              "tasks": module_tasks(emulator, machine, alert)}]
    runs["certificate"] = ansible.playbook(plays=plays, diff=True, app="cert_probe", extra_args=["-vvvv"],
                                           env=dict(env, MDE_CLIENT_CERTIFICATE_PATH=None,
                                                    MDE_CLIENT_CERTIFICATE_PASSWORD=None,
                                                    PROBE_CERT=cert_app["cert_path"], PROBE_PASSWORD=CERT_PASSWORD))
    # 3. a ready access token as an option, and a rejected one (its failure text comes from the client's exception).
    plays = [{"name": "token", "hosts": "localhost", "gather_facts": False,
              "module_defaults": {GROUP: {"access_token": "{{ lookup('ansible.builtin.env', 'PROBE_TOKEN') }}"}},
              "tasks": module_tasks(emulator, machine, alert) + [
                  {"name": "rejected token", INFO: {"access_token": "{{ lookup('ansible.builtin.env', 'PROBE_BAD') }}",
                                                    "machine_id": machine["id"]}, "ignore_errors": True}]}]
    runs["token"] = ansible.playbook(plays=plays, diff=True, extra_args=["-vvvv"],
                                     env=dict(env, MDE_CLIENT_SECRET=None, PROBE_TOKEN=access_token,
                                              PROBE_BAD=BAD_TOKEN))
    # 4. the inventory plugin with its cache on, once per kind of credential (from the environment, as AWX does).
    cache_dir = tmp_path / "inventory-cache"
    config = {"plugin": PLUGIN, "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
              "cache_connection": str(cache_dir), "cache_timeout": 600}
    inv_env = dict(env, ANSIBLE_INVENTORY_ENABLED=PLUGIN)
    runs["inventory secret"] = ansible.inventory(config, app="secret_probe", extra_args=["--list", "-vvvv"],
                                                 env=inv_env)
    runs["inventory certificate"] = ansible.inventory(
        config, app="cert_probe", extra_args=["--list", "--flush-cache", "-vvvv"], env=inv_env)
    runs["inventory token"] = ansible.inventory(
        config, extra_args=["--list", "--flush-cache", "-vvvv"],
        env=dict(inv_env, MDE_CLIENT_SECRET=None, MDE_ACCESS_TOKEN=access_token))
    # A cache of its own, so that the rejected token must be used (nothing to fall back to, on every core).
    runs["inventory rejected token"] = ansible.inventory(
        dict(config, cache_connection=str(tmp_path / "inventory-cache-rejected")), extra_args=["--list", "-vvvv"],
        env=dict(inv_env, MDE_CLIENT_SECRET=None, MDE_ACCESS_TOKEN=BAD_TOKEN, ANSIBLE_INVENTORY_UNPARSED_FAILED="true"))

    for run in runs.values():
        with_json(run)
    # The runs did what they should: otherwise finding nothing would prove nothing.
    for name in ("secret", "certificate", "token"):
        run = runs[name]
        assert run.rc == 0, (name, [(t, r.get("msg")) for t, r in run.tasks().items() if r.get("failed")])
        tasks = run.tasks()
        assert "isolate" in tasks, (name, run)
        assert tasks["isolate"].get("changed") is (name == "secret"), (name, tasks["isolate"])
        assert not any(res.get("failed") for task, res in tasks.items() if task not in (
            "api error", "config error", "rejected token")), (name, run)
        assert tasks["api error"]["failed"] and "da000000000000000000_1" in tasks["api error"]["msg"]
        assert tasks["config error"]["failed"] and "api_url" in tasks["config error"]["msg"]
        assert "diff" in tasks["alert update"] or name != "secret"
        # -vvvv shows every task's arguments (the modules run in the controller's worker: no module is sent anywhere).
        assert '"module_args"' in run.stdout and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout
    assert "access token was rejected" in runs["token"].task("rejected token")["msg"]
    for name in ("inventory secret", "inventory certificate", "inventory token"):
        assert runs[name].rc == 0, runs[name]
        assert len(runs[name].data["_meta"]["hostvars"]) > 40
    assert runs["inventory rejected token"].rc != 0
    assert runs["inventory rejected token"].said("access token was rejected")

    # The issued tokens: every one that Entra ID (the emulator) issued is in the 0600 token cache, and only there.
    cache = os.path.join(ansible.cache_dir, "tokens.json")
    st = os.stat(cache)
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(os.stat(ansible.cache_dir).st_mode) == 0o700
    with open(cache) as f:
        entries = json.load(f)
    issued = [e["access_token"] for e in entries.values()]
    assert len(issued) == emulator.counters["token_requests"] == 2  # one per app: every later run reused it

    secrets = {"client_secret": secret, "client_certificate_password": CERT_PASSWORD, "access_token": access_token,
               "access_token (its signature)": access_token.rsplit(".", 1)[1], "rejected access_token": BAD_TOKEN}
    for n, token in enumerate(issued):
        secrets["issued token %d" % n] = token
        secrets["issued token %d (its signature)" % n] = token.rsplit(".", 1)[1]

    # Every byte printed: stdout (the JSON callback with every task result, diff and invocation) and stderr (-vvvv).
    for name, run in runs.items():
        assert leaks(run.stdout, secrets) == [], (name, "stdout")
        assert leaks(run.stderr, secrets) == [], (name, "stderr")
        for task, res in run.tasks().items() if run.data and "plays" in run.data else []:
            assert leaks(json.dumps(res), secrets) == [], (name, task)
    # Every file written under the test's directory (the -vvvv log, the inventory cache, Ansible's temp files,
    # anything under HOME), except the token cache, which holds the issued tokens and nothing else.
    checked = []
    for path in all_files(tmp_path):
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if path == cache:
            assert leaks(text, dict((k, v) for k, v in secrets.items() if not k.startswith("issued"))) == [], path
            continue
        assert leaks(text, secrets) == [], path
        checked.append(os.path.relpath(path, str(tmp_path)))
    assert "ansible.log" in checked
    assert any(p.startswith("inventory-cache" + os.sep) for p in checked)
    log_text = (tmp_path / "ansible.log").read_text()
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in log_text  # -vvvv did show the module options, masked
    # the inventory cache holds machines only
    for path in all_files(cache_dir):
        with open(path) as f:
            assert "access_token" not in f.read()
