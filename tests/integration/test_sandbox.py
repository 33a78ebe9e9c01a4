"""The sandbox a user starts with `make emulator` (docs/sandbox.md): the env file it writes keeps every call of the
collection in the emulator, the emulator's command line says what to source and refuses a busy port in one sentence,
and a call that cannot connect names the host it tried."""
import os
import socket
import subprocess
import sys

from tests.integration.harness import ROOT, parse_json, Result

GRAPH_AND_API = [
    {"name": "hunt", "defender.endpoint.mde_advanced_hunting": {"query": "DeviceInfo | take 1"}},
    {"name": "machines", "defender.endpoint.mde_machine_info": {"machine_name": "ws-00000.contoso.local"}},
    {"name": "incidents", "defender.endpoint.mde_incident_info": {"limit": 1}},
]


def sourced_run(ansible, emulator, tasks, leftovers):
    """ansible-playbook started by a shell that sourced the emulator's env file, in an environment that has
    ``leftovers`` (what a user's shell may still hold from a real tenant) and none of the harness's MDE_ variables."""
    env = dict((k, v) for k, v in ansible.env().items() if not k.startswith(("MDE_", "AZURE_")))
    env.update(leftovers)
    args = ansible._playbook_args(tasks, None, False, False, None, None, (), "localhost", False)  # pylint: disable=protected-access
    script = 'source "$1" && shift && exec "$@"'
    proc = subprocess.run(["bash", "-c", script, "sandbox", emulator.env_path] + args, env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(ansible.tmp_path), check=False)
    return Result(proc, parse_json(proc.stdout))


def test_the_env_file_sends_the_api_graph_and_the_sign_in_to_the_emulator(ansible, emulator):
    text = open(emulator.env_path, encoding="utf-8").read()
    for name in ("MDE_API_URL", "MDE_GRAPH_URL", "MDE_AUTHORITY_HOST", "MDE_CA_PATH", "MDE_TENANT_ID", "MDE_CLIENT_ID",
                 "MDE_CLIENT_SECRET", "MDE_TOKEN_CACHE_DIR"):
        assert "\nexport %s=" % name in text, name
    # A shell that still holds a real tenant's token and sign-in mode: the env file's credential wins.
    leftovers = {"MDE_ACCESS_TOKEN": "a-real-token", "MDE_AUTH_MODE": "device_code", "MDE_CLOUD": "gcc"}
    result = sourced_run(ansible, emulator, GRAPH_AND_API, leftovers)
    assert result.rc == 0, result
    assert result.task("hunt")["results"] and result.task("machines")["machines"]
    paths = [(e["method"], e["path"]) for e in emulator.log]
    # mde_advanced_hunting goes to Graph by default: it reached the emulator, as did the incidents and the API.
    assert ("POST", "/v1.0/security/runHuntingQuery") in paths, paths
    assert ("GET", "/v1.0/security/incidents") in paths, paths
    assert ("GET", "/api/machines") in paths, paths
    assert emulator.counters["token_requests"] >= 2
    assert os.path.isdir(os.path.join(emulator.state_dir, "token-cache"))


def test_a_connection_that_cannot_be_made_names_the_host(ansible, emulator):
    """The issue's case: Graph's URL missing from the sandbox, so the call went to a host that does not resolve."""
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    hunt = "defender.endpoint.mde_advanced_hunting"
    result = ansible.playbook(tasks=[
        {"name": "unresolvable", hunt: {"query": "DeviceInfo | take 1", "graph_url": "https://graph.invalid"},
         "ignore_errors": True},
        {"name": "refused", hunt: {"query": "DeviceInfo | take 1", "graph_url": "https://127.0.0.1:%d" % port},
         "ignore_errors": True},
    ])
    unresolvable, refused = result.task("unresolvable"), result.task("refused")
    assert unresolvable["failed"] and "connection to graph.invalid:443 failed (" in unresolvable["msg"], unresolvable
    assert refused["failed"] and "connection to 127.0.0.1:%d failed (Connection refused)" % port in refused["msg"], refused
    assert not [e for e in emulator.log if e["path"].startswith("/v1.0/")]


def emulator_cli(args, timeout=60):
    return subprocess.Popen([sys.executable, "-m", "tests.emulator", "--machines", "5"] + args, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_command_line_prints_the_env_file_and_refuses_a_busy_port_in_one_sentence(tmp_path):
    first = emulator_cli(["--port", "0", "--state-dir", str(tmp_path / "one")])
    try:
        url = first.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        shown = []
        for line in first.stdout:
            shown.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        text = "".join(shown)
        env_path = str(tmp_path / "one" / "env")
        assert "source %s" % env_path in text and "export MDE_GRAPH_URL=%s\n" % url in text, text
        assert open(env_path, encoding="utf-8").read() in text
        ca_before = (tmp_path / "one" / "ca.pem").read_bytes()

        # A second emulator on the same port and the same state directory: one sentence, and nothing written.
        second = subprocess.run([sys.executable, "-m", "tests.emulator", "--port", str(port), "--state-dir",
                                 str(tmp_path / "one")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                check=False)
        assert second.returncode == 2
        assert second.stdout == ""
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert lines[0].startswith("Port %d on 127.0.0.1 is already in use" % port), lines
        assert "make emulator PORT=%d" % (port + 1) in lines[0]
        assert (tmp_path / "one" / "ca.pem").read_bytes() == ca_before
        # The same for a fresh state directory: not even created.
        third = subprocess.run([sys.executable, "-m", "tests.emulator", "--port", str(port), "--state-dir",
                                str(tmp_path / "two")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                               check=False)
        assert third.returncode == 2 and not (tmp_path / "two").exists()
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_the_seeded_tenant_has_new_alerts_of_every_severity_in_the_last_day(ansible, emulator):
    """The first playbook a user writes (New alerts of the last 24 hours, by severity) finds something in every
    severity, on a tenant seeded just now."""
    severities = ["Informational", "Low", "Medium", "High"]
    result = ansible.playbook(tasks=[
        {"name": severity, "defender.endpoint.mde_alert_info": {"severity": [severity], "status": ["New"],
                                                                "created_after": "24h"}}
        for severity in severities])
    assert result.rc == 0, result
    for severity in severities:
        alerts = result.task(severity)["alerts"]
        assert alerts and {a["severity"] for a in alerts} == {severity} and {a["status"] for a in alerts} == {"New"}
    # Each was asked of the API with a time filter (the emulator filtered, not the module).
    queries = [e["query"] for e in emulator.log if e["path"] == "/api/alerts"]
    assert len(queries) == 4 and all("alertCreationTime ge " in str(q) for q in queries), queries
