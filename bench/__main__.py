"""`make bench`: every benchmark against the emulator, one after the other; each prints its own figures.

They never fail on time: each prints ratios against a baseline measured in the same run.
"""
import sys

from bench import detection_rules, indicators, inventory, live_response, task_overhead, tenants, throttle

BENCHMARKS = [("throttle", throttle.main), ("indicators", indicators.main), ("inventory", inventory.main),
              ("task_overhead", task_overhead.main), ("live_response", live_response.main),
              ("detection_rules", detection_rules.main), ("tenants", tenants.main)]

if __name__ == "__main__":
    # `python -m bench NAME [NAME...] [--option ...]`: options after the names go to each benchmark named.
    args = sys.argv[1:]
    first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    wanted, options = args[:first_option] or [name for name, _rest in BENCHMARKS], args[first_option:]
    for name, main in BENCHMARKS:
        if name in wanted:
            print("\n### bench.%s" % name, flush=True)
            main(options)
