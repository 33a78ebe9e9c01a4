"""A controller Python without msal (requests present): every task fails at once, before any call, naming the
interpreter that runs it and the requirement; a ready token needs no msal. Real ansible-playbook runs under a Python
whose site-packages are the test venv's less msal."""
import glob
import os
import subprocess
import sys

import requests

from tests.integration.harness import BIN, Result, parse_json

INFO = "defender.endpoint.mde_machine_info"


def python_without(tmp_path, hidden):
    """A venv whose only packages are the test venv's, less ``hidden`` (their modules and dist-info)."""
    venv = tmp_path / "no-msal"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = glob.glob(str(venv / "lib" / "python*" / "site-packages"))[0]
    shadow = tmp_path / "shadow-site"
    shadow.mkdir()
    source = glob.glob(os.path.join(os.path.dirname(BIN), "lib", "python*", "site-packages"))[0]
    for name in os.listdir(source):
        if name.split("-")[0].split(".")[0].lower() in hidden:
            continue
        os.symlink(os.path.join(source, name), str(shadow / name))
    with open(os.path.join(site, "shadow.pth"), "w", encoding="utf-8") as handle:
        handle.write(str(shadow) + "\n")
    return str(venv / "bin" / "python")


def run(ansible, python, tasks, **env):
    args = ansible._playbook_args(tasks, None, False, False, None, None, (), "localhost", False)  # pylint: disable=protected-access
    proc = subprocess.run([python] + args, env=ansible.env(**env), capture_output=True, text=True, timeout=600,
                          cwd=str(ansible.tmp_path), check=False)
    return Result(proc, parse_json(proc.stdout))


def test_missing_msal_fails_every_task_at_once_naming_the_python_and_the_requirement(ansible, emulator, tmp_path):
    machine = emulator.machines[0]
    task = [{"name": "info", INFO: {"machine_id": machine["id"]}, "ignore_errors": True}]
    first = ansible.playbook(tasks=task)  # with msal: signs in, and the token is cached
    assert first.rc == 0 and not first.task("info").get("failed"), first
    python = python_without(tmp_path, {"msal"})
    assert subprocess.run([python, "-c", "import requests, ansible; import msal"], capture_output=True,
                          check=False).returncode == 1
    emulator.clear_log()
    token_requests = emulator.counters["token_requests"]
    result = run(ansible, python, task + [{"name": "again", INFO: {"machine_id": machine["id"]}}])
    info = result.task("info")
    # The cached token would have served this read: the task fails all the same, before anything is sent.
    assert info["failed"] and info["msg"] == (
        "Failed to import the required Python library (msal>=1.29.0) on the Python that runs this task, %s "
        "(Python %d.%d.%d). Install it for that interpreter: %s -m pip install 'msal>=1.29.0' (the collection's "
        "requirements.txt lists what it needs)." % ((python,) + tuple(sys.version_info[:3]) + (python,))), info
    assert result.task("again")["failed"] and "Traceback" not in result.stderr
    assert emulator.log == [] and emulator.counters["token_requests"] == token_requests

    # A ready token needs no msal: the same Python runs the task.
    app = emulator.apps["full"]
    token = requests.post("%s/%s/oauth2/v2.0/token" % (emulator.url, emulator.tenant_id), verify=emulator.ca_path, data={
        "grant_type": "client_credentials", "client_id": app["client_id"], "client_secret": app["client_secret"],
        "scope": "https://api.securitycenter.microsoft.com/.default"}, timeout=30).json()["access_token"]
    emulator.clear_log()
    ready = run(ansible, python, [{"name": "info", INFO: {"machine_id": machine["id"]}}],
                MDE_ACCESS_TOKEN=token, MDE_CLIENT_SECRET=None, MDE_CLIENT_ID=None)
    assert ready.rc == 0 and ready.task("info")["machines"][0]["id"] == machine["id"], ready
    assert [e["path"] for e in emulator.log] == ["/api/machines/%s" % machine["id"]]


def test_the_inventory_without_msal_says_so_before_any_call(ansible, emulator, tmp_path):
    config = tmp_path / "mde.yml"
    config.write_text("plugin: defender.endpoint.mde_machines\n")
    first = ansible.inventory({"plugin": "defender.endpoint.mde_machines"})  # with msal: the token is cached
    assert first.rc == 0, first
    python = python_without(tmp_path, {"msal"})
    emulator.clear_log()
    proc = subprocess.run([python, os.path.join(BIN, "ansible-inventory"), "-i", str(config), "--list"],
                          env=ansible.env(), capture_output=True, text=True, timeout=600, cwd=str(tmp_path), check=False)
    said = " ".join(proc.stderr.split())
    assert ("The Python library msal>=1.29.0 is required to use the defender.endpoint.mde_machines inventory plugin: "
            "the Python that runs Ansible, %s, does not have it. Install it there: %s -m pip install 'msal>=1.29.0'."
            % (python, python)) in said, proc.stderr
    assert emulator.log == []
