# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From the shared options to a client: every option checked before any network call (one credential, https URLs,
the cloud, the timeout, the CA), then the token provider, the session and the shared budget. Plain Python: no
Ansible import. ``create_client(**options)`` is the way in for the modules, the inventory and the event sources."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible_collections.defender.endpoint.plugins.module_utils import clouds, options
from ansible_collections.defender.endpoint.plugins.module_utils.auth import (
    DeviceCodeTokenProvider,
    ManagedIdentityTokenProvider,
    MsalTokenProvider,
    StaticTokenProvider,
    UserSignIn,
    default_cache_dir,
)
from ansible_collections.defender.endpoint.plugins.module_utils.client import (
    _CONTROL,
    HAS_REQUESTS,
    GraphClient,
    MDEClient,
    PinnedSession,
)
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEConfigError
from ansible_collections.defender.endpoint.plugins.module_utils.throttle import RateBudget


def _check_url(name, url, allow_http=False):
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow_http else ("https",)) or not parts.hostname:
        raise MDEConfigError("%s must be an https:// URL, got %r." % (name, url))


def allow_http():
    """``MDE_ALLOW_HTTP=true``: accept an ``http://`` api_url (a test server on a trusted host; the token then
    travels unencrypted). Off by default. authority_host stays https-only: MSAL only speaks https to it."""
    import os
    return (os.environ.get("MDE_ALLOW_HTTP") or "").strip().lower() in ("true", "yes", "1", "on")


def rate_limit_scale():
    """``MDE_RATE_LIMIT_SCALE``: the length of the API's rate-limit windows relative to the documented minute
    and hour (default 1). Only for an emulator whose windows are scaled down, or a tenant with other limits."""
    import os
    try:
        scale = float(os.environ.get("MDE_RATE_LIMIT_SCALE") or 1.0)
    except ValueError:
        raise MDEConfigError("MDE_RATE_LIMIT_SCALE must be a number, got %r." % os.environ.get("MDE_RATE_LIMIT_SCALE"))
    if scale <= 0:
        raise MDEConfigError("MDE_RATE_LIMIT_SCALE must be greater than 0.")
    return scale


def clean_credential(name, value):
    """A credential or identifier without the white space around it (a trailing newline from a file or a paste);
    one with a line break or another control character inside is refused, without echoing it."""
    if value is None or not isinstance(value, str):
        return value
    stripped = value.strip()
    if _CONTROL.search(stripped):
        raise MDEConfigError("%s contains a line break or another control character; it was not used." % name)
    return stripped or None


def resolve_auth_mode(auth_mode=None, client_secret=None, client_certificate_path=None, access_token=None,
                      federated_token_file=None):
    """The sign-in mode: ``auth_mode`` when set, else the one the given credential implies (so plays written before
    auth_mode existed keep working). Raises MDEConfigError when nothing or more than one credential is given."""
    if auth_mode:
        if auth_mode not in options.AUTH_MODES:
            raise MDEConfigError("auth_mode must be one of %s, got %r." % (", ".join(options.AUTH_MODES), auth_mode))
        return auth_mode
    given = [name for name, value in (("client_secret", client_secret),
                                      ("client_certificate_path", client_certificate_path),
                                      ("access_token", access_token)) if value]
    if len(given) > 1:
        raise MDEConfigError("Only one credential may be set, got %s." % " and ".join(given))
    if given:
        return {"client_secret": "client_secret", "client_certificate_path": "client_certificate",
                "access_token": "access_token"}[given[0]]
    if federated_token_file:
        return "workload_identity"
    raise MDEConfigError("No credential given: set exactly one of client_secret, client_certificate_path or "
                         "access_token (or MDE_CLIENT_SECRET, MDE_CLIENT_CERTIFICATE_PATH, MDE_ACCESS_TOKEN), or "
                         "auth_mode (device_code, managed_identity, workload_identity).")


# What each sign-in mode needs besides tenant_id and client_id (None: that mode needs neither).
_MODE_NEEDS = {
    "client_secret": "client_secret",
    "client_certificate": "client_certificate_path",
    "access_token": "access_token",
    "workload_identity": "federated_token_file",
    "device_code": None,
    "managed_identity": None,
}


