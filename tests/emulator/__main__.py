"""Run the emulator from the command line: ``python -m tests.emulator --port 8443 --machines 200 --state-dir .emulator``
(or ``mde-emulator ...`` once installed with ``pip install tests/emulator``). Writes ``<state-dir>/ca.pem``,
``<state-dir>/config.json`` and ``<state-dir>/env`` (the variables, for a shell to source), prints the URL and them, serves until SIGINT/SIGTERM."""

import argparse
import os
import signal
import socket
import sys
import threading

from .emulator import Emulator


def port_in_use(host, port):
    """Why ``port`` cannot be listened on at ``host`` (the OS's words), or None when it can; 0 is always free."""
    if not port:
        return None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Emulator.start() binds
        sock.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()
    return None


def main(argv=None):
    # "python -m tests.emulator" in this repository; "mde-emulator" (the console script) when installed.
    prog = "python -m %s" % __package__ if sys.argv[0].endswith("__main__.py") else None
    parser = argparse.ArgumentParser(prog=prog, description="HTTPS emulator of the Microsoft Defender for Endpoint API and "
                                     "the Entra ID token endpoint. Writes STATE_DIR/ca.pem and STATE_DIR/config.json, prints "
                                     "its URL, serves until interrupted. See docs/sandbox.md.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port (default 8443)")
    parser.add_argument("--machines", type=int, default=200, help="seeded machines (default 200)")
    parser.add_argument("--alerts", type=int, default=None, help="seeded alerts (default 2 per machine, at most 20,000)")
    parser.add_argument("--indicators", type=int, default=None, help="seeded indicators (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same machines, alerts and indicators (default 1)")
    parser.add_argument("--state-dir", default=".emulator", help="where ca.pem, config.json and the TLS and app certificates are written (default .emulator)")
    parser.add_argument("--rate-limit-scale", type=float, default=1.0, help="multiplies every rate-limit window: 0.01 allows 100 calls per 0.6 s (default 1.0)")
    parser.add_argument("--action-delays", default="0.5,0.5", help="seconds a machine action stays Pending, then InProgress (default 0.5,0.5)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="access token lifetime in seconds (default 3600)")
    parser.add_argument("--device-code-interval", type=int, default=5, help="device code flow: seconds between polls the client is told (default 5)")
    parser.add_argument("--device-code-expires-in", type=int, default=900, help="device code flow: seconds a code stays valid (default 900)")
    parser.add_argument("--auto-approve-device-code", metavar="UPN", default=None,
                        help="sign every device code flow in at once as this user (e.g. analyst@contoso.onmicrosoft.com); "
                        "without it, approve at URL/devicelogin")
    parser.add_argument("--identity-header", default=None, help="the managed identity IDENTITY_HEADER secret (default: random)")
    parser.add_argument("--tenants", default="", metavar="NAME[,NAME...]",
                        help="customers' tenants besides the home one (contoso), each with its own machines, alerts and limits, "
                        "consented to the multi-tenant apps full and cert (docs/tenants.md)")
    args = parser.parse_args(argv)
    delays = tuple(float(x) for x in args.action_delays.split(","))
    if len(delays) != 2:
        parser.error("--action-delays takes two comma-separated numbers")
    busy = port_in_use(args.host, args.port)
    if busy:
        # Before anything is written: a second emulator on the same state directory would replace the CA and the
        # configuration of the one that is running.
        print("Port %d on %s is already in use (%s; another emulator?): choose a free one with `make emulator PORT=%d` "
              "(or --port)." % (args.port, args.host, busy, args.port + 1), file=sys.stderr)
        return 2
    try:
        emu = Emulator(state_dir=args.state_dir, machines=args.machines, alerts=args.alerts, indicators=args.indicators, seed=args.seed,
                       host=args.host, port=args.port, rate_limit_scale=args.rate_limit_scale, action_delays=delays,
                       token_lifetime=args.token_lifetime, device_code_interval=args.device_code_interval,
                       device_code_expires_in=args.device_code_expires_in, auto_approve_device_code=args.auto_approve_device_code,
                       identity_header=args.identity_header, tenants=[t.strip() for t in args.tenants.split(",") if t.strip()])
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        emu.start()
    except OSError as exc:  # the port was taken between the check and now
        print("Could not listen on %s port %d (%s): choose a free one with `make emulator PORT=%d` (or --port)."
              % (args.host, args.port, exc.strerror or exc, args.port + 1), file=sys.stderr)
        return 2
    print(emu.url, flush=True)
    shown = os.path.relpath(emu.env_path) if not os.path.relpath(emu.env_path).startswith("..") else emu.env_path
    print("\nEvery variable the collection needs to talk only to this emulator (Defender API, Microsoft Graph, Entra ID)"
          " is in %s. In the shell that runs your playbooks:\n\n    source %s\n\n%s\nServing until Ctrl-C."
          % (shown, shown, emu.env_text()), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
