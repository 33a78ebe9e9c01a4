"""Throttling across forks: 300 isolations with forks 30 against the emulator's documented 100 calls a minute.

The emulator's rate-limit windows are scaled down (``--scale 0.5``: a "minute" lasts 30 s) and the collection is
told the same scale (MDE_RATE_LIMIT_SCALE). The bound that the limit itself sets: each endpoint family gets
300 calls at 100 per window, so the last hundred cannot start before two windows have passed. Reported: wall time
against that bound, failed tasks, 429s the API had to send, and each isolation POSTed exactly once.
A second run with the shared budget off (token_cache: false, so each fork only knows its own 429s) is the baseline.

Run: .venv/bin/python -m bench.throttle [--actions 300] [--forks 30] [--scale 0.5]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import BIN, ROOT, ansible_env
from tests.emulator import Emulator

PLAY = """
- name: Isolate every targeted machine
  hosts: targets
  gather_facts: false
  tasks:
    - name: Isolate
      defender.endpoint.mde_machine_action:
        machine_id: "{{ mde_id }}"
        action: isolate
        comment: bench
        token_cache: "{{ shared_budget }}"
      delegate_to: localhost
"""


def run(emulator, machine_ids, forks, scale, shared, workdir):
    inv = os.path.join(workdir, "hosts.ini")
    with open(inv, "w") as f:
        f.write("[targets]\n")
        for i, mid in enumerate(machine_ids):
            f.write("t%04d mde_id=%s ansible_connection=local\n" % (i, mid))
    play = os.path.join(workdir, "isolate.yml")
    with open(play, "w") as f:
        f.write(PLAY)
    env = ansible_env(emulator, os.path.join(workdir, "cache"), MDE_RATE_LIMIT_SCALE=scale,
                      ANSIBLE_STDOUT_CALLBACK="json_results",
                      ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "tests", "integration", "callback_plugins"))
    start = time.time()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv, play, "--forks", str(forks),
                           "-e", "shared_budget=%s" % ("true" if shared else "false")],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.time() - start
    try:
        stats = json.loads(proc.stdout)["stats"]
        failed = sum(s["failures"] for s in stats.values())
    except (ValueError, KeyError):
        failed = len(machine_ids)
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    posts = [e for e in emulator.log if e["method"] == "POST" and e["path"].endswith("/isolate")]
    accepted = [e for e in posts if e["status"] == 201]
    per_machine = {}
    for e in accepted:
        per_machine[e["path"]] = per_machine.get(e["path"], 0) + 1
    return {
        "wall_s": round(wall, 1),
        "failed_tasks": failed,
        "http_429": sum(1 for e in emulator.log if e["status"] == 429),
        "isolations_created": len(accepted),
        "machines_isolated_twice": sum(1 for n in per_machine.values() if n > 1),
        "api_calls": len([e for e in emulator.log if e["path"].startswith("/api/")]),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=300)
    ap.add_argument("--forks", type=int, default=30)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    window = 60.0 * args.scale
    per_window = 100
    bound = ((args.actions - 1) // per_window) * window
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shared in ([True] if args.skip_baseline else [True, False]):
            emu = Emulator(state_dir=os.path.join(tmp, "emu-%s" % shared), machines=int(args.actions * 1.2) + 10,
                           rate_limit_scale=args.scale, action_delays=(30, 30))
            emu.start()
            try:
                ids = [m["id"] for m in emu.machines if m["onboardingStatus"] == "Onboarded"][:args.actions]
                work = os.path.join(tmp, "run-%s" % shared)
                os.makedirs(work)
                results["shared budget" if shared else "no shared budget (baseline)"] = run(
                    emu, ids, args.forks, args.scale, shared, work)
            finally:
                emu.stop()
    print("throttle: %d isolations, forks %d, 100 calls per %.0f s window -> bound %.0f s"
          % (args.actions, args.forks, window, bound))
    for name, r in results.items():
        print("  %-28s wall %6.1f s (%.2fx bound)  failed %d  429s %d  created %d  twice %d  API calls %d" % (
            name, r["wall_s"], r["wall_s"] / bound if bound else 0, r["failed_tasks"], r["http_429"],
            r["isolations_created"], r["machines_isolated_twice"], r["api_calls"]))
    return results


if __name__ == "__main__":
    main()
