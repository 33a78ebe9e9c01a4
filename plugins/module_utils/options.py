# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection and credential options, defined once.

The module argument spec (module.py and the action base), the inventory plugin's options (through the
defender.endpoint.auth doc fragment, which a unit test holds to this table) and the Event-Driven Ansible sources'
options all come from here. Plain Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CLOUDS = ("global", "gcc", "gcc_high", "dod")
# How the collection signs in to Entra ID (auth.py). Unset: what the given credential implies.
AUTH_MODES = ("client_secret", "client_certificate", "access_token", "device_code", "managed_identity",
              "workload_identity")

# name -> type, environment variables (first set one wins), default, choices, no_log
SHARED_OPTIONS = dict(
    tenant_id=dict(type="str", env=("MDE_TENANT_ID", "AZURE_TENANT_ID", "AZURE_TENANT")),
    client_id=dict(type="str", env=("MDE_CLIENT_ID", "AZURE_CLIENT_ID")),
    client_secret=dict(type="str", no_log=True, env=("MDE_CLIENT_SECRET", "AZURE_CLIENT_SECRET", "AZURE_SECRET")),
    client_certificate_path=dict(type="path", env=("MDE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PATH")),
    client_certificate_password=dict(type="str", no_log=True,
                                     env=("MDE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PASSWORD")),
    access_token=dict(type="str", no_log=True, env=("MDE_ACCESS_TOKEN",)),
    auth_mode=dict(type="str", choices=AUTH_MODES, env=("MDE_AUTH_MODE",)),
    federated_token_file=dict(type="path", env=("MDE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE")),
    cloud=dict(type="str", default="global", choices=CLOUDS, env=("MDE_CLOUD",)),
    api_url=dict(type="str", env=("MDE_API_URL",)),
    graph_url=dict(type="str", env=("MDE_GRAPH_URL",)),
    authority_host=dict(type="str", env=("MDE_AUTHORITY_HOST", "AZURE_AUTHORITY_HOST")),
    validate_certs=dict(type="bool", default=True, env=("MDE_VALIDATE_CERTS",)),
    ca_path=dict(type="path", env=("MDE_CA_PATH",)),
    timeout=dict(type="int", default=30, env=("MDE_TIMEOUT",)),
    token_cache=dict(type="bool", default=True, env=("MDE_TOKEN_CACHE",)),
)

NAMES = tuple(SHARED_OPTIONS)
SECRETS = tuple(name for name, o in SHARED_OPTIONS.items() if o.get("no_log"))


def argument_spec(env_fallback):
    """The shared options as an Ansible argument spec; ``env_fallback`` is Ansible's (passed in: no import here)."""
    spec = {}
    for name, o in SHARED_OPTIONS.items():
        entry = dict(type=o["type"], fallback=(env_fallback, list(o["env"])))
        for key in ("default", "choices", "no_log"):
            if key in o:
                entry[key] = list(o[key]) if key == "choices" else o[key]
        spec[name] = entry
    return spec


def full_spec(module_spec, env_fallback):
    """A module's whole argument spec: the shared options, then the module's own. A module's entry for a shared
    option refines it (mde_advanced_hunting gives ``timeout`` another default) and keeps its environment fallback."""
    spec = argument_spec(env_fallback)
    for name, entry in (module_spec or {}).items():
        spec[name] = dict(spec[name], **entry) if name in spec else entry
    return spec


def first_set(variables, environ):
    """The value of the first of ``variables`` set to something other than white space in ``environ``, stripped;
    None if none is. An empty variable is unset: AWX sets every field of a credential type, the unused ones empty.
    The one rule for the modules (module.env_fallback), the inventory plugin and the event sources."""
    for var in variables:
        value = (environ.get(var) or "").strip()
        if value:
            return value
    return None


def from_environment(values, environ):
    """``values`` with each unset shared option taken from the first non-empty environment variable it names."""
    out = dict(values)
    for name, o in SHARED_OPTIONS.items():
        if out.get(name) not in (None, ""):
            continue
        value = first_set(o["env"], environ)
        out[name] = o.get("default") if value is None else value
    return out
