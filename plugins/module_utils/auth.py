# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential -> bearer token, for application context.

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
import json
import numbers
import os
import time

from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.clouds import is_microsoft_authority
from ansible_collections.defender.endpoint.plugins.module_utils.errors import (
    MDEAuthError,
    MDEConfigError,
    MDEDependencyError,
    MDEError,
)

# A cached token is used only while it has more than this many seconds to live.
EXPIRY_MARGIN = 300
CACHE_FILE = "tokens.json"
LOCK_FILE = "tokens.lock"
HAS_FCNTL = files.HAS_FCNTL
# What the collection itself keeps in its cache directory: the token cache, the call budget (throttle.py), the EDA
# checkpoints, and Ansible's inventory cache where docs/inventory.md puts it. A directory that holds nothing else
# is the collection's own, so a mode opened by someone else's default (Ansible's jsonfile plugin makes missing
# directories with mode 0755) may be closed again.
CACHE_ENTRIES = frozenset([CACHE_FILE, LOCK_FILE, "ratelimit.json", "ratelimit.lock", "inventory", "eda"])


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


class StaticTokenProvider:
    """A ready bearer token: MSAL is skipped and nothing is cached."""

    refreshable = False

    def __init__(self, access_token):
        self._token = access_token

    def get_token(self, force_refresh=False):
        return self._token

    def describe(self):
        return "the access_token given"


class TokenCache:
    """The cross-process file cache. Holds only access tokens and their expiry, keyed by a digest.

    Used as ``with cache: entries = cache.load(); ...; cache.save(entries)``: the lock is held for the whole
    block. ``warnings``: a list (or anything with ``append``) that gets one sentence for each problem the cache
    worked around; the attribute ``warnings`` is that list. ``usable`` turns false when the cache fell back to
    the process's memory: then load() returns {} and save() does nothing.
    """

    def __init__(self, directory, warnings=None):
        self.directory = directory
        self.path = os.path.join(directory, CACHE_FILE)
        self.warnings = [] if warnings is None else warnings
        self.usable = True
        self._lock = None

    def _warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def _refuse(self, error):
        return MDEAuthError("Refusing to use the token cache: %s. %s, or set token_cache: false."
                            % (error.problem, _capital(error.remedy)))

    def _fall_back(self, error, path):
        self.usable = False
        self._warn("The token cache %s cannot be used (%s): tokens are kept in memory for this process only."
                   % (files.where(error, path), error.strerror or error))

    def __enter__(self):
        if not self.usable:
            return self
        try:
            files.private_directory(self.directory, may_tighten=is_cache_entry, warnings=self.warnings)
            lock = files.locked(os.path.join(self.directory, LOCK_FILE))
            lock.__enter__()
            self._lock = lock
        except files.UnsafeFileError as e:
            raise self._refuse(e)
        except (IOError, OSError) as e:
            self._fall_back(e, self.directory)
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)
        return False

    def load(self):
        if not self.usable:
            return {}
        try:
            data = files.read_file(self.path)
        except files.UnsafeFileError as e:
            raise self._refuse(e)
        except (IOError, OSError) as e:
            self._fall_back(e, self.path)
            return {}
        if data is None:
            return {}
        try:
            entries = json.loads(data.decode("utf-8"))
        except ValueError:
            entries = None
        good = dict((k, v) for k, v in entries.items() if _valid_entry(v)) if isinstance(entries, dict) else {}
        if not isinstance(entries, dict) or len(good) < len(entries):
            self._warn("The token cache %s was damaged: its unreadable entries were dropped." % self.path)
        return good

    def save(self, entries):
        if not self.usable:
            return
        now = time.time()
        entries = dict((k, v) for k, v in entries.items() if _valid_entry(v) and v["expires_on"] > now)
        try:
            files.atomic_write(self.path, json.dumps(entries))
        except files.UnsafeFileError as e:
            raise self._refuse(e)
        except (IOError, OSError) as e:
            self._fall_back(e, self.path)


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


class MsalTokenProvider:
    """Application-context tokens from Entra ID through MSAL's ConfidentialClientApplication."""

    refreshable = True

    def __init__(self, tenant_id, client_id, authority_host, scope, http_client,
                 client_secret=None, client_certificate_path=None, client_certificate_password=None,
                 cache_dir=None, timeout=30, warnings=None):
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
        # Problems the token cache worked around, for the Ansible-facing code to show (TokenCache.warnings).
        self.warnings = [] if warnings is None else warnings
        self._cache = TokenCache(cache_dir, warnings=self.warnings) if cache_dir else None
        self._token = None
        self._expires_on = 0
        credential_id = client_secret if client_secret else "cert:" + (client_certificate_path or "")
        digest = hashlib.sha256(
            "\0".join([self.authority, client_id, scope, credential_id]).encode("utf-8")).hexdigest()
        self._key = digest

    def describe(self):
        return "client %s in tenant %s" % (self.client_id, self.tenant_id)

    def _valid(self, expires_on):
        return expires_on - EXPIRY_MARGIN > time.time()

    def get_token(self, force_refresh=False):
        if not force_refresh and self._token and self._valid(self._expires_on):
            return self._token
        if self._cache is None:
            self._token, self._expires_on = self._fetch()
            return self._token
        rejected = self._token if force_refresh else None
        with self._cache:  # pylint: disable=not-context-manager
            entries = self._cache.load()
            entry = entries.get(self._key)
            # Another fork may already have replaced a token that was rejected: use its fresh one.
            if entry and self._valid(entry.get("expires_on", 0)) and entry.get("access_token") != rejected:
                self._token, self._expires_on = entry["access_token"], entry["expires_on"]
                return self._token
            self._token, self._expires_on = self._fetch()
            entries[self._key] = {"access_token": self._token, "expires_on": self._expires_on}
            self._cache.save(entries)
            return self._token

    def _credential(self):
        if self._secret:
            return self._secret
        return _load_certificate(self._cert_path, self._cert_password)

    def _fetch(self):
        credential = self._credential()
        try:
            import msal
        except ImportError:
            raise MDEDependencyError("msal", "to request tokens from Entra ID")
        microsoft = is_microsoft_authority(self.authority_host)
        try:
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
            result = app.acquire_token_for_client(scopes=[self.scope])
        except MDEError:
            raise
        except ValueError as e:
            # msal raises ValueError when the authority (tenant) cannot be found.
            raise MDEAuthError("Entra ID could not sign in %s at %s: %s"
                               % (self.describe(), self.authority, _first_line(str(e))))
        except Exception as e:  # connection and TLS errors from requests
            raise MDEAuthError("Could not reach the Entra ID token endpoint %s for %s: %s"
                               % (self.authority, self.describe(), _transport_hint(e)))
        if "access_token" not in result:
            desc = _first_line(result.get("error_description") or "")
            raise MDEAuthError("Entra ID refused a token to %s: %s%s"
                               % (self.describe(), result.get("error", "error"), ": " + desc if desc else ""),
                               code=result.get("error"))
        return result["access_token"], time.time() + int(result.get("expires_in", 3599))


def _first_line(text):
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _transport_hint(exc):
    text = _first_line(str(exc))
    name = type(exc).__name__
    if "SSLError" in name or "CERTIFICATE_VERIFY_FAILED" in text:
        return ("TLS certificate verification failed (%s). Set ca_path to the CA bundle that signs this server's "
                "certificate, or validate_certs: false (unsafe)" % text)
    return "%s: %s" % (name, text)
