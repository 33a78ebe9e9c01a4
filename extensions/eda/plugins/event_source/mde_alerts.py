# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mde_alerts: an ansible-rulebook event source of Microsoft Defender for Endpoint alerts.

Polls ``GET /api/alerts`` by ``lastUpdateTime`` through the collection's shared client (token reuse and
cache, throttling, retries, paging) and puts each new or changed alert on the queue once, as
``{"mde_alert": <Alert entity, camelCase as the API returns it>}`` (ansible-rulebook adds ``meta``).
What was emitted is remembered across polls and, through a checkpoint file, across restarts.

See DOCUMENTATION below and docs/eda.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading

DOCUMENTATION = r'''
name: mde_alerts
short_description: Poll Microsoft Defender for Endpoint alerts for Event-Driven Ansible
version_added: 0.1.0
description:
  - Polls C(GET /api/alerts) every O(interval) seconds for alerts whose C(lastUpdateTime) is at or after the last one
    seen, with the severity and status filters sent to the API as one OData C($filter), reading all pages.
  - 'Each new or changed alert (key alert C(id) + C(lastUpdateTime)) becomes one event C({"mde_alert": <alert>}); the
    alert is the Alert entity as the API returns it (camelCase). An alert that changes again is emitted again.'
  - What was emitted is kept in a checkpoint file (O(checkpoint_path)), so a restarted rulebook emits nothing twice.
  - An alert dated more than 60 seconds ahead of this machine's clock is emitted with a warning; the watermark never
    moves past now + 60 seconds (or + O(overlap), when smaller), so such an alert cannot silence the source.
  - Alert strings that hold template syntax (C({{), C({%), C({#)) are logged as a warning and written as C(!unsafe)
    when ansible-rulebook passes the event to a playbook (C(run_playbook) extra vars, C(run_module) arguments), so
    ansible-core never templates them. See docs/eda.md for what that does not cover.
  - A failed poll is logged as one line and retried at the next interval; bad options fail at start.
  - Needs the WindowsDefenderATP application permission C(Alert.Read.All) or C(Alert.ReadWrite.All).
options:
  tenant_id:
    description: The Entra ID tenant. Default E(MDE_TENANT_ID), E(AZURE_TENANT_ID) or E(AZURE_TENANT).
    type: str
  client_id:
    description: The application (client) ID. Default E(MDE_CLIENT_ID) or E(AZURE_CLIENT_ID).
    type: str
  client_secret:
    description: A client secret. Default E(MDE_CLIENT_SECRET), E(AZURE_CLIENT_SECRET) or E(AZURE_SECRET).
    type: str
  client_certificate_path:
    description: A PEM file with the app's certificate and key. Default E(MDE_CLIENT_CERTIFICATE_PATH).
    type: path
  client_certificate_password:
    description: The password of its key. Default E(MDE_CLIENT_CERTIFICATE_PASSWORD).
    type: str
  access_token:
    description: A ready bearer token (expires; not refreshed). Default E(MDE_ACCESS_TOKEN).
    type: str
  auth_mode:
    description:
      - How to sign in, as the modules' O(auth_mode) (V(client_secret), V(client_certificate), V(access_token),
        V(device_code), V(managed_identity), V(workload_identity)). Default E(MDE_AUTH_MODE), else what the credential
        given implies.
      - With V(device_code), a sign-in needed at start is shown on standard error while the source waits; it is then kept
        in the token cache, so a restarted rulebook signs in silently until the refresh token expires.
    type: str
  federated_token_file:
    description: The federated token file for V(workload_identity). Default E(MDE_FEDERATED_TOKEN_FILE) or E(AZURE_FEDERATED_TOKEN_FILE).
    type: path
  cloud:
    description: V(global), V(gcc), V(gcc_high) or V(dod). Default E(MDE_CLOUD), else V(global).
    type: str
  api_url:
    description: The API base URL without C(/api). Default E(MDE_API_URL), else the one of O(cloud).
    type: str
  graph_url:
    description: The Microsoft Graph base URL without C(/v1.0). Default E(MDE_GRAPH_URL), else the one of O(cloud).
    type: str
  authority_host:
    description: The Entra ID sign-in host. Default E(MDE_AUTHORITY_HOST), else the one of O(cloud).
    type: str
  validate_certs:
    description: Verify TLS certificates. Default E(MDE_VALIDATE_CERTS), else V(true).
    type: bool
  ca_path:
    description: A PEM CA bundle to verify the API and sign-in hosts with. Default E(MDE_CA_PATH).
    type: path
  timeout:
    description: Seconds to wait for each HTTP request. Default E(MDE_TIMEOUT), else 30.
    type: int
  token_cache:
    description: Share access tokens through the file cache of the collection. Default E(MDE_TOKEN_CACHE), else V(true).
    type: bool
  severity:
    description: Only alerts with one of these severities (V(UnSpecified), V(Informational), V(Low), V(Medium), V(High)).
    type: list
    elements: str
  status:
    description: Only alerts with one of these statuses (V(New), V(InProgress), V(Resolved)).
    type: list
    elements: str
  interval:
    description: Seconds between polls (a number, or an age such as V(30s) or V(5m)).
    type: str
    default: 60
  initial_lookback:
    description:
      - Without a checkpoint, the first poll reads alerts updated within this age (V(1h), V(30m), V(0s)) or since this
        ISO 8601 time. Ignored when the checkpoint file exists.
    type: str
    default: 1h
  overlap:
    description:
      - Each poll also re-reads this far behind the newest C(lastUpdateTime) seen, so an alert that becomes visible in
        the API a little after a later one is not missed. Alerts already emitted in that window are not emitted again.
      - V(0s) reads from the newest C(lastUpdateTime) seen (inclusive) only.
    type: str
    default: 2m
  include_evidence:
    description: Read each alert's C(evidence) too (C($expand=evidence)).
    type: bool
    default: false
  checkpoint_path:
    description:
      - The checkpoint file (JSON, written atomically, mode 0600). An empty value means the default.
      - Default C(<cache>/eda/mde_alerts-<digest>.json) beside the token cache (E(MDE_TOKEN_CACHE_DIR), else
        C($XDG_CACHE_HOME/defender.endpoint), else C(~/.cache/defender.endpoint)); the digest is of the API URL,
        tenant, client and filters, so sources with other filters keep their own file.
    type: path
'''

