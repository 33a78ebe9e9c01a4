# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection and credential options, and the option groups several modules take, defined once.

The module argument spec (module.py and the action base), the inventory plugin's options (through the
defender.endpoint.auth doc fragment, which a unit test holds to this table) and the Event-Driven Ansible sources'
options all come from here. So do the option groups (machine target, wait, time filters): each an argument spec, its
rules and checks, and a doc fragment under plugins/doc_fragments/ held to the spec by the same test. Plain Python: no
Ansible import.
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
# A credential: a task (or a tenant list's entry) that gives one of these gives the whole credential, and the other
# credential options are not taken from the environment or the shared options (see own_credential).
CREDENTIAL_VALUES = ("client_secret", "client_certificate_path", "access_token", "federated_token_file")
CREDENTIALS = CREDENTIAL_VALUES + ("client_certificate_password", "auth_mode")


def own_credential(given, params, shared_client_id=None):
    """``params`` (resolved: the task's values, else the environment's) where ``given`` (what the task or the tenant
    entry itself sets) names a credential of its own: every credential option ``given`` does not set is unset, so a
    certificate given for one customer's own app is not refused as a second credential beside the secret of the
    environment (an AWX credential, MDE_CLIENT_SECRET), and that secret is never sent along with it. An app of its
    own (``given`` sets a ``client_id`` other than ``shared_client_id``, the environment's or the shared options')
    is an own credential too: another app's secret is never sent with its client id, and a task that names the app
    but not its credential fails as having none."""
    own_app = given.get("client_id") not in (None, "") and shared_client_id not in (None, "") and (
        str(given["client_id"]).strip().lower() != str(shared_client_id).strip().lower())
    if not own_app and not any(given.get(name) not in (None, "") for name in CREDENTIAL_VALUES):
        return params
    out = dict(params)
    out.update((name, None) for name in CREDENTIALS if given.get(name) in (None, ""))
    return out


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


BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "y": True, "t": True,
            "0": False, "false": False, "no": False, "off": False, "n": False, "f": False}  # as Ansible's boolean()


