"""Managed identities and workload identity federation on the emulated Entra ID.

- Azure VM (IMDS) token endpoint ``GET /metadata/identity/oauth2/token``:
  https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/how-to-use-vm-token
  (``Metadata: true``, ``api-version``, ``resource``, ``client_id|object_id|msi_res_id``; string ``expires_in``/``expires_on``;
  the "Error handling" table), IMDS versioning: https://learn.microsoft.com/en-us/azure/virtual-machines/instance-metadata-service.
- App Service / Functions token endpoint ``GET /msi/token``:
  https://learn.microsoft.com/en-us/azure/app-service/overview-managed-identity#rest-endpoint-reference
  (``X-IDENTITY-HEADER``, ``api-version=2019-08-01``, ``client_id|principal_id|object_id|mi_res_id``).
- Workload identity federation: https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation and
  https://learn.microsoft.com/en-us/graph/api/resources/federatedidentitycredential (issuer, subject, audiences, matched
  case-sensitively). The emulator is also an OIDC issuer (https://openid.net/specs/openid-connect-discovery-1_0.html) whose
  tokens apps exchange as client assertions.
Choices where the docs are silent: README.md, "User context, managed identity, workload identity".
"""

import datetime
import hashlib
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .auth import ALL_RESOURCES, JWT_BEARER, AadError, b64url

SUBSCRIPTION_ID = "3c1e7f2a-9b4d-4e6f-8a0c-5d2b7e9f1a36"
RESOURCE_GROUP = "rg-mde-automation"
VM_NAME = "awx-controller"
# The doc's example list of "newest-versions" (instance-metadata-service, "Versioning").
IMDS_NEWEST = ["2020-10-01", "2020-09-01", "2020-07-15"]
IMDS_MIN_VERSION = "2018-02-01"
APP_SERVICE_VERSION = "2019-08-01"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
WIF_DOC = "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation"
ASSERTION_LEEWAY = 300
INVALID_REQUEST = ("The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than "
                   "once, or is otherwise malformed.")


class MiError(Exception):
    """A managed identity endpoint's error: HTTP status and JSON body."""

    def __init__(self, status, body):
        super().__init__(str(body))
        self.status = status
        self.body = body


