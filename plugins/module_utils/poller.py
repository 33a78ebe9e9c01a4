# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machinery of the collection's Event-Driven Ansible sources (extensions/eda/plugins/event_source/).

A source (mde_alerts, mde_incidents) is a Poller subclass that says what it reads: its name, the noun of what it
emits, the event key, the time field it polls by, its own options (OPTIONS), the OData ``$filter`` of a poll and the
read itself. The rest is here, once: the options (the shared connection options through options.resolve(), the
polling options), which entities a poll emits (select_new), the checkpoint file that remembers it across restarts,
and the poll loop. Plain Python: no Ansible import (ansible-rulebook runs the sources without ansible-core's plugin
loader); the client's module (connect.py) is imported when a source starts, so that a missing requests or msal is a
configuration error, not an import error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import asyncio
import hashlib
import json
import logging
import os
import sys

from ansible_collections.defender.endpoint.plugins.module_utils import errors
from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import options as shared_options
from ansible_collections.defender.endpoint.plugins.module_utils import unsafe_yaml

CHECKPOINT_VERSION = 1
# The options every source takes besides the shared connection options (options.SHARED_OPTIONS): name -> type,
# default. A source adds its own (Poller.OPTIONS: type, default, choices). A unit test holds each source's
# DOCUMENTATION to these tables.
POLL_OPTIONS = dict(
    interval=dict(type="str", default=60),
    initial_lookback=dict(type="str", default="1h"),
    overlap=dict(type="str", default="2m"),
    checkpoint_path=dict(type="path"),
    tenants=dict(type="list"),
)
# Tenants polled at once (one thread each for their blocking reads): a tenant waiting out a Retry-After holds a
# thread of its own, never another tenant's.
MAX_TENANTS = 64


class ConfigError(ValueError):
    """A bad option, found before any API call."""


# -- times ----------------------------------------------------------------------------------------------
# Times are compared as integer ticks of 100 ns since the epoch (the API writes 7 fractional digits), parsed and
# written by the collection's one time module (module_utils/odata.py).
TICKS = odata.TICKS
time_ticks = odata.time_ticks          # an API timestamp -> ticks (UTC); ValueError for anything else (a date alone too)
ticks_text = odata.ticks_text          # ticks -> YYYY-MM-DDTHH:MM:SS.fffffffZ (sortable as text)
filter_time = odata.format_time        # an OData datetime literal floored to the second (never later than the ticks)
now_ticks = odata.now_ticks

# An entity's times can carry what a device reported (https://learn.microsoft.com/en-us/defender-endpoint/api/alerts
# lists the Alert properties); one alert dated 2099 must not make every later poll ask for "lastUpdateTime ge 2099-..."
# and so silence the source. A time more than FUTURE_SKEW seconds ahead of this machine's clock is logged, and the
# watermark never moves past now + FUTURE_SKEW, nor past now + overlap: the next poll reads from the watermark less
# the overlap, which must not be later than now, or entities updated from now on would be skipped.
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
def as_list(value):
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def enum_list(value, option, choices):
    values = as_list(value)
    for v in values:
        if v not in choices:
            raise ConfigError("%s: %r is not one of %s." % (option, v, ", ".join(choices)))
    return sorted(set(values), key=values.index)


def own_option(name, spec, value):
    """One of a source's own options (Poller.OPTIONS) as its type."""
    if value is None:
        value = spec.get("default")
    if spec["type"] == "list":
        return enum_list(value, name, spec["choices"]) if "choices" in spec else as_list(value)
    if spec["type"] == "bool":
        try:
            return shared_options.as_bool(value, name)
        except ValueError as e:
            raise ConfigError(str(e))
    return value


