# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Custom indicators (IoCs): validation, normalisation, comparison and planning. Plain Python: no Ansible import.

Used by the mde_indicator and mde_indicator_info modules. Everything here works on plain dicts, so the
whole plan (what to create, update, delete) is computed and checked before any write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import odata

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

TYPES = ["FileSha1", "FileSha256", "FileMd5", "CertificateThumbprint", "IpAddress", "DomainName", "Url"]
ACTIONS = ["Warn", "Block", "Audit", "Alert", "AlertAndBlock", "BlockAndRemediate", "Allowed"]
SEVERITIES = ["Informational", "Low", "Medium", "High"]
LEGACY_ACTIONS = ("Alert", "AlertAndBlock")

# Actions each indicator type accepts (https://learn.microsoft.com/en-us/defender-endpoint/api/ti-indicator and
# https://learn.microsoft.com/en-us/defender-endpoint/indicators-overview): files Allowed/Audit/Warn/Block/
# BlockAndRemediate; IP, URL and domain Allowed/Audit/Warn/Block; certificates Allowed/BlockAndRemediate.
# The legacy Alert and AlertAndBlock (end of support January 2022, still in every API example) are
# accepted for every type, with a warning.
ACTIONS_BY_TYPE = {
    "FileSha1": ("Allowed", "Audit", "Warn", "Block", "BlockAndRemediate"),
    "FileSha256": ("Allowed", "Audit", "Warn", "Block", "BlockAndRemediate"),
    "FileMd5": ("Allowed", "Audit", "Warn", "Block", "BlockAndRemediate"),
    "CertificateThumbprint": ("Allowed", "BlockAndRemediate"),
    "IpAddress": ("Allowed", "Audit", "Warn", "Block"),
    "DomainName": ("Allowed", "Audit", "Warn", "Block"),
    "Url": ("Allowed", "Audit", "Warn", "Block"),
}
HEX_LENGTH = {"FileSha1": 40, "FileSha256": 64, "FileMd5": 32, "CertificateThumbprint": 40}
EDUCATE_URL_ACTIONS = ("Block", "Warn")

# Module option -> API property (camelCase, as POST /api/indicators and import expect it).
FIELDS = [
    ("indicator_value", "indicatorValue"),
    ("indicator_type", "indicatorType"),
    ("action", "action"),
    ("title", "title"),
    ("description", "description"),
    ("severity", "severity"),
    ("expiration_time", "expirationTime"),
    ("recommended_actions", "recommendedActions"),
    ("rbac_group_names", "rbacGroupNames"),
    ("generate_alert", "generateAlert"),
    ("application", "application"),
    ("educate_url", "educateUrl"),
]
API_NAME = dict(FIELDS)
REQUIRED_PRESENT = ("action", "title", "description")
# Fields compared with the existing indicator to decide whether to write. ``application`` is honoured
# only when an indicator is created (https://learn.microsoft.com/en-us/defender-endpoint/api/post-ti-indicator), so it
# is sent but never compared.
COMPARED = ("action", "title", "description", "severity", "expirationTime", "recommendedActions",
            "rbacGroupNames", "generateAlert", "educateUrl")

