# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Custom detection rules in Microsoft Graph security: rule ids, the snake_case <-> camelCase converter, frequencies,
the request body from module options (and back, for the export), comparison and update planning, the columns a
rule's query must return, and the reconciled reads and writes. Plain Python (no Ansible import), shared by
mde_detection_rule and mde_detection_rule_info; requests go through the shared client's Graph side.

The resource, as reworked in 2026 (client-supplied ``id``, ``status``, ``schedule.frequency``, ``automatedActions``,
``alertTemplate.entityMappings``/``tactics``, ``organizationalScope.deviceGroups``):
https://learn.microsoft.com/en-us/graph/api/resources/security-detectionrule; its parts:
https://learn.microsoft.com/en-us/graph/api/resources/security-alerttemplate,
https://learn.microsoft.com/en-us/graph/api/resources/security-ruleschedule,
https://learn.microsoft.com/en-us/graph/api/resources/security-detectionaction,
https://learn.microsoft.com/en-us/graph/api/resources/security-automatedactionset,
https://learn.microsoft.com/en-us/graph/api/resources/security-entitymappingconfiguration;
the methods: https://learn.microsoft.com/en-us/graph/api/security-rulesroot-list-detectionrules,
https://learn.microsoft.com/en-us/graph/api/security-rulesroot-post-detectionrules,
https://learn.microsoft.com/en-us/graph/api/security-detectionrule-update,
https://learn.microsoft.com/en-us/graph/api/security-rulesroot-delete-detectionrules.
What a rule's query must return: https://learn.microsoft.com/en-us/defender-xdr/custom-detection-rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

VERSIONS = ("v1.0", "beta")
COLLECTION = "/%s/security/rules/detectionRules"
HUNTING_PATH = "/v1.0/security/runHuntingQuery"
# The list endpoint takes $top; the page size it allows at most is not documented (100 is what clients use).
PAGE_SIZE = 100

# Microsoft documents no shape for the client-supplied id; the collection accepts this one (the rule), which
# also covers the numbers the service assigned to rules made before the rework.
RULE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
RULE_ID_FORM = "1 to 128 letters, digits, '.', '_' or '-'"
STATUSES = ["enabled", "disabled"]
ALL_STATUSES = ["enabled", "disabled", "autoDisabled"]
SEVERITIES = ["informational", "low", "medium", "high"]
ISOLATION_TYPES = ["full", "selective"]

# entityMappingConfiguration: member -> the column properties of its elements (security-entitymappingconfiguration).
ENTITY_MAPPINGS = {
    "accounts": ("aadUserIdColumn", "dnsDomainColumn", "nameColumn", "ntDomainColumn", "sidColumn", "upnColumn",
                 "upnSuffixColumn"),
    "amazonResources": ("amazonResourceIdColumn",),
    "azureResources": ("resourceIdColumn",),
    "cloudApplications": ("appIdColumn", "nameColumn"),
    "dns": ("domainNameColumn", "hostIpAddressColumn", "serverIpColumn"),
    "files": ("nameColumn", "sha1Column", "sha256Column"),
    "googleCloudResources": ("fullResourceNameColumn",),
    "hosts": ("deviceIdColumn", "dnsDomainColumn", "nameColumn", "netBiosNameColumn", "ntDomainColumn"),
    "ips": ("addressColumn", "scopeColumn"),
    "mailboxes": ("primaryAddressColumn",),
    "mailClusters": ("queryColumn", "sourceColumn"),
    "mailMessages": ("networkMessageIdColumn", "recipientColumn", "senderColumn", "subjectColumn"),
    "oAuthApplications": ("oAuthAppIdColumn",),
    "processes": ("sha1Column", "sha256Column"),
    "registryValues": ("keyColumn", "valueNameColumn"),
    "securityGroups": ("distinguishedNameColumn", "objectIdColumn", "sidColumn"),
    "urls": ("addressColumn",),
}
_EMAIL = ("networkMessageIdColumn", "recipientColumn")
# automatedActionSet: member -> the properties of its elements (security-automatedactionset); every *Column is a
# column of the query; isolationType and deviceGroupNames are not.
AUTOMATED_ACTIONS = {
    "isolateDevices": ("deviceIdColumn", "isolationType"),
    "collectInvestigationPackages": ("deviceIdColumn",),
    "initiateInvestigations": ("deviceIdColumn",),
    "restrictAppExecutions": ("deviceIdColumn",),
    "runAntivirusScans": ("deviceIdColumn",),
    "allowFiles": ("deviceGroupNames", "sha1Column", "sha256Column"),
    "blockFiles": ("deviceGroupNames", "sha1Column", "sha256Column"),
    "stopAndQuarantineFiles": ("deviceIdColumn", "sha1Column"),
    "markUsersAsCompromised": ("accountObjectIdColumn",),
    "disableUsers": ("accountSidColumn",),
    "forceUserPasswordResets": ("accountSidColumn",),
    "hardDeleteEmails": _EMAIL,
    "softDeleteEmails": _EMAIL,
    "moveEmailsToDeletedItems": _EMAIL,
    "moveEmailsToInbox": _EMAIL,
    "moveEmailsToJunk": _EMAIL,
}
# The module's option order, which is also the export's key order.
OPTION_ORDER = ("rule_id", "display_name", "description", "status", "frequency", "query", "alert",
                "automated_actions", "device_groups")
