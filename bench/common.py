"""What the benchmarks share: the repo paths and an environment that points Ansible at an emulator."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
BIN = os.path.join(ROOT, ".venv", "bin")


def collections_path():
    """The live source, linked as tests/conftest.py does, unless MDE_TEST_COLLECTIONS names another path."""
    given = os.environ.get("MDE_TEST_COLLECTIONS")
    if given:
        return given
    src = os.path.join(ROOT, ".build", "src")
    link = os.path.join(src, "ansible_collections", "defender", "endpoint")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    return src


def ansible_env(emulator, cache_dir, app="full", **extra):
    """Credentials only in MDE_* variables, as AWX injects them."""
    creds = emulator.apps[app]
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("MDE_", "AZURE_")))
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": os.path.join(BIN, "python"),
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        "MDE_TENANT_ID": emulator.tenant_id,
        "MDE_CLIENT_ID": creds["client_id"],
        "MDE_CLIENT_SECRET": creds["client_secret"],
        "MDE_API_URL": emulator.url,
        "MDE_AUTHORITY_HOST": emulator.url,
        "MDE_CA_PATH": emulator.ca_path,
        "MDE_TOKEN_CACHE_DIR": cache_dir,
    })
    env.update(dict((k, str(v)) for k, v in extra.items()))
    return env


def run_per_host_play(emulator, machine_ids, play_text, forks, scale, shared, workdir, play_name="play.yml"):
    """One ``ansible-playbook`` run of ``play_text`` over one host per machine (``mde_id``; an entry of
    ``machine_ids`` may instead be a dict of the host's variables), through the JSON callback; returns (the callback's
    document or None, the start, wall seconds)."""
    import json
    import subprocess
    import time
    inv = os.path.join(workdir, "hosts.ini")
    with open(inv, "w") as f:
        f.write("[targets]\n")
        for i, mid in enumerate(machine_ids):
            host_vars = mid if isinstance(mid, dict) else {"mde_id": mid}
            f.write("t%04d %s ansible_connection=local\n" % (i, " ".join("%s=%s" % kv for kv in sorted(host_vars.items()))))
    play = os.path.join(workdir, play_name)
    with open(play, "w") as f:
        f.write(play_text)
    env = ansible_env(emulator, os.path.join(workdir, "cache"), MDE_RATE_LIMIT_SCALE=scale,
                      ANSIBLE_STDOUT_CALLBACK="json_results",
                      ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "tests", "integration", "callback_plugins"))
    start = time.time()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv, play, "--forks", str(forks),
                           "-e", "shared_budget=%s" % ("true" if shared else "false")],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.time() - start
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    if data is None or "stats" not in data:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    return data, start, wall
