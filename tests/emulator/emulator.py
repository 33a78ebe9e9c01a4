"""The :class:`Emulator` facade: owns state, tokens, TLS material and the uvicorn server thread."""

import json
import os
import re
import shlex
import socket
import tempfile
import threading
import time
import uuid

import trustme
import uvicorn

from .auth import ALL_RESOURCES, ALL_ROLES, GRAPH_ROLES, TokenService
from .auth_identity import TOKEN_EXCHANGE_AUDIENCE, Federation, ManagedIdentities
from .auth_user import MDE_DELEGATED, UserAuth
from .server import EmulatorApp
from .state import State

TENANT_ID = "8a6f2c1e-4b7d-4e0a-9c3f-5d2b1a0e9f47"
SEED_APPS = (
    # name, roles, secret, cert, cert_password[, more add_app() keyword arguments]
    # full and cert: the security provider's multi-tenant app (add_tenant consents to them in a customer's tenant)
    ("full", ALL_ROLES, True, False, None, {"multi_tenant": True}),
    ("cert", ALL_ROLES, False, True, None, {"multi_tenant": True}),
    ("cert_encrypted", ALL_ROLES, False, True, "emulator-cert-password"),
    ("readonly", ("Machine.Read.All", "Alert.Read.All"), True, False, None),
    ("ti_own", ("Ti.ReadWrite", "Machine.Read.All"), True, False, None),
    ("noperm", (), True, False, None),
    # public clients for the device code flow (user context), with delegated permissions consented
    ("analyst", (), False, False, None, {"public_client": True, "delegated": MDE_DELEGATED + GRAPH_ROLES}),
    ("analyst_readonly", (), False, False, None, {"public_client": True, "delegated": ("Machine.Read", "Alert.Read")}),
    # workload identity federation: trusts the emulator's own OIDC issuer (issuer None) for one Kubernetes service account
    ("workload", ALL_ROLES, False, False, None,
     {"federated": [{"issuer": None, "subject": "system:serviceaccount:awx:automation-job", "audiences": [TOKEN_EXCHANGE_AUDIENCE]}]}),
)
SEED_MANAGED_IDENTITIES = (
    # name, roles, system-assigned
    ("system", ALL_ROLES, True),
    ("automation", ALL_ROLES, False),
    ("mi_readonly", ("Machine.Read.All",), False),
)
WORKLOAD_SUBJECT = "system:serviceaccount:awx:automation-job"
HOME_TENANT = "contoso"  # the home tenant's label: its apps are registered there, its machines are *.contoso.local