EXAMPLES = r'''
- name: Contain machines on new high-severity alerts
  hosts: localhost
  sources:
    - defender.endpoint.mde_alerts:
        severity: [High]
        status: [New]
        interval: 60
        checkpoint_path: /var/lib/eda/mde_alerts.json
  rules:
    - name: Isolate the machine
      condition: event.mde_alert.severity == "High" and event.mde_alert.machineId is defined
      action:
        run_module:
          name: defender.endpoint.mde_machine_action
          module_args:
            machine_id: "{{ event.mde_alert.machineId }}"
            action: isolate
            comment: "Alert {{ event.mde_alert.id }}"
'''


def _import_collection():
    """Import the shared client by its full collection path.

    ansible-rulebook runs this file with runpy from ``<root>/ansible_collections/defender/endpoint/extensions/eda/
    plugins/event_source/``, without putting ``<root>`` on sys.path; add it when the plain import fails.
    """
    try:
        from ansible_collections.defender.endpoint.plugins.module_utils import connect as client_mod
    except ImportError:
        # .../<root>/ansible_collections/defender/endpoint/extensions/eda/plugins/event_source/mde_alerts.py
        ancestors = [os.path.abspath(globals().get("__file__") or "")]
        for _level in range(8):
            ancestors.append(os.path.dirname(ancestors[-1]))
        if os.path.basename(ancestors[7]) != "ansible_collections":
            raise
        root = ancestors[8]
        if root not in sys.path:
            sys.path.append(root)
        from ansible_collections.defender.endpoint.plugins.module_utils import connect as client_mod
    from ansible_collections.defender.endpoint.plugins.module_utils import auth as auth_mod
    from ansible_collections.defender.endpoint.plugins.module_utils import errors as errors_mod
    from ansible_collections.defender.endpoint.plugins.module_utils import files as files_mod
    from ansible_collections.defender.endpoint.plugins.module_utils import odata as odata_mod
    from ansible_collections.defender.endpoint.plugins.module_utils import options as options_mod
    return client_mod, auth_mod, errors_mod, files_mod, odata_mod, options_mod


