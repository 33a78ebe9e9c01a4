"""Microsoft Graph custom detection rules (``/v1.0|beta/security/rules/detectionRules``) on the emulator.

As Microsoft documents them after the 2026 rework (client-supplied ``id``, ``status``, ``schedule.frequency``,
``detectionAction.alertTemplate.entityMappings``/``tactics``/``customDetails``, ``automatedActions``,
``organizationalScope.deviceGroups``): https://learn.microsoft.com/en-us/graph/api/resources/security-detectionrule,
list https://learn.microsoft.com/en-us/graph/api/security-rulesroot-list-detectionrules, create
https://learn.microsoft.com/en-us/graph/api/security-rulesroot-post-detectionrules (201 + Location), get, update
https://learn.microsoft.com/en-us/graph/api/security-detectionrule-update (200 with the whole rule; objects merged),
delete https://learn.microsoft.com/en-us/graph/api/security-rulesroot-delete-detectionrules (204). Permissions
CustomDetection.Read.All / CustomDetection.ReadWrite.All. A rule's query is run through the hunting engine
(hunting.py, as runHuntingQuery runs it) and must return the columns the Defender page requires
(https://learn.microsoft.com/en-us/defender-xdr/custom-detection-rules). Every guess: README.md, "Custom detection
rules".
"""

import copy
import re
from urllib.parse import urlencode

from . import graph, hunting
from .common import ApiError
from .odata import FieldSpec, compile_filter, parse_paging

READ = ("CustomDetection.Read.All", "CustomDetection.ReadWrite.All")
WRITE = ("CustomDetection.ReadWrite.All",)
MAX_TOP = 50
STATUSES = ("enabled", "disabled", "autoDisabled", "unknownFutureValue")
SETTABLE_STATUSES = ("enabled", "disabled")
SEVERITIES = ("informational", "low", "medium", "high")
ISOLATION_TYPES = ("full", "selective")
ENTITY_MAPPINGS = {
    "accounts": ("aadUserIdColumn", "dnsDomainColumn", "nameColumn", "ntDomainColumn", "sidColumn", "upnColumn",
                 "upnSuffixColumn"),
    "amazonResources": ("amazonResourceIdColumn",), "azureResources": ("resourceIdColumn",),
    "cloudApplications": ("appIdColumn", "nameColumn"),
    "dns": ("domainNameColumn", "hostIpAddressColumn", "serverIpColumn"),
    "files": ("nameColumn", "sha1Column", "sha256Column"), "googleCloudResources": ("fullResourceNameColumn",),
    "hosts": ("deviceIdColumn", "dnsDomainColumn", "nameColumn", "netBiosNameColumn", "ntDomainColumn"),
    "ips": ("addressColumn", "scopeColumn"), "mailboxes": ("primaryAddressColumn",),
    "mailClusters": ("queryColumn", "sourceColumn"),
    "mailMessages": ("networkMessageIdColumn", "recipientColumn", "senderColumn", "subjectColumn"),
    "oAuthApplications": ("oAuthAppIdColumn",), "processes": ("sha1Column", "sha256Column"),
    "registryValues": ("keyColumn", "valueNameColumn"),
    "securityGroups": ("distinguishedNameColumn", "objectIdColumn", "sidColumn"), "urls": ("addressColumn",),
}
EMAIL = ("networkMessageIdColumn", "recipientColumn")
AUTOMATED_ACTIONS = {
    "isolateDevices": ("deviceIdColumn", "isolationType"), "collectInvestigationPackages": ("deviceIdColumn",),
    "initiateInvestigations": ("deviceIdColumn",), "restrictAppExecutions": ("deviceIdColumn",),
    "runAntivirusScans": ("deviceIdColumn",), "allowFiles": ("deviceGroupNames", "sha1Column", "sha256Column"),
    "blockFiles": ("deviceGroupNames", "sha1Column", "sha256Column"),
    "stopAndQuarantineFiles": ("deviceIdColumn", "sha1Column"), "markUsersAsCompromised": ("accountObjectIdColumn",),
    "disableUsers": ("accountSidColumn",), "forceUserPasswordResets": ("accountSidColumn",),
    "hardDeleteEmails": EMAIL, "softDeleteEmails": EMAIL, "moveEmailsToDeletedItems": EMAIL,
    "moveEmailsToInbox": EMAIL, "moveEmailsToJunk": EMAIL,
}
TOP_LEVEL = ("@odata.type", "id", "displayName", "description", "status", "queryCondition", "schedule",
             "detectionAction")