class ManagedIdentities:
    """System- and user-assigned managed identities of the emulated Azure host, and its two token endpoints."""

    def __init__(self, tokens, identity_header):
        self.tokens = tokens
        self.identity_header = identity_header
        self.identities = {}

    def add(self, name, roles, system=False, client_id=None, object_id=None):
        if system and any(i["system"] for i in self.identities.values()):
            raise ValueError("the host already has a system-assigned identity")
        seed = "emulator-mi/%s/%s" % (self.tokens.tenant_id, name)
        if system:
            resource_id = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s" % (
                SUBSCRIPTION_ID, RESOURCE_GROUP, VM_NAME)
        else:
            resource_id = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s" % (
                SUBSCRIPTION_ID, RESOURCE_GROUP, name)
        ident = {"name": name, "system": bool(system), "roles": list(roles), "resource_id": resource_id,
                 "client_id": client_id or str(uuid.uuid5(uuid.NAMESPACE_URL, seed + "/client")),
                 "object_id": object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, seed + "/object")),
                 "display_name": VM_NAME if system else name}
        self.identities[name] = ident
        return ident

    def public(self):
        return {n: {k: i[k] for k in ("client_id", "object_id", "resource_id", "system", "roles")} for n, i in self.identities.items()}

    def select(self, client_id=None, object_id=None, resource_id=None):
        """The identity a request names; without a selector the system-assigned one (the only user-assigned one when the
        host has no system-assigned identity)."""
        for ident in self.identities.values():
            if client_id and ident["client_id"].lower() == client_id.lower():
                return ident
            if object_id and ident["object_id"].lower() == object_id.lower():
                return ident
            if resource_id and ident["resource_id"].lower() == resource_id.lower():
                return ident
        if client_id or object_id or resource_id:
            return None
        system = [i for i in self.identities.values() if i["system"]]
        users = [i for i in self.identities.values() if not i["system"]]
        return system[0] if system else (users[0] if len(users) == 1 else None)

    def _token(self, ident, audience):
        app = {"display_name": ident["display_name"], "client_id": ident["client_id"], "roles": ident["roles"]}
        extra = {"appidacr": "2", "idtyp": "app", "oid": ident["object_id"], "sub": ident["object_id"], "xms_mirid": ident["resource_id"]}
        return self.tokens.issue(app, audience, extra=extra)

    def imds(self, query, headers):
        """``GET /metadata/identity/oauth2/token``; returns (body, identity) or raises MiError."""
        if headers.get("metadata") != "true":
            raise MiError(400, {"error": "bad_request_102", "error_description": "Required metadata header not specified"})
        version = query.get("api-version")
        if not version:
            raise MiError(400, {"error": "Bad request. api-version was not specified in the request. For more information refer to "
                                "aka.ms/azureimds", "newest-versions": IMDS_NEWEST})
        if len(version) != 10 or version < IMDS_MIN_VERSION:
            raise MiError(400, {"error": "Bad request. api-version is invalid. For more information refer to aka.ms/azureimds",
                                "newest-versions": IMDS_NEWEST})
        resource = query.get("resource")
        selectors = [k for k in ("client_id", "object_id", "msi_res_id") if query.get(k)]
        if not resource or len(selectors) > 1:
            raise MiError(400, {"error": "invalid_request", "error_description": INVALID_REQUEST})
        ident = self.select(query.get("client_id"), query.get("object_id"), query.get("msi_res_id"))
        if ident is None:
            raise MiError(400, {"error": "invalid_request", "error_description": "Identity not found"})
        audience = ALL_RESOURCES.get(resource.rstrip("/"))
        if audience is None:
            raise MiError(400, {"error": "invalid_resource", "error_description": "AADSTS50001: The application named %s wasn't found in "
                                "the tenant named %s. This message shows if the tenant administrator hasn't installed the application or "
                                "no tenant user consented to it. You might have sent your authentication request to the wrong tenant."
                                % (resource, self.tokens.tenant_id)})
        issued = self._token(ident, audience)
        now = int(time.time())
        lifetime = self.tokens.lifetime
        return {"access_token": issued["access_token"], "client_id": ident["client_id"], "expires_in": str(lifetime),
                "expires_on": str(now + lifetime), "ext_expires_in": str(lifetime), "not_before": str(now), "resource": resource,
                "token_type": "Bearer", "refresh_token": ""}, ident

    def app_service(self, query, headers):
        """``GET /msi/token``; returns (body, identity) or raises MiError."""
        def fail(status, message):
            raise MiError(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})
        if headers.get("x-identity-header") != self.identity_header:
            fail(401, "The X-IDENTITY-HEADER request header is missing or does not hold the value of the IDENTITY_HEADER environment "
                 "variable.")
        if query.get("api-version") != APP_SERVICE_VERSION:
            fail(400, "The api-version query parameter must be '%s'." % APP_SERVICE_VERSION)
        resource = query.get("resource")
        if not resource:
            fail(400, "The resource query parameter is required.")
        object_id = query.get("object_id") or query.get("principal_id")
        if len([k for k in ("client_id", "principal_id", "object_id", "mi_res_id") if query.get(k)]) > 1:
            fail(400, "Only one of client_id, principal_id, object_id and mi_res_id can be given.")
        ident = self.select(query.get("client_id"), object_id, query.get("mi_res_id"))
        if ident is None:
            fail(400, "Unable to load the proper Managed Identity.")
        audience = ALL_RESOURCES.get(resource.rstrip("/"))
        if audience is None:
            fail(500, "An unexpected error occurred while fetching the AAD Token.")
        issued = self._token(ident, audience)
        now = int(time.time())
        return {"access_token": issued["access_token"], "expires_on": str(now + self.tokens.lifetime), "not_before": str(now),
                "resource": resource, "token_type": "Bearer", "client_id": ident["client_id"]}, ident