ALERT_ORDER = ("title", "description", "severity", "recommended_actions", "tactics", "custom_details",
               "entity_mappings")

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
SHORTHANDS = {"0": 0, "nrt": 0, "1h": 3600, "3h": 3 * 3600, "12h": 12 * 3600, "24h": 24 * 3600}
# Custom frequencies run from 5 minutes to 14 days (the Defender page's "Custom frequency"); 0 is near real time.
MIN_FREQUENCY, MAX_FREQUENCY = 5 * 60, 14 * 86400
DAY = 86400


# -- the converter -----------------------------------------------------------------------------------------------
def camel(name):
    """``device_id_column`` -> ``deviceIdColumn``, ``o_auth_applications`` -> ``oAuthApplications``."""
    head, _sep, rest = name.partition("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest.split("_") if part) if rest else head


def snake(name):
    """``deviceIdColumn`` -> ``device_id_column``, ``oAuthApplications`` -> ``o_auth_applications``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def camel_keys(value):
    """Every dictionary key in ``value`` (recursively) from snake_case to camelCase; values as they are."""
    if isinstance(value, dict):
        return dict((camel(k), camel_keys(v)) for k, v in value.items())
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def snake_keys(value):
    """The inverse of camel_keys()."""
    if isinstance(value, dict):
        return dict((snake(k), snake_keys(v)) for k, v in value.items())
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


# -- frequencies -------------------------------------------------------------------------------------------------
def frequency_seconds(value, option="frequency"):
    """A frequency in seconds: an ISO 8601 duration (``PT1H``, ``P1D``, ``PT24H``, ``PT0S``) or a shorthand (``0``,
    ``nrt``, ``1h``, ``3h``, ``12h``, ``24h``). ValueError naming ``option`` for anything else, or a frequency
    other than 0 outside 5 minutes to 14 days."""
    raw = str(value) if value is not None else ""
    text = raw.strip()
    if odata.CONTROL_RE.search(raw):
        raise ValueError("%s must not contain control characters, got %s" % (option, odata.shown(text)))
    if text.lower() in SHORTHANDS:
        return SHORTHANDS[text.lower()]
    match = _DURATION.match(text.upper())
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        raise ValueError("%s must be an ISO 8601 duration such as PT1H or P1D, or one of 0, nrt, 1h, 3h, 12h, 24h, "
                         "got %s" % (option, odata.shown(text)))
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total and not MIN_FREQUENCY <= total <= MAX_FREQUENCY:
        raise ValueError("%s must be 0 (near real time) or from 5 minutes to 14 days, got %s" % (option, text))
    return total


def format_frequency(seconds):
    """Seconds as the ISO 8601 duration sent to Graph: ``PT0S``, ``PT1H``, ``PT12H``, ``P1D``, ``P1DT6H``."""
    if not seconds:
        return "PT0S"
    days, rest = divmod(int(seconds), DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join("%d%s" % (n, unit) for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + ("%dD" % days if days else "") + ("T" + time if time else "")


def same_frequency(a, b):
    """Whether two frequencies are the same length of time (``24h``, ``P1D``, ``PT24H``); False if either is not one."""
    try:
        return frequency_seconds(a) == frequency_seconds(b)
    except ValueError:
        return False


# -- input checks (before any call) --------------------------------------------------------------------------------
def check_rule_id(value, option="rule_id"):
    text = odata.check_id(value, option, pattern=RULE_ID_RE, form=RULE_ID_FORM)
    if text in (".", ".."):
        raise ValueError("%s must be an id, not %r" % (option, text))
    return text


# Free texts that may span lines (a query, a description). Every other text is one line: no line break or tab. Other
# control characters are refused for every text option before this runs (context.check_text).
MULTILINE = ("query", "description", "alert.description", "alert.recommended_actions")
_LINE_BREAK = re.compile(u"[\r\n\t\u0085\u2028\u2029]")


def _text(value, option, required=False):
    if value is None:
        if required:
            raise ValueError("%s is required" % option)
        return
    if not isinstance(value, str):
        raise ValueError("%s must be a string, got %s" % (option, odata.shown(value)))
    if option not in MULTILINE and _LINE_BREAK.search(value):
        raise ValueError("%s must be one line, without line breaks or tabs, got %s" % (option, odata.shown(value)))
    if required and not value.strip():
        raise ValueError("%s must not be empty" % option)


def _column(value, option):
    if not isinstance(value, str) or not _COLUMN.match(value):
        raise ValueError("%s must be a query column name (letters, digits and '_'), got %s"
                         % (option, odata.shown(value)))


def _collection_set(given, table, option):
    """A snake_case {member: [ {property: value} ]} option checked against ``table`` (camelCase names); returns it
    in camelCase."""
    if not isinstance(given, dict):
        raise ValueError("%s must be a dictionary of lists, got %s" % (option, odata.shown(given)))
    out = {}
    for key, items in given.items():
        member = camel(str(key))
        if member not in table:
            raise ValueError("%s: unknown key %s; the keys are %s" % (
                option, odata.shown(key), ", ".join(snake(k) for k in sorted(table))))
        where = "%s.%s" % (option, key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ValueError("%s must be a list, got %s" % (where, odata.shown(items)))
        elements = []
        for item in items:
            if not isinstance(item, dict) or not item:
                raise ValueError("%s must hold dictionaries such as {%s: ...}, got %s" % (
                    where, snake(table[member][0]), odata.shown(item)))
            element = {}
            for name, value in item.items():
                prop = camel(str(name))
                if prop not in table[member]:
                    raise ValueError("%s: unknown key %s; the keys are %s" % (
                        where, odata.shown(name), ", ".join(snake(p) for p in table[member])))
                if prop == "isolationType":
                    if value not in ISOLATION_TYPES:
                        raise ValueError("%s.isolation_type must be one of %s, got %s" % (
                            where, ", ".join(ISOLATION_TYPES), odata.shown(value)))
                elif prop == "deviceGroupNames":
                    if not isinstance(value, list):
                        raise ValueError("%s.device_group_names must be a list, got %s" % (where, odata.shown(value)))
                    for group in value:
                        _text(group, "%s.device_group_names" % where, required=True)
                else:
                    _column(value, "%s.%s" % (where, name))
                element[prop] = value
            elements.append(element)
        out[member] = elements
    return out


def _tactics(given, option="alert.tactics"):
    if not isinstance(given, list):
        raise ValueError("%s must be a list, got %s" % (option, odata.shown(given)))
    out = []
    for item in given:
        if not isinstance(item, dict) or set(item) - {"tactic", "techniques"}:
            raise ValueError("%s must hold dictionaries with the keys tactic and techniques, got %s"
                             % (option, odata.shown(item)))
        _text(item.get("tactic"), option + ".tactic", required=True)
        techniques = []
        for tech in item.get("techniques") or []:
            if not isinstance(tech, dict) or set(tech) - {"technique", "sub_techniques"}:
                raise ValueError("%s.techniques must hold dictionaries with the keys technique and sub_techniques, "
                                 "got %s" % (option, odata.shown(tech)))
            _text(tech.get("technique"), option + ".techniques.technique", required=True)
            subs = tech.get("sub_techniques") or []
            if not isinstance(subs, list):
                raise ValueError("%s.techniques.sub_techniques must be a list, got %s" % (option, odata.shown(subs)))
            for sub in subs:
                _text(sub, option + ".techniques.sub_techniques", required=True)
            techniques.append({"technique": tech["technique"], "subTechniques": list(subs)})
        out.append({"tactic": item["tactic"], "techniques": techniques})
    return out


ALERT_KEYS = ("title", "description", "severity", "recommended_actions", "tactics", "custom_details",
              "entity_mappings")


def build(params):
    """The rule's properties from the module's options, in Graph's camelCase: only what the options give (a key left
    out is left as it is in the tenant). Every check that needs no call; ValueError naming the option."""
    rule_id = check_rule_id(params.get("rule_id"))
    body = {"id": rule_id}
    for option, prop in (("display_name", "displayName"), ("description", "description")):
        _text(params.get(option), option, required=option == "display_name" and params.get(option) is not None)
        if params.get(option) is not None:
            body[prop] = params[option]
    if params.get("status") is not None:
        if params["status"] not in STATUSES:
            raise ValueError("status must be one of %s, got %s" % (", ".join(STATUSES), odata.shown(params["status"])))
        body["status"] = params["status"]
    if params.get("query") is not None:
        _text(params["query"], "query", required=True)
        body["queryCondition"] = {"queryText": params["query"]}
    if params.get("frequency") is not None:
        body["schedule"] = {"frequency": format_frequency(frequency_seconds(params["frequency"]))}
    action = {}
    alert = params.get("alert")
    if alert is not None:
        if not isinstance(alert, dict):
            raise ValueError("alert must be a dictionary with at least title, got %s" % odata.shown(alert))
        unknown = [k for k in alert if k not in ALERT_KEYS]
        if unknown:
            raise ValueError("alert: unknown key %s; the keys are %s" % (odata.shown(unknown[0]), ", ".join(ALERT_KEYS)))
        template = {}
        for key in ("title", "description", "recommended_actions"):
            _text(alert.get(key), "alert.%s" % key, required=key == "title")
            if alert.get(key) is not None:
                template[camel(key)] = alert[key]
        if alert.get("severity") is not None:
            if alert["severity"] not in SEVERITIES:
                raise ValueError("alert.severity must be one of %s, got %s" % (
                    ", ".join(SEVERITIES), odata.shown(alert["severity"])))
            template["severity"] = alert["severity"]
        if alert.get("tactics") is not None:
            template["tactics"] = _tactics(alert["tactics"])
        if alert.get("custom_details") is not None:
            details = alert["custom_details"]
            if not isinstance(details, dict):
                raise ValueError("alert.custom_details must be a dictionary of detail name: column, got %s"
                                 % odata.shown(details))
            for name, column in details.items():
                _text(name, "alert.custom_details (a detail name)", required=True)
                _column(column, "alert.custom_details.%s" % name)
            template["customDetails"] = dict(details)  # its keys are the alert's detail names, sent as written
        if alert.get("entity_mappings") is not None:
            template["entityMappings"] = _collection_set(alert["entity_mappings"], ENTITY_MAPPINGS,
                                                         "alert.entity_mappings")
        action["alertTemplate"] = template
    if params.get("automated_actions") is not None:
        action["automatedActions"] = _collection_set(params["automated_actions"], AUTOMATED_ACTIONS,
                                                     "automated_actions")
    if params.get("device_groups") is not None:
        for group in params["device_groups"]:
            _text(group, "device_groups", required=True)
        action["organizationalScope"] = {"deviceGroups": list(params["device_groups"])}
    if action:
        body["detectionAction"] = action
    if "schedule" in body and frequency_seconds(body["schedule"]["frequency"]) == 0 and "queryCondition" in body:
        problem = nrt_problem(body["queryCondition"]["queryText"])
        if problem:
            raise ValueError("query: a near-real-time rule (frequency 0) %s" % problem)
    return body


def check_create(body):
    """What a new rule needs besides its id. ValueError naming the missing options."""
    template = body.get("detectionAction", {}).get("alertTemplate", {})
    missing = [option for option, present in (("display_name", "displayName" in body), ("query", "queryCondition" in body),
                                              ("frequency", "schedule" in body), ("alert.title", "title" in template))
               if not present]
    if missing:
        raise ValueError("rule %s does not exist yet: creating it needs %s" % (body["id"], ", ".join(missing)))


# -- the query -----------------------------------------------------------------------------------------------------
_TABLE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")
_NRT_FORBIDDEN = re.compile(r"\b(join|union|externaldata)\b", re.I)


def source_table(query):
    """The table a query starts from (its first word), or None."""
    lines = [line for line in (query or "").splitlines() if not line.strip().startswith("//")]
    match = _TABLE.match("\n".join(lines))
    return match.group(1) if match else None


def nrt_problem(query):
    """Why a query cannot run near real time (one table, no joins, unions or externaldata, no comment lines), or
    None. https://learn.microsoft.com/en-us/defender-xdr/custom-detection-rules (near real-time detections)."""
    if any(line.strip().startswith("//") for line in (query or "").splitlines()):
        return "must not contain comment lines"
    found = _NRT_FORBIDDEN.search(_without_strings(query or ""))
    if found:
        return "queries one table, without %s" % found.group(1).lower()
    return None


