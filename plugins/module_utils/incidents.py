# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incidents in Microsoft Graph security: enums, valid classification/determination pairs, filters, update planning,
reconciled writes and comments. Plain Python (no Ansible import), shared by mde_incident_info, mde_incident and the
mde_incidents event source; requests go through the shared client's Graph side (``client.graph``).

The incident resource and its enums: https://learn.microsoft.com/en-us/graph/api/resources/security-incident;
listing and filters: https://learn.microsoft.com/en-us/graph/api/security-list-incidents; updates:
https://learn.microsoft.com/en-us/graph/api/security-incident-update; comments:
https://learn.microsoft.com/en-us/graph/api/security-incident-post-comments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils import odata

PATH = "/v1.0/security/incidents"
# The page size the list endpoint allows at most ($top).
PAGE_SIZE = 50

STATUSES = ["active", "resolved", "inProgress", "redirected", "awaitingAction"]
# redirected is set by Defender when it merges incidents, awaitingAction by its automation: neither can be set.
SETTABLE_STATUSES = ["active", "inProgress", "resolved"]
SEVERITIES = ["informational", "low", "medium", "high"]
CLASSIFICATIONS = ["unknown", "falsePositive", "truePositive", "informationalExpectedActivity"]
# Which determination goes with which classification, as the incident resource page lists them (apt and
# securityPersonnel are deprecated and not offered).
DETERMINATIONS_BY_CLASSIFICATION = {
    "truePositive": ["multiStagedAttack", "maliciousUserActivity", "compromisedAccount", "malware", "phishing",
                     "unwantedSoftware", "other"],
    "informationalExpectedActivity": ["securityTesting", "lineOfBusinessApplication", "confirmedUserActivity",
                                      "other"],
    "falsePositive": ["notMalicious", "notEnoughDataToValidate", "other"],
    "unknown": ["unknown"],
}
DETERMINATIONS = []
for _values in DETERMINATIONS_BY_CLASSIFICATION.values():
    for _value in _values:
        if _value not in DETERMINATIONS:
            DETERMINATIONS.append(_value)

# Module option -> incident property, for the fields mde_incident sets by value.
UPDATE_FIELDS = (("status", "status"), ("assigned_to", "assignedTo"), ("classification", "classification"),
                 ("determination", "determination"), ("resolving_comment", "resolvingComment"))
# mde_incident_info's filters: option -> (property, kind); every property is one the list page says $filter supports.
FILTERS = (
    ("status", "status", "string"),
    ("severity", "severity", "string"),
    ("assigned_to", "assignedTo", "string"),
    ("classification", "classification", "string"),
    ("determination", "determination", "string"),
    ("created_after", "createdDateTime", "since"),
    ("updated_after", "lastUpdateDateTime", "since"),
)
_ID = re.compile(r"^[0-9]{1,20}$")
_UPN = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


def check_incident_id(value, option="incident_id"):
    """An incident id: Defender's incidents have numeric ids (``2972395``). ValueError naming ``option`` otherwise."""
    text = str(value).strip() if value is not None else ""
    if not _ID.match(text):
        raise ValueError("%s must be an incident id, a number such as 2972395, got %s" % (option, odata.shown(value)))
    return text


def combination_error(classification, determination):
    """A sentence saying why the pair is invalid, or None (either may be None)."""
    if not classification or not determination:
        return None
    allowed = DETERMINATIONS_BY_CLASSIFICATION.get(classification)
    if allowed is None or determination in allowed:
        return None
    return "determination %s does not go with classification %s; with %s it must be one of %s" % (
        determination, classification, classification, ", ".join(allowed))


def validate_update(assigned_to=None, classification=None, determination=None, custom_tags=None, resolving_comment=None,
                    comment=None):
    """Checks of an update before any call: the API's rules mde_incident's argument spec cannot say (it has the
    choices, determination's need of classification and that something is to be updated). Raises ValueError naming
    the option."""
    error = combination_error(classification, determination)
    if error:
        raise ValueError(error)
    if assigned_to is not None and assigned_to != "" and not _UPN.match(assigned_to):
        raise ValueError("assigned_to must be the owner's user principal name or e-mail address, such as "
                         "secop2@contoso.com (or an empty string to unassign), got %r" % assigned_to)
    for tag in custom_tags or []:
        if not isinstance(tag, str) or not tag.strip() or re.search(r"[\x00-\x1f\x7f]", tag):
            raise ValueError("custom_tags must hold non-empty tags without control characters, got %r" % (tag,))
    for option, value in (("comment", comment), ("resolving_comment", resolving_comment)):
        if value is not None and not value.strip():
            raise ValueError("%s must not be empty" % option)


def desired_fields(status=None, assigned_to=None, classification=None, determination=None, resolving_comment=None):
    values = dict(status=status, assigned_to=assigned_to, classification=classification, determination=determination,
                  resolving_comment=resolving_comment)
    return dict((field, values[option]) for option, field in UPDATE_FIELDS if values[option] is not None)