TENANT_LIMIT = 15000
BATCH_SIZE = 500
PAGE_SIZE = 10000
# Lists of at most this many indicators are read with one call filtered on their values; longer lists
# (and purge) read every visible indicator, which is at most two pages of 10,000.
SMALL_LIST = 10
MAX_FILTER_LENGTH = 4000

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(%s\.)+([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$" % _LABEL)
_HEX_RE = re.compile(r"^[0-9A-Fa-f]+$")


# -- values ---------------------------------------------------------------------------------------------
def _is_domain(text):
    return bool(_DOMAIN_RE.match(text))


def _ip_error(value):
    """None if ``value`` is an IPv4 or full (8-group) IPv6 address, else why not."""
    if "/" in value:
        return "a single address is expected; CIDR ranges are not supported by Defender indicators"
    if "*" in value or "-" in value:
        return "a single address is expected; ranges and wildcards are not supported by Defender indicators"
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return "not a valid IPv4 or IPv6 address"
    if addr.version == 6 and "%" in value:
        return "an IPv6 zone index (%...) is not supported"
    return None


def normalize(indicator_type, value):
    """The spelling the API wants and compares for a valid value (https://learn.microsoft.com/en-us/defender-endpoint/
    indicator-ip-domain: IPv6 in full, 8 groups): an IPv6 address in any form (2001:db8::77) becomes its 8 groups
    (2001:db8:0:0:0:0:0:77), an IPv4 address its dotted quad; a domain name is lower case without the trailing dot of a
    fully qualified name; a hash or thumbprint is lower-case hexadecimal. A URL is kept as written (its path is case
    sensitive)."""
    value = (value or "").strip()
    if indicator_type == "IpAddress":
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return value
        if addr.version == 6:
            return ":".join("%x" % int(group, 16) for group in addr.exploded.split(":"))
        return str(addr)
    if indicator_type == "DomainName":
        return value.rstrip(".").lower()
    if indicator_type in HEX_LENGTH:
        return value.lower()
    return value


def _url_error(value):
    if any(c.isspace() for c in value):
        return "a URL must not contain whitespace"
    if "*" in value:
        return "wildcards are not supported by Defender indicators"
    if len(value) > 2048:
        return "a URL must be at most 2048 characters"
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            return "only http:// and https:// URLs are supported"
        text = value
    else:
        text = "http://" + value
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        return "not a valid URL"
    if not host:
        return "the URL has no host name"
    if _is_domain(host):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return "the URL's host %r is neither a domain name nor an IP address" % host


def value_error(indicator_type, value):
    """None if ``value`` is a valid indicator value of ``indicator_type``, else a short reason."""
    if not isinstance(value, str) or not value:
        return "the value is empty"
    if odata.CONTROL_RE.search(value):
        return "the value must not contain control characters such as CR, LF or NUL"
    if indicator_type in HEX_LENGTH:
        length = HEX_LENGTH[indicator_type]
        what = "a SHA-1 thumbprint" if indicator_type == "CertificateThumbprint" else "a %s hash" % indicator_type[4:].upper()
        if not _HEX_RE.match(value):
            return "%s is %d hexadecimal characters (0-9, a-f), without separators" % (what, length)
        if len(value) != length:
            return "%s is %d hexadecimal characters, got %d" % (what, length, len(value))
        return None
    if indicator_type == "IpAddress":
        return _ip_error(value)
    if indicator_type == "DomainName":
        value = value.rstrip(".") if value.endswith(".") and not value.endswith("..") else value
        if "*" in value:
            return "wildcards are not supported; a domain indicator already matches its subdomains"
        if "://" in value or "/" in value:
            return "a domain name has no scheme or path (use indicator_type Url for those)"
        if not _is_domain(value):
            return "not a valid domain name"
        return None
    if indicator_type == "Url":
        return _url_error(value)
    return "unknown indicator type %r" % (indicator_type,)


def match_key(indicator_type, value):
    """What identifies an indicator: its type and its normalized value (normalize()), case-insensitive except for
    URLs, so 2001:db8::77 and 2001:DB8:0:0:0:0:0:77, or Contoso.COM. and contoso.com, are one indicator."""
    value = normalize(indicator_type, value)
    return (indicator_type, value if indicator_type == "Url" else value.lower())


def describe(item):
    return "%s %s" % (item.get("indicatorType"), item.get("indicatorValue"))


# -- input ------------------------------------------------------------------------------------------
def build(spec, state, where, now=None):
    """Validate one indicator given with module option names; return (api_body, warnings).

    ``where`` names the item in messages (``indicators[3]``). Raises ValueError naming it.
    """
    spec = dict(spec or {})
    warnings = []

    def fail(text):
        value = spec.get("indicator_value")
        if value is not None and (len(str(value)) > 100 or odata.CONTROL_RE.search(str(value))):
            value = odata.shown(value, 100)   # a message of one line and a readable length
        label = where + (" (%s %s)" % (spec.get("indicator_type"), value) if value else "")
        raise ValueError("%s: %s." % (label, text))

    itype = spec.get("indicator_type")
    value = spec.get("indicator_value")
    if value is None or (isinstance(value, str) and not value.strip()):
        fail("indicator_value is required")
    if not itype:
        fail("indicator_type is required")
    if itype not in TYPES:
        fail("indicator_type must be one of %s, got %r" % (", ".join(TYPES), itype))
    value = str(value).strip()
    spec["indicator_value"] = value
    reason = value_error(itype, value)
    if reason:
        fail("invalid %s value: %s" % (itype, reason))
    body = {"indicatorValue": normalize(itype, value), "indicatorType": itype}
    if state == "absent":
        return body, warnings

    for name in REQUIRED_PRESENT:
        if spec.get(name) is None or (isinstance(spec.get(name), str) and not spec[name].strip()):
            fail("%s is required with state=present" % name)
    action = spec["action"]
    if action not in ACTIONS:
        fail("action must be one of %s, got %r" % (", ".join(ACTIONS), action))
    if action in LEGACY_ACTIONS:
        warnings.append("%s: action %s is a legacy action (end of support January 2022); Defender documents Audit "
                        "with generate_alert (for Alert) and BlockAndRemediate (for AlertAndBlock) instead." % (where, action))
    elif action not in ACTIONS_BY_TYPE[itype]:
        fail("action %s is not supported for %s indicators; use one of %s" % (action, itype, ", ".join(ACTIONS_BY_TYPE[itype])))
    generate = spec.get("generate_alert")
    if generate is not None and not isinstance(generate, bool):
        fail("generate_alert must be true or false, got %r" % (generate,))
    if action == "Audit" and generate is not True:
        fail("action Audit requires generate_alert: true")
    severity = spec.get("severity")
    if severity is not None and severity not in SEVERITIES:
        fail("severity must be one of %s, got %r" % (", ".join(SEVERITIES), severity))
    for name in ("title", "description", "recommended_actions", "application", "educate_url"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            fail("%s must be a string" % name)
    groups = spec.get("rbac_group_names")
    if groups is not None:
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",") if g.strip()]
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) and g.strip() for g in groups):
            fail("rbac_group_names must be a list of device group names")
        groups = [g.strip() for g in groups]
    educate = spec.get("educate_url")
    if educate is not None:
        if action not in EDUCATE_URL_ACTIONS:
            fail("educate_url is only used with action Block or Warn")
        if not re.match(r"^https?://\S+$", educate):
            fail("educate_url must be an http:// or https:// URL")
    expiration = spec.get("expiration_time")
    if expiration is not None:
        try:
            when = odata.parse_time(expiration, "expiration_time", relative=False)
        except ValueError:
            fail("expiration_time must be an ISO 8601 time such as 2026-12-31T00:00:00Z, got %r" % (expiration,))
        if when <= (now or odata.utcnow()):
            fail("expiration_time %s is in the past; Defender lists only active indicators" % odata.format_time(
                when, fraction=True))
        expiration = odata.format_time(when, fraction=True)

    body.update({"action": action, "title": spec["title"], "description": spec["description"]})
    for option, api in (("severity", "severity"), ("recommended_actions", "recommendedActions"),
                        ("generate_alert", "generateAlert"), ("application", "application"),
                        ("educate_url", "educateUrl")):
        if spec.get(option) is not None:
            body[api] = spec[option]
    if groups is not None:
        body["rbacGroupNames"] = groups
    if expiration is not None:
        body["expirationTime"] = expiration
    return body, warnings