class Federation:
    """The emulator's OIDC issuer (its own signing key) and the check of federated client assertions."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = b64url(hashlib.sha256(der).digest())
        tokens.federation = self

    @property
    def issuer(self):
        return self.tokens.oidc_issuer

    def discovery(self):
        return {"issuer": self.issuer, "jwks_uri": "%s/openid/v1/jwks" % self.issuer, "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}

    def jwks(self):
        numbers = self.key.public_key().public_numbers()

        def enc(num):
            return b64url(num.to_bytes((num.bit_length() + 7) // 8, "big"))
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": enc(numbers.n), "e": enc(numbers.e)}]}

    def mint(self, subject, audience=TOKEN_EXCHANGE_AUDIENCE, lifetime=3600, issuer=None):
        """A token of this issuer (or of ``issuer``, signed with the same key) for ``subject``; a negative ``lifetime`` gives
        a token that expired that many seconds ago."""
        now = int(time.time())
        issued = now if lifetime > 0 else now + int(lifetime) - 3600
        claims = {"iss": issuer or self.issuer, "sub": subject, "aud": audience if isinstance(audience, list) else [audience],
                  "iat": issued, "nbf": issued, "exp": now + int(lifetime), "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    @staticmethod
    def is_federated(form, app):
        """A client assertion is federated when it is not the app's own certificate assertion: no certificate thumbprint
        in its header, or an issuer other than the app."""
        try:
            header = jwt.get_unverified_header(form.get("client_assertion") or "")
            claims = jwt.decode(form.get("client_assertion") or "", options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return ("x5t" not in header and "x5t#S256" not in header) or claims.get("iss") != app["client_id"]

    def _records(self, app):
        return [dict(f, issuer=f.get("issuer") or self.issuer) for f in app["federated"]]

    def check(self, form, app):
        """Verify a federated assertion against ``app``'s federated identity credentials, or raise AadError."""
        def no_match(code, what, value):
            raise AadError(400, "invalid_client", code, "No matching federated identity record found for presented assertion %s '%s'. "
                           "Please check your federated identity credential Subject, Audience and Issuer against the presented "
                           "assertion. %s" % (what, value, WIF_DOC))
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AadError(400, "invalid_request", 50027, "client_assertion_type must be '%s'." % JWT_BEARER)
        assertion = form["client_assertion"]
        claims = jwt.decode(assertion, options={"verify_signature": False})
        records = [r for r in self._records(app) if r["issuer"] == claims.get("iss")]
        if not records:
            no_match(700211, "issuer", claims.get("iss"))
        try:
            checks = {"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False}
            jwt.decode(assertion, self.key.public_key(), algorithms=["RS256"], options=checks)
        except jwt.PyJWTError:
            raise AadError(401, "invalid_client", 700027, "Client assertion failed signature validation. [Reason - The key was not found.]") from None
        records = [r for r in records if r["subject"] == claims.get("sub")]
        if not records:
            no_match(700213, "subject", claims.get("sub"))
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if not any(a in r["audiences"] for r in records for a in audiences):
            no_match(700212, "audience", ",".join(str(a) for a in audiences))
        now = time.time()
        if not isinstance(claims.get("exp"), int) or now > claims["exp"] + ASSERTION_LEEWAY or now + ASSERTION_LEEWAY < claims.get("nbf", 0):
            def stamp(epoch):
                return datetime.datetime.fromtimestamp(epoch or 0, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
            raise AadError(401, "invalid_client", 700024, "Client assertion is not within its valid time range. Current time: %s, assertion "
                           "valid from %s, expiry time of assertion %s." % (stamp(now), stamp(claims.get("nbf")), stamp(claims.get("exp"))))
