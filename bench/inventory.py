"""Benchmark: `ansible-inventory --list` over the mde_machines plugin vs over a static YAML inventory.

The emulator serves N machines (default 100,000). The plugin source lists them (pages of 10,000, one token) with two
keyed_groups; the static source is a YAML inventory of exactly the hosts, groups and variables that the plugin
produced (generated from its own --list output). Both run in this same process run, alternately, each as a fresh
`ansible-inventory` process; the figures are wall time and peak RSS of that process, and the plugin/static ratios
(target: at most 1.5 for both). Never fails on time.

With --tenants N: a security provider's inventory of N tenants x M machines (``tenants:``, one listing per tenant, side
by side) against one tenant of N x M machines, each from its own emulator, alternately; the same hosts either way.

Run: .venv/bin/python -m bench.inventory [--machines 100000] [--repeat 2]
     .venv/bin/python -m bench.inventory --tenants 3 --machines 10000 [--repeat 2]
"""
import argparse
import json
import os
import re
import shutil
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

BIN = ROOT / ".venv" / "bin"
TARGET = 1.5
PLUGIN_CONFIG = {
    "plugin": "defender.endpoint.mde_machines",
    "keyed_groups": [
        {"key": "mde_os_platform", "prefix": "os"},
        {"key": "mde_machine_tags", "prefix": "tag"},
    ],
}
# --constructed: Jinja expressions as inventories write them (compose, groups, an expression keyed_group), evaluated
# per host; what the plugin's memo of pure expressions (plugin_utils/jinja_memo.py) is for.
CONSTRUCTED = {
    "compose": {"platform_family": "'windows' if mde_os_platform.startswith('Windows') else mde_os_platform | lower",
                "stale": "mde_health_status != 'Active'"},
    "groups": {"windows": "mde_os_platform.startswith('Windows')",
               "exposed": "mde_exposure_level in ['High', 'Medium'] and mde_health_status == 'Active'"},
    "keyed_groups": [{"key": "mde_os_platform | lower", "prefix": "platform"}],
}
# Peak RSS of one child when /usr/bin/time is absent: the only child this wrapper waits for is the command.
RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "sys.stderr.write('Maximum resident set size (kbytes): %d\\n' % "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def plain(value):
    """ansible-inventory marks strings that came from a plugin as {"__ansible_unsafe": ...}; a static file has
    plain values."""
    if isinstance(value, dict):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def static_inventory(listing):
    """A YAML inventory with the same hosts, groups and host variables as an `ansible-inventory --list` output."""
    hostvars = plain(listing["_meta"]["hostvars"])
    grouped = set()
    children = {}
    for group, body in listing.items():
        if group in ("_meta", "all", "ungrouped") or not isinstance(body, dict):
            continue
        hosts = body.get("hosts") or []
        grouped.update(hosts)
        children[group] = {"hosts": dict((h, None) for h in hosts)}
    for group, body in listing.items():  # nested groups (none with keyed_groups alone, kept for completeness)
        if group in children and body.get("children"):
            children[group]["children"] = dict((c, None) for c in body["children"])
    return {"all": {"hosts": hostvars, "children": children}}