def build_all(specs, state, now=None):
    """Validate a list of indicators; return (bodies, warnings). Fails on the first bad item or a duplicate."""
    bodies, warnings, seen = [], [], {}
    for index, spec in enumerate(specs or []):
        where = "indicators[%d]" % index
        if not isinstance(spec, dict):
            raise ValueError("%s: each indicator must be a dictionary, got %s." % (where, type(spec).__name__))
        body, warn = build(spec, state, where, now=now)
        key = match_key(body["indicatorType"], body["indicatorValue"])
        if key in seen:
            raise ValueError("%s: %s is already given as indicators[%d]; each indicator may appear once."
                             % (where, describe(body), seen[key]))
        seen[key] = index
        bodies.append(body)
        warnings.extend(warn)
    return bodies, warnings


# -- comparison -------------------------------------------------------------------------------------
def _norm(field, value):
    if field == "rbacGroupNames":
        if isinstance(value, str):
            value = [g.strip() for g in value.split(",")]
        return sorted(g for g in (value or []) if g)
    if field == "generateAlert":
        return bool(value)
    if field == "expirationTime":
        if value in (None, ""):
            return None
        try:
            return odata.parse_time(value, "expirationTime", relative=False)
        except ValueError:
            return value
    if field in ("title", "description", "recommendedActions", "educateUrl"):
        return value or ""
    return value


def differences(body, existing):
    """The compared fields whose desired value (given in ``body``) differs from ``existing``.

    A field not given is left as it is, so it is not compared. A field the API does not return counts
    as unset (``generateAlert`` false, strings empty).
    """
    changed = []
    for field in COMPARED:
        if field not in body:
            continue
        if _norm(field, body[field]) != _norm(field, existing.get(field)):
            changed.append(field)
    return changed


def view(entity, fields):
    """The given fields of an entity (for diffs)."""
    if not entity:
        return {}
    return dict((f, entity.get(f)) for f in fields if f in entity or f in ("indicatorValue", "indicatorType"))


def merged(existing, body):
    """What an indicator looks like after ``body`` is written over ``existing`` (no re-read)."""
    result = dict(existing or {})
    for k, v in body.items():
        if k == "application" and existing:
            continue  # honoured only on create
        if k in ("indicatorValue", "indicatorType") and existing:
            continue
        result[k] = v
    return result


