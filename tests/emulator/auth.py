"""Entra ID (Azure AD) v2.0 token endpoint emulation: apps, certificates, access tokens, AADSTS errors.

The client-credentials grant lives here; the delegated grants (device code, refresh token) are in auth_user.py and
register themselves in ``TokenService.grants``; federated client assertions are checked by auth_identity.py
(``TokenService.federation``)."""

import base64
import datetime
import hashlib
import os
import threading
import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RESOURCES = {
    # scope resource (without /.default) -> token audience
    "https://api.securitycenter.microsoft.com": "https://api.securitycenter.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice": "https://securitycenter.onmicrosoft.com/windowsatpservice",
}
# Microsoft Graph, per national cloud (https://learn.microsoft.com/en-us/graph/deployments): its own audience; a token
# for it is refused by the MDE API and a Defender token is refused by Graph (README, "Microsoft Graph").
GRAPH_RESOURCES = {
    "https://graph.microsoft.com": "https://graph.microsoft.com",
    "https://graph.microsoft.us": "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us": "https://dod-graph.microsoft.us",
}
ACCEPTED_AUDIENCES = tuple(RESOURCES.values())
GRAPH_AUDIENCES = tuple(GRAPH_RESOURCES.values())
ALL_RESOURCES = dict(RESOURCES, **GRAPH_RESOURCES)
GRAPH_ROLES = ("ThreatHunting.Read.All", "SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All",
               "CustomDetection.Read.All", "CustomDetection.ReadWrite.All")