def _without_strings(query):
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", query)


def needed_columns(body, table=None):
    """The columns a rule's query must return, as (column or alternatives, why) pairs: the event's time and ids, and
    every column a mapping, an action or a custom detail names."""
    table = table or ""
    needed = [(("Timestamp", "TimeGenerated"), "every rule needs the event's time")]
    if table.startswith("Device"):
        needed += [(("DeviceId",), "a Device* table's events are identified by DeviceId and ReportId"),
                   (("ReportId",), "a Device* table's events are identified by DeviceId and ReportId")]
    elif table.startswith("Observation"):
        needed.append((("ObservationId",), "an Observation* table's events are identified by ObservationId"))
    elif table and not table.startswith("Alert"):
        needed.append((("ReportId",), "the events of Defender XDR tables are identified by ReportId"))
    action = body.get("detectionAction") or {}
    template = action.get("alertTemplate") or {}
    for what, sets in (("entity mapping", template.get("entityMappings")),
                       ("automated action", action.get("automatedActions"))):
        for member, items in sorted((sets or {}).items()):
            for item in items or []:
                for prop, value in sorted(item.items()):
                    if prop.endswith("Column") and isinstance(value, str):
                        needed.append(((value,), "the %s %s names it" % (what, snake(member))))
    for name, value in sorted((template.get("customDetails") or {}).items()):
        if isinstance(value, str):
            needed.append(((value,), "the custom detail %s names it" % name))
    return needed