def parse_args(args, environ=None, now=None, own=None, refused=None):
    """Validate a source's arguments (``args`` as the rulebook gives them) before any API call.

    ``own``: the source's own options (name -> type, default, choices); ``refused``: option -> what to use instead.
    Returns a dict: ``auth`` (keyword arguments of create_client), ``interval``, ``overlap`` (seconds), ``start``
    (ticks of the first poll's watermark), ``checkpoint_path`` (None = the default), and each own option. Raises
    ConfigError.
    """
    environ = os.environ if environ is None else environ
    own = own or {}
    args = dict((k, v) for k, v in (args or {}).items() if not str(k).startswith("eda_"))
    for name, instead in (refused or {}).items():
        if name in args:
            raise ConfigError("Unknown option(s) %s; %s." % (name, instead))
    known = set(shared_options.SHARED_OPTIONS) | set(POLL_OPTIONS) | set(own)
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError("Unknown option(s) %s; the options are %s." % (", ".join(unknown), ", ".join(sorted(known))))
    try:
        auth = shared_options.resolve(args, environ)
    except ValueError as e:
        raise ConfigError(str(e))
    interval = seconds_of(args.get("interval", POLL_OPTIONS["interval"]["default"]), "interval")
    if interval <= 0:
        raise ConfigError("interval must be greater than 0, got %r." % args.get("interval"))
    overlap = seconds_of(args.get("overlap", POLL_OPTIONS["overlap"]["default"]), "overlap")
    now = now_ticks() if now is None else now
    lookback = args.get("initial_lookback", POLL_OPTIONS["initial_lookback"]["default"])
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
    config = dict(auth=auth, interval=interval, overlap=overlap, start=start,
                  checkpoint_path=os.path.expanduser(checkpoint_path) if checkpoint_path else None,
                  tenants=parse_tenants(args.get("tenants"), auth))
    for name, spec in own.items():
        config[name] = own_option(name, spec, args.get(name))
    return config


def parse_tenants(value, auth):
    """The checked tenant list (module_utils/tenants.py), each entry with the connection options of its client
    (``connection``: the shared ones, ``auth``, with the tenant's own), or None without one."""
    from ansible_collections.defender.endpoint.plugins.module_utils import tenants
    try:
        entries = tenants.parse(value, "tenants")
        if entries is None:
            return None
        if len(entries) > MAX_TENANTS:
            raise ValueError("tenants: at most %d tenants in one source, got %d." % (MAX_TENANTS, len(entries)))
        owns = [dict((k, v if k == "name" else shared_options.convert(k, v)) for k, v in entry.items())
                for entry in entries]
        return [dict(tenant_id=entry["tenant_id"], name=entry["name"], connection=connection)
                for entry, connection in zip(entries, tenants.connections(auth, owns))]
    except ValueError as e:
        raise ConfigError(str(e))


def time_filter(time_field, state, overlap, severity=(), status=()):
    """The ``$filter`` of one poll: entities whose ``time_field`` is at or after the watermark less ``overlap``
    seconds, with the severity and status filters."""
    cutoff = state["watermark"] - int(overlap * TICKS)
    return odata.and_all("%s ge %s" % (time_field, filter_time(cutoff)), odata.any_of("severity", severity),
                         odata.any_of("status", status))


# -- what to emit -----------------------------------------------------------------------------------------
def initial_state(start):
    """The state before the first poll: nothing seen, watermark at ``start`` (ticks)."""
    return {"watermark": int(start), "seen": {}}


def shown(value):
    """An API value for the log: control characters escaped and cut (errors.quoted)."""
    return errors.quoted(value, 200)