try:
    client_utils, auth_utils, errors, files, odata, shared_options = _import_collection()
    IMPORT_ERROR = None
except ImportError as e:  # reported by main() as a configuration error
    client_utils = auth_utils = errors = files = odata = shared_options = None
    IMPORT_ERROR = e

logger = logging.getLogger("defender.endpoint.mde_alerts")

CHECKPOINT_VERSION = 1

# The shared options and their environment fallbacks: one table for the modules, the inventory and this source.
AUTH_OPTIONS = shared_options.SHARED_OPTIONS if shared_options else {}
SOURCE_OPTIONS = ("severity", "status", "interval", "initial_lookback", "overlap", "include_evidence",
                  "checkpoint_path")
# As module_utils/alerts.py spells them (the API's enum values).
SEVERITIES = ["UnSpecified", "Informational", "Low", "Medium", "High"]
STATUSES = ["New", "InProgress", "Resolved"]


class ConfigError(ValueError):
    """A bad option, found before any API call."""


# -- times ----------------------------------------------------------------------------------------------
# Alert times are compared as integer ticks of 100 ns since the epoch (the API writes 7 fractional digits), parsed
# and written by the collection's one time module (module_utils/odata.py).
TICKS = getattr(odata, "TICKS", 10 ** 7)


def time_ticks(value):
    """An API timestamp (``2026-01-31T08:00:00.1234567Z``, any fraction length or offset) -> 100 ns ticks (UTC).

    Raises ValueError for anything else (a date alone included).
    """
    return odata.time_ticks(value)


def ticks_text(ticks):
    """100 ns ticks -> ``YYYY-MM-DDTHH:MM:SS.fffffffZ`` (sortable as text)."""
    return odata.ticks_text(ticks)


def filter_time(ticks):
    """An OData datetime literal for ``ticks`` floored to the second (never later than ``ticks``)."""
    return odata.format_time(ticks)


def now_ticks():
    return odata.now_ticks()


# An alert's times can carry what a device reported (https://learn.microsoft.com/en-us/defender-endpoint/api/alerts
# lists the Alert properties); one alert dated 2099 must not make every later poll ask for "lastUpdateTime ge 2099-..."
# and so silence the source. A lastUpdateTime more than FUTURE_SKEW seconds ahead of this machine's clock is logged,
# and the watermark never moves past now + FUTURE_SKEW, nor past now + overlap: the next poll reads from the
# watermark less the overlap, which must not be later than now, or alerts updated from now on would be skipped.
FUTURE_SKEW = 60


def future_cap(overlap, now):
    """The latest watermark allowed at ``now`` (ticks): now + the smaller of FUTURE_SKEW and ``overlap`` seconds."""
    return int(now) + int(min(FUTURE_SKEW, overlap) * TICKS)


def seconds_of(value, option):
    """A number of seconds or an age such as ``30s``, ``5m``, ``1h``, ``7d`` -> float seconds (>= 0)."""
    seconds = odata.age_seconds(value, bare=True)
    if seconds is None:
        raise ConfigError("%s must be a number of seconds or an age such as 30s, 5m or 1h, got %r." % (option, value))
    if seconds < 0:
        raise ConfigError("%s must not be negative, got %r." % (option, value))
    return seconds


# -- options ----------------------------------------------------------------------------------------------
def _as_bool(value, option):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f"):
        return False
    raise ConfigError("%s must be a boolean, got %r." % (option, value))


def _as_list(value):
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = str(value).split(",")
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _enum_list(value, option, choices):
    values = _as_list(value)
    for v in values:
        if v not in choices:
            raise ConfigError("%s: %r is not one of %s." % (option, v, ", ".join(choices)))
    return sorted(set(values), key=values.index)