class Emulator:  # pylint: disable=too-many-instance-attributes
    """HTTPS emulator of the MDE API and the Entra ID v2 token endpoint. See README.md."""

    def __init__(self, state_dir=None, machines=50, alerts=None, indicators=None, seed=1, host="127.0.0.1", port=0,
                 rate_limit_scale=1.0, action_delays=(0.5, 0.5), token_lifetime=3600, device_code_interval=5, device_code_expires_in=900,
                 auto_approve_device_code=None, identity_header=None, tenants=()):
        self.state_dir = os.path.abspath(str(state_dir or tempfile.mkdtemp(prefix="mde-emulator-")))
        os.makedirs(self.state_dir, exist_ok=True)
        self.host = host
        self.port = port
        self.tenant_id = TENANT_ID
        self.tokens = TokenService(TENANT_ID, token_lifetime, self.state_dir)
        for name, roles, secret, cert, password, *more in SEED_APPS:
            self.tokens.add_app(name, roles, secret=secret, cert=cert, cert_password=password, **(more[0] if more else {}))
        self.user_auth = UserAuth(self.tokens, interval=device_code_interval, expires_in=device_code_expires_in,
                                  auto_approve=auto_approve_device_code)
        self.managed_identities = ManagedIdentities(self.tokens, identity_header or str(uuid.uuid4()))
        for name, roles, system in SEED_MANAGED_IDENTITIES:
            self.managed_identities.add(name, roles, system=system)
        self.federation = Federation(self.tokens)
        self.state = State(self.tokens, machines=machines, alerts=alerts, indicators=indicators, seed=seed,
                           rate_limit_scale=rate_limit_scale, action_delays=action_delays)
        # Every tenant's own data and limits (README, "Tenants"): tenant id -> State; the home tenant's is self.state,
        # which also holds the request log, the counters and the faults of the whole emulator.
        self.tenant_states = {TENANT_ID: self.state}
        self.tenant_names = {TENANT_ID: HOME_TENANT}
        self._consents = {}  # tenant id -> (apps, roles) consented when it was added: reset() goes back to them
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
        for spec in tenants:
            self.add_tenant(**(spec if isinstance(spec, dict) else {"name": spec}))

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
        self.tokens.base_url = self.url
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

    def add_app(self, name, roles=(), secret=True, cert=False, cert_password=None, public_client=False, delegated=(), federated=None,
                multi_tenant=False):
        self.tokens.add_app(name, roles, secret=secret, cert=cert, cert_password=cert_password, public_client=public_client,
                            delegated=delegated, federated=federated, multi_tenant=multi_tenant)
        if self.url:
            self.write_config()
        return self.apps[name]

    @property
    def users(self):
        """Seeded users for the device code flow: ``{upn: {"upn", "display_name", "given_name", "family_name", "oid"}}``."""
        return self.user_auth.public_users()

    def add_user(self, upn, display_name, oid=None, roles=None):
        """A user who can sign in by device code; ``roles``: their Defender role permissions (default: all of them)."""
        kwargs = {} if roles is None else {"roles": roles}
        user = self.user_auth.add_user(upn, display_name, oid=oid, **kwargs)
        if self.url:
            self.write_config()
        return user

    def add_managed_identity(self, name, roles, system=False, client_id=None):
        self.managed_identities.add(name, roles, system=system, client_id=client_id)
        if self.url:
            self.write_config()
        return self.managed_identities.public()[name]

    # ---- tenants: one multi-tenant app, several customers' tenants ---------------------------------
    def add_tenant(self, name, tenant_id=None, machines=None, alerts=None, indicators=None, seed=None, consent=("full", "cert"),
                   roles=None):
        """Another (customer's) tenant, ``name`` its label: its own machines (``<host>.<name>.local``, the host parts the
        same as every tenant's), alerts, indicators, incidents, rules and limits. ``consent``: the multi-tenant apps its
        admin consented to (with ``roles``, default all they ask for). Returns its tenant id."""
        if not re.match(r"^[a-z][a-z0-9]*$", name) or name in self.tenant_names.values():
            raise ValueError("a tenant's name is a new label of lower-case letters and digits, got %r" % (name,))
        tid = tenant_id or str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator-tenant/%s" % name))
        self.tokens.add_tenant(tid, "%s.onmicrosoft.com" % name)
        home = self.state
        self.tenant_states[tid] = State(self.tokens, machines=home.n_machines if machines is None else machines,
                                        alerts=alerts, indicators=indicators,
                                        seed=home.seed + 1000 * len(self.tenant_states) if seed is None else seed,
                                        rate_limit_scale=home.rate_limit_scale, action_delays=home.action_delays, tenant_id=tid,
                                        domain="%s.local" % name)
        self.tenant_names[tid] = name
        self._consents[tid] = (tuple(consent), roles)
        for app in consent:
            self.consent(name, app, roles=roles)
        if self.url:
            self.write_config()
        return tid

    def tenant_id_of(self, tenant):
        """The id of a tenant given by label or id."""
        for tid, name in self.tenant_names.items():
            if tenant in (tid, name):
                return tid
        raise KeyError("no emulated tenant %r" % (tenant,))

    def consent(self, tenant, app="full", roles=None, revoke=False):
        """The admin of ``tenant`` consents to the multi-tenant ``app`` (or revokes the consent: new tokens fail with
        AADSTS7000229; a token issued before works until it expires, as Entra ID's do)."""
        tid = self.tenant_id_of(tenant)
        if tid == self.tenant_id:
            raise ValueError("the apps are registered in the home tenant: there is nothing to consent to")
        info = self.tokens.apps[app]
        if not info["multi_tenant"] and not revoke:
            raise ValueError("app %s is not multi-tenant" % app)
        self.tokens.consent(tid, info["client_id"], roles=roles, revoke=revoke)

    def state_of(self, tenant_id):
        """The data of the tenant a token was issued in."""
        return self.tenant_states.get(tenant_id, self.state)

    def tenant(self, tenant):
        """The State (machines, alerts, indicators, actions) of a tenant given by label or id."""
        return self.tenant_states[self.tenant_id_of(tenant)]

    def tenants(self):
        """``{label: {"tenant_id", "domain", "consented": [app names]}}`` for every tenant, the home one first."""
        out = {}
        for tid, name in self.tenant_names.items():
            if tid == self.tenant_id:
                consented = [n for n, a in self.tokens.apps.items()]
            else:
                granted = self.tokens.foreign[tid]["consented"]
                consented = [n for n, a in self.tokens.apps.items() if a["client_id"] in granted]
            out[name] = {"tenant_id": tid, "domain": "%s.onmicrosoft.com" % name, "consented": consented}
        return out

    def log_of(self, tenant):
        """The requests made in one tenant (with its token, or to its token endpoint)."""
        tid = self.tenant_id_of(tenant)
        return [e for e in self.log if e.get("tenant") == tid]

    def config(self):
        return {"url": self.url, "tenant_id": self.tenant_id, "tenants": self.tenants(), "ca_path": self.ca_path, "apps": self.apps,
                "authority": "%s/%s" % (self.url, self.tenant_id), "scope": "https://api.securitycenter.microsoft.com/.default",
                "users": self.users, "managed_identities": self.managed_identities.public(),
                "identity_header": self.managed_identities.identity_header,
                "identity_endpoint": "%s/msi/token" % self.url if self.url else None, "imds_host": self.url,
                "oidc_issuer": self.tokens.oidc_issuer, "device_login_url": "%s/devicelogin" % self.url if self.url else None}

    def write_config(self):
        with open(os.path.join(self.state_dir, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(self.config(), handle, indent=2)
        with open(self.env_path, "w", encoding="utf-8") as handle:
            handle.write(self.env_text())

    @property
    def env_path(self):
        """``<state-dir>/env``: the variables that send the collection here, for a shell to ``source``."""
        return os.path.join(self.state_dir, "env")

    def env(self, app="full"):
        """Every variable the collection reads to reach a service, pointing at this emulator, as ``app`` signs in:
        the Defender API, Microsoft Graph and Entra ID (a variable left out would send that part to the real cloud)."""
        chosen = self.apps[app]
        return {"MDE_API_URL": self.url, "MDE_GRAPH_URL": self.url, "MDE_AUTHORITY_HOST": self.url, "MDE_CLOUD": "global",
                "MDE_CA_PATH": self.ca_path, "MDE_TENANT_ID": self.tenant_id, "MDE_CLIENT_ID": chosen["client_id"],
                "MDE_CLIENT_SECRET": chosen.get("client_secret") or "",
                "MDE_TOKEN_CACHE_DIR": os.path.join(self.state_dir, "token-cache")}

    # Variables that would take precedence over the emulator's credential or send a sign-in elsewhere.
    ENV_UNSET = ("MDE_ACCESS_TOKEN", "MDE_AUTH_MODE", "MDE_CLIENT_CERTIFICATE_PATH", "MDE_CLIENT_CERTIFICATE_PASSWORD",
                 "MDE_FEDERATED_TOKEN_FILE", "MDE_VALIDATE_CERTS")

    def env_text(self, app="full"):
        lines = ["# The defender.endpoint sandbox at %s (written by the emulator; docs/sandbox.md)." % self.url,
                 "# source this file: the modules, the inventory plugin and the EDA sources then talk only to the",
                 "# emulator (Defender API, Microsoft Graph and Entra ID); open a new shell to go back to the real cloud.",
                 "unset %s" % " ".join(self.ENV_UNSET)]
        lines += ["export %s=%s" % (key, shlex.quote(value)) for key, value in self.env(app).items()]
        return "\n".join(lines) + "\n"

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
        return [e for e in self.log if e["method"] in ("POST", "PATCH", "DELETE") and e["path"].lower().startswith(("/api", "/v1.0/", "/beta/"))
                and e["path"] != "/v1.0/security/runHuntingQuery"]

    def inject_fault(self, path_regex, kind, count=1, status=500, delay=0.0, method=None, retry_after=1, skip=0, message=None,
                     fields=None, tenant=None):
        """``tenant`` (label or id): only requests made with that tenant's token meet the fault."""
        self.state.add_fault(path_regex, kind, count=count, status=status, delay=delay, method=method, retry_after=retry_after,
                             skip=skip, message=message, fields=fields, tenant=self.tenant_id_of(tenant) if tenant else None)

    def expire_tokens(self):
        self.tokens.expire_all()

    def set_action_outcome(self, machine_id, action_type, status="Failed"):
        with self.state.lock:
            self.state.action_outcomes[(machine_id, action_type)] = status

    def reset(self):
        for state in self.tenant_states.values():
            state.reset()
        for tid, (apps, roles) in self._consents.items():
            self.tokens.foreign[tid]["consented"].clear()
            for app in apps:
                self.consent(tid, app, roles=roles)
        self.user_auth.reset()

    # ---- user context (device code flow), workload identity federation -----------------------------
    def device_flows(self):
        """Device code flows not yet redeemed: ``[{"user_code", "client_id", "app", "scopes", "status", "user", "expires_in"}]``."""
        return self.user_auth.flows_view()

    def approve_device_code(self, user_code=None, user=None, decline=False):
        """Sign in at the verification page as ``user`` (UPN; default the seeded analyst) for ``user_code`` (default the
        most recent pending flow), or decline it. Raises LookupError (no such flow) or ValueError."""
        return self.user_auth.approve(user_code, user, decline=decline)

    def configure_device_code(self, interval=None, expires_in=None, auto_approve=False, slow_down=None):
        """Device flow settings until ``reset()``; ``auto_approve``: a UPN, or None to stop (default: unchanged);
        ``slow_down``: answer ``slow_down`` to the next N polls."""
        return self.user_auth.configure(interval=interval, expires_in=expires_in, auto_approve=auto_approve, slow_down=slow_down)

    def revoke_refresh_tokens(self, user=None, expire=False):
        """Revoke the refresh tokens of ``user`` (all users by default); ``expire`` makes them expired through inactivity."""
        return self.user_auth.revoke(user, expire=expire)

    def federated_token(self, subject=WORKLOAD_SUBJECT, audience=TOKEN_EXCHANGE_AUDIENCE, lifetime=3600, issuer=None):
        """A JWT of the emulator's OIDC issuer (or of ``issuer``, signed with the same key), to use as a client assertion."""
        return self.federation.mint(subject, audience=audience, lifetime=lifetime, issuer=issuer)

    def user_token_for(self, user="analyst@contoso.onmicrosoft.com", app="analyst", scope="https://api.securitycenter.microsoft.com/.default"):
        """Mint a delegated access token directly (no HTTP): every permission ``app`` has consented for the scope's resource."""
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        return self.user_auth.mint(user, self.tokens.apps[app], ALL_RESOURCES[resource.rstrip("/")])

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

    def token_for(self, app="full", scope="https://api.securitycenter.microsoft.com/.default", tenant=None):
        """Mint an access token directly (no HTTP) for ``app`` (in ``tenant``, default the home one); handy in tests."""
        info = self.tokens.apps[app]
        audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        return self.tokens.issue(info, audience, tenant_id=self.tenant_id_of(tenant) if tenant else None)["access_token"]
