# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential -> bearer token: application context (client secret, certificate, workload identity federation, managed
identity) and user context (device code sign-in).

Microsoft's two ways into the Defender for Endpoint API (https://learn.microsoft.com/en-us/defender-endpoint/api/apis-intro):
application context (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-webapp), with
application permissions in the token's ``roles`` claim, and user context
(https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-nativeapp), with delegated permissions
in its ``scp`` claim. User context signs in with the device code flow
(https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code), which works with multifactor
authentication; username and password (ROPC) is not offered, as it cannot
(https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth-ropc).

Plain Python on requests and msal (imported only when a token must really be fetched): no Ansible import.

Every Ansible module run is its own process, so tokens are shared between runs through a small file
cache: a directory of mode 0700 and a file of mode 0600 owned by the user, read and written under an
exclusive lock, replaced atomically (files.py). The lock is held while a token is fetched, so parallel forks
wait for the first one instead of all asking Entra ID at once.

A cache that is not safe (another owner, open to other users, a symbolic link) stops the call with advice.
A cache that merely cannot be used (damaged, a directory in the file's place, a read-only home) is worked
around: damaged entries are dropped, or the tokens stay in the process's memory, with a warning in the
``warnings`` list of the cache and of the provider for the Ansible-facing code to show.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import numbers
import os
import re
import socket
import time

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.clouds import is_microsoft_authority
from ansible_collections.defender.endpoint.plugins.module_utils.errors import (
    MDEAuthError,
    MDEConfigError,
    MDEDependencyError,
    MDEError,
    quoted,
)

# A cached token is used only while it has more than this many seconds to live.
EXPIRY_MARGIN = 300
CACHE_NAME = "tokens"  # tokens.json under tokens.lock (files.StateStore)
CACHE_FILE, LOCK_FILE = CACHE_NAME + ".json", CACHE_NAME + ".lock"
# MSAL's token cache of device code sign-ins (refresh tokens included), with its own lock: a sign-in that waits for the
# user holds it, and must not hold up application-context tokens meanwhile.
USER_CACHE_NAME = "user_tokens"
USER_CACHE_FILE, USER_LOCK_FILE = USER_CACHE_NAME + ".json", USER_CACHE_NAME + ".lock"
# How long a device code sign-in may wait for the user at most, whatever Entra ID's code allows (15 minutes there).
SIGN_IN_WAIT = 900
HAS_FCNTL = files.HAS_FCNTL
# What the collection itself keeps in its cache directory: the token cache, the call budget (throttle.py), the EDA
# checkpoints, and Ansible's inventory cache where docs/inventory.md puts it. A directory that holds nothing else
# is the collection's own, so a mode opened by someone else's default (Ansible's jsonfile plugin makes missing
# directories with mode 0755) may be closed again.
CACHE_ENTRIES = frozenset([CACHE_FILE, LOCK_FILE, USER_CACHE_FILE, USER_LOCK_FILE, "ratelimit.json", "ratelimit.lock",
                           "sessions.json", "sessions.lock", "live_response_status.json", "live_response_status.lock",
                           "inventory", "eda"])


def is_cache_entry(name):
    """Whether ``name``, an entry of the cache directory, is one the collection makes (or a temporary file of one)."""
    if name in CACHE_ENTRIES:
        return True
    # files.atomic_writer's temporary files (.tokens.json.x1y2.tmp) and the older .tokens.x1y2 / .ratelimit.x1y2.
    return name.startswith(".") and any(name[1:].startswith(entry.split(".")[0] + ".") for entry in CACHE_ENTRIES)


def default_cache_dir():
    """``$MDE_TOKEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/defender.endpoint``, else ``~/.cache/defender.endpoint``."""
    explicit = os.environ.get("MDE_TOKEN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "defender.endpoint")


def prepare_cache_dir(directory=None, warnings=None):
    """Create the collection's cache directory (default_cache_dir()) with mode 0700 before another program does.

    For the Ansible-facing code to call before anything else may create a directory under it (the inventory
    plugin, before Ansible's cache plugin makes ``<dir>/inventory`` with its default mode 0755). Returns True when
    the directory is private now; False, with a warning appended to ``warnings``, when it is not (never raises).
    """
    directory = directory or default_cache_dir()
    try:
        files.private_directory(directory, may_tighten=is_cache_entry, warnings=warnings)
        return True
    except files.UnsafeFileError as e:
        message = "The token cache cannot be used: %s. %s, or set token_cache: false." % (e.problem, _capital(e.remedy))
    except (IOError, OSError) as e:
        message = "The token cache directory %s cannot be created (%s): tokens are kept in memory." % (
            directory, e.strerror or e)
    if warnings is not None and message not in warnings:
        warnings.append(message)
    return False


def _capital(text):
    return text[:1].upper() + text[1:]


def _valid_entry(entry):
    return (isinstance(entry, dict) and isinstance(entry.get("access_token"), str) and entry["access_token"]
            and isinstance(entry.get("expires_on"), numbers.Real) and not isinstance(entry["expires_on"], bool))


def _unexpired(entry):
    return entry["expires_on"] > time.time()


def _valid_user_entry(entry):
    """A saved sign-in (MSAL's serialized cache) and/or the last failed one (so that forks waiting on the lock fail
    with it rather than each showing a new code in turn)."""
    if not isinstance(entry, dict):
        return False
    cache, failed = entry.get("msal_cache"), entry.get("failed")
    return bool((isinstance(cache, str) and cache) or (
        isinstance(failed, dict) and isinstance(failed.get("at"), numbers.Real) and isinstance(failed.get("message"), str)))


class StaticTokenProvider:
    """A ready bearer token: MSAL is skipped and nothing is cached."""

    refreshable = False
    delegated = False

    def __init__(self, access_token):
        self._token = access_token

    def get_token(self, force_refresh=False):
        return self._token

    def describe(self):
        return "the access_token given"


def token_store(directory, name, check, warnings):
    """The token cache's file ``<name>.json`` in ``directory``: a files.StateStore (lock, read, drop the entries
    ``check`` refuses with one warning, update, atomic write; in memory with one warning where the file cannot be
    used) that refuses a file that is not safe to use. Holds only tokens (and a device code sign-in's MSAL cache),
    keyed by a digest."""
    def refuse(error):
        return MDEAuthError("Refusing to use the token cache: %s. %s, or set token_cache: false."
                            % (error.problem, _capital(error.remedy)))
    return files.StateStore(directory, name, "token cache", check=lambda _key, entry: entry if check(entry) else None,
                            warnings=warnings, may_tighten=is_cache_entry, refuse=refuse)


def _load_certificate(path, password):
    """Read a PEM holding a certificate and its private key; return the MSAL credential dict."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (IOError, OSError) as e:
        raise MDEConfigError("client_certificate_path %s cannot be read: %s." % (path, e.strerror or e))
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise MDEDependencyError("cryptography", "to use client_certificate_path")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise MDEConfigError("client_certificate_path %s holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                             "it must hold the certificate and its private key in PEM." % path)
    pwd = password.encode("utf-8") if password else None
    try:
        key = serialization.load_pem_private_key(data, password=pwd)
    except TypeError as e:
        if "encrypted" in str(e) and pwd is None:
            raise MDEConfigError("The private key in client_certificate_path %s is encrypted: "
                                 "set client_certificate_password." % path)
        raise MDEConfigError("The private key in client_certificate_path %s is not encrypted: "
                             "remove client_certificate_password." % path)
    except ValueError:
        if pwd is not None:
            raise MDEConfigError("client_certificate_password does not decrypt the private key in "
                                 "client_certificate_path %s." % path)
        raise MDEConfigError("client_certificate_path %s holds no usable PEM private key." % path)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    # MSAL computes the certificate's SHA-256 thumbprint from public_certificate (x5t#S256, PS256).
    return {"private_key": key_pem, "public_certificate": cert_pem}


class CachedTokenProvider:
    """An application-context token (``roles`` claim), shared with the other processes through the file cache.

    Subclasses say how a new token is obtained (``_fetch()`` -> ``(access_token, expires_on)``) and what identifies
    it (``key_parts``: the cache key is their digest, never the parts themselves).
    """

    refreshable = True
    delegated = False

    def __init__(self, key_parts, cache_dir=None, warnings=None):
        # Problems the token cache worked around, for the Ansible-facing code to show.
        self.warnings = [] if warnings is None else warnings
        self._cache = token_store(cache_dir, CACHE_NAME, _valid_entry, self.warnings) if cache_dir else None
        self._token = None
        self._expires_on = 0
        self._key = hashlib.sha256("\0".join(key_parts).encode("utf-8")).hexdigest()

    def _valid(self, expires_on):
        return expires_on - EXPIRY_MARGIN > time.time()

    def get_token(self, force_refresh=False):
        if not force_refresh and self._token and self._valid(self._expires_on):
            return self._token
        if self._cache is None:
            self._token, self._expires_on = self._fetch()
            return self._token
        rejected = self._token if force_refresh else None

        def reuse_or_fetch(entries):
            # Under the cache's lock: the forks that need the same token wait for one fetch instead of each fetching.
            for key in [k for k, v in entries.items() if not _unexpired(v)]:
                del entries[key]
            entry = entries.get(self._key)
            # Another fork may already have replaced a token that was rejected: use its fresh one.
            if entry and self._valid(entry["expires_on"]) and entry["access_token"] != rejected:
                self._token, self._expires_on = entry["access_token"], entry["expires_on"]
                return self._token
            self._token, self._expires_on = self._fetch()
            entries[self._key] = {"access_token": self._token, "expires_on": self._expires_on}
            return self._token
        return self._cache.update(reuse_or_fetch)

    def _fetch(self):  # pragma: no cover - every subclass has its own
        raise NotImplementedError


class MsalTokenProvider(CachedTokenProvider):
    """Application-context tokens from Entra ID through MSAL's ConfidentialClientApplication: a client secret, a
    certificate, or a federated token read from a file (workload identity federation,
    https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation) as the client assertion."""

    def __init__(self, tenant_id, client_id, authority_host, scope, http_client,
                 client_secret=None, client_certificate_path=None, client_certificate_password=None,
                 federated_token_file=None, cache_dir=None, timeout=30, warnings=None):
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = "%s/%s" % (authority_host.rstrip("/"), tenant_id)
        self.authority_host = authority_host
        self.scope = scope
        self.http_client = http_client
        self.timeout = timeout
        self._secret = client_secret
        self._cert_path = client_certificate_path
        self._cert_password = client_certificate_password
        self._federated_token_file = federated_token_file
        if client_secret:
            credential_id = client_secret
        elif federated_token_file:
            credential_id = "federated:" + federated_token_file
        else:
            credential_id = "cert:" + (client_certificate_path or "")
        super(MsalTokenProvider, self).__init__([self.authority, client_id, scope, credential_id], cache_dir, warnings)

    def describe(self):
        if self._federated_token_file:
            return "client %s in tenant %s (workload identity, %s)" % (
                self.client_id, self.tenant_id, self._federated_token_file)
        return "client %s in tenant %s" % (self.client_id, self.tenant_id)

    def _credential(self):
        if self._secret:
            return self._secret
        if self._federated_token_file:
            # Read afresh for every token: the platform rotates it (AKS projects a new one every hour).
            return {"client_assertion": read_federated_token(self._federated_token_file)}
        return _load_certificate(self._cert_path, self._cert_password)

    def _fetch(self):
        credential = self._credential()
        msal = _import_msal()
        microsoft = is_microsoft_authority(self.authority_host)

        def call():
            app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=credential,
                authority=self.authority,
                validate_authority=microsoft,
                instance_discovery=microsoft,
                http_client=self.http_client,
                timeout=self.timeout,
                token_cache=msal.TokenCache(),
            )
            return app.acquire_token_for_client(scopes=[self.scope])
        result = calling_entra(call, self.describe(), self.authority)
        if "access_token" not in result:
            if _no_service_principal(result):
                raise _refused(self.describe(), result, advice=admin_consent_advice(self.authority, self.client_id),
                               code="consent_missing")
            raise _refused(self.describe(), result)
        return result["access_token"], time.time() + int(result.get("expires_in", 3599))


def read_federated_token(path):
    """The federated token in ``path`` (the file AZURE_FEDERATED_TOKEN_FILE names), without surrounding white space.

    A symbolic link is fine here: Kubernetes projects the token through one (``..data``)."""
    try:
        with open(path, "rb") as f:
            data = f.read(65536)
    except (IOError, OSError) as e:
        raise MDEConfigError("federated_token_file %s cannot be read: %s." % (path, e.strerror or e))
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    # A JWT is three base64url parts; anything else (empty, a path, text) is not sent.
    if token.count(".") != 2 or not all(c.isalnum() or c in "-_." for c in token):
        raise MDEConfigError("federated_token_file %s does not hold a token (a JWT: three base64url parts joined by "
                             "dots)." % path)
    return token


def managed_identity_source():
    """Which managed identity endpoint MSAL will use, from the environment variables it reads
    (https://learn.microsoft.com/en-us/entra/msal/python/advanced/managed-identity): for messages only."""
    env = os.environ
    if env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER") and env.get("IDENTITY_SERVER_THUMBPRINT"):
        return "the Service Fabric identity endpoint %s (IDENTITY_ENDPOINT)" % env["IDENTITY_ENDPOINT"]
    if env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"):
        return "the App Service / Functions identity endpoint %s (IDENTITY_ENDPOINT)" % env["IDENTITY_ENDPOINT"]
    if env.get("MSI_ENDPOINT") and env.get("MSI_SECRET"):
        return "the Azure Machine Learning identity endpoint %s (MSI_ENDPOINT)" % env["MSI_ENDPOINT"]
    if env.get("IDENTITY_ENDPOINT") and env.get("IMDS_ENDPOINT"):
        return "the Azure Arc identity endpoint %s (IDENTITY_ENDPOINT)" % env["IDENTITY_ENDPOINT"]
    host = env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
    if host:
        return "the instance metadata service at %s (AZURE_POD_IDENTITY_AUTHORITY_HOST)" % host
    return "the Azure instance metadata service (IMDS, 169.254.169.254)"


class ManagedIdentityTokenProvider(CachedTokenProvider):
    """Application-context tokens for the managed identity of the Azure resource the controller runs on, through
    MSAL's ManagedIdentityClient (https://learn.microsoft.com/en-us/entra/msal/python/advanced/managed-identity):
    system-assigned, or user-assigned by its client ID. No tenant and no secret: the platform's endpoint vouches."""

    def __init__(self, scope, http_client, client_id=None, cache_dir=None, timeout=30, warnings=None):
        self.client_id = client_id
        self.scope = scope
        # Managed identity endpoints take a resource, not a scope: the API's application ID URI.
        self.resource = scope[:-len("/.default")] if scope.endswith("/.default") else scope
        self.http_client = http_client
        self.timeout = timeout
        self.source = managed_identity_source()
        # The host is part of the key: two machines sharing a home directory (NFS) have different identities.
        super(ManagedIdentityTokenProvider, self).__init__(
            ["managed_identity", socket.gethostname(), client_id or "system", self.resource, self.source],
            cache_dir, warnings)

    def describe(self):
        who = ("the user-assigned managed identity %s" % self.client_id if self.client_id
               else "the system-assigned managed identity")
        return "%s (through %s)" % (who, self.source)

    def _fetch(self):
        msal = _import_msal()
        if not hasattr(msal, "ManagedIdentityClient"):
            raise MDEDependencyError("msal>=1.29.0", "for auth_mode managed_identity")
        identity = (msal.UserAssignedManagedIdentity(client_id=self.client_id) if self.client_id
                    else msal.SystemAssignedManagedIdentity())
        try:
            # The session itself (PinnedSession puts the timeout on every request): MSAL derives a Service Fabric
            # session from a requests.Session.
            app = msal.ManagedIdentityClient(identity, http_client=self.http_client, token_cache=msal.TokenCache())
            result = app.acquire_token_for_client(resource=self.resource)
        except MDEError:
            raise
        except Exception as e:  # pylint: disable=broad-except
            if type(e).__name__ == "ManagedIdentityError":
                raise MDEAuthError("The managed identity could not be used: %s" % _first_line(str(e)))
            raise MDEAuthError("Could not get a token for %s: %s. Is the controller running on an Azure resource "
                               "with a managed identity assigned?" % (self.describe(), _transport_hint(e)))
        if "access_token" not in result:
            raise _refused(self.describe(), result)
        return result["access_token"], time.time() + int(result.get("expires_in", 3599))


class UserSignIn:
    """One user's device code sign-in to a public client application, shared by the token providers of both APIs
    (a refresh token from Entra ID serves every resource the app may reach, so one sign-in gives both tokens).

    MSAL's token cache (accounts, access and refresh tokens) lives in ``user_tokens.json`` in the private cache
    directory, read and written under its own lock: a fork that finds no usable token there signs in while the
    others wait on the lock, then they all use that sign-in silently. ``show(message)``: how the Ansible-facing code
    shows Entra ID's sign-in message ("To sign in, use a web browser to open the page ... and enter the code ...");
    None where nothing can be shown (module mode), where a sign-in that is needed fails with advice instead.
    """

    def __init__(self, tenant_id, client_id, authority_host, http_client, cache_dir=None, timeout=30, warnings=None,
                 show=None, wait=SIGN_IN_WAIT):
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority_host = authority_host
        self.authority = "%s/%s" % (authority_host.rstrip("/"), tenant_id)
        self.http_client = http_client
        self.timeout = timeout
        self.warnings = [] if warnings is None else warnings
        self.show = show
        self.wait = wait
        self.username = None
        self._prompted = False  # whether this process showed a sign-in message in the current attempt
        self._memory = None  # the serialized MSAL cache when there is no file cache (token_cache: false)
        self._cache = token_store(cache_dir, USER_CACHE_NAME, _valid_user_entry, self.warnings) if cache_dir else None
        self._key = hashlib.sha256("\0".join([self.authority, client_id]).encode("utf-8")).hexdigest()

    def describe(self):
        who = "user %s" % self.username if self.username else "the signed-in user"
        return "%s of public client %s in tenant %s" % (who, self.client_id, self.tenant_id)

    def token(self, scope, rejected=None):
        """``(access_token, expires_on)`` for ``scope``: from MSAL's cache, refreshed silently, or after a sign-in."""
        msal = _import_msal()
        if self._cache is None:
            return self._token(msal, scope, rejected, {})
        waiting_since = time.time()

        def sign_in(entries):
            # Under the lock for the whole sign-in: the forks wait for one code instead of each showing one.
            failed = (entries.get(self._key) or {}).get("failed")
            if failed and failed["at"] >= waiting_since:
                # Another task's sign-in failed while this one waited for it: the same answer, not one more code.
                raise MDEAuthError("%s (the sign-in another task of this run asked for)" % failed["message"],
                                   code=failed.get("code") if isinstance(failed.get("code"), str) else None)
            return self._token(msal, scope, rejected, entries)
        # Saved also when the sign-in failed: the forks waiting for it read that failure.
        return self._cache.update(sign_in, save_on_error=True)

    def _token(self, msal, scope, rejected, entries):
        serialized = (entries.get(self._key) or {}).get("msal_cache") or self._memory
        cache = msal.SerializableTokenCache()
        if serialized:
            try:
                cache.deserialize(serialized)
            except ValueError:
                self.warnings.append("The saved sign-in in the token cache was damaged and was dropped.")
                cache = msal.SerializableTokenCache()
        microsoft = is_microsoft_authority(self.authority_host)

        def call():
            app = msal.PublicClientApplication(
                self.client_id, authority=self.authority, validate_authority=microsoft, instance_discovery=microsoft,
                http_client=self.http_client, timeout=self.timeout, token_cache=cache)
            result, problem = self._silent(app, scope, rejected)
            return result if result is not None else self._sign_in(app, scope, problem)
        self._prompted = False
        failure = None
        try:
            result = calling_entra(call, self.describe(), self.authority)
        except MDEAuthError as e:
            if self._prompted:  # a sign-in was shown and did not succeed: the forks waiting for it share the answer
                failure = {"at": time.time(), "message": str(e), "code": e.code}
            raise
        finally:
            changed = cache.has_state_changed  # serialize() resets it
            if changed:
                self._memory = cache.serialize()
            if changed or failure or self._prompted:
                entry = {"msal_cache": self._memory} if self._memory else {}
                if failure:
                    entry["failed"] = failure
                entries[self._key] = entry  # saved by the store's update
        return result["access_token"], time.time() + int(result.get("expires_in", 3599))

    def _silent(self, app, scope, rejected):
        """A token from the cache or through the refresh token: ``(result, None)``; ``(None, why)`` when the user
        must sign in (no saved sign-in, or the refresh token expired or was revoked)."""
        accounts = app.get_accounts()
        if not accounts:
            return None, None
        account = accounts[0]
        self.username = account.get("username") or self.username
        result = app.acquire_token_silent_with_error([scope], account=account)
        if result and rejected and result.get("access_token") == rejected:
            result = app.acquire_token_silent_with_error([scope], account=account, force_refresh=True)
        if result and "access_token" in result:
            return result, None
        if result and _needs_consent(result):
            # A new sign-in would not help: the app lacks consented delegated permissions for this API.
            raise _refused(self.describe(), result, advice=CONSENT_ADVICE, code="consent_required")
        if result:
            return None, "the saved sign-in of %s can no longer be used (%s)" % (
                self.username or "the user", _first_line(str(result.get("error_description") or result.get("error") or "")))
        return None, "the saved sign-in of %s has no token for %s" % (self.username or "the user", scope)

    def _sign_in(self, app, scope, problem):
        if self.show is None:
            raise MDEAuthError(
                "auth_mode device_code needs %s to sign in (%s), and a module run on a managed host cannot show a "
                "sign-in code. Run a task of this collection with ansible-playbook on the controller, where the "
                "sign-in message is shown, and later runs use that sign-in silently."
                % (self.describe(), problem or "there is no saved sign-in for this client and tenant"))
        flow = app.initiate_device_flow(scopes=[scope])
        if "user_code" not in flow:
            raise _refused("public client %s in tenant %s" % (self.client_id, self.tenant_id), flow,
                           action="a device code sign-in")
        # Give up when the code expires or after ``wait`` seconds, whichever comes first.
        flow["expires_at"] = min(flow.get("expires_at", 0), time.time() + self.wait)
        waited = time.time()
        self.show(sign_in_prompt(flow))
        self._prompted = True
        result = app.acquire_token_by_device_flow(flow)
        if "access_token" in result:
            # Keep one sign-in per client and tenant, the newest: the account whose object id the ID token names.
            oid = (result.get("id_token_claims") or {}).get("oid")
            for account in app.get_accounts():
                if oid and account.get("local_account_id") != oid:
                    app.remove_account(account)
                elif oid:
                    self.username = account.get("username") or self.username
            return result
        error = result.get("error")
        if _needs_consent(result):
            raise _refused(self.describe(), result, advice=CONSENT_ADVICE, code="consent_required")
        if error in ("authorization_pending", "slow_down", "expired_token", "code_expired"):
            raise MDEAuthError("Nobody signed in with the code %s within %s; run the task again for a new code."
                               % (flow.get("user_code"), _duration(time.time() - waited)), code="expired_token")
        if error == "authorization_declined":
            raise MDEAuthError("The sign-in with the code %s was declined; nothing was done." % flow.get("user_code"),
                               code=error)
        raise _refused("public client %s in tenant %s" % (self.client_id, self.tenant_id), result)


# A device code sign-in's user code: letters and digits (Entra ID's are 9 characters, "ABCD12345"), perhaps grouped by
# hyphens; https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code (the device authorization
# response: user_code, verification_uri).
_CONTROL_OR_SPACE = re.compile(u"[\\s\\u0000-\\u001f\\u007f-\\u009f]")
_USER_CODE = re.compile(r"^[A-Za-z0-9]{4,16}(-[A-Za-z0-9]{1,16}){0,3}$")


def sign_in_prompt(flow):
    """The sentence shown to the user for a device code sign-in, built from the authority's ``verification_uri``
    (an https:// URL, shown escaped) and ``user_code`` (checked for its shape), never from its free text ``message``:
    an authority's words could forge a line of Ansible's output or move the terminal's cursor. MDEAuthError when
    either field is not what Entra ID sends."""
    uri, code = flow.get("verification_uri"), flow.get("user_code")
    if not isinstance(code, str) or not _USER_CODE.match(code):
        raise MDEAuthError("The sign-in authority answered the device code request with a user code that is not letters "
                           "and digits (%s); no sign-in was started." % quoted(repr(code), 60))
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if not parts or parts.scheme != "https" or not parts.hostname or _CONTROL_OR_SPACE.search(uri) or "@" in parts.netloc:
        raise MDEAuthError("The sign-in authority answered the device code request with a verification page that is not a "
                           "plain https:// URL (%s); no sign-in was started." % quoted(repr(uri), 200))
    return "To sign in, use a web browser to open the page %s and enter the code %s to authenticate." % (
        quoted(uri, 200), code)


class DeviceCodeTokenProvider:
    """User-context (delegated) tokens for one scope, from a shared UserSignIn."""

    refreshable = True
    delegated = True

    def __init__(self, sign_in, scope):
        self.sign_in = sign_in
        self.scope = scope
        self.warnings = sign_in.warnings
        self._token = None
        self._expires_on = 0

    def describe(self):
        return self.sign_in.describe()

    def get_token(self, force_refresh=False):
        if not force_refresh and self._token and self._expires_on - EXPIRY_MARGIN > time.time():
            return self._token
        self._token, self._expires_on = self.sign_in.token(self.scope, rejected=self._token if force_refresh else None)
        return self._token


def calling_entra(call, who, authority):
    """``call()``'s result; what MSAL or requests raise becomes one MDEAuthError sentence naming ``who``."""
    try:
        return call()
    except MDEError:
        raise
    except ValueError as e:
        # msal raises ValueError when the authority (tenant) cannot be found: the advice first, MSAL's words after.
        text = _first_line(str(e))
        lead = _tenant_advice(authority) + " " if re.search(r"authority configuration|tenant", text, re.I) else ""
        raise MDEAuthError("%sEntra ID could not sign in %s at %s: %s" % (lead, who, authority, text))
    except Exception as e:  # connection and TLS errors from requests
        raise MDEAuthError("Could not reach the Entra ID token endpoint %s for %s: %s"
                           % (authority, who, _transport_hint(e)))


def _duration(seconds):
    minutes = int(round(seconds / 60.0))
    if minutes < 1:
        return "%d seconds" % max(1, int(round(seconds)))
    return "1 minute" if minutes == 1 else "%d minutes" % minutes


def _import_msal():
    try:
        import msal
    except ImportError:
        raise MDEDependencyError("msal", "to request tokens from Entra ID")
    return msal


# https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes (AADSTS65001, suberror consent_required)
CONSENT_ADVICE = ("Add the delegated permissions this task needs to the public client application, for the API it "
                  "calls, and grant consent")


def _no_service_principal(result):
    """Entra ID has no service principal of the app in this tenant: a multi-tenant app no admin of the tenant consented
    to, or whose consent was revoked (AADSTS7000229), or an app the tenant does not know at all (AADSTS700016)
    (https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes)."""
    return re.search(r"AADSTS(7000229|700016)\b", str(result.get("error_description") or "")) is not None


def admin_consent_url(authority, client_id):
    """The page where a tenant's admin grants tenant-wide consent to a multi-tenant app:
    ``<authority host>/<tenant>/adminconsent?client_id=<id>``
    (https://learn.microsoft.com/en-us/entra/identity/enterprise-apps/grant-admin-consent, "Construct the URL for
    granting tenant-wide admin consent"; https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-partners)."""
    return "%s/adminconsent?client_id=%s" % ((authority or "").rstrip("/"), client_id)


def admin_consent_advice(authority, client_id):
    tenant = (authority or "").rstrip("/").rpartition("/")[2]
    return ("The app has no service principal in tenant %s: an admin of that tenant must consent to it (again, if the "
            "consent was revoked) at %s, or tenant_id names the wrong tenant; a single-tenant app works in its own "
            "tenant only" % (quoted(tenant, 100), admin_consent_url(authority, client_id)))


def _needs_consent(result):
    return result.get("suberror") == "consent_required" or "AADSTS65001" in (result.get("error_description") or "")


# https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes (AADSTS90002: the tenant is not found)
# https://learn.microsoft.com/en-us/entra/fundamentals/how-to-find-tenant (where the tenant ID is)
TENANT_ADVICE = ("check that tenant_id (MDE_TENANT_ID) is your tenant's Directory (tenant) ID, or one of its domains, "
                 "and that cloud (or authority_host) names the cloud the tenant is in")


def _tenant_advice(authority):
    """One sentence, to lead a message about a tenant Entra ID does not know: which tenant, where, what to check."""
    host, _sep, tenant = (authority or "").rstrip("/").rpartition("/")
    return "Tenant %s was not found at %s: %s." % (quoted(tenant, 100), host, TENANT_ADVICE)


def _refused(who, result, action="a token", advice=None, code=None):
    desc = _first_line(str(result.get("error_description") or "")).rstrip(".")
    error = _first_line(str(result.get("error") or "error"))[:100]
    missing = re.search(r"AADSTS90002: Tenant '([^']*)' not found", desc)
    lead = "Tenant %s was not found by Entra ID: %s. " % (quoted(missing.group(1), 100), TENANT_ADVICE) if missing else ""
    return MDEAuthError("%sEntra ID refused %s to %s: %s%s%s" % (
        lead, action, who, error, ": " + desc if desc else "", ". " + advice + "." if advice else ""),
        code=code or (error if error != "error" else None))


def _first_line(text):
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _transport_hint(exc):
    text = _first_line(str(exc))
    name = type(exc).__name__
    if "SSLError" in name or "CERTIFICATE_VERIFY_FAILED" in text:
        return ("TLS certificate verification failed (%s). Set ca_path to the CA bundle that signs this server's "
                "certificate, or validate_certs: false (unsafe)" % text)
    return "%s: %s" % (name, text)