def parse_args(args, environ=None, now=None):
    """Validate the source's arguments (``args`` as the rulebook gives them) before any API call.

    Returns a dict: ``auth`` (keyword arguments of create_client), ``severity``, ``status`` (lists),
    ``interval``, ``overlap`` (seconds), ``start`` (ticks of the first poll's watermark), ``include_evidence``,
    ``checkpoint_path`` (None = the default). Raises ConfigError.
    """
    environ = os.environ if environ is None else environ
    args = dict((k, v) for k, v in (args or {}).items() if not str(k).startswith("eda_"))
    unknown = sorted(set(args) - set(AUTH_OPTIONS) - set(SOURCE_OPTIONS))
    if unknown:
        raise ConfigError("Unknown option(s) %s; the options are %s." % (
            ", ".join(unknown), ", ".join(sorted(set(AUTH_OPTIONS) | set(SOURCE_OPTIONS)))))
    auth = {}
    for name, spec in AUTH_OPTIONS.items():
        kind, default, env_names = spec["type"], spec.get("default"), spec["env"]
        value = args.get(name)
        if value is None or value == "":
            value = shared_options.first_set(env_names, environ)
        if value is None or value == "":
            value = default
        if value is not None:
            if kind == "bool":
                value = _as_bool(value, name)
            elif kind == "int":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise ConfigError("%s must be a whole number, got %r." % (name, value))
            elif kind == "path":
                value = os.path.expanduser(str(value))
            else:
                value = str(value)
        auth[name] = value
    if auth["cloud"] not in shared_options.CLOUDS:
        raise ConfigError("cloud must be one of %s, got %r." % (", ".join(shared_options.CLOUDS), auth["cloud"]))
    if auth.get("auth_mode") and auth["auth_mode"] not in shared_options.AUTH_MODES:
        modes = ", ".join(shared_options.AUTH_MODES)
        raise ConfigError("auth_mode must be one of %s, got %r." % (modes, auth["auth_mode"]))
    interval = seconds_of(args.get("interval", 60), "interval")
    if interval <= 0:
        raise ConfigError("interval must be greater than 0, got %r." % args.get("interval"))
    overlap = seconds_of(args.get("overlap", "2m"), "overlap")
    now = now_ticks() if now is None else now
    lookback = args.get("initial_lookback", "1h")
    try:
        start = time_ticks(lookback) if isinstance(lookback, str) else None
    except ValueError:
        start = None
    if start is None:
        start = now - int(seconds_of(lookback, "initial_lookback") * TICKS)
    elif start > now + FUTURE_SKEW * TICKS:
        raise ConfigError("initial_lookback %s is in the future; give an age such as 1h or a past time." % lookback)
    checkpoint_path = args.get("checkpoint_path")
    checkpoint_path = str(checkpoint_path).strip() if checkpoint_path is not None else ""
    return dict(
        auth=auth,
        severity=_enum_list(args.get("severity"), "severity", SEVERITIES),
        status=_enum_list(args.get("status"), "status", STATUSES),
        interval=interval,
        overlap=overlap,
        start=start,
        include_evidence=_as_bool(args.get("include_evidence", False), "include_evidence"),
        checkpoint_path=os.path.expanduser(checkpoint_path) if checkpoint_path else None,
    )


def build_filter(state, overlap, severity=(), status=()):
    """The ``$filter`` of one poll: alerts updated at or after the watermark less ``overlap`` seconds."""
    cutoff = state["watermark"] - int(overlap * TICKS)
    return odata.and_all("lastUpdateTime ge %s" % filter_time(cutoff), odata.any_of("severity", severity),
                         odata.any_of("status", status))


# -- what to emit -----------------------------------------------------------------------------------------
def initial_state(start):
    """The state before the first poll: nothing seen, watermark at ``start`` (ticks)."""
    return {"watermark": int(start), "seen": {}}


