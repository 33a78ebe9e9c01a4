"""What one task costs the controller: mde_machine_info (action plugin) against module execution, uri and debug.

One run, one emulator (no rate limit), one inventory of N hosts with ``ansible_connection: local``, K tasks per
host, the same forks, four variants side by side:

  (a) ``defender.endpoint.mde_machine_info`` as installed (``make collection``): action plugins, so the module runs
      in the controller's worker;
  (b) the same tasks through module execution (AnsiballZ): a copy of the installed collection without
      ``plugins/action``, built here in a temporary collections path (the repository is never changed);
  (c) ``ansible.builtin.uri`` sending the same ``GET /api/machines/{id}`` with a ready token (fetched once from the
      emulator's token endpoint before the runs) and ``ca_path``;
  (d) ``ansible.builtin.debug``: Ansible's own floor for a task.

(a) and (b) read their credentials from ``MDE_*`` variables, as AWX injects them, with the token cache on; a short
unmeasured warm-up run of each variant fills that cache (and the interpreters' file caches), so every measured
run starts with a token in hand, as (c) does. The collection's shared call budget stays on, with its windows
scaled down (``MDE_RATE_LIMIT_SCALE``) so that it never has to wait: the emulator has no limit either.

Controller CPU = user + system time of the ansible-playbook process and all its children (the forks, and in (b)
and (c) the module processes they start): ``resource.getrusage(RUSAGE_CHILDREN)`` before and after each run. The
emulator runs in this process (a thread), so its CPU is not counted, but it shares the machine's cores. Wall time
is ``time.monotonic()`` around the run. With ``--repeat R`` the variants run R times, interleaved, and the median
is shown.

Targets (printed, never failed on): (a) within 1.5x of (d) and at most 0.25x of (c), CPU per task. The run fails
(exit status 1) only if a run was incorrect: ansible-playbook's exit status not 0, or, for (a)-(c), the emulator's
request log not showing exactly N x K successful ``GET /api/machines/{id}``.

Run: .venv/bin/python -m bench.task_overhead [--hosts 200] [--tasks 3] [--forks 20] [--repeat 1]
(or ``make bench BENCH=task_overhead``; needs ``make collection`` first, which ``make bench`` does).
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests
import yaml

from bench.common import BIN, ROOT, ansible_env
from tests.emulator import Emulator

INSTALLED = os.path.join(ROOT, ".build", "collections")
SCOPE = "https://api.securitycenter.microsoft.com/.default"
ROUTE = "GET /api/machines/{id}"

TASKS = {
    "a": """    - name: Read this host's machine ({n})
      defender.endpoint.mde_machine_info:
        machine_id: "{{{{ mde_id }}}}"
""",
    "c": """    - name: Read this host's machine ({n})
      ansible.builtin.uri:
        url: "{{{{ mde_api }}}}/api/machines/{{{{ mde_id }}}}"
        method: GET
        headers:
          Authorization: "Bearer {{{{ mde_token }}}}"
        ca_path: "{{{{ mde_ca }}}}"
""",
    "d": """    - name: Show this host's machine id ({n})
      ansible.builtin.debug:
        msg: "{{{{ mde_id }}}}"
""",
}
TASKS["b"] = TASKS["a"]

VARIANTS = [
    ("a", "(a) mde_machine_info, action plugin"),
    ("b", "(b) mde_machine_info, module (AnsiballZ)"),
    ("c", "(c) ansible.builtin.uri, ready token"),
    ("d", "(d) ansible.builtin.debug (floor)"),
]


def module_mode_copy(dest):
    """A copy of the installed collection without plugins/action: Ansible then runs the modules as modules."""
    src = os.path.join(INSTALLED, "ansible_collections", "defender", "endpoint")
    if not os.path.isfile(os.path.join(src, "plugins", "modules", "mde_machine_info.py")):
        raise SystemExit("task_overhead: no installed collection under %s: run `make collection` first" % INSTALLED)
    plugins = os.path.join(src, "plugins")

    def ignore(path, names):
        skip = {"__pycache__"} & set(names)
        if os.path.samefile(path, plugins):
            skip.add("action")
        return skip

    target = os.path.join(dest, "ansible_collections", "defender", "endpoint")
    shutil.copytree(src, target, ignore=ignore)
    if os.path.exists(os.path.join(target, "plugins", "action")):
        raise SystemExit("task_overhead: plugins/action still in the module-mode copy")
    # Without the action plugin, its routing goes too (meta/runtime.yml sends every module to it).
    runtime = os.path.join(target, "meta", "runtime.yml")
    with open(runtime) as f:
        data = yaml.safe_load(f)
    data.pop("plugin_routing", None)
    with open(runtime, "w") as f:
        yaml.safe_dump(data, f)
    return dest


def ready_token(emu):
    """A bearer token from the emulator's token endpoint (client credentials), as a uri play would get one."""
    creds = emu.apps["full"]
    resp = requests.post("%s/%s/oauth2/v2.0/token" % (emu.url, emu.tenant_id), verify=emu.ca_path, timeout=30,
                         data={"grant_type": "client_credentials", "client_id": creds["client_id"],
                               "client_secret": creds["client_secret"], "scope": SCOPE})
    resp.raise_for_status()
    return resp.json()["access_token"]


def write_inventory(path, machine_ids, emu, token):
    with open(path, "w", encoding="utf-8") as f:
        f.write("[targets]\n")
        for i, mid in enumerate(machine_ids):
            f.write("h%04d mde_id=%s\n" % (i, mid))
        f.write("\n[targets:vars]\nansible_connection=local\nmde_api=%s\nmde_ca=%s\nmde_token=%s\n"
                % (emu.url, emu.ca_path, token))