def create_client(tenant_id=None, client_id=None, client_secret=None, client_certificate_path=None,
                  client_certificate_password=None, access_token=None, cloud="global", api_url=None,
                  authority_host=None, validate_certs=True, ca_path=None, timeout=30, token_cache=True,
                  graph_url=None, auth_mode=None, federated_token_file=None, sign_in=None, **kwargs):
    """Validate the shared options and build an MDEClient. Raises MDEConfigError before any network call.

    api_url and authority_host must be https:// URLs; the environment variable MDE_ALLOW_HTTP=true (see
    allow_http()) explicitly allows an http:// api_url, for a test server. ``sign_in(message)``: how to show a
    device code sign-in message (auth_mode device_code); None where nothing can be shown.
    """
    if not HAS_REQUESTS:
        from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEDependencyError
        raise MDEDependencyError("requests")
    try:
        api_url, authority_host, scope = clouds.resolve(cloud, api_url, authority_host)
        graph_url, graph_scope = clouds.resolve_graph(cloud, graph_url)
    except ValueError as e:
        raise MDEConfigError(str(e) + ".")
    _check_url("api_url", api_url, allow_http=allow_http())
    _check_url("graph_url", graph_url, allow_http=allow_http())
    tenant_id, client_id, client_secret, access_token, client_certificate_password = [
        clean_credential(name, value) for name, value in (
            ("tenant_id", tenant_id), ("client_id", client_id), ("client_secret", client_secret),
            ("access_token", access_token), ("client_certificate_password", client_certificate_password))]
    if access_token and access_token[:7].lower() == "bearer ":
        access_token = access_token[7:].strip()
    _check_url("authority_host", authority_host)
    mode = resolve_auth_mode(auth_mode, client_secret, client_certificate_path, access_token, federated_token_file)
    needs = _MODE_NEEDS[mode]
    value = {"client_secret": client_secret, "client_certificate_path": client_certificate_path,
             "access_token": access_token, "federated_token_file": federated_token_file}.get(needs)
    if needs and not value:
        raise MDEConfigError("auth_mode %s needs %s (or %s)." % (
            mode, needs, " or ".join(options.SHARED_OPTIONS[needs]["env"])))
    if client_certificate_password and not client_certificate_path and (not auth_mode or mode == "client_certificate"):
        raise MDEConfigError("client_certificate_password needs client_certificate_path.")
    if mode not in ("access_token", "managed_identity"):
        for name, value in (("tenant_id", tenant_id), ("client_id", client_id)):
            if not value:
                raise MDEConfigError("%s is required with auth_mode %s (or set MDE_%s)." % (name, mode, name.upper()))
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]*$", tenant_id):
            raise MDEConfigError("tenant_id must be a directory (tenant) GUID or a domain such as "
                                 "contoso.onmicrosoft.com, got %r." % tenant_id)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise MDEConfigError("timeout must be a number of seconds, got %r." % (timeout,))
    if timeout <= 0:
        raise MDEConfigError("timeout must be greater than 0, got %s." % timeout)
    if not validate_certs:
        verify = False
    elif ca_path:
        import os
        if not os.path.isfile(ca_path):
            raise MDEConfigError("ca_path %s is not a readable file." % ca_path)
        verify = ca_path
    else:
        verify = True
    session = PinnedSession(verify=verify, timeout=timeout)
    cache_dir = default_cache_dir() if token_cache else None
    # What the token cache and the shared budget worked around (a damaged file, a read-only home...), one sentence
    # each, for the Ansible-facing code to show as warnings.
    warnings = []
    if mode == "access_token":
        # A ready token has one audience: it works for the API it was issued for (the other answers 401).
        provider = graph_provider = StaticTokenProvider(access_token)
        identity = "token:" + hashlib.sha256(access_token.encode("utf-8")).hexdigest()[:16]
    elif mode == "device_code":
        # One sign-in for both APIs: the refresh token it gives serves the Defender and the Graph resource alike.
        user = UserSignIn(tenant_id, client_id, authority_host, session, cache_dir=cache_dir, timeout=timeout,
                          warnings=warnings, show=sign_in)
        provider, graph_provider = [DeviceCodeTokenProvider(user, token_scope) for token_scope in (scope, graph_scope)]
        identity = "%s/%s" % (tenant_id, client_id)
        if not cache_dir:
            warnings.append("auth_mode device_code with token_cache false: the sign-in is kept by this task only, so "
                            "every task and host asks the user to sign in again (forks at the same time).")
    elif mode == "managed_identity":
        provider, graph_provider = [ManagedIdentityTokenProvider(
            token_scope, session, client_id=client_id, cache_dir=cache_dir, timeout=timeout, warnings=warnings)
            for token_scope in (scope, graph_scope)]
        identity = "managed_identity/%s" % (client_id or "system")
    else:
        # One provider per scope; the token cache keys its entries by scope, so a play using both APIs asks Entra ID
        # once for each.
        provider, graph_provider = [MsalTokenProvider(
            tenant_id, client_id, authority_host, token_scope, session,
            client_secret=client_secret if mode == "client_secret" else None,
            client_certificate_path=client_certificate_path if mode == "client_certificate" else None,
            client_certificate_password=client_certificate_password if mode == "client_certificate" else None,
            federated_token_file=federated_token_file if mode == "workload_identity" else None,
            cache_dir=cache_dir, timeout=timeout, warnings=warnings) for token_scope in (scope, graph_scope)]
        identity = "%s/%s" % (tenant_id, client_id)
    kwargs.setdefault("budget", RateBudget(cache_dir, scale=rate_limit_scale(), warnings=warnings))
    graph_kwargs = dict(kwargs, budget_key="%s|%s" % (urlsplit(graph_url).netloc, identity))
    kwargs.setdefault("budget_key", "%s|%s" % (urlsplit(api_url).netloc, identity))
    client = MDEClient(api_url, provider, session, **kwargs)
    client.warnings = warnings
    client.graph = GraphClient(graph_url, graph_provider, session, **graph_kwargs)
    client.graph.warnings = warnings
    return client