def select_new(state, items, overlap=0.0, now=None, *, time_field, noun, log):
    """Given the previous state and the entities of one poll, those to emit (oldest update first) and the new state.

    ``state``: ``{"watermark": ticks, "seen": {id: ticks of the time emitted}}``. An entity is emitted when its
    ``time_field`` is not before ``watermark - overlap`` and this id was not emitted with that (or a later) time. The
    new watermark is the newest time emitted (never earlier than the old one), but never later than
    ``future_cap(overlap, now)`` (``now``: ticks, default the current time). An entity dated more than FUTURE_SKEW
    seconds in the future is emitted, logged as a warning (``log``, a source's Log) and remembered in ``seen`` (so it
    is not emitted again), and does not hide those updated after it. ``seen`` keeps the ids whose emitted time is
    within ``overlap`` of the watermark or later. The inputs are not changed.
    """
    now = now_ticks() if now is None else int(now)
    cap = future_cap(overlap, now)
    cutoff = state["watermark"] - int(overlap * TICKS)
    seen = dict(state["seen"])
    keyed = []
    for item in items or []:
        ident = item.get("id") if isinstance(item, dict) else None
        if not ident:
            continue
        try:
            ticks = time_ticks(item.get(time_field))
        except ValueError:
            log.warning("ignoring %s %s: its %s %s is not a time.", noun, shown(ident), time_field,
                        shown(item.get(time_field)))
            continue
        keyed.append((ticks, str(ident), item))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    emit = []
    watermark = state["watermark"]
    for ticks, ident, item in keyed:
        if ticks < cutoff:
            continue
        previous = seen.get(ident)
        if previous is not None and previous >= ticks:
            continue
        if ticks > now + FUTURE_SKEW * TICKS:
            log.warning("%s %s has %s %s, more than %ds ahead of this machine's clock (%s); emitted, and the next "
                        "polls still read the ones updated from now on.", noun, shown(ident), time_field,
                        shown(item.get(time_field)), FUTURE_SKEW, ticks_text(now))
        emit.append(item)
        seen[ident] = ticks
        watermark = max(watermark, min(ticks, cap))
    keep_from = watermark - int(overlap * TICKS)
    seen = dict((ident, ticks) for ident, ticks in seen.items() if ticks >= keep_from)
    return emit, {"watermark": watermark, "seen": seen}


class Log:
    """A source's log: every line starts with the source's name (``mde_incidents: ...``), and with a tenant list
    with the tenant's label (``mde_incidents: tenant fabrikam: ...``)."""

    def __init__(self, name, tenant=None):
        self.name = name
        self.prefix = "%s: tenant %s" % (name, tenant) if tenant else name
        self.logger = logging.getLogger("defender.endpoint." + name)

    def _line(self, level, message, *args):
        self.logger.log(level, "%s: " + message, self.prefix, *args)

    def info(self, message, *args):
        self._line(logging.INFO, message, *args)

    def warning(self, message, *args):
        self._line(logging.WARNING, message, *args)

    def error(self, message, *args):
        self._line(logging.ERROR, message, *args)


# -- checkpoint -------------------------------------------------------------------------------------------
# The checkpoint file is a files.StateStore (the collection's one locked JSON state store: lock, read, check each
# top-level entry, atomic write mode 0600; no symbolic link followed, nothing but a regular file, never blocking on a
# FIFO). A source without tenants keeps the format every earlier version wrote, {"version": 1, "watermark": "<time>",
# "seen": {"<id>": "<time>"}}; a source with a tenant list keeps one entry per tenant id beside the version,
# {"version": 1, "<tenant id>": {"watermark": ..., "seen": ...}}, which the tenants' polls update side by side under
# the lock. It holds no secret: an existing directory or file is used whatever its mode (private=False).
STATE_FIELDS = ("watermark", "seen")


def state_to_json(state):
    return {"version": CHECKPOINT_VERSION, "watermark": ticks_text(state["watermark"]),
            "seen": dict((ident, ticks_text(t)) for ident, t in sorted(state["seen"].items()))}


def _seen_from_json(seen):
    if not isinstance(seen, dict):
        raise ValueError("its seen is not a mapping of id to time")
    return dict((str(ident), time_ticks(t)) for ident, t in seen.items())


def state_from_json(data, name):
    """The state held in a checkpoint document (or a tenant's entry, without its version). Raises ValueError if it is
    not one."""
    if not isinstance(data, dict) or data.get("version", CHECKPOINT_VERSION) != CHECKPOINT_VERSION:
        raise ValueError("not a version %d %s checkpoint" % (CHECKPOINT_VERSION, name))
    return {"watermark": time_ticks(data.get("watermark")), "seen": _seen_from_json(data.get("seen"))}