def select_new(state, alerts, overlap=0.0, now=None, time_field="lastUpdateTime", noun="alert"):
    """Given the previous state and the alerts of one poll, the alerts to emit (oldest update first) and the new state.

    ``state``: ``{"watermark": ticks, "seen": {alert id: ticks of the lastUpdateTime emitted}}``. An alert is emitted
    when its ``lastUpdateTime`` is not before ``watermark - overlap`` and this id was not emitted with that (or a
    later) ``lastUpdateTime``. The new watermark is the newest ``lastUpdateTime`` emitted (never earlier than the
    old one), but never later than ``future_cap(overlap, now)`` (``now``: ticks, default the current time). An alert
    dated more than FUTURE_SKEW seconds in the future is emitted, logged as a warning and remembered in ``seen`` (so
    it is not emitted again), and does not hide the alerts updated after it. ``seen`` keeps the ids whose emitted
    ``lastUpdateTime`` is within ``overlap`` of the watermark or later. The inputs are not changed.
    """
    now = now_ticks() if now is None else int(now)
    cap = future_cap(overlap, now)
    cutoff = state["watermark"] - int(overlap * TICKS)
    seen = dict(state["seen"])
    keyed = []
    for alert in alerts or []:
        ident = alert.get("id") if isinstance(alert, dict) else None
        if not ident:
            continue
        try:
            ticks = time_ticks(alert.get(time_field))
        except ValueError:
            logger.warning("mde_alerts: ignoring %s %s: its %s %s is not a time.",
                           noun, shown(ident), time_field, shown(alert.get(time_field)))
            continue
        keyed.append((ticks, str(ident), alert))
    keyed.sort(key=lambda item: (item[0], item[1]))
    emit = []
    watermark = state["watermark"]
    for ticks, ident, alert in keyed:
        if ticks < cutoff:
            continue
        previous = seen.get(ident)
        if previous is not None and previous >= ticks:
            continue
        if ticks > now + FUTURE_SKEW * TICKS:
            logger.warning("mde_alerts: %s %s has %s %s, more than %ds ahead of this machine's clock "
                           "(%s); emitted, and the next polls still read the ones updated from now on.", noun,
                           shown(ident), time_field, shown(alert.get(time_field)), FUTURE_SKEW, ticks_text(now))
        emit.append(alert)
        seen[ident] = ticks
        watermark = max(watermark, min(ticks, cap))
    keep_from = watermark - int(overlap * TICKS)
    seen = dict((ident, ticks) for ident, ticks in seen.items() if ticks >= keep_from)
    return emit, {"watermark": watermark, "seen": seen}


# -- checkpoint -------------------------------------------------------------------------------------------
def state_to_json(state):
    return {"version": CHECKPOINT_VERSION, "watermark": ticks_text(state["watermark"]),
            "seen": dict((ident, ticks_text(t)) for ident, t in sorted(state["seen"].items()))}


def state_from_json(data):
    """The state held in a checkpoint document. Raises ValueError if it is not one."""
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        raise ValueError("not a version %d mde_alerts checkpoint" % CHECKPOINT_VERSION)
    seen = data.get("seen")
    if not isinstance(seen, dict):
        raise ValueError("its seen is not a mapping of alert id to lastUpdateTime")
    return {"watermark": time_ticks(data.get("watermark")),
            "seen": dict((str(ident), time_ticks(t)) for ident, t in seen.items())}


def load_checkpoint(path, overlap=0.0, now=None):
    """The state saved at ``path``, or None when there is no file. Raises ConfigError for an unusable file.

    A watermark later than ``future_cap(overlap, now)`` (written by a version without the cap, after an alert dated in
    the future) is moved back to when the file was last written (its modification time; never later than the cap),
    with a warning: that version emitted nothing older than its watermark since then, so those alerts are read again.
    """
    try:
        with open(path, "r") as f:
            text = f.read()
            written = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError("checkpoint file %s cannot be read: %s." % (path, e.strerror or e))
    try:
        state = state_from_json(json.loads(text))
    except ValueError as e:
        raise ConfigError("checkpoint file %s is not usable (%s); move it away to start again from "
                          "initial_lookback." % (path, e))
    now = now_ticks() if now is None else int(now)
    cap = future_cap(overlap, now)
    if state["watermark"] > cap:
        capped = min(cap, int(written * TICKS))
        # Warn about a watermark beyond the skew; one within it (a smaller overlap than last time) is only moved back.
        log = logger.warning if state["watermark"] > now + FUTURE_SKEW * TICKS else logger.info
        log("mde_alerts: checkpoint file %s holds watermark %s, in the future; reading alerts updated since %s (when "
            "the file was last written) instead.", path, ticks_text(state["watermark"]), ticks_text(capped))
        state["watermark"] = capped
    return state


