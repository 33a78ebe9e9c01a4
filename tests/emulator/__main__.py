"""Run the emulator from the command line: ``python -m tests.emulator --port 8443 --machines 200 --state-dir .emulator``."""

import argparse
import signal
import sys
import threading

from .emulator import Emulator


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=None)
    parser.add_argument("--indicators", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state-dir", default=".emulator")
    parser.add_argument("--rate-limit-scale", type=float, default=1.0)
    parser.add_argument("--action-delays", default="0.5,0.5", help="seconds Pending,InProgress (e.g. 0.5,0.5)")
    parser.add_argument("--token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    delays = tuple(float(x) for x in args.action_delays.split(","))
    if len(delays) != 2:
        parser.error("--action-delays takes two comma-separated numbers")
    emu = Emulator(state_dir=args.state_dir, machines=args.machines, alerts=args.alerts, indicators=args.indicators, seed=args.seed,
                   host=args.host, port=args.port, rate_limit_scale=args.rate_limit_scale, action_delays=delays,
                   token_lifetime=args.token_lifetime)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emu.start()
    print(emu.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