def missing_columns(body, columns, table=None):
    """The needed columns (needed_columns()) the query's ``columns`` lack: a list of sentences, empty if none."""
    have = set(columns)
    out, seen = [], set()
    for names, why in needed_columns(body, table):
        if not have.intersection(names) and names not in seen:
            seen.add(names)
            out.append("%s (%s)" % (" or ".join(names), why))
    return out


def check_query(client, body):
    """Runs the rule's query once through runHuntingQuery (the last hour, no rows: ``| take 0``) and checks its
    columns. Raises ValueError (one sentence) when it does not parse or lacks a column; MDEError otherwise."""
    query = body["queryCondition"]["queryText"]
    try:
        answer = client.graph.post(HUNTING_PATH, json={"Query": query + "\n| take 0", "Timespan": "PT1H"},
                                   retry_safe=True, retry_timeouts=False) or {}
    except MDEError as e:
        if e.status == 400:
            raise ValueError("query: runHuntingQuery refused the query of rule %s: %s" % (
                body["id"], odata.shown(e.api_message or str(e), 300)))
        raise
    columns = [c.get("name") for c in answer.get("schema") or [] if isinstance(c, dict)]
    missing = missing_columns(body, columns, source_table(query))
    if missing:
        raise ValueError("query: the query of rule %s does not return %s" % (body["id"], "; ".join(missing)))
    return columns


