# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entity pivots: a file hash, an IP address, a domain or a user account -> its statistics, machines and alerts.

Plain Python (no Ansible import), used by mde_file_info, mde_ip_info, mde_domain_info and mde_user_info. The
endpoints are those of https://learn.microsoft.com/en-us/defender-endpoint/api/files, .../get-ip-statistics,
.../get-domain-statistics and .../user (and the pages they link): every input is checked before any call, and an
entity Defender has never seen is an empty answer (``None`` or ``[]``), not a failure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils import indicators, odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

# lookBackHours of the statistics endpoints: "Maximum Value for Lookbackhours is 720 Hours (30 days)"
# (https://learn.microsoft.com/en-us/defender-endpoint/api/get-ip-statistics); the API's default is 30 days.
MAX_LOOKBACK_HOURS = 720
# The parts each lookup can include, in the order they are read.
PARTS = {
    "file": ("stats", "machines", "alerts"),
    "ip": ("stats", "alerts"),
    "domain": ("stats", "machines", "alerts"),
    "user": ("machines", "alerts"),
}
# The API's account name for /api/users/{id}: "not the full UPN, but only the user name"
# (https://learn.microsoft.com/en-us/defender-endpoint/api/get-user-related-alerts).
_ACCOUNT_RE = re.compile(r"^[^\s/\\@?#%\"\[\]:;|=,+*<>]{1,104}$")


def check_file_hash(value, option="file_hash"):
    """``(kind, hash)``: ``Sha1`` or ``Sha256`` and the lower-case hash; ValueError naming ``option`` otherwise.

    The file endpoints take a SHA-1 or a SHA-256 (https://learn.microsoft.com/en-us/defender-endpoint/api/
    get-file-information); MD5 is refused here, as Defender does not look files up by it.
    """
    text = str(value if value is not None else "").strip()
    for kind, itype in (("Sha1", "FileSha1"), ("Sha256", "FileSha256")):
        if len(text) == indicators.HEX_LENGTH[itype] and indicators.value_error(itype, text) is None:
            return kind, text.lower()
    if len(text) == 32 and re.match(r"^[0-9A-Fa-f]{32}$", text):
        raise ValueError("%s must be a SHA-1 (40 hexadecimal characters) or SHA-256 (64) hash; Defender does not "
                         "look files up by MD5, got %s" % (option, odata.shown(text)))
    raise ValueError("%s must be a SHA-1 (40 hexadecimal characters) or SHA-256 (64) hash, got %s"
                     % (option, odata.shown(text) if text else "an empty value"))


def _indicator_value(kind, value, option, what):
    """``value`` checked and spelled as the indicators of ``kind`` are (indicators.value_error / normalize);
    ValueError naming ``option`` and ``what`` it must be."""
    text = str(value if value is not None else "").strip()
    why = indicators.value_error(kind, text)
    if why:
        raise ValueError("%s must be %s (%s), got %s" % (option, what, why, odata.shown(text)))
    return indicators.normalize(kind, text)


def check_ip(value, option="ip"):
    """One IPv4 or IPv6 address in the spelling the API compares (IPv6 in full); ValueError naming ``option``."""
    return _indicator_value("IpAddress", value, option, "one IPv4 or IPv6 address")


def check_domain(value, option="domain"):
    """A domain name, lower case without a trailing dot; ValueError naming ``option`` for anything else (a URL, a
    path, an IP address)."""
    return _indicator_value("DomainName", value, option, "a domain name such as contoso.com")


def check_user(value, option="user"):
    """An account name as the users endpoints take it (``user1``); ValueError for a UPN, a ``DOMAIN\\name`` or
    anything that cannot be one URL path segment."""
    text = str(value if value is not None else "").strip()
    if not text:
        raise ValueError("%s must not be empty" % option)
    if "@" in text or "\\" in text:
        raise ValueError("%s must be the account name only (user1), not a user principal name or DOMAIN\\name: "
                         "Defender looks users up by account name, got %s" % (option, odata.shown(text)))
    if odata.CONTROL_RE.search(text) or not _ACCOUNT_RE.match(text) or text in (".", ".."):
        raise ValueError("%s must be an account name without whitespace, control characters or any of "
                         "/ \\ @ ? # %% \" [ ] : ; | = , + * < >, got %s" % (option, odata.shown(text)))
    return text


