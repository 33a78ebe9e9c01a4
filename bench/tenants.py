"""Three tenants isolating at once: 3 x 300 isolations with forks 30, each tenant at its own documented limit.

A security provider's play over a multi-tenant inventory: every host carries ``mde_tenant_id`` and the play's
``module_defaults`` send each task to its host's tenant. Defender counts calls per app and tenant
(https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-partners, "each tenant has its own
limits"), and so does the collection's shared budget (its key names the tenant and the app). So three tenants'
isolations proceed side by side: the whole play's bound is one tenant's (300 calls at 100 per window: two windows),
not three times it. The hosts are listed taking the tenants in turn, as the mde_machines inventory gives them (its
group mde_tenants); the same play over the hosts in tenant order shows why (every fork waits on one tenant's limits).
The baseline is the same play run tenant after tenant, one ``ansible-playbook`` each.

Reported per run: wall time against one tenant's bound, failed tasks, 429s the API sent, isolations created, any
machine isolated twice, and each tenant's isolations as the emulator received them.

Run: .venv/bin/python -m bench.tenants [--actions 300] [--forks 30] [--scale 1] [--skip-baseline]
"""
import argparse
import os
import tempfile

from bench.common import run_per_host_play
from tests.emulator import Emulator

TENANTS = ("contoso", "fabrikam", "northwind")
PLAY = """
- name: Isolate every targeted machine, each in its own tenant
  hosts: targets
  gather_facts: false
  module_defaults:
    group/defender.endpoint.mde:
      tenant_id: "{{ mde_tenant_id }}"
  tasks:
    - name: Isolate the host's machine in the host's tenant
      defender.endpoint.mde_machine_action:
        action: isolate
        machine_id: "{{ mde_id }}"
        comment: bench of three tenants
"""


def targets(emu, tenant, count):
    tid = emu.tenant_id_of(tenant)
    machines = [m for m in emu.tenant(tenant).machines if m["onboardingStatus"] == "Onboarded"][:count]
    return [{"mde_id": m["id"], "mde_tenant_id": tid} for m in machines]


def measure(emu, hosts, forks, scale, workdir):
    """One play over ``hosts``; what it did, from its own result and the emulator's log."""
    os.makedirs(workdir)
    data, start, wall = run_per_host_play(emu, hosts, PLAY, forks, scale, True, workdir, "isolate.yml")
    try:
        failed = sum(s["failures"] for s in data["stats"].values())
    except (TypeError, KeyError):
        failed = len(hosts)
    log = [e for e in emu.log if e["time"] >= start]
    accepted = [e for e in log if e["method"] == "POST" and e["path"].endswith("/isolate") and e["status"] == 201]
    per_machine = {}
    for e in accepted:
        per_machine[(e["tenant"], e["path"])] = per_machine.get((e["tenant"], e["path"]), 0) + 1
    return {"wall_s": wall, "failed": failed, "http_429": sum(1 for e in log if e["status"] == 429),
            "created": len(accepted), "twice": sum(1 for n in per_machine.values() if n > 1),
            "per_tenant": dict((name, sum(1 for e in accepted if e["tenant"] == emu.tenant_id_of(name))) for name in TENANTS)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=300, help="isolations per tenant")
    ap.add_argument("--forks", type=int, default=30)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    window = 60.0 * args.scale
    bound = ((args.actions - 1) // 100) * window  # one tenant's: its 300 calls at 100 per sliding window
    machines = int(args.actions * 1.2) + 10
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        emu = Emulator(state_dir=os.path.join(tmp, "emu"), machines=machines, rate_limit_scale=args.scale, action_delays=(30, 30),
                       tenants=[{"name": name, "machines": machines} for name in TENANTS[1:]])
        emu.start()
        try:
            hosts = dict((name, targets(emu, name, args.actions)) for name in TENANTS)
            in_turn = [h for row in zip(*(hosts[name] for name in TENANTS)) for h in row]
            results["3 tenants at once, in turn"] = measure(emu, in_turn, args.forks, args.scale,
                                                            os.path.join(tmp, "together"))
            if not args.skip_baseline:
                emu.reset()
                results["3 tenants at once, tenant order"] = measure(
                    emu, [h for name in TENANTS for h in hosts[name]], args.forks, args.scale, os.path.join(tmp, "sorted"))
            if not args.skip_baseline:
                emu.reset()
                runs = [measure(emu, hosts[name], args.forks, args.scale, os.path.join(tmp, "alone-" + name)) for name in TENANTS]
                results["tenant after tenant (baseline)"] = {
                    "wall_s": sum(r["wall_s"] for r in runs), "failed": sum(r["failed"] for r in runs),
                    "http_429": sum(r["http_429"] for r in runs), "created": sum(r["created"] for r in runs),
                    "twice": sum(r["twice"] for r in runs),
                    "per_tenant": dict((name, r["per_tenant"][name]) for name, r in zip(TENANTS, runs))}
        finally:
            emu.stop()
    print("tenants: %d tenants x %d isolations, forks %d, 100 calls per %.0f s window per tenant -> one tenant's bound "
          "%.0f s (%d CPUs)" % (len(TENANTS), args.actions, args.forks, window, bound, os.cpu_count() or 0))
    for name, r in results.items():
        print("  %-32s wall %6.1f s (%.2fx one tenant's bound)  failed %d  429s %d  created %d  twice %d  per tenant %s" % (
            name, r["wall_s"], r["wall_s"] / bound if bound else 0, r["failed"], r["http_429"], r["created"], r["twice"],
            ", ".join("%s %d" % kv for kv in r["per_tenant"].items())))
    return results


if __name__ == "__main__":
    main()