ALL_ROLES = (
    "Machine.Read.All", "Machine.ReadWrite.All", "Machine.Isolate", "Machine.RestrictExecution", "Machine.Scan",
    "Machine.CollectForensics", "Machine.Offboard", "Machine.StopAndQuarantine", "Machine.LiveResponse",
    "Alert.Read.All", "Alert.ReadWrite.All", "Ti.ReadWrite", "Ti.ReadWrite.All", "AdvancedQuery.Read.All",
    "File.Read.All", "Ip.Read.All", "URL.Read.All", "User.Read.All",
    "Vulnerability.Read.All", "SecurityRecommendation.Read.All", "Software.Read.All", "Library.Manage",
) + GRAPH_ROLES
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KNOWN_TENANT_ALIASES = ("contoso.onmicrosoft.com",)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_self_signed(common_name, password=None):
    """Return (cert PEM + key PEM text, cert object) for an app credential."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode(), cert


class AadError(Exception):
    """An AADSTS error answered by the token endpoint."""

    def __init__(self, status, error, code, description, extra=None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.extra = extra or {}  # more response members, e.g. {"suberror": "consent_required"}

    def body(self, base_url):
        now = datetime.datetime.now(datetime.timezone.utc)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        desc = "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (self.code, self.description, trace, corr, stamp)
        body = {"error": self.error, "error_description": desc, "error_codes": [self.code], "timestamp": stamp,
                "trace_id": trace, "correlation_id": corr, "error_uri": "%s/error?code=%d" % (base_url, self.code)}
        body.update(self.extra)
        return body


class TokenService:
    """Issues and verifies RS256 access tokens; holds the registered apps."""

    def __init__(self, tenant_id, lifetime, state_dir):
        self.tenant_id = tenant_id
        self.lifetime = lifetime
        self.state_dir = state_dir
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self.signing_key.public_key()
        der = self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = b64url(hashlib.sha1(der).digest())
        self.apps = {}
        self._by_client = {}
        self._seq = 0
        self._expired_upto = 0
        self._cache = {}
        self._lock = threading.Lock()
        self.base_url = None  # the emulator's URL once it serves (Emulator.start)
        self.grants = {}  # grant_type -> callable(tenant, form, token_url) for the grants other modules add
        self.federation = None  # auth_identity.Federation: checks client assertions that are not certificate assertions
        # The other tenants (a security provider's customers): tenant id -> {"domain", "consented": {client id: roles}}.
        # The apps are registered in this (the home) tenant; a multi-tenant one gets tokens in another tenant once that
        # tenant's admin consented to it (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-partners).
        self.foreign = {}

    # ---- apps -------------------------------------------------------------------------------
    def add_app(self, name, roles=(), secret=True, cert=False, cert_password=None, client_id=None, public_client=False, delegated=(),
                federated=None, multi_tenant=False):
        """Register an app. ``multi_tenant``: "Accounts in any organizational directory" (it can get tokens in the tenants
        that consented to it, add_tenant); ``public_client``: "Allow public client flows" (device code flow without a credential);
        ``delegated``: the delegated permissions consented for it (MDE and Graph names); ``federated``: its federated
        identity credentials, ``[{"issuer", "subject", "audiences"}]`` (issuer None = the emulator's own OIDC issuer)."""
        client_id = client_id or str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator-app/%s/%s" % (self.tenant_id, name)))
        info = {"name": name, "client_id": client_id, "client_secret": None, "cert_path": None, "cert_password": cert_password,
                "roles": list(roles), "display_name": "emulator-%s" % name, "public_client": bool(public_client),
                "delegated": list(delegated), "multi_tenant": bool(multi_tenant),
                "federated": [dict(f, audiences=list(f.get("audiences") or ["api://AzureADTokenExchange"])) for f in federated or ()]}
        if secret:
            info["client_secret"] = "emu~%s~%s" % (name, hashlib.sha256(client_id.encode()).hexdigest()[:24])
        private = {"cert": None}
        if cert or cert_password:
            pem, cert_obj = make_self_signed("emulator-%s" % name, cert_password)
            path = os.path.join(self.state_dir, "app-%s.pem" % name)
            with open(path, "w", encoding="ascii") as handle:
                handle.write(pem)
            info["cert_path"] = path
            private["cert"] = cert_obj
            private["x5t"] = b64url(cert_obj.fingerprint(hashes.SHA1()))
            private["x5t#S256"] = b64url(cert_obj.fingerprint(hashes.SHA256()))
        self.apps[name] = info
        self._by_client[client_id] = (info, private)
        return info

    def app_by_client(self, client_id):
        entry = self._by_client.get(client_id)
        return entry[0] if entry else None

    def public_apps(self):
        out = {}
        for name, app in self.apps.items():
            view = {k: v for k, v in app.items() if k != "display_name"}
            view["federated"] = [dict(f, issuer=f.get("issuer") or self.oidc_issuer) for f in app["federated"]]
            out[name] = view
        return out

    @property
    def oidc_issuer(self):
        """The emulator's own OIDC issuer (workload identity federation), known once it serves."""
        return "%s/oidc-issuer" % self.base_url if self.base_url else None

    # ---- other tenants -------------------------------------------------------------------------
    def add_tenant(self, tenant_id, domain):
        self.foreign[tenant_id] = {"tenant_id": tenant_id, "domain": domain, "consented": {}}

    def consent(self, tenant_id, client_id, roles=None, revoke=False):
        """The tenant's admin consents to a multi-tenant app (its service principal is made there, with ``roles``, by
        default every role the app asks for), or revokes that consent (deletes the service principal)."""
        consented = self.foreign[tenant_id]["consented"]
        if revoke:
            consented.pop(client_id, None)
        else:
            app = self.app_by_client(client_id)
            consented[client_id] = list(app["roles"] if roles is None else roles)

    def tenant_of(self, tenant):
        """The tenant id for a tenant id or domain in a token URL, or None when no tenant has it."""
        tenant = tenant.lower()
        if tenant in (self.tenant_id,) + KNOWN_TENANT_ALIASES:
            return self.tenant_id
        for tid, info in self.foreign.items():
            if tenant in (tid, info["domain"]):
                return tid
        return None

    def check_tenant(self, tenant, foreign=False):
        """The tenant id of ``tenant``; ``foreign``: another tenant than the home one may be named (an app's client
        credentials; the device code flow and managed identities are the home tenant's only)."""
        tid = self.tenant_of(tenant)
        if tid is None or (tid != self.tenant_id and not foreign):
            raise AadError(400, "invalid_request", 90002, "Tenant '%s' not found. Check to make sure you have the correct tenant ID and are "
                           "signing into the correct cloud. Check with your subscription administrator, this may happen if there are no "
                           "active subscriptions for the tenant." % tenant)
        return tid

    @staticmethod
    def unknown_app(client_id, tenant):
        return AadError(400, "unauthorized_client", 700016, "Application with identifier '%s' was not found in the directory '%s'. This can "
                        "happen if the application has not been installed by the administrator of the tenant or consented to by any user "
                        "in the tenant. You may have sent your authentication request to the wrong tenant." % (client_id, tenant))

    @staticmethod
    def require(form, name):
        if not form.get(name):
            raise AadError(400, "invalid_request", 900144, "The request body must contain the following parameter: '%s'." % name)
        return form[name]

    # ---- token endpoint ----------------------------------------------------------------------
    def token_request(self, tenant, form, token_url, v1=False):
        """Handle a token request; return the JSON body or raise AadError."""
        tid = self.check_tenant(tenant, foreign=form.get("grant_type") == "client_credentials")
        grant = self.require(form, "grant_type")
        if grant != "client_credentials":
            handler = None if v1 else self.grants.get(grant)
            if handler is None:
                raise AadError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '%s'." % grant)
            return handler(tenant, form, token_url)
        client_id = self.require(form, "client_id")
        entry = self._by_client.get(client_id)
        if entry is None:
            raise self.unknown_app(client_id, tenant)
        app, private = entry
        if tid != self.tenant_id:
            # https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes: a single-tenant app is not
            # found in another directory (AADSTS700016); a multi-tenant one without a service principal there, because
            # no admin consented or the consent was revoked, is AADSTS7000229 (README, choices: its status).
            if not app["multi_tenant"]:
                raise self.unknown_app(client_id, tenant)
            if client_id not in self.foreign[tid]["consented"]:
                raise AadError(401, "invalid_client", 7000229, "The client application %s is missing service principal in the tenant %s. "
                               "See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119" % (client_id, tid))
        audience = self._audience(form, v1)
        if form.get("client_assertion") or form.get("client_assertion_type"):
            if self.federation is not None and self.federation.is_federated(form, app):
                self.federation.check(form, app)
            else:
                self._check_assertion(form, app, private, token_url)
        elif "client_secret" in form:
            if not app["client_secret"] or form["client_secret"] != app["client_secret"]:
                raise AadError(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is "
                               "the client secret value, not the client secret ID, for a secret added to app '%s'." % client_id)
        else:
            raise AadError(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or "
                           "'client_secret'.")
        return self.issue(app, audience, v1, tenant_id=tid)

    def _audience(self, form, v1):
        if v1:
            resource = (form.get("resource") or "").rstrip("/")
            if not resource:
                raise AadError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'resource'.")
            if resource not in ALL_RESOURCES:
                raise AadError(400, "invalid_resource", 500011, "The resource principal named %s was not found in the tenant named %s. This "
                               "can happen if the application has not been installed by the administrator of the tenant." % (resource, self.tenant_id))
            return ALL_RESOURCES[resource]
        scope = (form.get("scope") or "").strip()
        if not scope:
            raise AadError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise AadError(400, "invalid_scope", 1002012, "The provided value for scope %s is not valid. Client credential flows must have a "
                           "scope value with /.default suffixed to the resource identifier (application ID URI)." % scope)
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource not in ALL_RESOURCES:
            raise AadError(400, "invalid_resource", 500011, "The resource principal named %s was not found in the tenant named %s. This can "
                           "happen if the application has not been installed by the administrator of the tenant or consented to by any user "
                           "in the tenant. You might have sent your authentication request to the wrong tenant." % (resource, self.tenant_id))
        return ALL_RESOURCES[resource]

    @staticmethod
    def _check_assertion(form, app, private, token_url):
        def fail(reason, code=700027):
            raise AadError(401, "invalid_client", code, "Client assertion failed signature validation. [Reason - %s]" % reason
                           if code == 700027 else reason)
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AadError(400, "invalid_request", 50027, "client_assertion_type must be '%s'." % JWT_BEARER)
        assertion = form.get("client_assertion") or ""
        cert = private.get("cert")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            fail("The client assertion is not a valid JWT.")
        if cert is None:
            fail("The key was not found. The application '%s' has no certificate credential." % app["client_id"])
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            fail("Unsupported signing algorithm '%s'." % alg)
        if "x5t#S256" in header:
            if header["x5t#S256"].rstrip("=") != private["x5t#S256"]:
                fail("The key was not found., Thumbprint of key used by client: '%s'" % header["x5t#S256"])
        elif "x5t" in header:
            if header["x5t"].rstrip("=") != private["x5t"]:
                fail("The key was not found., Thumbprint of key used by client: '%s'" % header["x5t"])
        else:
            fail("The client assertion has neither an x5t nor an x5t#S256 header.")
        try:
            claims = jwt.decode(assertion, cert.public_key(), algorithms=[alg], audience=token_url, options={"require": ["exp", "aud", "iss", "sub"]},
                                leeway=300)
        except jwt.ExpiredSignatureError:
            fail("Client assertion is not within its valid time range.", code=700024)
        except jwt.InvalidAudienceError:
            raise AadError(400, "invalid_client", 700212, "No matching federated identity record found for presented assertion audience "
                           "'%s'. The audience must be '%s'." % (jwt.decode(assertion, options={"verify_signature": False}).get("aud"), token_url)) from None
        except jwt.PyJWTError as exc:
            fail(str(exc))
        if claims.get("iss") != app["client_id"] or claims.get("sub") != app["client_id"]:
            fail("The client assertion's iss and sub must both be the client id '%s'." % app["client_id"], code=700021)

    def next_uti(self):
        """A fresh ``uti`` claim; ``expire_tokens()`` revokes every token whose number is not above the mark."""
        with self._lock:
            self._seq += 1
            return "emu%d" % self._seq

    def sign(self, claims):
        """Sign access or ID token claims with the tenant's key (the one /discovery/v2.0/keys publishes)."""
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def issue(self, app, audience, v1=False, extra=None, tenant_id=None):
        """An app-only access token (client credentials; managed identities pass ``extra`` claims), for the home tenant
        or ``tenant_id`` (there the app has the roles that tenant consented, and another service principal id)."""
        now = int(time.time())
        tid = tenant_id or self.tenant_id
        roles = app["roles"] if tid == self.tenant_id else self.foreign[tid]["consented"].get(app["client_id"], [])
        principal = str(uuid.uuid5(uuid.NAMESPACE_OID, app["client_id"] if tid == self.tenant_id else "%s/%s" % (tid, app["client_id"])))
        claims = {
            "aud": audience, "iss": "https://sts.windows.net/%s/" % tid, "iat": now, "nbf": now, "exp": now + self.lifetime,
            "aio": "emulator", "app_displayname": app["display_name"], "appid": app["client_id"], "appidacr": "1",
            "idp": "https://sts.windows.net/%s/" % tid, "oid": principal,
            "roles": list(roles), "sub": principal, "tid": tid,
            "uti": self.next_uti(), "ver": "1.0",
        }
        claims.update(extra or {})
        token = self.sign(claims)
        body = {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime, "access_token": token}
        if v1:
            body.update({"expires_on": str(now + self.lifetime), "not_before": str(now), "resource": audience})
        return body

    def expire_all(self):
        with self._lock:
            self._expired_upto = self._seq
            self._cache.clear()

    def verify(self, token, audiences=ACCEPTED_AUDIENCES):
        """Return (claims, None) for a valid token or (None, message). ``audiences``: those the API accepts (the MDE
        API's by default; GRAPH_AUDIENCES for Microsoft Graph)."""
        claims = self._cache.get((token, tuple(audiences)))
        if claims is None:
            try:
                claims = jwt.decode(token, self.public_key, algorithms=["RS256"], audience=list(audiences),
                                    options={"require": ["exp", "aud", "tid"]}, leeway=0)
            except jwt.ExpiredSignatureError:
                return None, "The access token has expired."
            except jwt.InvalidAudienceError:
                return None, "The access token audience is not valid for this API."
            except jwt.PyJWTError as exc:
                return None, "The access token is invalid: %s" % exc
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[(token, tuple(audiences))] = claims
        if claims["exp"] <= time.time():
            return None, "The access token has expired."
        if int(claims.get("uti", "emu0")[3:] or 0) <= self._expired_upto:
            return None, "The access token has expired."
        if claims.get("tid") != self.tenant_id and claims.get("tid") not in self.foreign:
            return None, "The access token was issued for another tenant."
        return claims, None

    def jwks(self):
        numbers = self.public_key.public_numbers()

        def enc(num):
            return b64url(num.to_bytes((num.bit_length() + 7) // 8, "big"))
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": enc(numbers.n), "e": enc(numbers.e)}]}

    def openid_configuration(self, base_url, tenant):
        root = "%s/%s" % (base_url, tenant)
        return {
            "token_endpoint": root + "/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": "%s/%s/discovery/v2.0/keys" % (base_url, tenant),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": "%s/%s/v2.0" % (base_url, self.tenant_id),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": base_url + "/oidc/userinfo",
            "authorization_endpoint": root + "/oauth2/v2.0/authorize",
            "device_authorization_endpoint": root + "/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": root + "/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