def measure(args, env, out_path, cwd):
    """Run one command; return (wall seconds, peak RSS in MiB, return code, stderr tail)."""
    if os.path.exists("/usr/bin/time"):
        cmd = ["/usr/bin/time", "-v"] + args
    else:
        cmd = [sys.executable, "-c", RSS_WRAPPER] + args
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE, cwd=cwd, check=False)
        wall = time.perf_counter() - start
    err = proc.stderr.decode("utf-8", "replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss = int(m.group(1)) / 1024.0 if m else float("nan")
    return wall, rss, proc.returncode, err[-2000:]


def mem_available_mib():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def subset(listing, count):
    """The first ``count`` hosts of a --list output, with their group memberships."""
    keep = set(list(listing["_meta"]["hostvars"])[:count])
    out = {"_meta": {"hostvars": dict((h, v) for h, v in listing["_meta"]["hostvars"].items() if h in keep)}}
    for group, body in listing.items():
        if group != "_meta" and isinstance(body, dict):
            out[group] = dict(body, hosts=[h for h in body.get("hosts", []) if h in keep])
    return out


def normalized(path):
    data = plain(json.load(open(path)))
    if "all" in data:
        data["all"]["children"] = sorted(data["all"].get("children", []))
    return data


class Bench:
    def __init__(self, work, repeat, config=None):
        self.work = work
        self.repeat = max(1, repeat)
        self.config = config or PLUGIN_CONFIG
        self.inv = str(BIN / "ansible-inventory")

    def start(self, machines):
        t0 = time.perf_counter()
        emu = Emulator(state_dir=self.work / ("emulator-%d" % machines), machines=machines)
        emu.start()
        print("emulator: %d machines, %d onboarded, ready in %.1f s" % (
            machines, sum(1 for m in emu.machines if m["onboardingStatus"] == "Onboarded"), time.perf_counter() - t0))
        env = Ansible(emu, self.work).env(ANSIBLE_COLLECTIONS_PATH=collections_path(),
                                          ANSIBLE_INVENTORY_ENABLED="auto,yaml", ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
        return emu, env

    def run(self, name, source, env, out):
        wall, rss, rc, err = measure([self.inv, "-i", str(source), "--list"], env, out, str(self.work))
        if rc != 0:
            raise RuntimeError("%s run failed (rc %d):\n%s" % (name, rc, err))
        return wall, rss

    def plugin_listing(self, env, tag):
        cfg = self.work / "mde.yml"
        cfg.write_text(yaml.safe_dump(self.config, sort_keys=False))
        out = self.work / ("plugin-%s.json" % tag)
        wall, rss = self.run("plugin", cfg, env, out)
        with open(out) as handle:
            listing = json.load(handle)
        return cfg, listing, (wall, rss)

    def write_static(self, listing, tag):
        path = self.work / ("static-%s.yml" % tag)
        with open(path, "w") as handle:
            yaml.dump(static_inventory(listing), handle, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                      default_flow_style=False, sort_keys=False)
        return path

    def compare(self, env, cfg, static_path, tag):
        results = {"plugin": [], "static": []}
        for _i in range(self.repeat):
            for name, source in (("static", static_path), ("plugin", cfg)):
                results[name].append(self.run(name, source, env, self.work / ("%s-%s.json" % (name, tag))))
        same = normalized(self.work / ("plugin-%s.json" % tag)) == normalized(self.work / ("static-%s.json" % tag))
        return results, same


def report(results, same, hosts, groups):
    print("")
    print("%d hosts, %d groups -- each run a fresh `ansible-inventory --list` process, best of %d" % (
        hosts, groups, len(results["plugin"])))
    print("%-8s %10s %16s   %s" % ("source", "wall (s)", "peak RSS (MiB)", "all runs"))
    best = {}
    for name in ("static", "plugin"):
        best[name] = (min(w for w, _rest in results[name]), min(r for _first, r in results[name]))
        print("%-8s %10.2f %16.1f   %s" % (name, best[name][0], best[name][1], ", ".join(
            "%.2f s / %.0f MiB" % run for run in results[name])))
    time_ratio = best["plugin"][0] / best["static"][0]
    rss_ratio = best["plugin"][1] / best["static"][1]
    print("ratio plugin/static: wall %.2fx, peak RSS %.2fx (target <= %.1fx: wall %s, RSS %s)" % (
        time_ratio, rss_ratio, TARGET, "met" if time_ratio <= TARGET else "NOT met",
        "met" if rss_ratio <= TARGET else "NOT met"))
    print("same --list output from both sources: %s" % ("yes" if same else "NO"))


def side_by_side(bench, env, cfg, against):
    """The plugin of this tree and of ``against``, alternately, on the same emulator; the same --list from both."""
    other = dict(env, ANSIBLE_COLLECTIONS_PATH=against)
    runs = {"this": [], "other": []}
    for _i in range(bench.repeat):
        for name, run_env in (("other", other), ("this", env)):
            runs[name].append(bench.run(name, cfg, run_env, bench.work / ("%s.json" % name)))
    print("")
    print("this tree vs %s -- each run a fresh `ansible-inventory --list` process, best of %d" % (against, bench.repeat))
    for name in ("this", "other"):
        walls, rss = [w for w, _r in runs[name]], [r for _w, r in runs[name]]
        print("%-6s best %.2f s, %.0f MiB (runs: %s)" % (
            name, min(walls), min(rss), ", ".join("%.2f s / %.0f MiB" % run for run in runs[name])))
    print("ratio this/other: wall %.2fx" % (min(w for w, _r in runs["this"]) / min(w for w, _r in runs["other"])))
    same = normalized(bench.work / "this.json") == normalized(bench.work / "other.json")
    print("same --list output from both: %s" % ("yes" if same else "NO"))
    return 0


def tenants_side_by_side(work, count, machines, repeat):
    """``count`` tenants of ``machines`` each (one emulator: the home tenant and count - 1 customers') against one
    tenant of ``count * machines`` (another emulator): wall and peak RSS of ``ansible-inventory --list``, best of
    ``repeat``, run alternately."""
    names = ["contoso"] + ["customer%d" % i for i in range(1, count)]
    t0 = time.perf_counter()
    many = Emulator(state_dir=work / "emulator-tenants", machines=machines,
                    tenants=[{"name": name, "machines": machines} for name in names[1:]])
    one = Emulator(state_dir=work / "emulator-one", machines=machines * count)
    sources = {}
    try:
        for emu in (many, one):
            emu.start()
        print("emulators: %d tenants x %d machines, and 1 tenant x %d machines, ready in %.1f s" % (
            count, machines, machines * count, time.perf_counter() - t0))
        for name, emu, config in (
                ("%d tenants" % count, many, dict(PLUGIN_CONFIG, tenants=[
                    {"tenant_id": many.tenant_id_of(label), "name": label} for label in names])),
                ("1 tenant", one, PLUGIN_CONFIG)):
            env = Ansible(emu, work).env(ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_INVENTORY_ENABLED="auto,yaml",
                                         ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
            path = work / ("%s.mde.yml" % name.replace(" ", "_"))
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            sources[name] = (path, env)
        bench = Bench(work, repeat)
        runs = dict((name, []) for name in sources)
        hosts = {}
        for _i in range(repeat + 1):  # the first round warms each emulator up (it serialises each machine once)
            for name, (path, env) in sources.items():
                out = work / ("%s.json" % name.replace(" ", "_"))
                result = bench.run(name, path, env, out)
                if _i:
                    runs[name].append(result)
                with open(out) as handle:
                    hosts[name] = len(json.load(handle)["_meta"]["hostvars"])
    finally:
        for emu in (many, one):
            emu.stop()
    print("")
    print("each run a fresh `ansible-inventory --list` process after a warm-up round, best of %d" % repeat)
    best = {}
    for name, results in runs.items():
        best[name] = (min(w for w, _r in results), min(r for _w, r in results))
        print("%-10s %6d hosts  best %.2f s, %.0f MiB (runs: %s)" % (
            name, hosts[name], best[name][0], best[name][1], ", ".join("%.2f s / %.0f MiB" % run for run in results)))
    first, second = list(best)
    ratios = (best[first][0] / best[second][0], best[first][1] / best[second][1])
    print("ratio %s / %s: wall %.2fx, peak RSS %.2fx" % ((first, second) + ratios))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100000, help="machines the emulator serves (default 100000)")
    parser.add_argument("--repeat", type=int, default=2, help="measured runs of each source (default 2; best is kept)")
    parser.add_argument("--sample", type=int, default=2000,
                        help="hosts of the static memory probe run before the full static run (default 2000)")
    parser.add_argument("--memory-fraction", type=float, default=0.25,
                        help="share of the available memory the static baseline may use (default 0.25); a larger "
                             "static inventory is compared at a smaller size instead")
    parser.add_argument("--constructed", action="store_true",
                        help="add Jinja compose, groups and an expression keyed_group to the plugin's configuration")
    parser.add_argument("--against", metavar="COLLECTIONS_PATH",
                        help="instead of the static baseline, the plugin of another collections path (a copy of the "
                             "collection with a change), run alternately with this one; prints both and the ratio")
    parser.add_argument("--tenants", type=int, default=0,
                        help="instead: this many tenants of --machines each (tenants:) against one tenant of them all")
    opts = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-inventory-"))
    if opts.tenants:
        try:
            return tenants_side_by_side(work, opts.tenants, opts.machines, opts.repeat)
        finally:
            shutil.rmtree(str(work), ignore_errors=True)
    config = dict(PLUGIN_CONFIG, compose=CONSTRUCTED["compose"], groups=CONSTRUCTED["groups"],
                  keyed_groups=PLUGIN_CONFIG["keyed_groups"] + CONSTRUCTED["keyed_groups"]) if opts.constructed else None
    bench = Bench(work, opts.repeat, config)
    emu = None
    try:
        emu, env = bench.start(opts.machines)
        # Warm-up (the emulator serialises each machine once), and the source of the static inventory.
        cfg, listing, warm = bench.plugin_listing(env, "full")
        hosts = len(listing["_meta"]["hostvars"])
        groups = len([g for g in listing if g not in ("_meta", "all", "ungrouped")])
        print("plugin warm-up: %d hosts, %d groups in %.1f s, %.0f MiB" % (hosts, groups, warm[0], warm[1]))
        if opts.against:
            del listing
            return side_by_side(bench, env, cfg, opts.against)

        # ansible-core's YAML inventory needs far more memory per host than the plugin: probe it on a sample, and
        # rather than exhaust the machine, compare at the largest size that fits.
        fits = hosts
        available = mem_available_mib()
        if available and hosts > opts.sample * 2:
            probe = bench.write_static(subset(listing, opts.sample), "probe")
            base_wall, base_rss = bench.run("static", bench.write_static(subset(listing, 1), "one"), env,
                                            work / "one.json")
            wall, rss = bench.run("static", probe, env, work / "probe.json")
            per_host = max(0.0, rss - base_rss) / opts.sample
            need = base_rss + per_host * hosts
            print("static probe: %d hosts %.0f MiB (1 host %.0f MiB) -> %d hosts need about %.0f MiB; %.0f MiB "
                  "available" % (opts.sample, rss, base_rss, hosts, need, available))
            budget = opts.memory_fraction * available
            if need > budget and per_host > 0:
                fits = int((budget - base_rss) / per_host)
        if fits >= hosts:
            static_path = bench.write_static(listing, "full")
            del listing
            results, same = bench.compare(env, cfg, static_path, "full")
            report(results, same, hosts, groups)
            return 0

        # Too big for the static baseline here: the plugin alone at full size, then both at a size that fits.
        del listing
        plugin_runs = [warm] + [bench.run("plugin", cfg, env, work / "plugin-full.json") for _i in range(opts.repeat)]
        print("")
        print("plugin alone, %d hosts: best %.2f s, %.0f MiB (runs: %s)" % (
            hosts, min(w for w, _rest in plugin_runs), min(r for _first, r in plugin_runs),
            ", ".join("%.2f s / %.0f MiB" % run for run in plugin_runs)))
        print("the static YAML baseline of %d hosts would not fit in memory here; comparing at %d machines" % (
            hosts, int(fits / 0.95)))
        emu.stop()
        emu, env = bench.start(int(fits / 0.95))
        cfg, small, _unused = bench.plugin_listing(env, "small")
        static_path = bench.write_static(small, "small")
        hosts = len(small["_meta"]["hostvars"])
        del small
        results, same = bench.compare(env, cfg, static_path, "small")
        report(results, same, hosts, groups)
        return 0
    except RuntimeError as e:
        print(str(e))
        return 1
    finally:
        if emu is not None:
            emu.stop()
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