def write_play(path, variant, tasks):
    with open(path, "w", encoding="utf-8") as f:
        f.write("- name: Task overhead, variant %s\n  hosts: targets\n  gather_facts: false\n  tasks:\n" % variant)
        for n in range(1, tasks + 1):
            f.write(TASKS[variant].format(n=n))


def run_once(emu, env, inventory, play, forks, expect_gets):
    """One ansible-playbook run: wall, controller CPU (it and all its children), and whether it was correct."""
    emu.clear_log()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, play, "--forks", str(forks)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    gets = [e for e in emu.log if e.get("route") == ROUTE and e["method"] == "GET"]
    ok_gets = sum(1 for e in gets if e["status"] == 200)
    problems = []
    if proc.returncode != 0:
        problems.append("ansible-playbook exited %d" % proc.returncode)
    if expect_gets is not None and (ok_gets != expect_gets or len(gets) != expect_gets):
        problems.append("%d GET /api/machines/{id} (%d answered 200), expected %d" % (len(gets), ok_gets, expect_gets))
    if problems:
        sys.stderr.write("".join("  %s\n" % p for p in problems))
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    return {"wall": wall, "cpu": cpu, "ok": not problems, "gets": len(gets), "problems": problems}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--forks", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    total = args.hosts * args.tasks
    runs = dict((key, []) for key, _label in VARIANTS)
    with tempfile.TemporaryDirectory(prefix="bench-task-overhead-") as tmp:
        paths = {"a": INSTALLED, "b": module_mode_copy(os.path.join(tmp, "module-mode")), "c": INSTALLED,
                 "d": INSTALLED}
        emu = Emulator(state_dir=os.path.join(tmp, "emu"), machines=args.hosts, rate_limit_scale=0)
        emu.start()
        try:
            ids = [m["id"] for m in emu.machines[:args.hosts]]
            token = ready_token(emu)
            inventory = os.path.join(tmp, "hosts.ini")
            write_inventory(inventory, ids, emu, token)
            warm_inventory = os.path.join(tmp, "warm.ini")
            write_inventory(warm_inventory, ids[:2], emu, token)
            envs, plays, warm_plays = {}, {}, {}
            for key, _label in VARIANTS:
                # Budget windows of 0.36 ms and 0.36 s: the budget is kept, but never makes a run wait.
                envs[key] = ansible_env(emu, os.path.join(tmp, "cache-%s" % key), MDE_RATE_LIMIT_SCALE="0.0001")
                envs[key]["ANSIBLE_COLLECTIONS_PATH"] = paths[key]
                plays[key] = os.path.join(tmp, "play-%s.yml" % key)
                write_play(plays[key], key, args.tasks)
                warm_plays[key] = os.path.join(tmp, "warm-%s.yml" % key)
                write_play(warm_plays[key], key, 1)
            incorrect = []
            for key, label in VARIANTS:
                warm = run_once(emu, envs[key], warm_inventory, warm_plays[key], 2, None if key == "d" else 2)
                if not warm["ok"]:
                    incorrect.append("%s warm-up: %s" % (label, "; ".join(warm["problems"])))
            for _round in range(args.repeat):
                for key, label in VARIANTS:
                    r = run_once(emu, envs[key], inventory, plays[key], args.forks, None if key == "d" else total)
                    runs[key].append(r)
                    if not r["ok"]:
                        incorrect.append("%s: %s" % (label, "; ".join(r["problems"])))
        finally:
            emu.stop()
    report(args, runs, incorrect)
    if incorrect:
        sys.exit(1)
    return runs


def report(args, runs, incorrect):
    total = args.hosts * args.tasks
    med = dict((key, {"wall": statistics.median(r["wall"] for r in rs), "cpu": statistics.median(r["cpu"] for r in rs)})
               for key, rs in runs.items())
    floor = med["d"]["cpu"] / total
    print("task_overhead: %d hosts x %d tasks = %d tasks, forks %d, %d CPUs, median of %d run(s) each"
          % (args.hosts, args.tasks, total, args.forks, os.cpu_count() or 0, args.repeat))
    print("  %-42s %8s %8s %10s %8s %8s" % ("variant", "wall s", "CPU s", "CPU s/task", "CPU/(d)", "wall/(d)"))
    for key, label in VARIANTS:
        m = med[key]
        print("  %-42s %8.1f %8.1f %10.3f %7.2fx %7.2fx" % (
            label, m["wall"], m["cpu"], m["cpu"] / total, (m["cpu"] / total) / floor, m["wall"] / med["d"]["wall"]))
        if args.repeat > 1:
            print("  %-42s wall %s; CPU %s" % ("", ", ".join("%.1f" % r["wall"] for r in runs[key]),
                                               ", ".join("%.1f" % r["cpu"] for r in runs[key])))
    a_d = med["a"]["cpu"] / med["d"]["cpu"]
    a_c = med["a"]["cpu"] / med["c"]["cpu"]
    print("  (a)/(c): CPU %.2fx, wall %.2fx; (a)/(b): CPU %.2fx" % (
        a_c, med["a"]["wall"] / med["c"]["wall"], med["a"]["cpu"] / med["b"]["cpu"]))
    print("  target (a) <= 1.5x (d), CPU per task: %.2fx -> %s" % (a_d, "met" if a_d <= 1.5 else "NOT met"))
    print("  target (a) <= 0.25x (c), CPU per task: %.2fx -> %s" % (a_c, "met" if a_c <= 0.25 else "NOT met"))
    if incorrect:
        print("  INCORRECT runs (the figures above do not count):")
        for line in incorrect:
            print("    " + line)
    else:
        print("  every run correct: rc 0, and %d GET /api/machines/{id} answered 200 for each of (a)-(c)" % total)


if __name__ == "__main__":
    main()
