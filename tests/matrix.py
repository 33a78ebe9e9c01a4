"""The ansible-core version matrix of ``make test`` (the main venv's version runs the whole suite before this).

For every other version the collection claims (tests/cores.py), in that version's own venv:
- the unit tests, under that version's Python and ansible-core;
- on the oldest and the newest version, the whole integration suite (real ansible-playbook, ansible-inventory and
  ansible-rulebook runs of that version against the emulator);
- on the versions between, the inventory plugin's integration tests and one real playbook of every module
  (tests/integration/test_controller_side.py).
The hostile-data tests already run on the oldest and newest version in the main run, so they are not repeated.
Prints what ran on each version and how long it took; exits non-zero when anything failed.

    python -m tests.matrix [VERSION ...]
"""
import os
import subprocess
import sys
import time

from tests import cores

ROOT = cores.ROOT
PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
REPEATED_ELSEWHERE = ["--ignore", "tests/integration/test_untrusted_data.py", "-k", "not hostile"]
BETWEEN = ["tests/integration/test_mde_machines_inventory.py", "tests/integration/test_controller_side.py"]


def run(label, args, env=None):
    print("\n=== %s: %s" % (label, " ".join(args)), flush=True)
    started = time.monotonic()
    code = subprocess.run(args, cwd=ROOT, env=env, check=False).returncode
    return code, time.monotonic() - started


def main(argv):
    versions = argv or sorted((v for v in cores.CORES if v != cores.MAIN), key=lambda v: [int(p) for p in v.split(".")])
    main_python = os.path.join(cores.bin_dir(cores.MAIN), "python")
    rows = []
    for version in versions:
        python = os.path.join(cores.ensure(version), "python")
        code, seconds = run("ansible-core %s unit" % version, [python] + PYTEST + ["tests/unit"])
        rows.append((version, "unit tests", code, seconds))
        env = dict(os.environ, MDE_TEST_CORE=version)
        if version in (cores.OLDEST, cores.NEWEST):
            # On two workers, as the main run (a file's tests stay on one worker).
            what, args = "whole integration suite", ["-n", "2", "--dist", "loadfile", "tests/integration"] + REPEATED_ELSEWHERE
        else:
            what, args = "inventory + every module once", BETWEEN
        code, seconds = run("ansible-core %s integration" % version, [main_python] + PYTEST + args, env=env)
        rows.append((version, what, code, seconds))
    print("\nansible-core matrix (the main venv's %s ran the whole suite before this):" % cores.MAIN)
    print("%-8s %-32s %-8s %s" % ("version", "what", "result", "seconds"))
    for version, what, code, seconds in rows:
        print("%-8s %-32s %-8s %.0f" % (version, what, "passed" if code == 0 else "FAILED", seconds))
    failed = [r for r in rows if r[2] != 0]
    print("%d passed, %d failed" % (len(rows) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