def as_bool(value, option):
    """``value`` (a bool, or a word as Ansible's ``boolean()`` takes it: yes/no, true/false, on/off, 1/0, y/n, t/f) as
    a bool; ValueError naming ``option`` for anything else."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in BOOLEANS:
        raise ValueError("%s must be a boolean, got %r." % (option, value))
    return BOOLEANS[word]


def convert(name, value):
    """A shared option's value (a string from the environment or a rulebook) as its type: bool, int, a path with
    ``~`` expanded, or str. ValueError naming the option for a value that is not of the type or not one of its
    choices."""
    import os
    o = SHARED_OPTIONS[name]
    if o["type"] == "bool":
        value = as_bool(value, name)
    elif o["type"] == "int":
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ValueError("%s must be a whole number, got %r." % (name, value))
    elif o["type"] == "path":
        value = os.path.expanduser(str(value))
    else:
        value = str(value)
    if "choices" in o and value not in o["choices"]:
        raise ValueError("%s must be one of %s, got %r." % (name, ", ".join(o["choices"]), value))
    return value


def resolve(values, environ, names=NAMES):
    """The shared options ``names`` outside Ansible's argument spec (the event sources, the inventory's environment
    fallback): each the value given in ``values``, else the first non-empty environment variable it names
    (first_set), else its default; converted to its type (convert). An empty value is unset. ValueError naming the
    option for a bad one."""
    out = {}
    for name in names:
        value = values.get(name)
        if value is None or value == "":
            value = first_set(SHARED_OPTIONS[name]["env"], environ)
        if value is None or value == "":
            value = SHARED_OPTIONS[name].get("default")
        out[name] = None if value is None else convert(name, value)
    return out


# -- option groups: options several modules take alike ----------------------------------------------------------------
class OptionGroup:
    """Options several modules take alike, defined once: their argument spec entries (the shapes), the rules between
    them (``mutually_exclusive``, ``required_one_of``: an Ansible spec's keywords), ``check(params)`` for what a spec
    cannot say (a device id's form, a time), and the doc fragment that documents them, ``fragment``
    (``defender.endpoint.<file>`` or ``defender.endpoint.<file>.<attribute>``; a unit test holds it to ``spec``).

    A module takes a group with ``extends_documentation_fragment`` and ``module_spec(...)``; a module that needs
    another default says so with ``refined(...)`` and in its own documentation of the option (``default:`` only)."""

    def __init__(self, fragment, spec, rules=None, check=None):
        self.fragment = fragment
        self.spec = spec
        self.rules = rules or {}
        self._check = check

    def refined(self, **entries):
        """The group's spec with ``entries`` (option -> keys such as ``default``) changed for one module."""
        spec = dict((name, dict(entry)) for name, entry in self.spec.items())
        for name, entry in entries.items():
            spec[name].update(entry)
        return spec

    def check(self, params):
        """ValueError naming the option for a value of the group's options that its spec cannot refuse."""
        if self._check is not None:
            self._check(params)


def module_spec(*parts):
    """A module's ARGUMENT_SPEC from option groups (or a group's ``refined()`` spec) and its own options, in order."""
    spec = {}
    for part in parts:
        for name, entry in (part.spec if isinstance(part, OptionGroup) else part).items():
            spec[name] = dict(entry)  # a copy: no module's spec shares an entry with a group or another module
    return spec


def spec_rules(*parts):
    """Spec keywords (``mutually_exclusive``, ``required_one_of``, ``required_if``, ...) of groups and of a module
    (dicts), their lists joined."""
    rules = {}
    for part in parts:
        for keyword, value in (part.rules if isinstance(part, OptionGroup) else part).items():
            if isinstance(value, dict):
                rules.setdefault(keyword, {}).update(value)
            else:
                rules.setdefault(keyword, []).extend(value)
    return rules


def exactly_one_of(*names):
    """The rules for options of which exactly one is required."""
    return dict(mutually_exclusive=[list(names)], required_one_of=[list(names)])


def _check_machine_target(params):
    from ansible_collections.defender.endpoint.plugins.module_utils import machines
    if params.get("machine_id") is not None:
        machines.check_machine_id(params["machine_id"])
    if params.get("machine_name") is not None:
        machines.check_machine_name(params["machine_name"])


def _check_wait(params):
    if params.get("wait_timeout") is not None and params["wait_timeout"] < 1:
        raise ValueError("wait_timeout must be at least 1 second, got %d" % params["wait_timeout"])


def _check_times(params):
    from ansible_collections.defender.endpoint.plugins.module_utils import odata
    for name in ("created_after", "updated_after"):
        if params.get(name):
            odata.parse_time(params[name], name)


# The machine a task acts on: by device id or by computerDnsName (machines.find_machine), one of the two. A module with
# a third way (mde_machine's machine_ids, mde_machine_action_cancel's action_id) joins it in its own exactly_one_of.
MACHINE_TARGET = OptionGroup(
    "defender.endpoint.machine_target",
    dict(machine_id=dict(type="str"), machine_name=dict(type="str")),
    rules=exactly_one_of("machine_id", "machine_name"),
    check=_check_machine_target)
# Waiting for what the task started (a machine action, an investigation, a live response session).
WAIT = OptionGroup(
    "defender.endpoint.wait",
    dict(wait=dict(type="bool", default=False), wait_timeout=dict(type="int", default=1800)),
    check=_check_wait)
# The time filters of the info modules: an ISO 8601 time or an age (odata.parse_time), sent as "<property> ge <time>".
CREATED_AFTER = OptionGroup("defender.endpoint.time_filters", dict(created_after=dict(type="str")), check=_check_times)
UPDATED_AFTER = OptionGroup("defender.endpoint.time_filters.updated_after", dict(updated_after=dict(type="str")),
                            check=_check_times)
TIME_FILTERS = (CREATED_AFTER, UPDATED_AFTER)
GROUPS = (MACHINE_TARGET, WAIT) + TIME_FILTERS
