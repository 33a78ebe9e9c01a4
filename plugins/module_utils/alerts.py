# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alerts: enum tables, the valid classification/determination pairs, filters and update planning.

Plain Python (no Ansible import), shared by mde_alert_info and mde_alert. The Alert entity and its enums:
https://learn.microsoft.com/en-us/defender-endpoint/api/alerts; its filters:
https://learn.microsoft.com/en-us/defender-endpoint/api/get-alerts; updates:
https://learn.microsoft.com/en-us/defender-endpoint/api/update-alert and
https://learn.microsoft.com/en-us/defender-endpoint/api/batch-update-alerts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils import odata

# Values the update endpoints accept for status (the entity also knows "Unknown", which cannot be set).
STATUSES = ["New", "InProgress", "Resolved"]
SEVERITIES = ["UnSpecified", "Informational", "Low", "Medium", "High"]
CLASSIFICATIONS = ["TruePositive", "InformationalExpectedActivity", "FalsePositive"]

# Which determination goes with which classification, spelled as the Alert entity page
# (https://learn.microsoft.com/en-us/defender-endpoint/api/alerts) and the batch update page
# (https://learn.microsoft.com/en-us/defender-endpoint/api/batch-update-alerts) spell them. "Apt" and
# "SecurityPersonnel" were removed in 2022.
DETERMINATIONS_BY_CLASSIFICATION = {
    "TruePositive": ["MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing",
                     "UnwantedSoftware", "Other"],
    "InformationalExpectedActivity": ["SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "Other"],
    "FalsePositive": ["Clean", "InsufficientData", "Other"],
}
# The update page (https://learn.microsoft.com/en-us/defender-endpoint/api/update-alert) spells two of them
# differently; both spellings are accepted and sent as the entity page spells them.
DETERMINATION_ALIASES = {"ConfirmedActivity": "ConfirmedUserActivity", "NotMalicious": "Clean"}

DETERMINATIONS = []
for _values in DETERMINATIONS_BY_CLASSIFICATION.values():
    for _value in _values:
        if _value not in DETERMINATIONS:
            DETERMINATIONS.append(_value)
DETERMINATION_CHOICES = DETERMINATIONS + sorted(DETERMINATION_ALIASES)

# Module option -> API property for the fields an update can set (camelCase, as PATCH and batchUpdate expect).
UPDATE_FIELDS = (("status", "status"), ("assigned_to", "assignedTo"), ("classification", "classification"),
                 ("determination", "determination"))

# Filters of mde_alert_info: option -> (API field, kind). Every field is one the alerts endpoint documents
# as filterable (https://learn.microsoft.com/en-us/defender-endpoint/api/get-alerts). machineId is not among them:
# machine_id is served by /api/machines/{id}/alerts.
ALERT_FILTERS = (
    ("status", "status", "string"),
    ("severity", "severity", "string"),
    ("category", "category", "string"),
    ("detection_source", "detectionSource", "string"),
    ("assigned_to", "assignedTo", "string"),
    ("incident_id", "incidentId", "number"),
    ("created_after", "alertCreationTime", "since"),
    ("updated_after", "lastUpdateTime", "since"),
)
ALERT_ENUMS = {"status": STATUSES, "severity": SEVERITIES}

# Ids per "id eq 'a' or id eq 'b' ..." filter when reading many alerts by id: about 3 KB of URL each.
ID_CHUNK = 50
# alertIds per batchUpdate call. The API documents no maximum; 500 is the limit of its other batch endpoints.
BATCH_CHUNK = 500

_UPN = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


def canonical_determination(value):
    """The Alert entity's spelling of a determination (None stays None)."""
    if value is None:
        return None
    return DETERMINATION_ALIASES.get(value, value)


def combination_error(classification, determination):
    """A sentence saying why the pair is invalid, or None when it is valid (either may be None)."""
    if not classification or not determination:
        return None
    determination = canonical_determination(determination)
    allowed = DETERMINATIONS_BY_CLASSIFICATION.get(classification)
    if allowed is None or determination in allowed:
        return None
    return "determination %s does not go with classification %s; with %s it must be one of %s" % (
        determination, classification, classification, ", ".join(allowed))


def check_alert_id(value, option="alert_id"):
    """An alert id, stripped, safe as one URL path segment; ValueError naming ``option`` otherwise.

    Microsoft documents alert ids only by example (``da637472900382838869_1364969609``, older ones without ``da``:
    https://learn.microsoft.com/en-us/defender-endpoint/api/alerts), and alerts from other Defender products use other
    prefixes, so only what cannot be an id in a URL path is refused: blanks, control characters, ``/ \\ ? # %``
    and ``.``/``..``.
    """
    return odata.check_id(value, option)


def check_alert_ids(values, option="alert_ids"):
    """``check_alert_id`` for every item; one error naming the first few bad items and their count."""
    if values is not None and not values:
        raise ValueError("%s must hold at least one alert id" % option)
    return odata.check_ids(values, option)


def validate_update(assigned_to=None, classification=None, determination=None, comment=None):
    """Check an update request before any API call: the API's rules mde_alert's argument spec cannot say (it has the
    choices, determination's need of classification and that something is to be updated; check_alert_ids the ids).
    Raises ValueError with a message naming the option."""
    error = combination_error(classification, determination)
    if error:
        raise ValueError(error)
    if assigned_to is not None and not _UPN.match(assigned_to):
        raise ValueError("assigned_to must be the owner's user principal name or e-mail address, such as "
                         "secop2@contoso.com, got %r" % assigned_to)
    if comment is not None and not comment.strip():
        raise ValueError("comment must not be empty")


def desired_fields(status=None, assigned_to=None, classification=None, determination=None):
    """The API properties an update asks for (camelCase), determination in the Alert entity's spelling."""
    values = dict(status=status, assigned_to=assigned_to, classification=classification,
                  determination=canonical_determination(determination))
    return dict((field, values[option]) for option, field in UPDATE_FIELDS if values[option] is not None)


def _same(field, current, wanted):
    if field == "assignedTo":
        return (current or "").lower() == (wanted or "").lower()
    if field == "determination":
        return canonical_determination(current) == wanted
    return current == wanted


def plan_update(alert, desired):
    """The subset of ``desired`` (API property -> value) that differs from ``alert`` (an Alert entity)."""
    return dict((field, value) for field, value in desired.items() if not _same(field, alert.get(field), value))


def resulting_combination_error(alert, changes):
    """Why the alert would end with an invalid classification/determination pair after ``changes``, or None."""
    if "classification" not in changes and "determination" not in changes:
        return None
    classification = changes.get("classification", alert.get("classification"))
    determination = changes.get("determination", alert.get("determination"))
    return combination_error(classification, determination)


def alert_filter(filters, odata_filter=None):
    """The server-side ``$filter`` for mde_alert_info's filters (a dict of option -> value or list).

    Raises ValueError naming the option for a bad value.
    """
    parts = []
    filters = filters or {}
    for option, field, kind in ALERT_FILTERS:
        values = [v for v in odata.as_list(filters.get(option)) if v is not None and v != ""]
        if not values:
            continue
        if option in ALERT_ENUMS:
            for v in values:
                if v not in ALERT_ENUMS[option]:
                    raise ValueError("%s: %r is not one of %s" % (option, v, ", ".join(ALERT_ENUMS[option])))
        if kind == "string":
            parts.append(odata.any_of(field, values))
        elif kind == "number":
            numbers = []
            for v in values:
                try:
                    numbers.append(int(v))
                except (TypeError, ValueError):
                    raise ValueError("%s: %r is not a number" % (option, v))
            terms = ["%s eq %d" % (field, n) for n in numbers]
            parts.append(terms[0] if len(terms) == 1 else "(%s)" % " or ".join(terms))
        elif kind == "since":
            parts.append("%s ge %s" % (field, odata.format_time(odata.parse_time(values[0], option))))
    if odata_filter:
        parts.append("(%s)" % odata_filter)
    return odata.and_all(*parts)


def read_by_ids(client, ids, expand=False, chunk=ID_CHUNK):
    """Alert entities by id, ``ID_CHUNK`` ids per ``GET /api/alerts?$filter=id eq .. or ..`` call.

    Returns a dict of lower-cased id -> entity; ids the API does not know are absent.
    """
    return odata.read_by_ids(client, "/api/alerts", ids, chunk=chunk, params={"$expand": "evidence"} if expand else None)


def batch_groups(plans):
    """Group alert ids by the exact set of changes they need: [(changes, [ids])], in first-seen order.

    ``plans`` is a list of (alert id, changes dict). batchUpdate applies one body to every id it lists,
    so each group becomes its own call(s), each sending only the fields that differ for those alerts.
    """
    groups = []
    index = {}
    for ident, changes in plans:
        # ``changes`` may also be a (changes, comment) pair: the alerts that need the comment go in their own group.
        if isinstance(changes, tuple):
            key = (tuple(sorted(changes[0].items())), changes[1])
            value = (dict(changes[0]), changes[1])
        else:
            key = tuple(sorted(changes.items()))
            value = dict(changes)
        if key not in index:
            index[key] = len(groups)
            groups.append((value, []))
        groups[index[key]][1].append(ident)
    return groups


# -- writes: each reconciled when its answer is lost (the client reads back, then sends once more or reports) -------
def comment_count(alert, comment):
    """How many of the alert's ``comments`` (``[{comment, createdBy, createdTime}]``,
    https://learn.microsoft.com/en-us/defender-endpoint/api/alerts) have exactly this text."""
    if not comment:
        return 0
    return sum(1 for c in (alert or {}).get("comments") or [] if isinstance(c, dict) and c.get("comment") == comment)


def applied(alert, changes, comment=None, comments_before=0):
    """Whether ``alert`` shows the update: every changed field as asked, and ``comment`` (if any) once more than the
    ``comments_before`` times it held it before the write."""
    return bool(alert) and not plan_update(alert, changes) and (
        not comment or comment_count(alert, comment) > comments_before)


def update(client, alert, changes, comment=None):
    """``PATCH /api/alerts/{id}`` (https://learn.microsoft.com/en-us/defender-endpoint/api/update-alert) with
    ``changes`` and ``comment``; ``alert`` is the entity read before. Returns the updated alert. Reading back: the
    fields are as asked and the comment is there one more time than before, so it is never added twice."""
    path = "/api/alerts/%s" % odata.path_segment(odata.answer_id(alert, "alert"))
    body = dict(changes)
    if comment:
        body["comment"] = comment
    before = comment_count(alert, comment)

    def reconcile():
        fresh = odata.entity(client.get(path))
        return fresh if applied(fresh, changes, comment, before) else None

    return odata.entity(client.patch(path, json=body, reconcile=reconcile))


def batch_update(client, alerts, changes, comment=None):
    """``POST /api/alerts/batchUpdate`` (https://learn.microsoft.com/en-us/defender-endpoint/api/batch-update-alerts)
    of ``changes`` and ``comment`` on ``alerts`` (the entities read before; at most BATCH_CHUNK). Reading back after a
    lost answer: each alert's fields as asked and the comment there once more than before. When only some alerts show
    it, the others are sent on their own call, so no alert gets the comment twice. Returns the number of calls."""
    before = dict((a["id"].lower(), comment_count(a, comment)) for a in alerts)
    ids = [a["id"] for a in alerts]
    body = {"alertIds": ids}
    body.update(changes)
    if comment:
        body["comment"] = comment
    left = []

    def reconcile():
        fresh = read_by_ids(client, ids)
        missing = [i for i in ids if not applied(fresh.get(i.lower()), changes, comment, before[i.lower()])]
        if len(missing) == len(ids):
            return None
        left[:] = [a for a in alerts if a["id"] in missing]
        return True

    client.post("/api/alerts/batchUpdate", json=body, reconcile=reconcile)
    if left:
        return 1 + batch_update(client, list(left), changes, comment)
    return 1
