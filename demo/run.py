"""`make demo`: the inventory and the remediation playbook against the MDE API emulator, and what they did.

Run by the Makefile as `.venv/bin/python demo/run.py` once the collection is built and installed into
.build/collections (ANSIBLE_COLLECTIONS_PATH). Starts an emulator with 40 machines, shows the inventory's hosts by
group, runs defender.endpoint.remediate_alerts, shows what was contained and which alerts changed (from the
playbook's summary and from the emulator's request log), shows patch_by_exposure's batches in check mode, and
stops the emulator. Exits non-zero when anything failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.emulator import Emulator  # noqa: E402  (needs the repository root on sys.path)

BIN = os.path.dirname(os.path.abspath(sys.executable))
DEMO = os.path.join(ROOT, "demo")


def title(text):
    print("\n== %s %s" % (text, "=" * max(0, 74 - len(text))))


def plain(value):
    """Inventory JSON without ansible-core 2.19's trust markers ({"__ansible_unsafe": ...})."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def environment(emu, cache_dir):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("MDE_", "AZURE_")))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build", "collections"))
    env.update({
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(emu.env("full"))  # what .emulator/env holds: the API, Graph and Entra ID all at the emulator
    env["MDE_TOKEN_CACHE_DIR"] = cache_dir
    return env


def run(args, env):
    proc = subprocess.run(args, env=env, capture_output=True, text=True, cwd=DEMO, check=False)
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        print(proc.stderr[-4000:], file=sys.stderr)
        command = " ".join([os.path.basename(args[0])] + list(args[1:]))
        raise SystemExit("FAILED (rc %d): %s" % (proc.returncode, command))
    return proc


def show_inventory(env):
    title("Inventory: ansible-inventory -i demo/mde.yml (defender.endpoint.mde_machines)")
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", "mde.yml", "--list"], env)
    data = plain(json.loads(proc.stdout))
    hosts = data["_meta"]["hostvars"]
    print("%d hosts" % len(hosts))
    for warning in re.findall(r"\[WARNING\]: (.*)", proc.stderr):
        print("  note: %s" % warning[:150])
    groups = sorted((g, v.get("hosts", [])) for g, v in data.items() if g not in ("_meta", "all") and v.get("hosts"))
    width = max(len(group) for group, _members in groups)
    for group, members in groups:
        names = ", ".join(h.split(".")[0] for h in members[:4]) + (", ..." if len(members) > 4 else "")
        print("  %-*s %3d  %s" % (width, group, len(members), names))
    return data


def show_remediation(emu, env, workdir):
    title("ansible-playbook defender.endpoint.remediate_alerts")
    summary_file = os.path.join(workdir, "summary.json")
    emu.clear_log()
    proc = run([os.path.join(BIN, "ansible-playbook"), "-i", "mde.yml", "defender.endpoint.remediate_alerts",
                "-e", "remediate_alerts_summary_file=%s" % summary_file], env)
    recap = re.findall(r"^(localhost\s+:.*)$", proc.stdout, re.M)
    print("  " + (recap[-1] if recap else "(no recap)"))
    with open(summary_file) as f:
        summary = json.load(f)
    print("\nNew high-severity alerts found: %d" % len(summary["alerts_found"]))
    for line in summary["alerts_found"]:
        print("  " + line)
    print("\nContained (isolated now): %d" % len(summary["machines_isolated"]))
    for machine_id, name in sorted(summary["machines_isolated"].items(), key=lambda kv: kv[1] or kv[0]):
        print("  %-28s %s" % (name or "(no name)", machine_id))
    if summary["machines_already_isolated"]:
        print("Already isolated: %s" % ", ".join(v or k for k, v in summary["machines_already_isolated"].items()))
    print("\nAlerts changed (now InProgress, with a comment): %d" % len(summary["alerts_updated"]))

    writes = emu.writes()
    title("What the API received (emulator request log: %d writes)" % len(writes))
    for w in writes:
        body = w.get("body") or {}
        if w["path"].endswith("/isolate"):
            what = "isolate %s (%s)" % (w["path"].split("/")[3][:12], body.get("IsolationType"))
        elif "alertIds" in body:
            what = "%d alerts -> %s" % (len(body["alertIds"]), body.get("status"))
        else:
            what = json.dumps(body)[:100]
        print("  %-44s %s  %s" % (w.get("route") or "%s %s" % (w["method"], w["path"]), w["status"], what))
    isolations = [a for a in emu.machine_actions if a["type"] == "Isolate"]
    done = sorted("%s %s" % (a["computerDnsName"].split(".")[0], a["status"]) for a in isolations)
    print("\nIsolation actions: %s" % ", ".join(done))
    state = dict((a["id"], a["status"]) for a in emu.alerts)
    wrong = [i for i in summary["alerts_updated"] if state.get(i) != "InProgress"]
    if wrong or not all(a["status"] == "Succeeded" for a in isolations):
        raise SystemExit("FAILED: the emulator does not hold what the playbook reported")
    if len(isolations) != len(summary["machines_isolated"]):
        raise SystemExit("FAILED: %d isolations for %d machines" % (len(isolations), len(summary["machines_isolated"])))

    emu.clear_log()
    proc = run([os.path.join(BIN, "ansible-playbook"), "-i", "mde.yml", "defender.endpoint.remediate_alerts"], env)
    recap = re.findall(r"^(localhost\s+:.*)$", proc.stdout, re.M)
    stats = recap[-1].split(":", 1)[1].strip() if recap else "?"
    print("\nSecond run (idempotent): %s; writes: %d" % (stats, len(emu.writes())))
    if emu.writes():
        raise SystemExit("FAILED: the second run wrote to the API")


def show_patch_plan(env):
    title("ansible-playbook defender.endpoint.patch_by_exposure --check")
    # The emulator's machines cannot be reached: a local connection and demo/patch_dry_run.yml stand in for the
    # per-OS patch tasks, so the run shows the batches and the connection each host would get.
    dry_run = os.path.join(DEMO, "patch_dry_run.yml")
    overrides = {"ansible_connection": "local", "patch_by_exposure_serial": 4,
                 "patch_by_exposure_tasks": {"windows": dry_run, "linux": dry_run, "macos": dry_run}}
    proc = run([os.path.join(BIN, "ansible-playbook"), "-i", "mde.yml", "defender.endpoint.patch_by_exposure",
                "--check", "-e", json.dumps(overrides)], env)
    for line in re.findall(r'"(batch \d+: [^"]*|no host in [^"]*)"', proc.stdout):
        print("  " + line)
    would = re.findall(r'"msg": "would patch (\S+) \((\S+)\) over (\S+)"', proc.stdout)
    connections = {}
    for _host, platform, connection in would:
        connections.setdefault(connection, set()).add(platform)
    print("  %d hosts would be patched; %s" % (len(would), "; ".join(
        "%s for %s" % (c, ", ".join(sorted(p))) for c, p in sorted(connections.items()))))


def main():
    state_dir = os.path.join(ROOT, ".emulator", "demo")
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir)
    emu = Emulator(state_dir=state_dir, machines=40, seed=1, action_delays=(0.2, 0.2))
    emu.start()
    workdir = tempfile.mkdtemp(prefix="mde-demo-")          # mode 0700: the token cache lives here
    try:
        print("MDE API emulator at %s (40 machines, %d alerts)" % (emu.url, len(emu.alerts)))
        env = environment(emu, os.path.join(workdir, "token-cache"))
        show_inventory(env)
        show_remediation(emu, env, workdir)
        show_patch_plan(env)
        print("\nDemo finished.")
    finally:
        emu.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
