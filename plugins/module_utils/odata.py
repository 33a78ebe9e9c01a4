# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building OData ``$filter`` expressions, ids in URL paths, and the one time parser and formatter of the collection.

Plain Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

try:
    from urllib.parse import quote as _url_quote
except ImportError:  # pragma: no cover
    from urllib import quote as _url_quote  # type: ignore


# Filters shared by mde_machine_info and the mde_machines inventory plugin: option -> (API field, kind).
# Every field is one the machines endpoint documents as filterable
# (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines), except rbac_group_name, which the API does
# not filter on and the callers match client-side.
MACHINE_FILTERS = {
    "os_platform": ("osPlatform", "string"),
    "health_status": ("healthStatus", "string"),
    "onboarding_status": ("onboardingStatus", "string"),
    "exposure_level": ("exposureLevel", "string"),
    "risk_score": ("riskScore", "string"),
    "machine_tags": ("machineTags", "tags"),
    "last_seen_within": ("lastSeen", "since"),
}
MACHINE_ENUMS = {
    "health_status": ["Active", "Inactive", "ImpairedCommunication", "NoSensorData",
                      "NoSensorDataImpairedCommunication", "Unknown"],
    "onboarding_status": ["Onboarded", "CanBeOnboarded", "Unsupported", "InsufficientInfo"],
    "exposure_level": ["None", "Low", "Medium", "High"],
    "risk_score": ["None", "Informational", "Low", "Medium", "High"],
}


# -- ids in URL paths and values in messages ------------------------------------------------------------
# Control characters: C0, DEL, C1, and the Unicode line and paragraph separators (which some tools read as line
# breaks). None of them belongs in an id, a tag or a name.
CONTROL_RE = re.compile(u"[\u0000-\u001f\u007f-\u009f\u2028\u2029]")
# Characters that would change which resource a URL path names ("/", "\\", "?", "#") or be decoded a second time
# by a proxy ("%"), and whitespace. No id the API documents holds any of them:
# https://learn.microsoft.com/en-us/defender-endpoint/api/machine,
# https://learn.microsoft.com/en-us/defender-endpoint/api/alerts,
# https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction.
_NOT_IN_PATH_ID = re.compile(r"[/\\?#%\s]")
# How many values a message names before it gives only the count of the others.
SHOWN = 5
# How many characters of one value a message shows.
SHOWN_WIDTH = 60