# -- comparison and planning ----------------------------------------------------------------------------------------
def _collections(value, table):
    """An entityMappings/automatedActions object compared by its non-empty members."""
    out = {}
    for member, items in (value or {}).items():
        if member in table and items:
            out[member] = [dict((k, v) for k, v in item.items() if not k.startswith("@")) for item in items
                           if isinstance(item, dict)]
    return out


def _tactics_key(value):
    out = []
    for t in value or []:
        if isinstance(t, dict):
            out.append((t.get("tactic"), [(x.get("technique"), list(x.get("subTechniques") or []))
                                          for x in t.get("techniques") or [] if isinstance(x, dict)]))
    return out


def _same_status(wanted, current):
    # autoDisabled: the service stopped the rule; a file that says disabled is satisfied by it.
    return wanted == current or (wanted == "disabled" and current == "autoDisabled")


def plan(rule, body):
    """The PATCH body that gives ``rule`` (as read) what ``body`` (build()) declares, or {} when nothing differs.

    Members of automated actions and entity mappings that the options do not list are cleared (sent as ``[]``): the
    option is the whole set. Nested objects are sent with only what changes (Graph merges them)."""
    changes = {}
    for prop in ("displayName", "description"):
        if prop in body and body[prop] != rule.get(prop):
            changes[prop] = body[prop]
    if "status" in body and not _same_status(body["status"], rule.get("status")):
        changes["status"] = body["status"]
    if "queryCondition" in body and body["queryCondition"]["queryText"].strip() != str(
            (rule.get("queryCondition") or {}).get("queryText") or "").strip():
        changes["queryCondition"] = dict(body["queryCondition"])
    if "schedule" in body and not same_frequency(body["schedule"]["frequency"],
                                                 (rule.get("schedule") or {}).get("frequency")):
        changes["schedule"] = dict(body["schedule"])
    wanted = body.get("detectionAction") or {}
    current = rule.get("detectionAction") or {}
    action = {}
    if "alertTemplate" in wanted:
        template, now = wanted["alertTemplate"], current.get("alertTemplate") or {}
        diff = {}
        for prop in ("title", "description", "severity", "recommendedActions"):
            if prop in template and template[prop] != now.get(prop):
                diff[prop] = template[prop]
        if "tactics" in template and _tactics_key(template["tactics"]) != _tactics_key(now.get("tactics")):
            diff["tactics"] = template["tactics"]
        if "customDetails" in template and template["customDetails"] != (now.get("customDetails") or {}):
            diff["customDetails"] = template["customDetails"]
        if "entityMappings" in template:
            mappings = _set_changes(template["entityMappings"], now.get("entityMappings"), ENTITY_MAPPINGS)
            if mappings:
                diff["entityMappings"] = mappings
        if diff:
            action["alertTemplate"] = diff
    if "automatedActions" in wanted:
        actions = _set_changes(wanted["automatedActions"], current.get("automatedActions"), AUTOMATED_ACTIONS)
        if actions:
            action["automatedActions"] = actions
    if "organizationalScope" in wanted:
        groups = wanted["organizationalScope"]["deviceGroups"]
        if sorted(groups) != sorted((current.get("organizationalScope") or {}).get("deviceGroups") or []):
            action["organizationalScope"] = {"deviceGroups": groups}
    if action:
        changes["detectionAction"] = action
    return changes


