# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential -> bearer token, for application context.

Plain Python on requests and msal (imported only when a token must really be fetched): no Ansible import.

Every Ansible module run is its own process, so tokens are shared between runs through a small file
cache: a directory of mode 0700 and a file of mode 0600 owned by the user, read and written under an
exclusive lock, replaced atomically. The lock is held while a token is fetched, so parallel forks
wait for the first one instead of all asking Entra ID at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import stat
import tempfile
import time

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # pragma: no cover - Windows is not a supported controller
    HAS_FCNTL = False

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


def default_cache_dir():
    """``$MDE_TOKEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/defender.endpoint``, else ``~/.cache/defender.endpoint``."""
    explicit = os.environ.get("MDE_TOKEN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "defender.endpoint")


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
    """The cross-process file cache. Holds only access tokens and their expiry, keyed by a digest."""

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, CACHE_FILE)
        self._lock_fd = None

    def _check_private(self, path, kind, st):
        if st.st_uid != os.getuid():
            raise MDEAuthError(
                "Refusing to use the token cache %s %s: it is owned by uid %d, not by you (uid %d). "
                "Remove it, or set token_cache: false." % (kind, path, st.st_uid, os.getuid()))
        if st.st_mode & 0o077:
            wanted = "700" if kind == "directory" else "600"
            raise MDEAuthError(
                "Refusing to use the token cache %s %s: its permissions %s let other users read it. "
                "Run 'chmod %s %s', or set token_cache: false."
                % (kind, path, oct(stat.S_IMODE(st.st_mode)), wanted, path))

    def _ensure_directory(self):
        try:
            os.makedirs(self.directory, 0o700)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise MDEAuthError("Cannot create the token cache directory %s: %s" % (self.directory, e.strerror))
        self._check_private(self.directory, "directory", os.stat(self.directory))

    def __enter__(self):
        self._ensure_directory()
        if HAS_FCNTL:
            fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        return self

    def __exit__(self, *exc):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
        return False

    def load(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return {}
            raise MDEAuthError("Cannot read the token cache %s: %s" % (self.path, e.strerror))
        with os.fdopen(fd, "r") as f:
            self._check_private(self.path, "file", os.fstat(f.fileno()))
            try:
                data = json.load(f)
            except ValueError:
                return {}  # a damaged cache is simply rebuilt
        return data if isinstance(data, dict) else {}

    def save(self, entries):
        now = time.time()
        entries = dict((k, v) for k, v in entries.items() if v.get("expires_on", 0) > now)
        fd, tmp = tempfile.mkstemp(prefix=".tokens.", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except Exception:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


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
                 cache_dir=None, timeout=30):
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
        self._cache = TokenCache(cache_dir) if cache_dir else None
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