def check_lookback(hours, option="lookback_hours"):
    if hours is not None and not 1 <= hours <= MAX_LOOKBACK_HOURS:
        raise ValueError("%s must be between 1 and %d (30 days), got %d" % (option, MAX_LOOKBACK_HOURS, hours))
    return hours


def check_include(kind, include, option="include"):
    """The parts to read, in reading order (every part of ``kind`` when ``include`` is None)."""
    if include is None:
        return list(PARTS[kind])
    bad = [p for p in include if p not in PARTS[kind]]
    if bad:
        raise ValueError("%s must list only %s, got %s" % (option, ", ".join(PARTS[kind]), ", ".join(map(str, bad))))
    return [p for p in PARTS[kind] if p in include]


def get_or_none(client, path, params=None):
    """One entity (without its OData annotations), or None when the API answers 404."""
    try:
        return odata.entity(client.get(path, params=params))
    except MDEError as e:
        if e.status == 404:
            return None
        raise


def collection(client, path):
    """Every item of a pivot collection (no OData paging documented on these endpoints); [] for a 404."""
    return [item for page in client.pages(path, use_top=False, empty_on_404=True) for item in page]


def lookup(client, base, parts, lookback_hours=None):
    """``{"stats": ..., "machines": [...], "alerts": [...]}`` for the included ``parts`` of ``base``
    (``/api/ips/10.1.2.3``, ...)."""
    out = {}
    for part in parts:
        if part == "stats":
            params = {"lookBackHours": lookback_hours} if lookback_hours else None
            out["stats"] = get_or_none(client, "%s/stats" % base, params=params)
        else:
            out[part] = collection(client, "%s/%s" % (base, part))
    return out


def file_lookup(client, file_hash, parts, lookback_hours=None):
    """``(file, parts)``: the File entity (None when Defender has never seen it) and the included parts.

    Machines and alerts are looked up by SHA-1 only (https://learn.microsoft.com/en-us/defender-endpoint/api/
    get-file-related-machines): for a SHA-256 the file's own ``sha1`` is used. An unknown file has no parts: they
    are returned empty without a call."""
    kind, value = check_file_hash(file_hash)
    found = get_or_none(client, "/api/files/%s" % odata.path_segment(value))
    if found is None:
        return None, dict((p, None if p == "stats" else []) for p in parts)
    sha1 = value if kind == "Sha1" else (found.get("sha1") or "").lower()
    if not sha1:
        return found, dict((p, None if p == "stats" else []) for p in parts)
    return found, lookup(client, "/api/files/%s" % odata.path_segment(sha1), parts, lookback_hours)


class Lookup:
    """One entity lookup module (mde_file_info, mde_ip_info, mde_domain_info, mde_user_info), defined once: its
    argument spec (the entity option, ``include`` and, where the API takes it, ``lookback_hours``), the checks
    before any call, and ``run``, which reads the entity's included parts. ``read(client, value, parts, hours)``
    returns ``(the result's value for the option, the parts read)``; by default the checked value itself and the
    parts of ``path % value``."""

    def __init__(self, kind, option, check, path=None, lookback=True, read=None):
        self.kind, self.option, self._check, self.lookback = kind, option, check, lookback
        self._read = read or (lambda client, value, parts, hours: (
            value, lookup(client, path % odata.path_segment(value), parts, hours)))
        self.argument_spec = dict([(option, dict(type="str", required=True)),
                                   ("include", dict(type="list", elements="str", choices=list(PARTS[kind])))]
                                  + ([("lookback_hours", dict(type="int"))] if lookback else []))

    def validate(self, ctx):
        """Checks before any call."""
        ctx.checked(self._check, ctx.params[self.option])
        if self.lookback:
            ctx.checked(check_lookback, ctx.params["lookback_hours"])

    def run(self, ctx):
        p = ctx.params
        value = self._check(p[self.option])
        parts = check_include(self.kind, p["include"])
        found, included = self._read(ctx.client, value, parts, p.get("lookback_hours"))
        result = dict(changed=False)
        result[self.kind] = found
        result.update(included)
        return result
