"""Run real ansible-playbook / ansible-inventory against the emulator and read what they did."""
import contextlib
import json
import os
import re
import subprocess
import textwrap
import threading
import time

import yaml

from tests import cores

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
# `make test` installs the built collection here; MDE_TEST_COLLECTIONS=.build/src runs the live source instead
# (tests/conftest.py links it there), which is what a developer iterating on one module wants.
COLLECTIONS = os.path.abspath(os.environ.get("MDE_TEST_COLLECTIONS") or os.path.join(ROOT, ".build", "collections"))


def parse_json(stdout):
    """The JSON document the command wrote, also when -vvvv wrote its lines before it (on stdout)."""
    try:
        return json.loads(stdout)
    except ValueError:
        start = stdout.rfind("\n{\n")
        try:
            return json.loads(stdout[start + 1:]) if start >= 0 else None
        except ValueError:
            return None


class Result:
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data

    def tasks(self, host="localhost"):
        """Per task name, the result for ``host`` (json callback output)."""
        out = {}
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                res = task.get("hosts", {}).get(host)
                if res is not None:
                    out[task["task"]["name"]] = res
        return out

    def task(self, name, host="localhost"):
        return self.tasks(host)[name]

    @property
    def messages(self):
        """stderr as whole messages. Before ansible-core 2.19 Ansible wraps a warning at 80 columns: a line of 40 to 80
        characters followed by one that starts no message of its own is joined with it."""
        out = []
        previous = ""
        for line in self.stderr.splitlines():
            wrapped = 40 <= len(previous) <= 80 and line.strip() and not line.startswith(("[", "ERROR", "<<<"))
            if wrapped and out:
                out[-1] += " " + line.strip()
            elif line.strip():
                out.append(line.strip())
            previous = line
        return out

    def said(self, text):
        """Whether stderr says ``text``, however Ansible wrapped it."""
        return text in " ".join(self.stderr.split())

    @property
    def stats(self):
        return (self.data or {}).get("stats", {})

    def __repr__(self):
        return "Result(rc=%s)\nSTDOUT:\n%s\nSTDERR:\n%s" % (self.rc, self.stdout[-6000:], self.stderr[-3000:])


