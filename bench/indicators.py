"""Benchmark: sync 10,000 indicators with mde_indicator vs one POST /api/indicators per indicator.

Both run in the same process against the same emulator (reset in between), so the figures compare:
API calls made, wall time, and the time Defender's documented rate limits impose on those calls
(POST /api/indicators: 100/min and 1,500/h; import: 30/min; list: 100/min). The collection's client paces
itself by those limits; here their windows are scaled down (--scale, MDE_RATE_LIMIT_SCALE and the emulator's
rate_limit_scale alike) so the run takes minutes, and the "rate-limit floor" column gives the least time the
real, unscaled limits allow for the calls made.

Run: .venv/bin/python -m bench.indicators [--count 10000] [--scale 0.002]. Prints figures; never fails on time.
"""
import argparse
import hashlib
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

# Documented limits per endpoint family: (calls, seconds) windows (https://learn.microsoft.com/en-us/defender-endpoint/api/ti-indicator).
LIMITS = {"post": [(100, 60), (1500, 3600)], "import": [(30, 60)], "batchdelete": [(30, 60), (1500, 3600)],
          "list": [(100, 60), (1500, 3600)]}


def feed(count):
    items = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            value, itype = hashlib.sha256(b"bench%d" % i).hexdigest(), "FileSha256"
        elif kind == 1:
            value, itype = "10.%d.%d.%d" % (i // 65536 % 256, i // 256 % 256, i % 256), "IpAddress"
        elif kind == 2:
            value, itype = "host%d.bench.example.com" % i, "DomainName"
        else:
            value, itype = "http://phish%d.bench.example.net/login" % i, "Url"
        items.append(dict(indicator_value=value, indicator_type=itype, action="Block", title="Bench feed",
                          description="Bench item %d" % i, severity="Medium"))
    return items


def family(entry):
    path = entry["path"]
    if entry["method"] == "GET" and path == "/api/indicators":
        return "list"
    if path == "/api/indicators/import":
        return "import"
    if path == "/api/indicators/BatchDelete":
        return "batchdelete"
    if entry["method"] == "POST" and path == "/api/indicators":
        return "post"
    return None


def floor_seconds(counts):
    """The least time the documented per-app rate limits allow for these calls (sliding windows, a burst first)."""
    worst = 0.0
    for fam, n in counts.items():
        for calls, window in LIMITS.get(fam, []):
            if n > calls:
                worst = max(worst, (math.ceil(n / calls) - 1) * window)
    return worst


def duration(seconds):
    return "%.1f h" % (seconds / 3600) if seconds >= 3600 else "%.0f s" % seconds


def api_calls(emu):
    counts = {}
    for entry in emu.log:
        fam = family(entry)
        if fam:
            if entry.get("status") == 429:  # throttled by the (scaled) emulator and retried by the client
                fam = "429 retried"
            counts[fam] = counts.get(fam, 0) + 1
    return counts


def run_module(emu, workdir, items, name, scale):
    ansible = Ansible(emu, workdir)
    (workdir / "feed.yml").write_text(yaml.safe_dump({"feed": items}))
    (workdir / "sync.yml").write_text(yaml.safe_dump([{
        "name": name, "hosts": "localhost", "gather_facts": False, "vars_files": ["feed.yml"],
        "tasks": [{"name": "sync", "defender.endpoint.mde_indicator": {"indicators": "{{ feed }}"}}]}]))
    env = ansible.env(ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                      MDE_RATE_LIMIT_SCALE=scale)
    emu.clear_log()
    start = time.perf_counter()
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(workdir / "sync.yml")], env=env, capture_output=True, text=True, cwd=str(workdir), check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("the mde_indicator sync failed (rc %d)" % proc.returncode)
    return elapsed, api_calls(emu)


def run_baseline(emu, items, scale):
    """One POST /api/indicators per indicator, through the collection's own client (same session, retries)."""
    from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client  # pylint: disable=import-outside-toplevel
    from ansible_collections.defender.endpoint.plugins.module_utils import indicators as ti  # pylint: disable=import-outside-toplevel
    app = emu.apps["full"]
    os.environ["MDE_RATE_LIMIT_SCALE"] = str(scale)
    client = create_client(tenant_id=emu.tenant_id, client_id=app["client_id"], client_secret=app["client_secret"],
                           api_url=emu.url, authority_host=emu.url, ca_path=emu.ca_path, token_cache=False)
    bodies, _warnings = ti.build_all(items, "present")
    emu.clear_log()
    start = time.perf_counter()
    for body in bodies:
        client.post("/api/indicators", json=body, retry_safe=True)
    return time.perf_counter() - start, api_calls(emu)


def fmt(counts):
    return ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items())) or "none"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="indicators to sync (default 10000)")
    parser.add_argument("--scale", type=float, default=0.002,
                        help="length of the rate-limit windows relative to the real minute and hour (default 0.002)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MDE_TEST_COLLECTIONS", collections_path())
    sys.path.insert(0, collections_path())
    items = feed(args.count)
    rows = []

    def row(label, result):
        elapsed, counts = result
        rows.append((label, elapsed, counts))
        floor = floor_seconds(counts)
        print("%-44s %9.1f %8d %-32s %s" % (label, elapsed, sum(counts.values()), fmt(counts), duration(floor)),
              flush=True)

    print("Sync of %d indicators against the emulator (20 seed indicators); rate-limit windows scaled by %g"
          % (args.count, args.scale))
    print("%-44s %9s %8s %-32s %s" % ("scenario", "wall s", "calls", "API calls by family", "rate-limit floor"), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-indicators-") as tmp:
        tmp = Path(tmp)
        with Emulator(state_dir=tmp / "emu", machines=5, rate_limit_scale=args.scale) as emu:
            row("mde_indicator, first sync (all new)", run_module(emu, tmp, items, "first sync", args.scale))
            row("mde_indicator, re-run (nothing changed)", run_module(emu, tmp, items, "re-run", args.scale))
            changed = [dict(i) for i in items]
            for i in range(0, len(changed), 100):
                changed[i]["severity"] = "High"
            row("mde_indicator, 1% changed", run_module(emu, tmp, changed, "1% changed", args.scale))
            emu.reset()
            row("baseline: one POST per indicator", run_baseline(emu, items, args.scale))
            row("baseline, re-run (POSTs everything again)", run_baseline(emu, items, args.scale))

    module, base = rows[0], rows[3]
    print("calls: module %d vs baseline %d (%.0fx fewer); wall time: module %.1f s vs baseline %.1f s (%.1fx)" % (
        sum(module[2].values()), sum(base[2].values()), sum(base[2].values()) / max(1, sum(module[2].values())),
        module[1], base[1], base[1] / module[1] if module[1] else float("nan")))
    print("under Defender's real (unscaled) limits: module >= %s, baseline >= %s" % (
        duration(floor_seconds(module[2])), duration(floor_seconds(base[2]))))


if __name__ == "__main__":
    main()