READ_ONLY = ("createdBy", "createdDateTime", "lastModifiedBy", "lastModifiedDateTime")
# beta still accepts the properties announced for removal on 2026-10-01 (README guess 4): ignored on input.
BETA_DEPRECATED = ("isEnabled", "detectorId", "lastRunDetails")
FIELDS = {name: FieldSpec(name, key=key, ftype=ftype) for name, key, ftype in (
    ("id", "id", "str"), ("displayName", "displayName", "str"), ("status", "status", "str"),
    ("createdDateTime", "createdDateTime", "datetime"), ("lastModifiedDateTime", "lastModifiedDateTime", "datetime"))}
PERIODS = {0: "0", 3600: "1H", 3 * 3600: "3H", 12 * 3600: "12H", 86400: "24H"}
MIN_FREQUENCY, MAX_FREQUENCY = 300, 14 * 86400

# Seeded tenant: one rule made before the rework (a number the service chose as its id), rules made after it.
_OFFICE_QUERY = ('DeviceProcessEvents | where InitiatingProcessFileName =~ "winword.exe" | where FileName == '
                 '"powershell.exe" | where ProcessCommandLine has "-enc" | project Timestamp, DeviceId, DeviceName, '
                 'ReportId, AccountName, AccountDomain, SHA1, FileName')
