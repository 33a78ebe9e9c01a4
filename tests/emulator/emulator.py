"""The :class:`Emulator` facade: owns state, tokens, TLS material and the uvicorn server thread."""

import json
import os
import socket
import tempfile
import threading
import time

import trustme
import uvicorn

from .auth import ALL_ROLES, TokenService
from .server import EmulatorApp
from .state import State

TENANT_ID = "8a6f2c1e-4b7d-4e0a-9c3f-5d2b1a0e9f47"
SEED_APPS = (
    # name, roles, secret, cert, cert_password
    ("full", ALL_ROLES, True, False, None),
    ("cert", ALL_ROLES, False, True, None),
    ("cert_encrypted", ALL_ROLES, False, True, "emulator-cert-password"),
    ("readonly", ("Machine.Read.All", "Alert.Read.All"), True, False, None),
    ("ti_own", ("Ti.ReadWrite", "Machine.Read.All"), True, False, None),
    ("noperm", (), True, False, None),
)


class Emulator:  # pylint: disable=too-many-instance-attributes
    """HTTPS emulator of the MDE API and the Entra ID v2 token endpoint. See README.md."""

    def __init__(self, state_dir=None, machines=50, alerts=None, indicators=None, seed=1, host="127.0.0.1", port=0,
                 rate_limit_scale=1.0, action_delays=(0.5, 0.5), token_lifetime=3600):
        self.state_dir = os.path.abspath(str(state_dir or tempfile.mkdtemp(prefix="mde-emulator-")))
        os.makedirs(self.state_dir, exist_ok=True)
        self.host = host
        self.port = port
        self.tenant_id = TENANT_ID
        self.tokens = TokenService(TENANT_ID, token_lifetime, self.state_dir)
        for name, roles, secret, cert, password in SEED_APPS:
            self.tokens.add_app(name, roles, secret=secret, cert=cert, cert_password=password)
        self.state = State(self.tokens, machines=machines, alerts=alerts, indicators=indicators, seed=seed,
                           rate_limit_scale=rate_limit_scale, action_delays=action_delays)
        self._ca = trustme.CA()
        self.ca_path = os.path.join(self.state_dir, "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        server_cert = self._ca.issue_cert("127.0.0.1", "localhost", host)
        self._cert_file = os.path.join(self.state_dir, "server.pem")
        self._key_file = os.path.join(self.state_dir, "server.key")
        server_cert.private_key_pem.write_to_path(self._key_file)
        with open(self._cert_file, "wb") as handle:
            for blob in server_cert.cert_chain_pems:
                handle.write(blob.bytes())
        self.url = None
        self._server = None
        self._thread = None
        self._sock = None

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout=30):
        """Start uvicorn in a daemon thread; return once it accepts connections."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        sock.set_inheritable(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.url = "https://%s:%d" % (self.host, self.port)
        config = uvicorn.Config(EmulatorApp(self), ssl_certfile=self._cert_file, ssl_keyfile=self._key_file, log_level="warning",
                                lifespan="off", proxy_headers=False, server_header=False, date_header=True, access_log=False,
                                timeout_keep_alive=30, http="httptools", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="mde-emulator", daemon=True)
        self._thread.start()
        deadline = time.time() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.time() > deadline:
                raise RuntimeError("MDE emulator failed to start")
            time.sleep(0.01)
        self.write_config()
        return self

    def stop(self):
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(timeout=10)
            self._server = None
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- introspection / control ------------------------------------------------------------------
    @property
    def apps(self):
        return self.tokens.public_apps()

    def add_app(self, name, roles, secret=True, cert=False, cert_password=None):
        self.tokens.add_app(name, roles, secret=secret, cert=cert, cert_password=cert_password)
        if self.url:
            self.write_config()
        return self.apps[name]

    def config(self):
        return {"url": self.url, "tenant_id": self.tenant_id, "ca_path": self.ca_path, "apps": self.apps,
                "authority": "%s/%s" % (self.url, self.tenant_id), "scope": "https://api.securitycenter.microsoft.com/.default"}

    def write_config(self):
        with open(os.path.join(self.state_dir, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(self.config(), handle, indent=2)

    @property
    def log(self):
        with self.state.lock:
            return list(self.state.log)

    def clear_log(self):
        with self.state.lock:
            self.state.log.clear()

    @property
    def counters(self):
        with self.state.lock:
            return {"token_requests": self.state.counters["token_requests"], "calls": dict(self.state.counters["calls"])}

    def writes(self):
        return [e for e in self.log if e["method"] in ("POST", "PATCH", "DELETE") and e["path"].lower().startswith(("/api", "/v1.0/"))
                and e["path"] != "/v1.0/security/runHuntingQuery"]

    def inject_fault(self, path_regex, kind, count=1, status=500, delay=0.0, method=None, retry_after=1, skip=0, message=None):
        self.state.add_fault(path_regex, kind, count=count, status=status, delay=delay, method=method, retry_after=retry_after,
                             skip=skip, message=message)

    def expire_tokens(self):
        self.tokens.expire_all()

    def set_action_outcome(self, machine_id, action_type, status="Failed"):
        with self.state.lock:
            self.state.action_outcomes[(machine_id, action_type)] = status

    def reset(self):
        self.state.reset()

    @property
    def machines(self):
        return self.state.machines

    @property
    def alerts(self):
        return self.state.alerts

    @property
    def indicators(self):
        return list(self.state.indicators.values())

    @property
    def machine_actions(self):
        with self.state.lock:
            return [self.state.refresh_action(a) for a in self.state.actions]

    def find_machines(self, **props):
        """Machines whose properties equal all of ``props`` (e.g. ``osPlatform="Linux", onboardingStatus="Onboarded"``)."""
        return [m for m in self.state.machines if all(m.get(k) == v for k, v in props.items())]

    def token_for(self, app="full", scope="https://api.securitycenter.microsoft.com/.default"):
        """Mint an access token directly (no HTTP) for ``app``; handy in tests."""
        info = self.tokens.apps[app]
        audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        return self.tokens.issue(info, audience)["access_token"]
