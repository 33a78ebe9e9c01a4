"""`make bench`: every benchmark against the emulator, one after the other; each prints its own figures.

They never fail on time: each prints ratios against a baseline measured in the same run.
"""
import sys

from bench import indicators, inventory, throttle

BENCHMARKS = [("throttle", throttle.main), ("indicators", indicators.main), ("inventory", inventory.main)]

if __name__ == "__main__":
    wanted = sys.argv[1:] or [name for name, _rest in BENCHMARKS]
    for name, main in BENCHMARKS:
        if name in wanted:
            print("\n### bench.%s" % name, flush=True)
            main([])