SEED = [
    {"id": "7506", "displayName": "Encoded PowerShell (made before the rework)",
     "description": None, "status": "enabled", "createdBy": "secop@contoso.com",
     "createdDateTime": "2024-03-06T09:12:44.0000000Z", "lastModifiedBy": "secop@contoso.com",
     "lastModifiedDateTime": "2025-11-20T16:02:10.0000000Z",
     "queryCondition": {"queryText": 'DeviceProcessEvents | where ProcessCommandLine has "-enc" | project Timestamp, '
                                     'DeviceId, ReportId, DeviceName, FileName'},
     "schedule": {"frequency": "P1D"},
     "detectionAction": {"alertTemplate": {
         "title": "Encoded PowerShell command line", "description": "A process ran with an encoded command.",
         "severity": "medium", "recommendedActions": None, "customDetails": {},
         "tactics": [{"tactic": "Execution", "techniques": [{"technique": "T1059", "subTechniques": ["T1059.001"]}]}],
         "entityMappings": {"hosts": [{"deviceIdColumn": "DeviceId"}]}},
         "automatedActions": {"isolateDevices": [{"deviceIdColumn": "DeviceId", "isolationType": "full"}]},
         "organizationalScope": None},
     "_legacy": {"detectorId": "1b9f4a5c-7d1e-4c0b-9a43-2f6e8d5b1c07"}},
    {"id": "office-encoded-powershell", "displayName": "Suspicious encoded PowerShell from Office",
     "description": "Office application started PowerShell with an encoded command.", "status": "enabled",
     "createdBy": "alice@contoso.com", "createdDateTime": "2026-05-25T10:15:00.0000000Z",
     "lastModifiedBy": "alice@contoso.com", "lastModifiedDateTime": "2026-05-25T10:15:00.0000000Z",
     "queryCondition": {"queryText": _OFFICE_QUERY}, "schedule": {"frequency": "PT1H"},
     "detectionAction": {"alertTemplate": {
         "title": "Encoded PowerShell from Office on {{DeviceName}}", "description": "Encoded PowerShell from Office.",
         "severity": "high", "recommendedActions": "Isolate the device and review the command line.",
         "customDetails": {"Command file": "FileName"},
         "tactics": [{"tactic": "Execution", "techniques": [{"technique": "T1059", "subTechniques": ["T1059.001"]}]}],
         "entityMappings": {"accounts": [{"nameColumn": "AccountName", "ntDomainColumn": "AccountDomain"}],
                            "hosts": [{"deviceIdColumn": "DeviceId", "nameColumn": "DeviceName"}],
                            "files": [{"nameColumn": "FileName", "sha1Column": "SHA1"}]}},
         "automatedActions": {"isolateDevices": [{"deviceIdColumn": "DeviceId", "isolationType": "full"}],
                              "initiateInvestigations": [{"deviceIdColumn": "DeviceId"}]},
         "organizationalScope": None}},
    {"id": "new-server-onboarded", "displayName": "Server onboarded", "description": None, "status": "disabled",
     "createdBy": "bob@contoso.com", "createdDateTime": "2026-06-02T08:00:00.0000000Z",
     "lastModifiedBy": "bob@contoso.com", "lastModifiedDateTime": "2026-06-03T08:00:00.0000000Z",
     "queryCondition": {"queryText": 'DeviceInfo | where DeviceName startswith "srv-" | project Timestamp, DeviceId, '
                                     'ReportId, DeviceName'},
     "schedule": {"frequency": "PT0S"},
     "detectionAction": {"alertTemplate": {
         "title": "Server onboarded", "description": None, "severity": "informational", "recommendedActions": None,
         "customDetails": {}, "tactics": [], "entityMappings": {"hosts": [{"deviceIdColumn": "DeviceId"}]}},
         "automatedActions": {}, "organizationalScope": {"deviceGroups": ["Servers"]}}},
    {"id": "rare-parent-process", "displayName": "Rare parent of cmd.exe", "description": None,
     "status": "autoDisabled", "createdBy": "alice@contoso.com", "createdDateTime": "2026-07-11T12:00:00.0000000Z",
     "lastModifiedBy": "Microsoft Defender XDR", "lastModifiedDateTime": "2026-08-01T03:00:00.0000000Z",
     "queryCondition": {"queryText": 'DeviceProcessEvents | where FileName == "cmd.exe" | project Timestamp, DeviceId, '
                                     'ReportId, InitiatingProcessFileName'},
     "schedule": {"frequency": "PT3H"},
     "detectionAction": {"alertTemplate": {
         "title": "cmd.exe started by a rare parent", "description": None, "severity": "low",
         "recommendedActions": None, "customDetails": {"Parent": "InitiatingProcessFileName"}, "tactics": [],
         "entityMappings": {}}, "automatedActions": {}, "organizationalScope": None}},
]


def rules(state):
    """The tenant's rules (id -> rule), seeded on first use and again after reset()."""
    data = getattr(state, "detection_rules", None)
    if data is None:
        data = {}
        for rule in SEED:
            data[rule["id"]] = copy.deepcopy(rule)
        state.detection_rules = data
    return data


def add_rule(state, rule):
    """Put a rule (camelCase, as Graph returns it) straight into the tenant, for tests that need many."""
    with state.lock:
        stored = dict(copy.deepcopy(rule))
        stored.setdefault("createdDateTime", graph.now_iso())
        stored.setdefault("lastModifiedDateTime", stored["createdDateTime"])
        stored.setdefault("createdBy", "emulator")
        stored.setdefault("lastModifiedBy", "emulator")
        rules(state)[stored["id"]] = stored
        return stored


def _version(ctx):
    return "beta" if ctx.path.startswith("/beta/") else "v1.0"


def _bad(message):
    raise graph.GraphError(400, "BadRequest", message)


