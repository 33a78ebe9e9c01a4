"""User (delegated) context on the emulated Entra ID: seeded users, the OAuth 2.0 device authorization grant, refresh
tokens, delegated permissions and the delegated access and ID tokens.

- Device code flow: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code
  (``POST /{tenant}/oauth2/v2.0/devicecode``; polling ``grant_type=urn:ietf:params:oauth:grant-type:device_code`` with the
  errors ``authorization_pending``, ``authorization_declined``, ``bad_verification_code``, ``expired_token``).
- Refresh tokens: https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens (opaque, 90 days, usable for
  any resource the app has consent for) and https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token.
- AADSTS codes and texts: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes.
- Delegated tokens carry ``scp`` (https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference);
  the MDE delegated permission names are those of each endpoint page's permissions table
  (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-nativeapp).
Choices where the docs are silent: README.md, "User context, managed identity, workload identity".
"""

import base64
import datetime
import json
import secrets
import string
import threading
import time
import uuid

from .auth import ALL_RESOURCES, GRAPH_AUDIENCES, GRAPH_ROLES, AadError, b64url

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OIDC_SCOPES = ("openid", "profile", "offline_access", "email")
# WindowsDefenderATP delegated permissions (the "Delegated (work or school account)" rows of the endpoint pages).
MDE_DELEGATED = (
    "Machine.Read", "Machine.ReadWrite", "Machine.Isolate", "Machine.RestrictExecution", "Machine.Scan", "Machine.CollectForensics",
    "Machine.Offboard", "Machine.StopAndQuarantine", "Machine.LiveResponse", "Alert.Read", "Alert.ReadWrite", "Ti.ReadWrite",
    "AdvancedQuery.Read", "File.Read.All", "Ip.Read.All", "URL.Read.All", "User.Read.All", "Vulnerability.Read",
    "SecurityRecommendation.Read", "Software.Read", "Library.Manage",
)
# Microsoft Graph security delegated permissions keep the application permission names
# (https://learn.microsoft.com/en-us/graph/permissions-reference).
GRAPH_DELEGATED = GRAPH_ROLES
# Application permission -> its delegated form. Ti.ReadWrite.All has no delegated form: Ti.ReadWrite stands for it.
TO_DELEGATED = {
    "Machine.Read.All": "Machine.Read", "Machine.ReadWrite.All": "Machine.ReadWrite", "Alert.Read.All": "Alert.Read",
    "Alert.ReadWrite.All": "Alert.ReadWrite", "AdvancedQuery.Read.All": "AdvancedQuery.Read", "Ti.ReadWrite.All": "Ti.ReadWrite",
    "Vulnerability.Read.All": "Vulnerability.Read", "SecurityRecommendation.Read.All": "SecurityRecommendation.Read",
    "Software.Read.All": "Software.Read",
}
# Endpoints whose delegated requirement is not the delegated form of their application permissions:
# https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri (Machine.CollectForensics) and
# https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result (Machine.LiveResponse).
DELEGATED_OVERRIDES = {
    "/api/machineactions/{id}/getPackageUri": ("Machine.CollectForensics",),
    "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})": ("Machine.LiveResponse",),
}
REFRESH_TOKEN_LIFETIME = 90 * 86400  # https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens
ID_TOKEN_LIFETIME = 3600
# Defender for Endpoint role permissions (RBAC): in user context the API checks the user's role as well as the
# token's delegated permission (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-nativeapp:
# "the user needs to have the appropriate role permissions"; the permissions are listed at
# https://learn.microsoft.com/en-us/defender-endpoint/user-roles). Which permission each call needs is documented for
# some calls only; README.md, "Choices", lists the rest as guesses.
VIEW_DATA = "View data"
ALERTS_INVESTIGATION = "Alerts investigation"
REMEDIATION = "Active remediation actions"
SECURITY_SETTINGS = "Manage security settings"
LIVE_RESPONSE = "Live response capabilities"
DEFENDER_ROLES = (VIEW_DATA, ALERTS_INVESTIGATION, REMEDIATION, SECURITY_SETTINGS, LIVE_RESPONSE)
SEED_USERS = (
    # upn, display name, given name, surname, Defender role permissions
    ("analyst@contoso.onmicrosoft.com", "Alex Analyst", "Alex", "Analyst", DEFENDER_ROLES),
    # A tier-1 responder: sees and triages, but may not contain machines or change settings.
    ("responder@contoso.onmicrosoft.com", "Riley Responder", "Riley", "Responder", (VIEW_DATA, ALERTS_INVESTIGATION)),
)
USER_CODE_ALPHABET = string.ascii_uppercase + string.digits