def _same(field, current, wanted):
    if field == "assignedTo":
        return (current or "").lower() == (wanted or "").lower()
    return current == wanted


def plan_update(incident, desired, custom_tags=None, purge_custom_tags=False):
    """The properties (and values) to PATCH so that ``incident`` has ``desired``; tags are added to the current ones
    (case-sensitive, order kept), or replace them with ``purge_custom_tags``."""
    changes = dict((field, value) for field, value in desired.items()
                   if not _same(field, incident.get(field), value))
    if custom_tags is not None:
        current = list(incident.get("customTags") or [])
        given = list(odata.unique(custom_tags))
        if purge_custom_tags:
            if sorted(given) != sorted(current):
                changes["customTags"] = given
        elif [t for t in given if t not in current]:
            changes["customTags"] = current + [t for t in given if t not in current]
    if changes.get("assignedTo") == "":  # unassign: Graph takes null
        changes["assignedTo"] = None
    return changes


def resulting_combination_error(incident, changes):
    if "classification" not in changes and "determination" not in changes:
        return None
    return combination_error(changes.get("classification", incident.get("classification")),
                             changes.get("determination", incident.get("determination")))


def incident_filter(filters, odata_filter=None):
    """The server-side ``$filter`` for mde_incident_info's filters (option -> value or list). ValueError on bad ones."""
    parts = []
    for option, field, kind in FILTERS:
        values = [v for v in odata.as_list((filters or {}).get(option)) if v is not None and v != ""]
        if not values:
            continue
        if kind == "string":
            parts.append(odata.any_of(field, values))
        else:
            parts.append("%s ge %s" % (field, odata.format_time(odata.parse_time(values[0], option))))
    if odata_filter:
        parts.append("(%s)" % odata_filter)
    return odata.and_all(*parts)


# -- reads -----------------------------------------------------------------------------------------------------
def get(client, incident_id, alerts=False):
    """``GET /security/incidents/{id}`` (``$expand=alerts`` with ``alerts``)."""
    params = {"$expand": "alerts"} if alerts else None
    return odata.entity(client.graph.get("%s/%s" % (PATH, odata.path_segment(incident_id)), params=params))


def list_incidents(client, odata_filter=None, alerts=False, limit=None):
    """Every incident matching ``odata_filter``, all pages (``$top``/``$skip``, ``@odata.nextLink`` onto Graph only)."""
    params = {"$expand": "alerts"} if alerts else None
    return list(client.graph.list(PATH, odata_filter=odata_filter, params=params, limit=limit, page_size=PAGE_SIZE))


def device_ids(incident):
    """The Defender device ids of an incident's alerts (``$expand=alerts``): their deviceEvidence's ``mdeDeviceId``."""
    found = []
    for alert in incident.get("alerts") or []:
        for evidence in (alert or {}).get("evidence") or []:
            if isinstance(evidence, dict) and str(evidence.get("@odata.type", "")).endswith("deviceEvidence"):
                ident = evidence.get("mdeDeviceId")
                if ident and ident not in found:
                    found.append(ident)
    return found


# -- writes (each reconciled when its answer is lost: the client reads back, then sends once more or reports) --------
def comment_count(incident, comment):
    """How many of the incident's ``comments`` (``[{comment, createdByDisplayName, createdDateTime}]``) have exactly
    this text."""
    if not comment:
        return 0
    return sum(1 for c in (incident or {}).get("comments") or []
               if isinstance(c, dict) and c.get("comment") == comment)


def update(client, incident, changes):
    """``PATCH /security/incidents/{id}`` with ``changes``; returns the updated incident."""
    path = "%s/%s" % (PATH, odata.answer_id(incident, "incident"))

    def reconcile():
        fresh = odata.entity(client.graph.get(path))
        left = dict((k, v) for k, v in changes.items() if k != "customTags" and not _same(k, fresh.get(k), v))
        if left or ("customTags" in changes and list(fresh.get("customTags") or []) != changes["customTags"]):
            return None
        return fresh

    return odata.entity(client.graph.patch(path, json=changes, reconcile=reconcile))


def add_comment(client, incident, comment):
    """``POST /security/incidents/{id}/comments``; returns the incident's comments as the API answers them. Read back
    after a lost answer: the comment there once more than before, so it is never added twice."""
    path = "%s/%s" % (PATH, odata.answer_id(incident, "incident"))
    before = comment_count(incident, comment)

    def reconcile():
        fresh = odata.entity(client.graph.get(path))
        return {"value": fresh.get("comments")} if comment_count(fresh, comment) > before else None

    body = {"@odata.type": "microsoft.graph.security.alertComment", "comment": comment}
    answer = client.graph.post(path + "/comments", json=body, reconcile=reconcile) or {}
    return answer.get("value") or []