# -- reading ------------------------------------------------------------------------------------------
def value_variants(indicator_type, value):
    """Spellings an existing indicator may have (the API compares strings case-sensitively in $filter): as given,
    normalized, in upper and lower case, and an IPv6 address also compressed and with every group four digits."""
    if indicator_type == "Url":
        return [value]
    forms = [value, normalize(indicator_type, value)]
    if indicator_type == "IpAddress":
        try:
            addr = ipaddress.ip_address(forms[1])
            forms += [addr.compressed, addr.exploded]
        except ValueError:
            pass
    out = []
    for form in forms:
        for v in (form, form.lower(), form.upper()):
            if v not in out:
                out.append(v)
    return out


def value_filter(bodies):
    """An OData $filter matching any of the given indicators by value (with case variants)."""
    return odata.any_of("indicatorValue", odata.unique(
        v for body in bodies for v in value_variants(body["indicatorType"], body["indicatorValue"])))


def index(existing):
    """Existing indicators by match key (the first one wins if the API holds duplicates)."""
    out = {}
    for entity in existing:
        key = match_key(entity.get("indicatorType"), entity.get("indicatorValue"))
        out.setdefault(key, entity)
    return out


# -- planning ---------------------------------------------------------------------------------------------
class Plan:
    """What a sync does: creates, updates and deletes (each an item dict), and the unchanged ones."""

    def __init__(self):
        self.items = []  # every item, in the order of the desired list, then purged ones

    def add(self, result, body, existing=None, changes=None, purged=False):
        item = {"result": result, "body": body, "existing": existing, "changes": changes or []}
        if purged:
            item["purged"] = True
        self.items.append(item)
        return item

    def of(self, *results):
        return [i for i in self.items if i["result"] in results]

    @property
    def creates(self):
        return self.of("created")

    @property
    def updates(self):
        return self.of("updated")

    @property
    def deletes(self):
        return self.of("deleted")

    def counts(self):
        counts = dict(created=0, updated=0, deleted=0, unchanged=0, failed=0)
        for item in self.items:
            if item["result"] in counts:
                counts[item["result"]] += 1
        return counts


def plan(bodies, existing, state, purge=False, owner=None):
    """Compare desired ``bodies`` with ``existing`` entities and decide what to write.

    ``purge``: also delete existing indicators whose ``createdBy`` equals ``owner`` (case-insensitive)
    and that are not in ``bodies``.
    """
    by_key = index(existing)
    result = Plan()
    wanted = set()
    for body in bodies:
        key = match_key(body["indicatorType"], body["indicatorValue"])
        wanted.add(key)
        current = by_key.get(key)
        if state == "absent":
            result.add("deleted" if current else "unchanged", body, current)
        elif current is None:
            result.add("created", body)
        else:
            changes = differences(body, current)
            result.add("updated" if changes else "unchanged", body, current, changes)
    if purge and state == "present":
        owner = (owner or "").lower()
        for key, current in by_key.items():
            if key in wanted or (current.get("createdBy") or "").lower() != owner:
                continue
            body = {"indicatorValue": current.get("indicatorValue"), "indicatorType": current.get("indicatorType")}
            result.add("deleted", body, current, purged=True)
    return result


def limit_error(visible_total, plan_, limit=TENANT_LIMIT):
    """A message if the sync would leave more than ``limit`` active indicators, else None."""
    after = visible_total - len(plan_.deletes) + len(plan_.creates)
    if after > limit:
        return ("This sync would leave %d active indicators (%d now, %d created, %d deleted), above Defender's limit "
                "of %d per tenant, which cannot be raised. Nothing was written." % (
                    after, visible_total, len(plan_.creates), len(plan_.deletes), limit))
    return None


# -- writes: each reconciled when its answer is lost (the client reads back, then sends once more or reports) -------
def find_existing(client, bodies, path="/api/indicators"):
    """Existing indicators that may match ``bodies``: one call filtered on their values while the filter stays short
    (MAX_FILTER_LENGTH), else every visible indicator. Returns (entities, whether that is every visible one)."""
    if bodies:
        odata_filter = value_filter(bodies)
        if len(odata_filter) <= MAX_FILTER_LENGTH:
            return list(client.list(path, odata_filter=odata_filter, page_size=PAGE_SIZE)), False
    return list(client.list(path, page_size=PAGE_SIZE)), True