def shown(value, width=SHOWN_WIDTH):
    """A value for a message: its repr (so CR, LF and NUL show as escapes), cut to about ``width`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > width:
        return "%r... (%d characters)" % (text[:width], len(text))
    return repr(text)


def summary(values, limit=SHOWN, width=SHOWN_WIDTH, show=None, sep=", "):
    """The first ``limit`` values, then how many more: ``a, b, c, d, e and 9995 more``.

    ``show`` formats one value (default: as it is, cut to ``width`` characters).
    """
    values = list(values)
    if show is None:
        def show(v):
            text = v if isinstance(v, str) else str(v)
            return text if len(text) <= width and not CONTROL_RE.search(text) else shown(text, width)
    head = sep.join(show(v) for v in values[:limit])
    if len(values) > limit:
        head += " and %d more" % (len(values) - limit)
    return head


def check_id(value, option, pattern=None, form=None):
    """An id given in ``option``, checked to be safe as one URL path segment; returned without surrounding blanks.

    Refuses empty ids, control characters, whitespace inside, ``/ \\ ? # %`` and ``.``/``..``; with ``pattern``,
    also ids that do not match it (``form`` says what the option takes). Raises ValueError naming ``option``.
    """
    if value is None or not str(value).strip():
        raise ValueError("%s must not be empty" % option)
    text = value if isinstance(value, str) else str(value)
    if CONTROL_RE.search(text):
        raise ValueError("%s must not contain control characters such as CR, LF or NUL, got %s" % (option, shown(text)))
    text = text.strip()
    if pattern is not None:
        if not pattern.match(text):
            raise ValueError("%s must be %s, got %s" % (option, form, shown(text)))
        return text
    if text in (".", ".."):
        raise ValueError("%s must be an id, not %r" % (option, text))
    bad = _NOT_IN_PATH_ID.search(text)
    if bad:
        raise ValueError("%s must not contain whitespace or any of / \\ ? # %%, got %s" % (option, shown(text)))
    return text


# -- ids in answers -------------------------------------------------------------------------------------------------
# An id the API returns decides a URL (the next call) or a file name (a download): before it does, it must have the
# shape Microsoft documents for its kind. Machine ids are 40 hexadecimal characters
# (https://learn.microsoft.com/en-us/defender-endpoint/api/machine), machine action ids GUIDs
# (https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction), investigation ids numbers ("63017":
# https://learn.microsoft.com/en-us/defender-endpoint/api/investigation), incident ids numbers
# (https://learn.microsoft.com/en-us/graph/api/resources/security-incident), indicator ids numbers
# (https://learn.microsoft.com/en-us/defender-endpoint/api/ti-indicator). Alert ids have no documented shape
# (https://learn.microsoft.com/en-us/defender-endpoint/api/alerts): only what cannot be one URL path segment is refused.
MACHINE_ID_RE = re.compile(r"^[0-9a-fA-F]{40}$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMBER_ID_RE = re.compile(r"^[0-9]{1,20}$")
ANSWER_IDS = {
    "machine": (MACHINE_ID_RE, "a machine id (40 hexadecimal characters)"),
    "machine_action": (GUID_RE, "a machine action id (a GUID)"),
    "investigation": (_NUMBER_ID_RE, "an investigation id (a number)"),
    "incident": (_NUMBER_ID_RE, "an incident id (a number)"),
    "indicator": (_NUMBER_ID_RE, "an indicator id (a number)"),
    "alert": (None, "an alert id"),
}


def answer_id(entity, kind, field="id"):
    """The ``field`` of an API answer's ``entity``, checked to have the documented shape of a ``kind`` id
    (ANSWER_IDS) before it enters a URL or a path. Raises MDEError (the answer is refused) otherwise."""
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError, quoted
    pattern, form = ANSWER_IDS[kind]
    value = entity.get(field) if isinstance(entity, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    try:
        if not isinstance(value, str):
            raise ValueError(field)
        return check_id(value, field, pattern, form)
    except ValueError:
        raise MDEError("The API answered with %s %s of %s, which is not %s: the answer was refused, and nothing was "
                       "done with it." % ("the" if value is None else "an", field,
                                          "null" if value is None else repr(quoted(value, 100)), form))


def check_ids(values, option, pattern=None, form=None):
    """``check_id`` for every item of a list option; one error naming the first few bad items and their count."""
    if values is None:
        return None
    if not values:
        raise ValueError("%s must list at least one id" % option)
    good, bad = [], []
    for n, value in enumerate(values, start=1):
        try:
            good.append(check_id(value, option, pattern, form))
        except ValueError:
            bad.append((n, value))
    if bad:
        if all(v is None or not str(v).strip() for _n, v in bad):
            raise ValueError("%s must not contain empty ids (item %s)" % (option, summary(
                [n for n, _v in bad], show=str)))
        what = ("be %s" % form) if form else "be ids without whitespace, control characters or / \\ ? # %"
        raise ValueError("%s must %s; %d of the %d items are not: %s" % (
            option, what, len(bad), len(values), summary(bad, show=lambda b: "item %d %s" % (
                b[0], shown(b[1]) if b[1] is not None else "(empty)"))))
    return good


def path_segment(value):
    """``value`` percent-encoded as one URL path segment (nothing left unencoded but letters, digits and ``_.-~``).
    An empty segment, ``.`` and ``..`` would name another resource, and raise ValueError."""
    text = str(value)
    if text in ("", ".", ".."):
        raise ValueError("%r cannot be an id in a URL path" % text)
    return _url_quote(text, safe="")


def quote(value):
    """An OData string literal: single quotes, embedded quotes doubled."""
    return "'%s'" % str(value).replace("'", "''")


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def any_of(field, values):
    """``field eq 'a'`` or ``(field eq 'a' or field eq 'b')``; None for no values."""
    values = as_list(values)
    if not values:
        return None
    parts = ["%s eq %s" % (field, quote(v)) for v in values]
    return parts[0] if len(parts) == 1 else "(%s)" % " or ".join(parts)


def any_tag(field, values):
    values = as_list(values)
    if not values:
        return None
    parts = ["%s/any(t: t eq %s)" % (field, quote(v)) for v in values]
    return parts[0] if len(parts) == 1 else "(%s)" % " or ".join(parts)


# -- times ----------------------------------------------------------------------------------------------
# The one parser and formatter of times for the whole collection (modules, inventory, EDA source). The API writes
# times in ISO 8601 with up to 7 fractional digits (100 ns ticks: ``2021-01-26T20:33:57.7220239Z``, see the Alert
# and MachineAction entities, https://learn.microsoft.com/en-us/defender-endpoint/api/alerts and
# https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction), and its $filter takes ``2026-01-31T08:00:00Z``
# (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-odata-samples).
TICKS = 10 ** 7  # 100 ns ticks a second
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# A date, then optionally a time with any number of fraction digits, then optionally Z or an offset (none = UTC).
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
                  r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$")
# An age: ``30s``, ``5m``, ``24h``, ``7d``, ``2w`` (a bare number of seconds only where the caller allows it).
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def age_seconds(value, bare=False):
    """Seconds of an age such as ``30s``, ``5m``, ``24h``, ``7d``, ``2w`` (``bare``: also a plain number of seconds);
    None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if bare else None
    m = _AGE.match(str(value))
    if not m or (not m.group(2) and not bare):
        return None
    return float(m.group(1)) * _UNITS[m.group(2)]