def tenant_key(tenant_id):
    """A tenant's entry in the checkpoint: its id as written in the tenant list, lower-case (ids are unique
    whatever their case)."""
    return str(tenant_id).lower()


def check_entry(key, value):
    """The StateStore validator of one top-level entry of a checkpoint file: the value, or ValueError."""
    if key == "version":
        if value != CHECKPOINT_VERSION:
            raise ValueError("not a version %d checkpoint" % CHECKPOINT_VERSION)
    elif key == "watermark":
        time_ticks(value)
    elif key == "seen":
        _seen_from_json(value)
    else:
        from ansible_collections.defender.endpoint.plugins.module_utils import tenants
        if not tenants.TENANT_ID.match(key) or not isinstance(value, dict) or "version" in value:
            raise ValueError("its entry %s is neither a field of a checkpoint nor a tenant's" % shown(key))
        state_from_json(value, "tenant")
    return value


def checkpoint_store(path, check=check_entry, warnings=None):
    """The files.StateStore of the checkpoint file ``path`` (its lock beside it, ``<name>.lock``)."""
    directory, file_name = os.path.split(os.path.abspath(path))
    name = file_name[:-5] if file_name.endswith(".json") and len(file_name) > 5 else file_name
    return files.StateStore(directory, name, "event checkpoint", check=check,
                            warnings=[] if warnings is None else warnings, file_name=file_name, private=False)


def read_checkpoint(path):
    """The checked top-level entries of the checkpoint file, ``{}`` when there is none, or None when it cannot be
    read or written (a read-only directory: the source then keeps its state in memory). Raises ConfigError for a file
    that is there and not usable. Nothing is written."""
    problems = []

    def check(key, value):
        try:
            return check_entry(key, value)
        except (TypeError, ValueError) as e:
            problems.append(str(e))
            raise
    warnings = []
    store = checkpoint_store(path, check, warnings)
    try:
        data = store.read()
    except files.UnsafeFileError as e:
        raise ConfigError("checkpoint file %s cannot be used: %s" % (path, e))
    if store.in_memory:
        if os.path.lexists(path):
            error = store.error
            raise ConfigError("checkpoint file %s cannot be read: %s." % (path, getattr(error, "strerror", None) or error))
        return None
    if problems or warnings:
        raise ConfigError("checkpoint file %s is not usable (%s); move it away to start again from initial_lookback."
                          % (path, problems[0] if problems else "not a JSON object"))
    if not data and os.path.lexists(path):
        raise ConfigError("checkpoint file %s is not usable (it holds no checkpoint); move it away to start again "
                          "from initial_lookback." % path)
    return data


def load_checkpoint(path, overlap=0.0, now=None, *, log, tenant_id=None):
    """The state saved at ``path`` (of the tenant ``tenant_id`` with a tenant list), or None when there is none.
    Raises ConfigError for an unusable file.

    A watermark later than ``future_cap(overlap, now)`` (written by a version without the cap, after an entity dated
    in the future) is moved back to when the file was last written (its modification time; never later than the
    cap), with a warning: that version emitted nothing older than its watermark since then, so those are read again.
    """
    data = read_checkpoint(path)
    if not data:
        return None
    flat = any(field in data for field in STATE_FIELDS)
    try:
        if tenant_id is None:
            state = state_from_json(data, log.name)
        elif flat:
            raise ConfigError("checkpoint file %s holds the checkpoint of a source without tenants; give the source "
                              "with tenants another checkpoint_path." % path)
        elif tenant_key(tenant_id) not in data:
            return None
        else:
            state = state_from_json(data[tenant_key(tenant_id)], log.name)
        written = os.stat(path).st_mtime
    except ValueError as e:
        raise ConfigError("checkpoint file %s is not usable (%s); move it away to start again from "
                          "initial_lookback." % (path, e))
    except OSError as e:
        raise ConfigError("checkpoint file %s cannot be read: %s." % (path, e.strerror or e))
    now = now_ticks() if now is None else int(now)
    cap = future_cap(overlap, now)
    if state["watermark"] > cap:
        capped = min(cap, int(written * TICKS))
        # Warn about a watermark beyond the skew; one within it (a smaller overlap than last time) is only moved back.
        say = log.warning if state["watermark"] > now + FUTURE_SKEW * TICKS else log.info
        say("checkpoint file %s holds watermark %s, in the future; reading those updated since %s (when the file was "
            "last written) instead.", path, ticks_text(state["watermark"]), ticks_text(capped))
        state["watermark"] = capped
    return state


