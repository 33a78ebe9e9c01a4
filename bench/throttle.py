"""Throttling across forks: 300 isolations with forks 30 against the emulator's documented 100 calls a minute.

The bound that the limit itself sets: each endpoint family gets 300 calls at 100 per window, so the last hundred
cannot start before two windows have passed (120 s). Reported: wall time against that bound, failed tasks, 429s the
API had to send, each isolation POSTed exactly once, and the timeline that explains the rest: when the first call
and the 100th isolation went out. The emulator's window slides (as a per-minute limit is documented), so the third
hundred cannot finish sooner than the 100th call plus two windows, whatever the client does: the time Ansible
needs to run the first hundred tasks is part of any wall time.
A second run with the shared budget off (token_cache: false, so each fork only knows its own 429s) is the baseline.

``--scale`` shortens the windows (emulator and collection alike, MDE_RATE_LIMIT_SCALE). The default is 1: Ansible's
own time per task does not shrink with the windows, so at 0.5 the first hundred tasks alone take a third of the
bound on a two-core machine.

Run: .venv/bin/python -m bench.throttle [--actions 300] [--forks 30] [--scale 1]
"""
import argparse
import os
import tempfile

from bench.common import run_per_host_play
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
    data, start, wall = run_per_host_play(emulator, machine_ids, PLAY, forks, scale, shared, workdir, "isolate.yml")
    try:
        failed = sum(s["failures"] for s in data["stats"].values())
    except (TypeError, KeyError):
        failed = len(machine_ids)
    posts = [e for e in emulator.log if e["method"] == "POST" and e["path"].endswith("/isolate")]
    accepted = [e for e in posts if e["status"] == 201]
    api = [e for e in emulator.log if e["path"].startswith("/api/")]
    stamps = sorted(e["time"] - start for e in accepted)
    per_machine = {}
    for e in accepted:
        per_machine[e["path"]] = per_machine.get(e["path"], 0) + 1
    return {
        "wall_s": round(wall, 1),
        "failed_tasks": failed,
        "http_429": sum(1 for e in emulator.log if e["status"] == 429),
        "isolations_created": len(accepted),
        "machines_isolated_twice": sum(1 for n in per_machine.values() if n > 1),
        "api_calls": len(api),
        "first_call_s": round(min(e["time"] for e in api) - start, 1) if api else None,
        "isolation_100_s": round(stamps[99], 1) if len(stamps) >= 100 else None,
        "last_isolation_s": round(stamps[-1], 1) if stamps else None,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=300)
    ap.add_argument("--forks", type=int, default=30)
    ap.add_argument("--scale", type=float, default=1.0)
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
    print("throttle: %d isolations, forks %d, 100 calls per %.0f s window -> bound %.0f s (%d CPUs)"
          % (args.actions, args.forks, window, bound, os.cpu_count() or 0))
    for name, r in results.items():
        print("  %-28s wall %6.1f s (%.2fx bound)  failed %d  429s %d  created %d  twice %d  API calls %d" % (
            name, r["wall_s"], r["wall_s"] / bound if bound else 0, r["failed_tasks"], r["http_429"],
            r["isolations_created"], r["machines_isolated_twice"], r["api_calls"]))
        if r["isolation_100_s"] is not None:
            floor = r["isolation_100_s"] + bound
            print("  %-28s first call at %.1f s, 100th isolation at %.1f s, last at %.1f s; sliding-window floor "
                  "(100th + %.0f s) %.1f s, wall %.2fx of it" % (
                      "", r["first_call_s"], r["isolation_100_s"], r["last_isolation_s"], bound, floor,
                      r["wall_s"] / floor))
    return results


if __name__ == "__main__":
    main()