def written(body, entity):
    """Whether ``entity`` is the indicator ``body`` asks for: same type and value, no compared field differing."""
    return bool(entity) and match_key(entity.get("indicatorType"), entity.get("indicatorValue")) == match_key(
        body["indicatorType"], body["indicatorValue"]) and not differences(body, entity)


def submit(client, body, path="/api/indicators"):
    """``POST /api/indicators`` (https://learn.microsoft.com/en-us/defender-endpoint/api/post-ti-indicator, an upsert
    keyed by type and value); the API's answer. Reading back: the indicator of that type and value holds the
    fields sent."""

    def reconcile():
        found = index(find_existing(client, [body], path)[0]).get(match_key(body["indicatorType"],
                                                                            body["indicatorValue"]))
        return found if written(body, found) else None

    return client.post(path, json=body, reconcile=reconcile)


def import_batch(client, bodies, path="/api/indicators"):
    """``POST /api/indicators/import`` of at most BATCH_SIZE bodies
    (https://learn.microsoft.com/en-us/defender-endpoint/api/import-ti-indicators); the API's answer (``value``: one
    result per item). Reading back: every indicator holds the fields sent; the answer is then built from them, as
    the API gives it (``id``, ``indicator``, ``isFailed``, ``failureReason``). Any missing: sent once more, an upsert
    that creates no second copy."""

    def reconcile():
        found = index(find_existing(client, bodies, path)[0])
        results = []
        for body in bodies:
            entity = found.get(match_key(body["indicatorType"], body["indicatorValue"]))
            if not written(body, entity):
                return None
            results.append({"id": entity.get("id"), "indicator": body["indicatorValue"], "isFailed": False,
                            "failureReason": None})
        return {"value": results}

    return client.post(path + "/import", json={"Indicators": list(bodies)}, reconcile=reconcile)


def delete_one(client, indicator, path="/api/indicators"):
    """``DELETE /api/indicators/{id}`` (https://learn.microsoft.com/en-us/defender-endpoint/api/delete-ti-indicator-by-id);
    an indicator already gone (404: a repeated DELETE whose first try took effect) counts as deleted. Reading back:
    no indicator of that value has the id any more."""
    ident = odata.answer_id(indicator, "indicator")

    def reconcile():
        entities = find_existing(client, [indicator], path)[0]
        return True if all(str(e.get("id")) != ident for e in entities) else None

    try:
        client.delete("%s/%s" % (path, odata.path_segment(ident)), reconcile=reconcile)
    except MDEError as e:
        if e.status != 404:
            raise


def batch_delete(client, ids, path="/api/indicators"):
    """Delete indicator ``ids`` with BatchDelete
    (https://learn.microsoft.com/en-us/defender-endpoint/api/batch-delete-ti-indicators), 500 per call.

    Reading back after a lost answer: none of the chunk's ids is listed any more. The API answers 404 when any id is
    missing (another client deleted it meanwhile): the indicators are then read again and only the ids still there
    deleted. Returns the number of calls made.
    """
    calls = 0

    def remaining(chunk):
        still = set(str(i.get("id")) for i in client.list(path, page_size=PAGE_SIZE))
        return [i for i in chunk if i in still]

    for chunk in odata.chunks(ids, BATCH_SIZE):
        calls += 1

        def reconcile(chunk=chunk):
            return None if remaining(chunk) else True

        try:
            client.post(path + "/BatchDelete", json={"IndicatorIds": chunk}, reconcile=reconcile)
        except MDEError as e:
            if e.status != 404:
                raise
            rest = remaining(chunk)
            if rest:
                calls += 1
                client.post(path + "/BatchDelete", json={"IndicatorIds": rest},
                            reconcile=lambda rest=rest: None if remaining(rest) else True)
    return calls


def pair_results(chunk, response):
    """Pair an import call's per-item results with the bodies sent.

    Returns a list of (body, result_dict); the result holds ``id``, ``isFailed`` and ``failureReason``.
    Results are matched by position, checked against their ``indicator`` value; by value otherwise.
    """
    results = list((response or {}).get("value") or [])
    pairs = []
    positional = len(results) == len(chunk) and all(
        (r.get("indicator") or "").lower() == (b["indicatorValue"] or "").lower() for r, b in zip(results, chunk))
    if positional:
        return list(zip(chunk, results))
    by_value = {}
    for r in results:
        by_value.setdefault((r.get("indicator") or "").lower(), []).append(r)
    for body in chunk:
        found = by_value.get(body["indicatorValue"].lower())
        if found:
            pairs.append((body, found.pop(0)))
        else:
            pairs.append((body, {"id": None, "isFailed": True,
                                 "failureReason": "the import response has no result for this indicator"}))
    return pairs