def defender_role(method, template):
    """The Defender role permission a call needs in user context (``template``: the route, e.g. /api/machines/{id}/isolate)."""
    if method == "GET":
        if template.endswith("/getPackageUri"):
            return ALERTS_INVESTIGATION
        return LIVE_RESPONSE if "/GetLiveResponseResultDownloadLink" in template else VIEW_DATA
    if template == "/api/advancedqueries/run":
        return VIEW_DATA
    if template.startswith("/api/libraryfiles") or template.endswith("/runliveresponse"):
        return LIVE_RESPONSE
    if template.startswith("/api/indicators") or template.endswith(("/tags", "/AddOrRemoveTagForMultipleMachines", "/setDeviceValue")):
        return SECURITY_SETTINGS
    if template.endswith(("/collectInvestigationPackage", "/startInvestigation")) or template.startswith("/api/alerts") or (
            method == "PATCH" and template == "/api/machines/{id}"):
        return ALERTS_INVESTIGATION
    return REMEDIATION  # isolate and unisolate, restrict and unrestrict, antivirus scan, stop and quarantine, offboard, cancel


def delegated_requirement(template, roles):
    """The delegated permissions (any of) that stand for a route's application permissions ``roles``."""
    if template in DELEGATED_OVERRIDES:
        return DELEGATED_OVERRIDES[template]
    out = []
    for role in roles:
        name = TO_DELEGATED.get(role, role)
        if name not in out:
            out.append(name)
    return tuple(out)


def signed_in_user(claims):
    """The user of a delegated token (``scp`` and no ``roles``): ``{"upn", "display_name", "oid"}``; None for app tokens."""
    if claims.get("scp") is None or claims.get("roles"):
        return None
    return {"upn": claims.get("upn") or claims.get("unique_name"), "display_name": claims.get("name"), "oid": claims.get("oid")}


def catalog(audience):
    """The delegated permissions a resource (token audience) defines."""
    return GRAPH_DELEGATED if audience in GRAPH_AUDIENCES else MDE_DELEGATED


