"""Live response across forks: one RunScript on each of 100 machines with forks 25, against the documented limits.

Live response allows 10 sessions to be started a minute and 25 to run at a time per tenant
(https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response). The emulator enforces both (429 beyond
either); the collection shares both across forks: the call budget paces the POSTs, the session slots cap the running
sessions (held from the POST until the session is final).

The bound the limits set, for N sessions of S seconds each with windows of W seconds: the POSTs alone need
ceil(N/10)-1 windows after the first, and the last session then runs S seconds (rate bound); 25 at a time, the
sessions need ceil(N/25) rounds of S seconds (concurrency bound). Reported: wall time against the larger of the two,
failed tasks, 429s the API had to send, sessions started, the most sessions that ran at once, result downloads that
carried an Authorization header. A second run with the shared budget off (token_cache: false: each fork knows only
its own calls and sessions) at --baseline-forks is the baseline.

Windows are scaled (emulator and collection alike, MDE_RATE_LIMIT_SCALE) so that the run takes minutes, not tens
of minutes: --scale 0.1 makes the minute 6 s.

Run: .venv/bin/python -m bench.live_response [--machines 100] [--forks 25] [--scale 0.1] [--session 30]
     [--baseline-forks 50] [--skip-baseline]
"""
import argparse
import math
import os
import tempfile

from bench.common import run_per_host_play
from tests.emulator import Emulator
from tests.emulator import api_live_response as lr

PLAY = """
- name: Run the script on every targeted machine
  hosts: targets
  gather_facts: false
  tasks:
    - name: Run
      defender.endpoint.mde_live_response:
        machine_id: "{{ mde_id }}"
        commands:
          - type: RunScript
            script_name: bench.ps1
        comment: bench
        token_cache: "{{ shared_budget }}"
"""


def max_concurrent(actions):
    events = []
    for a in actions:
        if a.get("type") == "LiveResponse":
            events.append((a["_created"], 1))
            events.append((a["_created"] + sum(a["_delays"]), -1))
    most = now = 0
    for _t, delta in sorted(events, key=lambda e: (e[0], e[1])):
        now += delta
        most = max(most, now)
    return most


def run(emulator, machine_ids, forks, scale, shared, workdir):
    data, start, wall = run_per_host_play(emulator, machine_ids, PLAY, forks, scale, shared, workdir, "run.yml")
    try:
        stats = data["stats"]
        failed = sum(s["failures"] for s in stats.values())
        exit_codes = [h.get("results", [{}])[0].get("exit_code") for p in data["plays"] for t in p["tasks"]
                      for h in t["hosts"].values()]
    except (TypeError, KeyError, IndexError):
        failed, exit_codes = len(machine_ids), []
    log = emulator.log
    posts = [e for e in log if e["method"] == "POST" and e["path"].endswith("/runliveresponse")]
    started = [e for e in posts if e["status"] == 201]
    with emulator.state.lock:
        actions = [dict(a) for a in emulator.state.actions]
    stamps = sorted(e["time"] - start for e in started)
    return {
        "wall_s": round(wall, 1),
        "failed_tasks": failed,
        "exit_code_0": sum(1 for c in exit_codes if c == 0),
        "http_429": sum(1 for e in log if e["status"] == 429),
        "sessions_started": len(started),
        "post_attempts": len(posts),
        "max_concurrent": max_concurrent(actions),
        "api_calls": sum(1 for e in log if e["path"].startswith("/api/")),
        "downloads": sum(1 for e in log if e.get("family") == "blob"),
        "downloads_with_authorization": sum(1 for e in log if e.get("family") == "blob" and e.get("authorization")),
        "first_post_s": round(stamps[0], 1) if stamps else None,
        "last_post_s": round(stamps[-1], 1) if stamps else None,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--forks", type=int, default=25)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--session", type=float, default=30.0, help="seconds each session runs (pending 1 s included)")
    ap.add_argument("--baseline-forks", type=int, default=50)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    window = 60.0 * args.scale
    rate_bound = (math.ceil(args.machines / 10.0) - 1) * window + args.session
    concurrency_bound = math.ceil(args.machines / 25.0) * args.session
    bound = max(rate_bound, concurrency_bound)
    runs = [("shared budget, forks %d" % args.forks, True, args.forks)]
    if not args.skip_baseline:
        runs.append(("no shared budget, forks %d (baseline)" % args.baseline_forks, False, args.baseline_forks))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shared, forks in runs:
            emu = Emulator(state_dir=os.path.join(tmp, "emu-%s" % shared), machines=int(args.machines * 1.2) + 10,
                           rate_limit_scale=args.scale, action_delays=(1.0, 1.0))
            emu.start()
            try:
                lr.put_library_file(emu, "bench.ps1", b"#mde-emulator: duration=%g\n#mde-emulator: stdout=ok\n" % (
                    args.session - 1.0))
                ids = [m["id"] for m in emu.machines if m["onboardingStatus"] == "Onboarded"][:args.machines]
                work = os.path.join(tmp, "run-%s" % shared)
                os.makedirs(work)
                results[name] = run(emu, ids, forks, args.scale, shared, work)
            finally:
                emu.stop()
    print("live_response: %d machines, one RunScript of %.0f s each; 10 sessions per %.0f s window, 25 at a time -> "
          "rate bound %.0f s, concurrency bound %.0f s, bound %.0f s (%d CPUs)" % (
              args.machines, args.session, window, rate_bound, concurrency_bound, bound, os.cpu_count() or 0))
    for name, r in results.items():
        print("  %-38s wall %6.1f s (%.2fx bound)  failed %d  exit 0: %d  429s %d  sessions %d (POSTs %d)  "
              "most at once %d  API calls %d  downloads %d (with Authorization %d)" % (
                  name, r["wall_s"], r["wall_s"] / bound, r["failed_tasks"], r["exit_code_0"], r["http_429"],
                  r["sessions_started"], r["post_attempts"], r["max_concurrent"], r["api_calls"], r["downloads"],
                  r["downloads_with_authorization"]))
        print("  %-38s first session at %s s, last at %s s" % ("", r["first_post_s"], r["last_post_s"]))
    return results


if __name__ == "__main__":
    main()