# ---- the views ----------------------------------------------------------------------------------------------------
def view(rule, version):
    body = dict(("@odata.type" if k == "@odata.type" else k, copy.deepcopy(v)) for k, v in rule.items()
                if not k.startswith("_"))
    body["@odata.type"] = "#microsoft.graph.security.detectionRule"
    if version == "beta":  # the deprecated properties, derived from the new ones (README guess 4)
        legacy = rule.get("_legacy") or {}
        body["isEnabled"] = rule["status"] == "enabled"
        body["detectorId"] = legacy.get("detectorId")
        body["lastRunDetails"] = {"lastRunDateTime": None, "status": None, "failureReason": None, "errorCode": None}
        seconds = graph.duration_seconds(rule["schedule"]["frequency"])
        body["schedule"]["period"] = PERIODS.get(seconds)
        body["schedule"]["nextRunDateTime"] = None
        body["queryCondition"]["lastModifiedDateTime"] = None
        action = body.setdefault("detectionAction", {})
        template = action.get("alertTemplate") or {}
        tactics = template.get("tactics") or []
        template["category"] = tactics[0]["tactic"] if tactics else None
        template["mitreTechniques"] = [s for t in tactics for x in t.get("techniques") or []
                                       for s in (x.get("subTechniques") or [x.get("technique")])]
        template["impactedAssets"] = []
        action["responseActions"] = []
    return body


def _entity(ctx, base, rule, status=200, headers=None):
    version = _version(ctx)
    out = {"@odata.context": "%s/%s/$metadata#security/rules/detectionRules/$entity" % (base, version)}
    out.update(view(rule, version))
    resp = graph.ok(out, status)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


# ---- validation ---------------------------------------------------------------------------------------------------
def _check_collections(value, table, where):
    if value is None:
        return
    if not isinstance(value, dict):
        _bad("%s must be an object" % where)
    for member, items in value.items():
        if member not in table:
            _bad("Invalid property '%s' on %s" % (member, where))
        if items is None:
            continue
        if not isinstance(items, list):
            _bad("%s.%s must be a collection" % (where, member))
        for item in items:
            if not isinstance(item, dict):
                _bad("%s.%s must hold objects" % (where, member))
            for prop, val in item.items():
                if prop == "@odata.type":
                    continue
                if prop not in table[member]:
                    _bad("Invalid property '%s' on %s.%s" % (prop, where, member))
                if prop == "isolationType" and val not in ISOLATION_TYPES + ("unknownFutureValue",):
                    _bad("Invalid value '%s' for property 'isolationType'" % val)
                if prop == "deviceGroupNames" and not (isinstance(val, list) and all(isinstance(g, str) for g in val)):
                    _bad("deviceGroupNames must be a collection of strings")
                if prop.endswith("Column") and not isinstance(val, str):
                    _bad("%s must be a column name" % prop)


def _columns_named(rule):
    action = rule.get("detectionAction") or {}
    template = action.get("alertTemplate") or {}
    named = []
    for sets in (template.get("entityMappings"), action.get("automatedActions")):
        for items in (sets or {}).values():
            for item in items or []:
                named += [v for k, v in item.items() if k.endswith("Column") and isinstance(v, str)]
    named += [v for v in (template.get("customDetails") or {}).values() if isinstance(v, str)]
    return named