class Running:
    """A command running in the background: its standard error read as it comes, its result at the end."""

    def __init__(self, proc):
        self.proc = proc
        self.stderr_lines = []
        self._out = []
        self._readers = [threading.Thread(target=self._read, args=(proc.stderr, self.stderr_lines), daemon=True),
                         threading.Thread(target=self._read, args=(proc.stdout, self._out), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in iter(stream.readline, ""):
            lines.append(line)

    def wait_for(self, pattern, timeout=120):
        """The first match of the regular expression ``pattern`` in standard error so far, waiting for it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = re.search(pattern, "".join(self.stderr_lines))
            if found:
                return found
            if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                break
            time.sleep(0.1)
        raise AssertionError("%r did not appear; stderr so far:\n%s" % (pattern, "".join(self.stderr_lines)[-3000:]))

    def finish(self, timeout=600):
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)
        stdout = "".join(self._out)
        data = parse_json(stdout)
        return Result(subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout,
                                                  "".join(self.stderr_lines)), data)


class Ansible:
    """Runs ansible commands with the emulator's credentials in the environment (as AWX injects them)."""

    def __init__(self, emulator, tmp_path, app="full", core=None):
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.app = app
        self.cache_dir = str(tmp_path / "token-cache")
        # ansible-core version to run (tests/cores.py makes its venv); None: MDE_TEST_CORE, else the main venv's.
        core = core or os.environ.get("MDE_TEST_CORE") or None
        self.core = core or cores.MAIN
        self.bin = cores.ensure(core) if core else BIN

    def env(self, app=None, **extra):
        app = self.emulator.apps[app or self.app]
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("MDE_", "AZURE_")):
                del env[k]
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_STDOUT_CALLBACK": "json_results",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "integration", "callback_plugins"),
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_PYTHON_INTERPRETER": os.path.join(self.bin, "python"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": self.bin + os.pathsep + env.get("PATH", ""),
            "MDE_TENANT_ID": self.emulator.tenant_id,
            "MDE_CLIENT_ID": app["client_id"],
            "MDE_API_URL": self.emulator.url,
            "MDE_GRAPH_URL": self.emulator.url,
            "MDE_AUTHORITY_HOST": self.emulator.url,
            "MDE_CA_PATH": self.emulator.ca_path,
            "MDE_TOKEN_CACHE_DIR": self.cache_dir,
        })
        if app.get("client_secret"):
            env["MDE_CLIENT_SECRET"] = app["client_secret"]
        elif app.get("cert_path"):  # a public client or a federated app has neither: auth_mode says how to sign in
            env["MDE_CLIENT_CERTIFICATE_PATH"] = app["cert_path"]
            if app.get("cert_password"):
                env["MDE_CLIENT_CERTIFICATE_PASSWORD"] = app["cert_password"]
        env.update(dict((k, str(v)) for k, v in extra.items() if v is not None))
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
        return env

    def _playbook_args(self, tasks, plays, check, diff, inventory, forks, extra_args, hosts, gather_facts):
        if plays is None:
            plays = [{"name": "test", "hosts": hosts, "gather_facts": gather_facts, "tasks": tasks}]
        path = self.tmp_path / "playbook.yml"
        path.write_text(yaml.safe_dump(plays, sort_keys=False))
        inv = inventory or "localhost,"
        args = [os.path.join(self.bin, "ansible-playbook"), "-i", inv, "-c", "local", str(path)]
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")
        if forks:
            args += ["--forks", str(forks)]
        return args + list(extra_args)

    def playbook(self, tasks=None, plays=None, check=False, diff=False, inventory=None, forks=None,
                 extra_args=(), app=None, env=None, hosts="localhost", gather_facts=False, timeout=600):
        args = self._playbook_args(tasks, plays, check, diff, inventory, forks, extra_args, hosts, gather_facts)
        proc = subprocess.run(args, env=self.env(app, **(env or {})), capture_output=True, text=True,
                              timeout=timeout, cwd=str(self.tmp_path), check=False)
        data = parse_json(proc.stdout)
        return Result(proc, data)

    def start_playbook(self, tasks=None, plays=None, inventory=None, forks=None, extra_args=(), app=None, env=None,
                       hosts="localhost"):
        """ansible-playbook in the background, for a test that must act while it runs (approve a sign-in)."""
        args = self._playbook_args(tasks, plays, False, False, inventory, forks, extra_args, hosts, False)
        return Running(subprocess.Popen(args, env=self.env(app, **(env or {})), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=str(self.tmp_path)))

    def _inventory_flushes(self):
        if not hasattr(self, "_flushes"):
            out = subprocess.run([os.path.join(self.bin, "ansible-inventory"), "--help"], capture_output=True,
                                 text=True, check=False).stdout
            self._flushes = "--flush-cache" in out
        return self._flushes

    def inventory(self, config, extra_args=("--list",), app=None, env=None, name="mde.yml", timeout=600):
        path = self.tmp_path / name
        if isinstance(config, dict):
            config = yaml.safe_dump(config, sort_keys=False)
        path.write_text(textwrap.dedent(config))
        extra_args = list(extra_args)
        if "--flush-cache" in extra_args and not self._inventory_flushes():
            # ansible-inventory has --flush-cache from ansible-core 2.19 on; before, ansible-playbook's is the way.
            self.playbook(plays=[{"name": "flush", "hosts": "localhost", "gather_facts": False, "tasks": []}],
                          inventory=str(path), extra_args=["--flush-cache"], app=app, env=env)
            extra_args.remove("--flush-cache")
        args = [os.path.join(self.bin, "ansible-inventory"), "-i", str(path)] + extra_args
        proc = subprocess.run(args, env=self.env(app, **(env or {})), capture_output=True, text=True,
                              timeout=timeout, cwd=str(self.tmp_path), check=False)
        data = parse_json(proc.stdout)
        return Result(proc, data)


# -- the emulator's state, as several test files read or set it ------------------------------------------------------
def onboarded(emulator, count=1, platform_prefix="Windows", exclude=()):
    """``count`` onboarded machines of the emulator whose platform starts with ``platform_prefix``, that have a DNS
    name which is not one of the seeded duplicates (``dup-``) and are not in ``exclude``."""
    found = [m for m in emulator.machines
             if m["onboardingStatus"] == "Onboarded" and (m["osPlatform"] or "").startswith(platform_prefix)
             and m["computerDnsName"] and not m["computerDnsName"].startswith("dup-") and m["id"] not in exclude]
    assert len(found) >= count
    return found[:count]


@contextlib.contextmanager
def action_delays(emulator, pending, running):
    """Make machine actions stay Pending/InProgress longer (the session emulator is shared: restored afterwards)."""
    saved = emulator.state.action_delays
    emulator.state.action_delays = (pending, running)
    try:
        yield
    finally:
        emulator.state.action_delays = saved