def _set_changes(wanted, current, table):
    """The members of a collection set to send: those that differ, and those to clear (``[]``)."""
    have, want = _collections(current, table), _collections(wanted, table)
    out = {}
    for member in sorted(set(have) | set(want)):
        if have.get(member, []) != want.get(member, []):
            out[member] = want.get(member, [])
    return out


def merged(rule, changes):
    """``rule`` with a PATCH body applied as Graph applies one: objects merged, collections replaced (the rule as
    check mode expects it after the write)."""
    out = dict(rule)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "customDetails":
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def to_options(rule):
    """A rule as Graph returns it, as the module's options (the export's file format): stable key order, snake_case
    keys (custom detail names as they are), empty parts left out. ``autoDisabled`` is exported as ``disabled``."""
    out = {}
    out["rule_id"] = rule.get("id")
    out["display_name"] = rule.get("displayName")
    if rule.get("description"):
        out["description"] = rule["description"]
    status = rule.get("status")
    out["status"] = "disabled" if status == "autoDisabled" else status
    frequency = (rule.get("schedule") or {}).get("frequency")
    if frequency is not None:
        out["frequency"] = frequency
    out["query"] = (rule.get("queryCondition") or {}).get("queryText")
    action = rule.get("detectionAction") or {}
    template = action.get("alertTemplate") or {}
    alert = {}
    for key in ALERT_ORDER:
        value = template.get(camel(key))
        if value in (None, "", [], {}):
            continue
        if key == "custom_details":
            alert[key] = dict(value)
        elif key == "entity_mappings":
            value = snake_keys(_collections(value, ENTITY_MAPPINGS))
            if value:
                alert[key] = value
        else:
            alert[key] = snake_keys(value)
    if alert:
        out["alert"] = alert
    actions = snake_keys(_collections(action.get("automatedActions"), AUTOMATED_ACTIONS))
    if actions:
        out["automated_actions"] = actions
    groups = (action.get("organizationalScope") or {}).get("deviceGroups")
    if groups:
        out["device_groups"] = list(groups)
    return dict((k, out[k]) for k in OPTION_ORDER if k in out and out[k] is not None)