def _stamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class UserAuth:  # pylint: disable=too-many-instance-attributes
    """Users, device flows and refresh tokens; registers the device code and refresh token grants on ``tokens``."""

    def __init__(self, tokens, interval=5, expires_in=900, auto_approve=None):
        self.tokens = tokens
        self.users = {}
        self.flows = {}
        self.refresh_tokens = {}
        self.valid_from = {}  # upn -> epoch before which the user's refresh tokens are revoked
        self.defaults = {"interval": int(interval), "expires_in": int(expires_in), "auto_approve": None, "slow_down": 0}
        self.settings = dict(self.defaults)
        self._lock = threading.RLock()
        tokens.grants[DEVICE_CODE_GRANT] = self.redeem_device_code
        tokens.grants["refresh_token"] = self.redeem_refresh_token
        for upn, name, given, family, roles in SEED_USERS:
            self.add_user(upn, name, given, family, roles=roles)
        if auto_approve:
            self.defaults["auto_approve"] = self.configure(auto_approve=auto_approve)["auto_approve"]

    # ---- users ------------------------------------------------------------------------------------
    def add_user(self, upn, display_name, given_name=None, family_name=None, oid=None, roles=DEFENDER_ROLES):
        oid = oid or str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator-user/%s/%s" % (self.tokens.tenant_id, upn.lower())))
        user = {"upn": upn, "display_name": display_name, "given_name": given_name or display_name.split()[0],
                "family_name": family_name or display_name.split()[-1], "oid": oid, "defender_roles": list(roles)}
        self.users[upn.lower()] = user
        return user

    def user(self, upn):
        return self.users.get((upn or "").lower())

    def public_users(self):
        return {u["upn"]: dict(u) for u in self.users.values()}

    # ---- settings ---------------------------------------------------------------------------------
    def configure(self, interval=None, expires_in=None, auto_approve=False, slow_down=None):
        """Change the device flow settings; ``auto_approve``: a UPN, or None to stop approving (False = unchanged)."""
        with self._lock:
            if interval is not None:
                self.settings["interval"] = max(1, int(interval))
            if expires_in is not None:
                self.settings["expires_in"] = max(1, int(expires_in))
            if auto_approve is not False:
                if auto_approve and self.user(auto_approve) is None:
                    raise ValueError("unknown user %r" % auto_approve)
                self.settings["auto_approve"] = self.user(auto_approve)["upn"] if auto_approve else None
            if slow_down is not None:
                self.settings["slow_down"] = max(0, int(slow_down))
            return dict(self.settings)

    def reset(self):
        """Back to the constructor's settings, no device flows (refresh tokens survive, as access tokens do)."""
        with self._lock:
            self.settings = dict(self.defaults)
            self.flows.clear()

    # ---- scopes ----------------------------------------------------------------------------------
    def parse_scopes(self, scope_text, tenant):
        """Return ``{"audience", "resource", "default", "requested", "oidc"}`` for a delegated request's scope."""
        scopes = (scope_text or "").split()
        if not scopes:
            raise AadError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        oidc = [s for s in scopes if s.lower() in OIDC_SCOPES]
        resources = {}
        for scope in scopes:
            if scope.lower() in OIDC_SCOPES:
                continue
            resource, _sep, perm = scope.rpartition("/")
            resource = resource.rstrip("/") or "https://graph.microsoft.com"  # an unqualified scope is a Graph permission
            if "://" not in resource:
                raise AadError(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' isn't valid. The scope %s "
                               "isn't valid." % scope)
            if resource not in ALL_RESOURCES:
                raise AadError(400, "invalid_resource", 500011, "The resource principal named %s was not found in the tenant named %s. This "
                               "can happen if the application has not been installed by the administrator of the tenant or consented to by "
                               "any user in the tenant. You might have sent your authentication request to the wrong tenant." % (resource, tenant))
            resources.setdefault(ALL_RESOURCES[resource], (resource, []))[1].append(perm)
        if len(resources) > 1:
            raise AadError(400, "invalid_scope", 700022, "The provided value for the input parameter scope isn't valid because it contains "
                           "more than one resource. Scope %s is not valid." % " ".join(scopes))
        if not resources:  # only OpenID Connect scopes: Entra answers with a Microsoft Graph token
            resources = {"https://graph.microsoft.com": ("https://graph.microsoft.com", [".default"])}
        audience, (resource, perms) = next(iter(resources.items()))
        known = {p.lower(): p for p in catalog(audience)}
        requested = []
        for perm in perms:
            if perm == ".default":
                continue
            if perm.lower() not in known:
                raise AadError(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' isn't valid. The scope "
                               "%s/%s isn't valid." % (resource, perm))
            requested.append(known[perm.lower()])
        return {"audience": audience, "resource": resource, "default": ".default" in perms, "requested": requested, "oidc": oidc}

    def grant(self, app, parsed):
        """The delegated permissions a token for ``parsed`` carries, or AADSTS65001 when consent is missing. Every consented
        permission of the resource is granted, requested or not (https://learn.microsoft.com/en-us/entra/identity-platform/
        reference-breaking-changes, "Conditional Access will only trigger for explicitly requested scopes")."""
        consented = [p for p in catalog(parsed["audience"]) if p in app["delegated"]]
        missing = [p for p in parsed["requested"] if p not in consented]
        if missing or not consented:
            raise AadError(400, "invalid_grant", 65001, "The user or administrator has not consented to use the application with ID '%s' "
                           "named '%s'. Send an interactive authorization request for this user and resource." % (app["client_id"], app["name"]),
                           extra={"suberror": "consent_required"})
        return consented

    # ---- device authorization endpoint -------------------------------------------------------------
    def start_device_flow(self, tenant, form, base_url):
        self.tokens.check_tenant(tenant)
        client_id = self.tokens.require(form, "client_id")
        app = self.tokens.app_by_client(client_id)
        if app is None:
            raise self.tokens.unknown_app(client_id, tenant)
        parsed = self.parse_scopes(form.get("scope"), tenant)
        with self._lock:
            now = time.time()
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _i in range(9))
            device_code = "DAQABIQEAAA" + secrets.token_urlsafe(96)
            flow = {"device_code": device_code, "user_code": user_code, "client_id": client_id, "app": app["name"],
                    "scopes": (form.get("scope") or "").split(), "parsed": parsed, "created": now,
                    "expires_at": now + self.settings["expires_in"], "interval": self.settings["interval"], "status": "pending",
                    "user": None}
            self.flows[device_code] = flow
            if self.settings["auto_approve"]:
                flow.update(status="approved", user=self.settings["auto_approve"])
        verification_uri = "%s/devicelogin" % base_url
        return {"user_code": user_code, "device_code": device_code, "verification_uri": verification_uri,
                "expires_in": self.settings["expires_in"], "interval": flow["interval"],
                "message": "To sign in, use a web browser to open the page %s and enter the code %s to authenticate." % (verification_uri, user_code)}

    def flows_view(self):
        now = time.time()
        with self._lock:
            return [{"user_code": f["user_code"], "client_id": f["client_id"], "app": f["app"], "scopes": list(f["scopes"]),
                     "status": "expired" if f["status"] == "pending" and now > f["expires_at"] else f["status"], "user": f["user"],
                     "expires_in": max(0, int(f["expires_at"] - now))}
                    for f in sorted(self.flows.values(), key=lambda f: f["created"])]

    def find_flow(self, user_code=None):
        """The flow of ``user_code`` (case-insensitive, dashes and spaces ignored), else the most recent pending one."""
        now = time.time()
        with self._lock:
            if user_code:
                code = user_code.replace("-", "").replace(" ", "").upper()
                return next((f for f in self.flows.values() if f["user_code"] == code), None)
            pending = [f for f in self.flows.values() if f["status"] == "pending" and now <= f["expires_at"]]
            return max(pending, key=lambda f: f["created"]) if pending else None

    def approve(self, user_code=None, user=None, decline=False):
        """Sign in (or decline) at the verification page; returns the flow view. Raises LookupError/ValueError."""
        with self._lock:
            flow = self.find_flow(user_code)
            if flow is None:
                raise LookupError("no device code flow %s" % ("with user code %s" % user_code if user_code else "is pending"))
            if flow["status"] != "pending" or time.time() > flow["expires_at"]:
                raise ValueError("the code %s was already used or has expired" % flow["user_code"])
            who = self.user(user or SEED_USERS[0][0])
            if who is None:
                raise ValueError("unknown user %r" % user)
            flow.update(status="declined" if decline else "approved", user=who["upn"])
            return next(v for v in self.flows_view() if v["user_code"] == flow["user_code"])

    # ---- token endpoint ---------------------------------------------------------------------------
    def _client(self, tenant, form):
        client_id = self.tokens.require(form, "client_id")
        app = self.tokens.app_by_client(client_id)
        if app is None:
            raise self.tokens.unknown_app(client_id, tenant)
        if app["public_client"] and (form.get("client_secret") or form.get("client_assertion")):
            raise AadError(401, "invalid_client", 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
        return app

    def redeem_device_code(self, tenant, form, token_url):  # pylint: disable=unused-argument
        app = self._client(tenant, form)
        device_code = self.tokens.require(form, "device_code")
        with self._lock:
            flow = self.flows.get(device_code)
            if flow is None or flow["client_id"] != app["client_id"]:
                raise AadError(400, "bad_verification_code", 70018, "Invalid verification code due to User typing in wrong user code for "
                               "device code flow. Authorization isn't approved.")
            if self.settings["slow_down"] > 0:
                self.settings["slow_down"] -= 1
                raise AadError(400, "slow_down", 70016, "OAuth 2.0 device flow error. Authorization is pending. The device is polling too "
                               "often: wait longer between requests.")
            if time.time() > flow["expires_at"]:
                raise AadError(400, "expired_token", 70019, "Verification code expired.")
            if flow["status"] == "pending":
                raise AadError(400, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. The device will "
                               "retry polling the request.")
            if flow["status"] == "declined":
                raise AadError(400, "authorization_declined", 65004, "User declined to consent to access the app.")
            if not app["public_client"] and not (form.get("client_secret") or form.get("client_assertion")):
                del self.flows[device_code]
                raise AadError(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
            del self.flows[device_code]
        return self.issue_user_tokens(app, self.user(flow["user"]), flow["parsed"], form)

    def redeem_refresh_token(self, tenant, form, token_url):  # pylint: disable=unused-argument
        app = self._client(tenant, form)
        token = self.tokens.require(form, "refresh_token")
        parsed = self.parse_scopes(form.get("scope"), tenant)
        now = time.time()
        with self._lock:
            record = self.refresh_tokens.get(token)
            if record is None or record["client_id"] != app["client_id"]:
                raise AadError(400, "invalid_grant", 70000, "Authentication failed. The refresh token isn't valid.")
            if record["issued"] < self.valid_from.get(record["upn"].lower(), 0):
                raise AadError(400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked, a fresh auth token is "
                               "needed. The grant was issued on '%s' and the TokensValidFrom date (before which tokens are not valid) for this "
                               "user is '%s'." % (_stamp(record["issued"]), _stamp(self.valid_from[record["upn"].lower()])))
            if record["expired"] or now > record["last_used"] + REFRESH_TOKEN_LIFETIME:
                idle = now - record["last_used"] if not record["expired"] else REFRESH_TOKEN_LIFETIME
                raise AadError(400, "invalid_grant", 700082, "The refresh token has expired due to inactivity. The token was issued on %s and "
                               "was inactive for %s." % (_stamp(record["issued"]), datetime.timedelta(seconds=int(idle))))
            record["last_used"] = now
            user = self.user(record["upn"])
        return self.issue_user_tokens(app, user, parsed, form)

    def revoke(self, user=None, expire=False):
        """Revoke the refresh tokens of ``user`` (all users when None), as Entra's revokeSignInSessions does; ``expire``
        marks them expired through inactivity instead. Returns how many usable ones were affected."""
        now = time.time()
        with self._lock:
            if user is not None and self.user(user) is None:
                raise ValueError("unknown user %r" % user)
            hit = [r for r in self.refresh_tokens.values() if (user is None or r["upn"].lower() == user.lower()) and not r["expired"]
                   and r["issued"] >= self.valid_from.get(r["upn"].lower(), 0)]
            if expire:
                for record in hit:
                    record["expired"] = True
            else:
                for who in ([self.user(user)["upn"]] if user else [u["upn"] for u in self.users.values()]):
                    self.valid_from[who.lower()] = now
            return len(hit)

    # ---- tokens ----------------------------------------------------------------------------------
    def access_token(self, app, user, audience, scp):
        now = int(time.time())
        tid = self.tokens.tenant_id
        claims = {
            "aud": audience, "iss": "https://sts.windows.net/%s/" % tid, "iat": now, "nbf": now, "exp": now + self.tokens.lifetime,
            "acr": "1", "aio": "emulator", "amr": ["pwd", "mfa"], "app_displayname": app["display_name"], "appid": app["client_id"],
            "appidacr": "0" if app["public_client"] else "1", "family_name": user["family_name"], "given_name": user["given_name"],
            "idtyp": "user", "ipaddr": "127.0.0.1", "name": user["display_name"], "oid": user["oid"], "scp": " ".join(scp),
            "sub": b64url(uuid.uuid5(uuid.NAMESPACE_OID, "%s/%s" % (user["oid"], app["client_id"])).bytes), "tid": tid,
            "unique_name": user["upn"], "upn": user["upn"], "uti": self.tokens.next_uti(), "ver": "1.0",
        }
        return self.tokens.sign(claims)

    def id_token(self, app, user):
        now = int(time.time())
        tid = self.tokens.tenant_id
        claims = {"aud": app["client_id"], "iss": "%s/%s/v2.0" % (self.tokens.base_url, tid), "iat": now, "nbf": now,
                  "exp": now + ID_TOKEN_LIFETIME, "name": user["display_name"], "oid": user["oid"], "preferred_username": user["upn"],
                  "rh": "emulator", "sub": b64url(uuid.uuid5(uuid.NAMESPACE_OID, "%s/%s" % (user["oid"], app["client_id"])).bytes),
                  "tid": tid, "uti": self.tokens.next_uti(), "ver": "2.0"}
        return self.tokens.sign(claims)

    def issue_user_tokens(self, app, user, parsed, form):
        scp = self.grant(app, parsed)
        audience = parsed["audience"]
        qualified = list(scp) if audience in GRAPH_AUDIENCES else ["%s/%s" % (parsed["resource"], p) for p in scp]
        if parsed["default"]:
            qualified.append("%s/.default" % parsed["resource"])
        granted_oidc = [s for s in parsed["oidc"] if s.lower() in ("openid", "profile", "email")]
        body = {"token_type": "Bearer", "scope": " ".join(qualified + granted_oidc), "expires_in": self.tokens.lifetime,
                "ext_expires_in": self.tokens.lifetime, "access_token": self.access_token(app, user, audience, scp)}
        if any(s.lower() == "offline_access" for s in parsed["oidc"]):
            refresh = "1.AQ8A" + secrets.token_urlsafe(120)
            now = time.time()
            with self._lock:
                self.refresh_tokens[refresh] = {"client_id": app["client_id"], "upn": user["upn"], "issued": now, "last_used": now,
                                                "expired": False}
            body["refresh_token"] = refresh
        if any(s.lower() == "openid" for s in parsed["oidc"]):
            body["id_token"] = self.id_token(app, user)
        if form.get("client_info") == "1":
            info = json.dumps({"uid": user["oid"], "utid": self.tokens.tenant_id}, separators=(",", ":")).encode()
            body["client_info"] = base64.urlsafe_b64encode(info).decode().rstrip("=")
        return body

    def mint(self, user, app, audience):
        """A delegated access token without HTTP (tests): every permission the app has consented for ``audience``."""
        return self.access_token(app, self.user(user), audience, [p for p in catalog(audience) if p in app["delegated"]])