def validate(state, rule):
    """A whole rule (after a create or a merge) as the service checks it: 400 BadRequest with Graph's error shape."""
    if not isinstance(rule.get("displayName"), str) or not rule["displayName"].strip():
        _bad("The property 'displayName' is required")
    if rule.get("status") not in SETTABLE_STATUSES and rule.get("status") != "autoDisabled":
        _bad("Invalid value '%s' for property 'status'; it can be set to enabled or disabled" % rule.get("status"))
    query = (rule.get("queryCondition") or {}).get("queryText") if isinstance(rule.get("queryCondition"), dict) else None
    if not isinstance(query, str) or not query.strip():
        _bad("The property 'queryCondition.queryText' is required")
    frequency = (rule.get("schedule") or {}).get("frequency") if isinstance(rule.get("schedule"), dict) else None
    seconds = graph.duration_seconds(frequency) if isinstance(frequency, str) else None
    if seconds is None:
        _bad("The property 'schedule.frequency' must be an ISO 8601 duration such as PT1H")
    if seconds and not MIN_FREQUENCY <= seconds <= MAX_FREQUENCY:
        _bad("The frequency '%s' is not supported: use 0 (near real time) or a duration from PT5M to P14D" % frequency)
    action = rule.get("detectionAction")
    if not isinstance(action, dict) or not isinstance(action.get("alertTemplate"), dict):
        _bad("The property 'detectionAction.alertTemplate' is required")
    for key in action:
        if key not in ("alertTemplate", "automatedActions", "organizationalScope", "incidentConfiguration",
                       "responseActions"):
            _bad("Invalid property '%s' on detectionAction" % key)
    template = action["alertTemplate"]
    if not isinstance(template.get("title"), str) or not template["title"].strip():
        _bad("The property 'detectionAction.alertTemplate.title' is required")
    if template.get("severity") is not None and template["severity"] not in SEVERITIES:
        _bad("Invalid value '%s' for property 'severity'" % template["severity"])
    if template.get("customDetails") is not None and not isinstance(template["customDetails"], dict):
        _bad("customDetails must be an object")
    if not isinstance(template.get("tactics") or [], list):
        _bad("tactics must be a collection")
    _check_collections(template.get("entityMappings"), ENTITY_MAPPINGS, "entityMappings")
    _check_collections(action.get("automatedActions"), AUTOMATED_ACTIONS, "automatedActions")
    scope = action.get("organizationalScope")
    if scope is not None and not (isinstance(scope, dict) and isinstance(scope.get("deviceGroups") or [], list)):
        _bad("organizationalScope.deviceGroups must be a collection of strings")
    # The query, as runHuntingQuery runs it; then the columns the Defender page requires.
    try:
        schema, _rows = hunting.run_query(state, query + "\n| take 0")
    except ApiError as err:
        _bad("The query is not valid: %s" % err.message)
    columns = {name for name, _type in schema}
    table = hunting.split_pipes(query)[0].split()[0] if query.strip() else ""
    needed = [("Timestamp", "TimeGenerated")]
    if table.startswith("Device"):
        needed += [("DeviceId",), ("ReportId",)]
    for name in _columns_named(rule):
        needed.append((name,))
    for names in needed:
        if not columns.intersection(names):
            _bad("The query must return the column %s" % " or ".join(names))


def _merge(target, patch):
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and key != "customDetails":
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _clean_input(ctx, body, creating):
    if not isinstance(body, dict) or not body:
        _bad("A request body with the rule's properties is required")
    version = _version(ctx)
    out = {}
    for key, value in body.items():
        if key in READ_ONLY or (version == "beta" and key in BETA_DEPRECATED):
            continue  # read-only properties are ignored (the create page says so); README guess 4
        if key not in TOP_LEVEL:
            _bad("Invalid property '%s': it is not a property of microsoft.graph.security.detectionRule in %s"
                 % (key, version))
        if key == "@odata.type":
            continue
        out[key] = copy.deepcopy(value)
    if not creating and "id" in out:
        _bad("The property 'id' cannot be updated")
    if "status" in out and out["status"] not in SETTABLE_STATUSES:
        _bad("Invalid value '%s' for property 'status'; it can be set to enabled or disabled" % out["status"])
    return out


def _same_name(a, b):
    return (a or "").strip().lower() == (b or "").strip().lower()


def _name_taken(state, name, ident):
    return any(_same_name(r.get("displayName"), name) and r["id"] != ident for r in rules(state).values())