def save_checkpoint(path, state, tenant_id=None, warnings=None):
    """Write the state to ``path`` (the file's only state, or the entry of ``tenant_id``) through its StateStore:
    under the lock, atomically, mode 0600, in a directory created 0700 when missing. Returns False when the file
    cannot be used (the store's warning appended to ``warnings``); raises files.UnsafeFileError."""
    store = checkpoint_store(path, warnings=warnings)
    document = state_to_json(state)

    def write(saved):
        if tenant_id is None:
            saved.clear()
            saved.update(document)
        else:
            for field in STATE_FIELDS:
                saved.pop(field, None)
            saved["version"] = document.pop("version")
            saved[tenant_key(tenant_id)] = document
    store.update(write)
    return not store.in_memory


def default_checkpoint_path(cache_dir, name, url, auth, severity, status):
    """``<cache_dir>/eda/<name>-<digest>.json``, the digest of what the source reads."""
    identity = auth.get("client_id") or ("token:" + hashlib.sha256((auth.get("access_token") or "").encode("utf-8"))
                                         .hexdigest()[:16])
    key = json.dumps([url, auth.get("tenant_id"), identity, sorted(severity), sorted(status)])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_dir, "eda", "%s-%s.json" % (name, digest))


# -- the source -------------------------------------------------------------------------------------------
def one_line(error):
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(error, errors.MDEError):
        return text
    return "%s: %s" % (type(error).__name__, text) if text else type(error).__name__


def show_sign_in(message):
    """A device code sign-in (auth_mode device_code) needed at start: shown on ansible-rulebook's standard error while
    the source waits for the user; the sign-in is then kept in the token cache for the next starts."""
    sys.stderr.write("defender.endpoint event source needs a user to sign in. %s\n" % message)
    sys.stderr.flush()


