"""Benchmark: apply a folder of 200 custom detection rules with the role detection_rules to a tenant without them,
then apply it again unchanged.

Figures per run: the API calls by kind (rule reads, rule writes, runHuntingQuery), wall time, and the least time the
limits allow for those calls: runHuntingQuery 45 a minute (the Defender advanced hunting limit, the one Microsoft
documents for hunting queries; the collection and the emulator apply it to Graph's runHuntingQuery) and the detection
rules endpoints 150 a minute per app and tenant (Graph documents none for them; 150 is its figure for the security
API, https://learn.microsoft.com/en-us/graph/throttling-limits). The windows are scaled down (--scale, the collection's
MDE_RATE_LIMIT_SCALE and the emulator's rate_limit_scale alike); the "unscaled floor" column is the least time the real
limits allow for the calls made.

Baseline, measured in the same run: the same 200-item loop with a task that reads one rule by id
(mde_detection_rule_info, one GET) - what a task per rule costs the controller at least. The unchanged re-apply should
cost about that: one GET per rule, no query check, no write.

Run: .venv/bin/python -m bench.detection_rules [--count 200] [--scale 0.1]. Prints figures; never fails on time.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import collections_path  # noqa: E402  pylint: disable=wrong-import-position
from tests.emulator import Emulator  # noqa: E402  pylint: disable=wrong-import-position
from tests.integration.harness import Ansible  # noqa: E402  pylint: disable=wrong-import-position

RULES = "/v1.0/security/rules/detectionRules"
HUNT = "/v1.0/security/runHuntingQuery"
# (calls, seconds) windows: runHuntingQuery, and the detection rules family.
LIMITS = {"hunting": [(45, 60), (1500, 3600)], "rules": [(150, 60)]}


def write_folder(folder, count):
    os.makedirs(folder)
    for n in range(count):
        rule = {"rule_id": "bench-%04d" % n, "display_name": "Bench rule %04d" % n, "frequency": ["1h", "3h", "24h"][n % 3],
                "query": 'DeviceProcessEvents | where FileName == "tool%04d.exe" | project Timestamp, DeviceId, ReportId, '
                         'DeviceName, SHA1' % n,
                "alert": {"title": "Bench alert %04d on {{DeviceName}}" % n, "severity": "medium",
                          "entity_mappings": {"hosts": [{"device_id_column": "DeviceId"}]}},
                "automated_actions": {"isolate_devices": [{"device_id_column": "DeviceId", "isolation_type": "full"}]}}
        with open(os.path.join(folder, "bench-%04d.yml" % n), "w") as f:
            yaml.safe_dump(rule, f, sort_keys=False)


def counts(emu):
    out = {}
    for e in emu.log:
        if e["family"] != "graph":
            continue
        if e.get("status") == 429:
            kind = "429 retried"
        elif e["path"] == HUNT:
            kind = "hunting"
        elif e["method"] == "GET":
            kind = "rule reads"
        else:
            kind = "rule writes"
        out[kind] = out.get(kind, 0) + 1
    return out


def floor_seconds(found):
    per_family = {"hunting": found.get("hunting", 0),
                  "rules": found.get("rule reads", 0) + found.get("rule writes", 0)}
    worst = 0.0
    for fam, n in per_family.items():
        for calls, window in LIMITS[fam]:
            if n > calls:
                worst = max(worst, (math.ceil(n / calls) - 1) * window)
    return worst


def playbook(emu, workdir, play, scale, extra=()):
    ansible = Ansible(emu, workdir)
    path = workdir / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = ansible.env(ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                      MDE_RATE_LIMIT_SCALE=scale)
    emu.clear_log()
    start = time.perf_counter()
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(path)] + list(extra), env=env, capture_output=True, text=True, cwd=str(workdir),
                          check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("the play failed (rc %d)" % proc.returncode)
    return elapsed, counts(emu), len(emu.writes())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--scale", type=float, default=0.1)
    args, _rest = parser.parse_known_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-detection-rules-"))
    folder = str(workdir / "rules")
    write_folder(folder, args.count)
    role = [{"name": "apply", "hosts": "localhost", "gather_facts": False,
             "roles": [{"role": "defender.endpoint.detection_rules", "detection_rules_dir": folder}]}]
    baseline_play = [{"name": "baseline", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "read one rule", "defender.endpoint.mde_detection_rule_info": {"rule_id": "{{ item }}"},
        "loop": ["bench-%04d" % n for n in range(args.count)]}]}]
    with Emulator(rate_limit_scale=args.scale) as emu:
        rows = [("baseline: read each rule by id", playbook(emu, workdir, baseline_play, args.scale)),
                ("apply to a tenant without them", playbook(emu, workdir, role, args.scale)),
                ("apply again, unchanged", playbook(emu, workdir, role, args.scale))]
    base = rows[0][1][0]
    print("%d rules, rate-limit windows scaled by %s (runHuntingQuery 45/min, detection rules 150/min)"
          % (args.count, args.scale))
    print("%-34s %9s %8s %7s %9s %8s %8s %15s" % (
        "run", "wall", "vs base", "reads", "hunting", "writes", "429s", "unscaled floor"))
    for name, (wall, found, writes) in rows:
        print("%-34s %8.1fs %7.2fx %7d %9d %8d %8d %14.0fs" % (
            name, wall, wall / base if base else 0, found.get("rule reads", 0), found.get("hunting", 0), writes,
            found.get("429 retried", 0), floor_seconds(found)))
    print("(unscaled floor: the least time the real limits allow for the calls made; the scaled run's floor is that "
          "times %s)" % args.scale)


if __name__ == "__main__":
    main(sys.argv[1:])