def save_checkpoint(path, state):
    """Write the state to ``path`` atomically (files.atomic_write: a temporary file in the same directory, then a
    rename), mode 0600, in a directory created 0700 when missing."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    files.atomic_write(path, json.dumps(state_to_json(state), indent=1, sort_keys=True) + "\n")


def default_checkpoint_path(cache_dir, api_url, auth, severity, status):
    """``<cache_dir>/eda/mde_alerts-<digest>.json``, the digest of what the source reads."""
    identity = auth.get("client_id") or ("token:" + hashlib.sha256((auth.get("access_token") or "").encode("utf-8"))
                                         .hexdigest()[:16])
    key = json.dumps([api_url, auth.get("tenant_id"), identity, sorted(severity), sorted(status)])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_dir, "eda", "mde_alerts-%s.json" % digest)


# -- untrusted text ---------------------------------------------------------------------------------------
# Alert text (title, description, machine and user names, evidence, ...) is written by whoever controls a device. When
# a rule runs a playbook (run_playbook, run_module), ansible-rulebook passes the event to ansible-playbook as extra
# vars: it writes them with PyYAML's yaml.dump() to <private data dir>/env/extravars, which ansible-runner passes as
# ``-e @file`` (https://docs.ansible.com/projects/runner/en/latest/intro/, "env/extravars"). ansible-core templates
# the strings of such a file when a play uses them, on every version: before 2.19 every variable value is templated
# on use, and from 2.19 a file given to ``-e @`` is trusted as a template
# (https://docs.ansible.com/ansible/latest/porting_guides/porting_guide_core_2.19.html). A title such as
# ``{{ lookup('pipe', 'id') }}`` would then run on the controller. A string tagged ``!unsafe`` is never templated
# (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_advanced_syntax.html#unsafe-or-raw-strings).
# The event crosses the rule engine as JSON, so it reaches yaml.dump() as plain str. Two marks, so that neither a
# flood of alerts nor a long wait in the rule engine lets a string through unmarked:
# - the document itself: when yaml.dump() writes a document holding an event of this source (a value under the key
#   ``mde_alert`` or ``mde_incident``, as ansible-rulebook's extra vars hold ``ansible_eda.event``), every string of
#   the document that contains one of that event's template-like strings is written as ``!unsafe "..."``. This needs
#   no memory of earlier alerts.
# - the source's memory of the template-like strings it emitted (the newest 10,000), for a document that quotes an
#   alert's text without carrying the event.
# Every other string is written exactly as before (ansible-rulebook's own templates, such as ``{{ module_result }}``
# in run_module's wrapper playbook, stay templates).
TEMPLATE_MARKERS = ("{{", "{%", "{#")   # Jinja's block, variable and comment starts, as ansible-core looks for them
UNSAFE_TAG = "!unsafe"


def template_like(text):
    """Whether ``text`` is a str that ansible-core would template (holds ``{{``, ``{%`` or ``{#``)."""
    return isinstance(text, str) and any(marker in text for marker in TEMPLATE_MARKERS)


def template_fields(value, path="mde_alert"):
    """The ``(path, text)`` of every template-like string in ``value`` (keys included), depth first."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = "%s.%s" % (path, key)
            if template_like(key):
                found.append((where, key))
            found.extend(template_fields(item, where))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.extend(template_fields(item, "%s[%d]" % (path, index)))
    elif template_like(value):
        found.append((path, value))
    return found


EVENT_KEYS = ("mde_alert", "mde_incident")   # the keys under which the sources put an entity in an event


def event_texts(value, depth=0):
    """The ``(path, text)`` of every template-like string under an EVENT_KEYS key anywhere in ``value``."""
    found = []
    if depth > 64:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            if key in EVENT_KEYS:
                found.extend(template_fields(item, key))
            else:
                found.extend(event_texts(item, depth + 1))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(event_texts(item, depth + 1))
    return found


class UntrustedText:
    """The template-like strings the source emitted (the newest ``limit``), shared by every source in the process."""

    def __init__(self, limit=10000):
        self.limit = limit
        self._lock = threading.Lock()
        self._texts = {}   # insertion-ordered: the oldest is dropped first

    def add(self, text):
        with self._lock:
            self._texts.pop(text, None)
            self._texts[text] = True
            while len(self._texts) > self.limit:
                del self._texts[next(iter(self._texts))]

    def __len__(self):
        return len(self._texts)

    def taints(self, text):
        """Whether ``text`` is, or contains, a remembered string (a rulebook may have put one inside a longer one)."""
        if not template_like(text):
            return False
        with self._lock:
            texts = list(self._texts)
        return any(t in text for t in texts)


def install_yaml_marking():
    """Make yaml.dump() (yaml.Dumper) write every string that holds emitted alert text as ``!unsafe``.

    Returns the process's UntrustedText, or None when PyYAML is missing. ansible-rulebook runs each source file with
    runpy, so this function can run several times: the representer is installed once and carries its registry.
    """
    try:
        import yaml
    except ImportError:
        return None
    current = yaml.Dumper.yaml_representers.get(str)
    registry = getattr(current, "mde_untrusted", None)
    if registry is not None:
        return registry
    registry = UntrustedText()
    plain = current or yaml.representer.SafeRepresenter.represent_str

    def represent_str(dumper, data):
        in_document = template_like(data) and any(t in data for t in getattr(dumper, "mde_event_texts", ()))
        if in_document or registry.taints(data):
            return dumper.represent_scalar(UNSAFE_TAG, data, style='"')
        return plain(dumper, data)

    represent_str.mde_untrusted = registry
    yaml.add_representer(str, represent_str, Dumper=yaml.Dumper)
    document_represent = yaml.Dumper.represent

    def represent(dumper, data):
        # The event strings of this very document, for represent_str (see "untrusted text" above).
        dumper.mde_event_texts = [text for _where, text in event_texts(data)]
        try:
            return document_represent(dumper, data)
        finally:
            dumper.mde_event_texts = []

    yaml.Dumper.represent = represent
    return registry


def mark_untrusted(alert, registry):
    """Remember the alert's template-like strings in ``registry``; log them once (a sign of a tampered device)."""
    fields = template_fields(alert)
    if not fields:
        return
    for _where, text in fields:
        if registry is not None:
            registry.add(text)
    logger.warning("mde_alerts: alert %s has template syntax (%s) in %s; passed on unchanged%s.", shown(alert.get("id")),
                   ", ".join(TEMPLATE_MARKERS), ", ".join(sorted(set(w for w, _t in fields))),
                   " and marked !unsafe for Ansible" if registry is not None else
                   ", NOT marked unsafe (PyYAML is missing)")


# -- the source -------------------------------------------------------------------------------------------
def fetch(client, odata_filter, include_evidence=False):
    """Every alert matching ``odata_filter``, all pages (blocking: run it in a thread)."""
    params = {"$expand": "evidence"} if include_evidence else None
    return list(client.list("/api/alerts", odata_filter=odata_filter, params=params))


def shown(value):
    """An API value for the log: control characters escaped and cut (errors.quoted), or its repr without the
    collection's module_utils."""
    if errors is not None:
        return errors.quoted(value, 200)
    return repr(value)[:200]


def _one_line(error):
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    if errors is not None and isinstance(error, errors.MDEError):
        return text
    return "%s: %s" % (type(error).__name__, text) if text else type(error).__name__


class AlertPoller:
    """One source instance: the client, its options, the state and where it is saved.

    The polling, selection and checkpoint machinery of every event source of the collection: another source (such as
    mde_incidents) subclasses it and sets what it reads (``EVENT_KEY``, ``TIME_FIELD``, ``NOUN``, ``build_filter()``,
    ``fetch()``)."""

    EVENT_KEY = "mde_alert"
    TIME_FIELD = "lastUpdateTime"
    NOUN = "alert"

    def build_filter(self):
        return build_filter(self.state, self.config["overlap"], self.config["severity"], self.config["status"])

    def fetch(self, odata_filter):
        return fetch(self.client, odata_filter, self.config["include_evidence"])

    def __init__(self, client, config, checkpoint_path, state, untrusted=None):
        self.client = client
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.state = state
        self.untrusted = untrusted
        self.polls = 0
        self.failures = 0

    async def poll(self, queue):
        """One poll: read, put the new alerts on the queue, save the checkpoint. Returns the number emitted.

        Raises whatever the read raised (the caller logs it); the state is then unchanged.
        """
        odata_filter = self.build_filter()
        alerts = await asyncio.to_thread(self.fetch, odata_filter)
        self.polls += 1
        emit, new_state = select_new(self.state, alerts, self.config["overlap"], time_field=self.TIME_FIELD,
                                     noun=self.NOUN)
        for alert in emit:
            mark_untrusted(alert, self.untrusted)
            await queue.put({self.EVENT_KEY: alert})
        changed = new_state != self.state
        self.state = new_state
        if changed:
            try:
                save_checkpoint(self.checkpoint_path, self.state)
            except (OSError, files.UnsafeFileError) as e:
                logger.error("mde_alerts: cannot write checkpoint file %s: %s; what was emitted is remembered until "
                             "the source stops.", self.checkpoint_path, getattr(e, "strerror", None) or e)
        logger.info("mde_alerts: %d alert(s) read, %d emitted, watermark %s.", len(alerts), len(emit),
                    ticks_text(self.state["watermark"]))
        return len(emit)

    async def run(self, queue):
        while True:
            try:
                await self.poll(queue)
            except Exception as e:  # pylint: disable=broad-except
                self.failures += 1
                logger.error("mde_alerts: poll failed, retrying in %gs: %s", self.config["interval"], _one_line(e))
            await asyncio.sleep(self.config["interval"])


def show_sign_in(message):
    """A device code sign-in (auth_mode device_code) needed at start: shown on ansible-rulebook's standard error while
    the source waits for the user; the sign-in is then kept in the token cache for the next starts."""
    sys.stderr.write("defender.endpoint event source needs a user to sign in. %s\n" % message)
    sys.stderr.flush()


def setup(args, environ=None):
    """Validate the arguments, build the client and load (or start) the state. Raises ConfigError or MDEError
    (MDEConfigError, MDEDependencyError) for a configuration that cannot work; makes no API call."""
    if IMPORT_ERROR is not None:
        raise ConfigError("defender.endpoint.mde_alerts cannot import the collection's client (%s). Install the "
                          "defender.endpoint collection and its Python requirements (requests, msal) in the decision "
                          "environment." % IMPORT_ERROR)
    config = parse_args(args, environ)
    client = client_utils.create_client(sign_in=show_sign_in, **config["auth"])
    path = config["checkpoint_path"] or default_checkpoint_path(
        auth_utils.default_cache_dir(), client.api_url, config["auth"], config["severity"], config["status"])
    state = load_checkpoint(path, config["overlap"])
    if state is None:
        state = initial_state(config["start"])
        logger.info("mde_alerts: no checkpoint at %s; reading alerts updated since %s.", path,
                    ticks_text(state["watermark"]))
    else:
        logger.info("mde_alerts: resuming from checkpoint %s (watermark %s).", path, ticks_text(state["watermark"]))
    return AlertPoller(client, config, path, state, install_yaml_marking())


async def main(queue, args):
    """ansible-rulebook entry point: poll until cancelled."""
    poller = setup(args)
    await poller.run(queue)


if __name__ == "__main__":
    # Print the events of one poll: python mde_alerts.py '{"severity": ["High"], "initial_lookback": "1d"}'

    class _PrintQueue:
        async def put(self, event):
            print(json.dumps(event))

    logging.basicConfig(level=logging.INFO)
    _poller = setup(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    asyncio.run(_poller.poll(_PrintQueue()))