# ---- handlers -----------------------------------------------------------------------------------------------------
def list_rules(ctx, base):
    top, skip = parse_paging(ctx.query, max_top=1000)
    top = MAX_TOP if top is None else min(top, MAX_TOP)
    pred = compile_filter(ctx.query.get("$filter"), FIELDS)
    items = sorted(rules(ctx.state).values(), key=lambda r: r["createdDateTime"])
    if pred is not None:
        items = [r for r in items if pred(r)]
    version = _version(ctx)
    body = {"@odata.context": "%s/%s/$metadata#security/rules/detectionRules" % (base, version)}
    if skip + top < len(items):
        query = dict(ctx.query, **{"$skip": str(skip + top), "$top": str(top)})
        body["@odata.nextLink"] = "%s/%s/security/rules/detectionRules?%s" % (base, version, urlencode(query))
    body["value"] = [view(r, version) for r in items[skip:skip + top]]
    return graph.ok(body)


def _get(ctx, ident):
    rule = rules(ctx.state).get(ident)
    if rule is None:
        raise graph.GraphError(404, "NotFound", "The detection rule '%s' was not found." % ident)
    return rule


def get_rule(ctx, base, ident):
    return _entity(ctx, base, _get(ctx, ident))


def create_rule(ctx, base):
    body = _clean_input(ctx, ctx.body, creating=True)
    ident = body.get("id")
    if not isinstance(ident, str) or not ident.strip():
        _bad("The property 'id' is required: the client supplies the rule's id")
    if re.search(r"[/\\?#%\s]", ident):
        _bad("The id '%s' is not valid" % ident)
    if ident in rules(ctx.state):
        raise graph.GraphError(409, "Conflict", "A detection rule with the id '%s' already exists." % ident)
    if "status" not in body:
        _bad("The property 'status' is required")
    if _name_taken(ctx.state, body.get("displayName"), ident):
        raise graph.GraphError(409, "Conflict", "A detection rule with this name already exists. Please rename your "
                                                "rule.")
    rule = {"id": ident, "displayName": None, "description": None, "status": None, "queryCondition": None,
            "schedule": None, "detectionAction": None}
    rule.update(body)
    validate(ctx.state, rule)
    now = graph.now_iso()
    rule.update(createdBy=ctx.actor_name, createdDateTime=now, lastModifiedBy=ctx.actor_name,
                lastModifiedDateTime=now)
    rules(ctx.state)[ident] = rule
    location = "%s/%s/security/rules/detectionRules/%s" % (base, _version(ctx), ident)
    return _entity(ctx, base, rule, 201, {"Location": location})


def update_rule(ctx, base, ident):
    rule = _get(ctx, ident)
    body = _clean_input(ctx, ctx.body, creating=False)
    if "displayName" in body and _name_taken(ctx.state, body["displayName"], ident):
        raise graph.GraphError(409, "Conflict", "A detection rule with this name already exists. Please rename your "
                                                "rule.")
    fresh = copy.deepcopy(rule)
    _merge(fresh, body)
    validate(ctx.state, fresh)
    fresh.update(lastModifiedBy=ctx.actor_name, lastModifiedDateTime=graph.now_iso())
    rules(ctx.state)[ident] = fresh
    return _entity(ctx, base, fresh)


def delete_rule(ctx, base, ident):
    _get(ctx, ident)
    del rules(ctx.state)[ident]
    from starlette.responses import Response
    return Response(status_code=204)


# method, path regex (after the version), template, handler, roles (any of), rate family
ROUTES = [
    ("GET", r"/security/rules/detectionRules", "/v1.0/security/rules/detectionRules", list_rules, READ,
     "detectionRules"),
    ("POST", r"/security/rules/detectionRules", "/v1.0/security/rules/detectionRules", create_rule, WRITE,
     "detectionRules"),
    ("GET", r"/security/rules/detectionRules/(?P<ident>[^/]+)", "/v1.0/security/rules/detectionRules/{id}", get_rule,
     READ, "detectionRules"),
    ("PATCH", r"/security/rules/detectionRules/(?P<ident>[^/]+)", "/v1.0/security/rules/detectionRules/{id}",
     update_rule, WRITE, "detectionRules"),
    ("DELETE", r"/security/rules/detectionRules/(?P<ident>[^/]+)", "/v1.0/security/rules/detectionRules/{id}",
     delete_rule, WRITE, "detectionRules"),
]