def time_ticks(value, allow_date=False):
    """An ISO 8601 time (any number of fraction digits; ``Z``, an offset or none for UTC) or a datetime -> integer
    100 ns ticks since 1970-01-01 UTC, exact to the API's 7 fractional digits (more are cut off).

    ``allow_date``: a date alone (``2030-01-01``) is its midnight UTC. Raises ValueError for anything else.
    """
    if isinstance(value, datetime.datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)
        delta = dt - EPOCH
        return (delta.days * 86400 + delta.seconds) * TICKS + delta.microseconds * 10
    m = _ISO.match(str(value).strip()) if value is not None else None
    if not m or (m.group(4) is None and not allow_date):
        raise ValueError("not an ISO 8601 time: %r" % (value,))
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    dt = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                           tzinfo=datetime.timezone.utc)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        dt -= sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * TICKS + int(((fraction or "") + "0000000")[:7])


def ticks_time(ticks):
    """100 ns ticks -> aware UTC datetime (to the microsecond, the rest cut off)."""
    return EPOCH + datetime.timedelta(microseconds=int(ticks) // 10)


def ticks_text(ticks):
    """100 ns ticks -> ``YYYY-MM-DDTHH:MM:SS.fffffffZ``, as the API writes times (sortable as text)."""
    seconds, rest = divmod(int(ticks), TICKS)
    return "%s.%07dZ" % ((EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S"), rest)


def now_ticks():
    return time_ticks(utcnow())


def format_time(dt, fraction=False):
    """An aware datetime (or 100 ns ticks) as ``2026-01-31T08:00:00Z`` in UTC, floored to the second: the form a
    $filter takes. ``fraction``: keep the microseconds, without trailing zeros (``...T08:00:00.5Z``)."""
    if not isinstance(dt, datetime.datetime):
        dt = ticks_time(dt)
    dt = dt.astimezone(datetime.timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction and dt.microsecond:
        text += (".%06d" % dt.microsecond).rstrip("0")
    return text + "Z"


def parse_time(value, option="time", relative=True):
    """An ISO 8601 time (a date alone is its midnight UTC), a datetime, or (``relative``) an age ago (``30m``,
    ``24h``, ``7d``, ``2w``) -> aware UTC datetime.

    Raises ValueError with a message naming ``option``.
    """
    if relative and not isinstance(value, datetime.datetime):
        seconds = age_seconds(value)
        if seconds is not None:
            return utcnow() - datetime.timedelta(seconds=seconds)
    try:
        return ticks_time(time_ticks(value, allow_date=True))
    except (ValueError, OverflowError):
        raise ValueError("%s must be an ISO 8601 time (2026-01-31T08:00:00Z)%s, got %r" % (
            option, " or an age such as 30m, 24h or 7d" if relative else "", value))


def time_or_none(value):
    """An API timestamp -> aware UTC datetime; None for a missing or unreadable one."""
    if not value:
        return None
    try:
        return ticks_time(time_ticks(value))
    except (ValueError, OverflowError):
        return None


def and_all(*parts):
    """AND the non-empty parts (each already parenthesised where it holds an ``or``); None if none."""
    return " and ".join(p for p in parts if p) or None


def machine_filter(filters, odata_filter=None):
    """The server-side ``$filter`` for the shared machine filters (a dict of option -> value or list).

    Raises ValueError naming the option for a bad value.
    """
    parts = []
    for option, (field, kind) in MACHINE_FILTERS.items():
        values = as_list((filters or {}).get(option))
        if not values:
            continue
        if option in MACHINE_ENUMS:
            for v in values:
                if v not in MACHINE_ENUMS[option]:
                    raise ValueError("%s: %r is not one of %s" % (option, v, ", ".join(MACHINE_ENUMS[option])))
        if kind == "string":
            parts.append(any_of(field, values))
        elif kind == "tags":
            parts.append(any_tag(field, values))
        elif kind == "since":
            parts.append("%s ge %s" % (field, format_time(parse_time(values[0], option))))
    if odata_filter:
        parts.append("(%s)" % odata_filter)
    return and_all(*parts)


def entity(data):
    """A single-entity response without its OData annotations (``@odata.context``), as list calls return entities."""
    return dict((k, v) for k, v in (data or {}).items() if not k.startswith("@odata."))


def unique(values, key=None):
    """Values without repeats (compared through ``key``), in their first order."""
    seen = set()
    out = []
    for v in values:
        k = key(v) if key else v
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def chunks(values, size):
    """Consecutive lists of at most ``size`` items (batch endpoints take at most 500 ids a call)."""
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


def read_by_ids(client, path, ids, chunk=50, params=None, empty_on_404=False):
    """Entities of a collection by id: ``chunk`` ids per ``$filter=id eq .. or ..`` list call through the client,
    never one GET per id. Returns a dict of lower-cased id -> entity; ids the API does not know are absent."""
    found = {}
    for part in chunks(unique(str(i).lower() for i in ids), chunk):
        for item in client.list(path, odata_filter=any_of("id", part), params=params, empty_on_404=empty_on_404):
            found[str(item.get("id")).lower()] = item
    return found