def file_name(rule_id):
    """A file-safe name for a rule's file: the id with anything but letters, digits, '.', '_' and '-' replaced."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(rule_id)).strip(".") or "rule"
    return name[:128] + ".yml"


# -- reads and writes ------------------------------------------------------------------------------------------------
def collection_path(version="v1.0"):
    if version not in VERSIONS:
        raise ValueError("graph_version must be one of %s, got %s" % (", ".join(VERSIONS), odata.shown(version)))
    return COLLECTION % version


def rule_path(rule_id, version="v1.0"):
    return "%s/%s" % (collection_path(version), odata.path_segment(check_rule_id(rule_id)))


def get(client, rule_id, version="v1.0"):
    """The rule, or None when there is no rule with that id (404)."""
    try:
        return odata.entity(client.graph.get(rule_path(rule_id, version)))
    except MDEError as e:
        if e.status == 404:
            return None
        raise


def list_rules(client, version="v1.0", odata_filter=None):
    """Every rule (all pages), as Graph returns them. Their ids are data here; answer_id() checks one where it enters
    a URL or a file name."""
    return list(client.graph.list(collection_path(version), odata_filter=odata_filter, page_size=PAGE_SIZE))


def answer_id(rule):
    """A rule id from an answer, checked before it enters a URL or a file name. MDEError when it has another shape."""
    value = rule.get("id") if isinstance(rule, dict) else None
    if isinstance(value, str) and RULE_ID_RE.match(value) and value not in (".", ".."):
        return value
    raise MDEError("Microsoft Graph answered with a detection rule whose id %s is not %s; it was not used." % (
        odata.shown(value), RULE_ID_FORM))


def _matches(rule, body):
    return rule is not None and not plan(rule, dict((k, v) for k, v in body.items() if k != "id"))


def create(client, body, version="v1.0"):
    """``POST .../detectionRules``; returns the rule. A lost answer, a 409 or a 400 is reconciled by reading the rule
    back: a create that took effect (the rule is there as sent) is not an error."""
    def reconcile():
        rule = get(client, body["id"], version)
        return rule if _matches(rule, body) else None

    try:
        return odata.entity(client.graph.post(collection_path(version), json=body, reconcile=reconcile))
    except MDEError as e:
        if e.status not in (400, 409):
            raise
        rule = reconcile()
        if rule is not None:
            return rule
        if e.status == 409:
            e.message = ("%s. Another rule already has the id %s or the display name %s (a rename that swaps two "
                         "names needs a third name in between)." % (str(e).rstrip("."), body["id"],
                                                                    odata.shown(body.get("displayName"))))
        raise


def update(client, rule, changes, version="v1.0"):
    """``PATCH .../detectionRules/{id}`` with ``changes``; returns the updated rule (Graph answers 200 with it)."""
    rule_id = answer_id(rule)

    def reconcile():
        fresh = get(client, rule_id, version)
        return fresh if fresh is not None and not plan(fresh, dict(changes, id=rule_id)) else None

    answer = client.graph.patch(rule_path(rule_id, version), json=changes, reconcile=reconcile)
    return odata.entity(answer) if answer else get(client, rule_id, version)


def delete(client, rule_id, version="v1.0"):
    """``DELETE .../detectionRules/{id}``; a rule already gone (404, also after a lost answer) is not an error."""
    def reconcile():
        return True if get(client, rule_id, version) is None else None

    try:
        client.graph.delete(rule_path(rule_id, version), reconcile=reconcile)
    except MDEError as e:
        if e.status != 404:
            raise