class Poller:
    """One source instance: the client, its options, the state and where it is saved.

    A source is a subclass that names itself in its class line, ``class AlertPoller(poller.Poller, name="mde_alerts",
    noun="alert", event_key="mde_alert", time_field="lastUpdateTime")``, sets OPTIONS (its own options: name -> type,
    default, choices) and REFUSED (option -> what to use instead), and defines ``fetch()`` (the entities matching a
    ``$filter``, blocking) and ``base_url(client)`` (the API the default checkpoint name digests).
    """

    NAME = None
    NOUN = None
    EVENT_KEY = None
    TIME_FIELD = None
    OPTIONS = {}
    REFUSED = {}

    def __init_subclass__(cls, name=None, noun=None, event_key=None, time_field=None, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.NAME, cls.NOUN, cls.EVENT_KEY, cls.TIME_FIELD = name, noun, event_key, time_field

    def __init__(self, client, config, checkpoint_path, state, untrusted=None, tenant=None, executor=None):
        self.client = client
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.state = state
        self.untrusted = untrusted
        self.tenant = tenant                # with a tenant list: {"tenant_id", "name"} of the tenant this one polls
        self.executor = executor            # where the blocking read runs (None: asyncio's default threads)
        self.log = Log(self.NAME, tenant and tenant["name"])
        self.polls = 0
        self.failures = 0
        self.consent_missing = False        # the tenant's last token failed for a missing admin consent (logged once)

    # -- what a source says ------------------------------------------------------------------------------
    def fetch(self, odata_filter):
        raise NotImplementedError

    @staticmethod
    def base_url(client):
        raise NotImplementedError

    def event(self, item):
        """The event of one entity: ``{EVENT_KEY: entity}``, with a tenant list its tenant's id and label beside it."""
        out = {self.EVENT_KEY: item}
        if self.tenant is not None:
            out.update(mde_tenant_id=self.tenant["tenant_id"], mde_tenant=self.tenant["name"])
        return out

    def build_filter(self):
        return time_filter(self.TIME_FIELD, self.state, self.config["overlap"], self.config.get("severity") or (),
                           self.config.get("status") or ())

    # -- the same for every source -----------------------------------------------------------------------
    @classmethod
    def parse_args(cls, args, environ=None, now=None):
        return parse_args(args, environ, now, own=cls.OPTIONS, refused=cls.REFUSED)

    @classmethod
    def select_new(cls, state, items, overlap=0.0, now=None):
        return select_new(state, items, overlap, now, time_field=cls.TIME_FIELD, noun=cls.NOUN, log=Log(cls.NAME))

    @classmethod
    def default_checkpoint_path(cls, cache_dir, url, auth, severity, status):
        return default_checkpoint_path(cache_dir, cls.NAME, url, auth, severity, status)

    @classmethod
    def load_checkpoint(cls, path, overlap=0.0, now=None, tenant=None):
        return load_checkpoint(path, overlap, now, log=Log(cls.NAME, tenant and tenant["name"]),
                               tenant_id=tenant and tenant["tenant_id"])

    async def poll(self, queue):
        """One poll: read, put the new entities on the queue, save the checkpoint. Returns the number emitted.

        Raises whatever the read raised (the caller logs it); the state is then unchanged.
        """
        odata_filter = self.build_filter()
        items = await asyncio.get_running_loop().run_in_executor(self.executor, self.fetch, odata_filter)
        self.polls += 1
        emit, new_state = select_new(self.state, items, self.config["overlap"], time_field=self.TIME_FIELD,
                                     noun=self.NOUN, log=self.log)
        for item in emit:
            unsafe_yaml.mark_untrusted(item, self.untrusted, self.NAME, self.NOUN, self.EVENT_KEY)
            await queue.put(self.event(item))
        changed = new_state != self.state
        self.state = new_state
        if changed:
            warnings = []
            try:
                if not save_checkpoint(self.checkpoint_path, self.state, self.tenant and self.tenant["tenant_id"],
                                       warnings):
                    raise OSError(warnings[-1] if warnings else "it cannot be written")
            except (OSError, files.UnsafeFileError) as e:
                self.log.error("cannot write checkpoint file %s: %s; what was emitted is remembered until the source "
                               "stops.", self.checkpoint_path, getattr(e, "strerror", None) or e)
        self.log.info("%d %s(s) read, %d emitted, watermark %s.", len(items), self.NOUN, len(emit),
                      ticks_text(self.state["watermark"]))
        return len(emit)

    async def run(self, queue):
        while True:
            try:
                await self.poll(queue)
                if self.consent_missing:
                    self.consent_missing = False
                    self.log.info("the tenant's token works again.")
            except Exception as e:  # pylint: disable=broad-except
                self.failures += 1
                if self.tenant is not None and getattr(e, "code", None) == "consent_missing":
                    # The tenant's admin never consented to the app (or revoked it): one warning with the admin-consent
                    # URL, then a quiet retry at each interval; the other tenants go on meanwhile.
                    if not self.consent_missing:
                        self.log.warning("no token: %s Retrying at each poll (every %gs) meanwhile.", one_line(e),
                                         self.config["interval"])
                    self.consent_missing = True
                else:
                    self.log.error("poll failed, retrying in %gs: %s", self.config["interval"], one_line(e))
            await asyncio.sleep(self.config["interval"])

    @classmethod
    def _client_modules(cls):
        try:
            from ansible_collections.defender.endpoint.plugins.module_utils import auth as auth_utils
            from ansible_collections.defender.endpoint.plugins.module_utils import connect
        except ImportError as e:
            raise ConfigError("defender.endpoint.%s cannot import the collection's client (%s). Install the "
                              "defender.endpoint collection and its Python requirements (requests, msal) in the "
                              "decision environment." % (cls.NAME, e))
        return auth_utils, connect

    @classmethod
    def _start_state(cls, config, path, tenant=None):
        log = Log(cls.NAME, tenant and tenant["name"])
        state = cls.load_checkpoint(path, config["overlap"], tenant=tenant)
        if state is None:
            state = initial_state(config["start"])
            log.info("no checkpoint at %s; reading %ss updated since %s.", path, cls.NOUN, ticks_text(state["watermark"]))
        else:
            log.info("resuming from checkpoint %s (watermark %s).", path, ticks_text(state["watermark"]))
        return state

    @classmethod
    def setup(cls, args, environ=None):
        """Validate the arguments, build the client and load (or start) the state. Raises ConfigError or MDEError
        (MDEConfigError, MDEDependencyError) for a configuration that cannot work; makes no API call. With a tenant
        list, see setup_all()."""
        pollers = cls.setup_all(args, environ)
        if len(pollers) != 1 or pollers[0].tenant is not None:
            raise ConfigError("%s: setup() is for a source without tenants; use setup_all()." % cls.NAME)
        return pollers[0]

    @classmethod
    def setup_all(cls, args, environ=None):
        """The pollers of a source: one without a tenant list, else one per tenant (its own client, from the shared
        options and its entry's, and its own entry in the checkpoint file), checked before any API call."""
        config = cls.parse_args(args, environ)
        auth_utils, connect = cls._client_modules()
        untrusted = unsafe_yaml.install_yaml_marking()
        if config["tenants"] is None:
            client = connect.create_client(sign_in=show_sign_in, **config["auth"])
            path = config["checkpoint_path"] or cls.default_checkpoint_path(
                auth_utils.default_cache_dir(), cls.base_url(client), config["auth"], config.get("severity") or [],
                config.get("status") or [])
            return [cls(client, config, path, cls._start_state(config, path), untrusted)]
        clients = [connect.create_client(sign_in=show_sign_in, **entry["connection"]) for entry in config["tenants"]]
        # One file for the tenant list, one entry per tenant id in it: its name digests the shared options, not the
        # tenants, so a tenant added to the list or taken out of it leaves the others' checkpoints as they were.
        shared = config["auth"]
        path = config["checkpoint_path"] or default_checkpoint_path(
            auth_utils.default_cache_dir(), cls.NAME + "-tenants", "%s %s" % (shared.get("api_url"), shared.get("graph_url")),
            dict(shared, tenant_id=shared.get("cloud")), config.get("severity") or [], config.get("status") or [])
        from concurrent.futures import ThreadPoolExecutor
        executor = ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix=cls.NAME)
        pollers = []
        for entry, client in zip(config["tenants"], clients):
            tenant = dict(tenant_id=entry["tenant_id"], name=entry["name"])
            pollers.append(cls(client, config, path, cls._start_state(config, path, tenant), untrusted, tenant,
                               executor))
        return pollers

    @classmethod
    async def main(cls, queue, args):
        """ansible-rulebook's entry point: poll until cancelled; with a tenant list, every tenant side by side (one
        task each: a tenant that fails or waits out a throttle holds back no other)."""
        pollers = cls.setup_all(args)
        if len(pollers) == 1:
            await pollers[0].run(queue)
            return
        try:
            await asyncio.gather(*(p.run(queue) for p in pollers))
        finally:
            pollers[0].executor.shutdown(wait=False)

    @classmethod
    def print_one_poll(cls, argv):
        """``python <source>.py '<arguments as JSON>'``: print the events of one poll (of each tenant)."""

        class _PrintQueue:
            async def put(self, event):
                sys.stdout.write(json.dumps(event) + "\n")

        async def poll_all(pollers):
            await asyncio.gather(*(p.poll(_PrintQueue()) for p in pollers))

        logging.basicConfig(level=logging.INFO)
        asyncio.run(poll_all(cls.setup_all(json.loads(argv[1]) if len(argv) > 1 else {})))
