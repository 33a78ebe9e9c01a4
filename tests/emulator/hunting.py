"""POST /api/advancedqueries/run: a documented subset of KQL over two emulated tables.

Supported: ``DeviceInfo`` and ``DeviceProcessEvents``, piped through any of
``where <col> (==|!=|=~|>|>=|<|<=|contains|has|startswith) <literal> [and ...]``, ``project a, b``,
``summarize count() by a[, b]``, ``order by|sort by col [asc|desc]``, ``take N``, ``limit N``, ``count``.
Literals: "text" / 'text', numbers, true/false, datetime(2024-01-01T00:00:00Z), ago(7d|12h|30m|10s).
"""

import datetime
import re

from .common import ApiError, check_body, json_response
from .odata import canonical_time

MAX_ROWS = 100000
SUPPORTED = ("Supported subset: tables DeviceInfo, DeviceProcessEvents; operators: where <col> ==|!=|=~|>|>=|<|<=|contains|has|startswith "
             "<literal> [and ...], project <cols>, summarize count() by <cols>, order by/sort by <col> [asc|desc], take N, limit N, count")
DEVICE_INFO_SCHEMA = [("Timestamp", "DateTime"), ("DeviceId", "String"), ("DeviceName", "String"), ("OSPlatform", "String"),
                      ("OSVersion", "String"), ("OSBuild", "Int64"), ("PublicIP", "String"), ("MachineGroup", "String"),
                      ("OnboardingStatus", "String"), ("SensorHealthState", "String"), ("ExposureLevel", "String"),
                      ("IsAzureADJoined", "Boolean"), ("AadDeviceId", "String"), ("ReportId", "Int64")]
PROCESS_SCHEMA = [("Timestamp", "DateTime"), ("DeviceId", "String"), ("DeviceName", "String"), ("ActionType", "String"),
                  ("FileName", "String"), ("FolderPath", "String"), ("SHA1", "String"), ("ProcessCommandLine", "String"),
                  ("AccountName", "String"), ("AccountDomain", "String"), ("InitiatingProcessFileName", "String"), ("ProcessId", "Int64"),
                  ("ReportId", "Int64")]
# ReportId: the event's id within its device, as both tables carry it
# (https://learn.microsoft.com/en-us/defender-xdr/advanced-hunting-deviceinfo-table,
# https://learn.microsoft.com/en-us/defender-xdr/advanced-hunting-deviceprocessevents-table): the row's position, from 1.
COND_RE = re.compile(r"^\s*(?P<col>\w+)\s*(?P<op>==|!=|=~|>=|<=|>|<|\bcontains\b|\bhas\b|\bstartswith\b)\s*(?P<lit>.+?)\s*$", re.I)


def bad(message):
    raise ApiError(400, "BadRequest", "%s. %s" % (message, SUPPORTED))


def split_pipes(query):
    parts, buf, quote = [], [], None
    for char in query:
        if quote:
            buf.append(char)
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
            buf.append(char)
        elif char == "|":
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(char)
    if quote:
        bad("Unterminated string literal")
    parts.append("".join(buf).strip())
    return parts


def parse_literal(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.match(r"^-?\d+$", text):
        return int(text)
    if re.match(r"^-?\d+\.\d+$", text):
        return float(text)
    match = re.match(r"^datetime\((.+)\)$", text, re.I)
    if match:
        try:
            return canonical_time(match.group(1).strip().strip("\"'"))
        except ValueError:
            bad("Invalid datetime literal %s" % text)
    match = re.match(r"^ago\((\d+)([dhms])\)$", text, re.I)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[match.group(2).lower()]
        return canonical_time(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**{unit: int(match.group(1))}))
    return bad("Unsupported literal %r" % text)


def make_condition(text, columns):
    match = COND_RE.match(text)
    if not match:
        bad("Unsupported where condition %r" % text.strip())
    col, op, value = match.group("col"), match.group("op").lower(), parse_literal(match.group("lit"))
    if col not in columns:
        bad("Unknown column '%s'" % col)

    def test(row):
        cell = row.get(col)
        if op == "==":
            return cell == value
        if op == "!=":
            return cell != value
        if op == "=~":
            return isinstance(cell, str) and isinstance(value, str) and cell.lower() == value.lower()
        if op in ("contains", "has"):
            return isinstance(cell, str) and str(value).lower() in cell.lower()
        if op == "startswith":
            return isinstance(cell, str) and cell.lower().startswith(str(value).lower())
        if cell is None:
            return False
        try:
            return {">": cell > value, ">=": cell >= value, "<": cell < value, "<=": cell <= value}[op]
        except TypeError:
            return False
    return test


def device_info_rows(state):
    rows = []
    for m in state.machines:
        rows.append({"Timestamp": m["lastSeen"], "DeviceId": m["id"], "DeviceName": m["computerDnsName"], "OSPlatform": m["osPlatform"],
                     "OSVersion": m["version"], "OSBuild": m["osBuild"], "PublicIP": m["lastExternalIpAddress"], "MachineGroup": m["rbacGroupName"],
                     "OnboardingStatus": m["onboardingStatus"], "SensorHealthState": m["healthStatus"], "ExposureLevel": m["exposureLevel"],
                     "IsAzureADJoined": m["isAadJoined"], "AadDeviceId": m["aadDeviceId"], "ReportId": len(rows) + 1})
    return rows


def _cols(text):
    cols = [c.strip() for c in text.split(",")]
    if not all(re.match(r"^\w+$", c) for c in cols):
        bad("Invalid column list %r" % text)
    return cols


def run_query(state, query, since=None):
    """Evaluate the query; return (schema list of (name, type), rows). ``since``: only rows whose Timestamp is at or
    after this canonical time (Graph's Timespan)."""
    parts = split_pipes(query)
    table = parts[0]
    if table == "DeviceInfo":
        schema, rows = list(DEVICE_INFO_SCHEMA), device_info_rows(state)
    elif table == "DeviceProcessEvents":
        schema, rows = list(PROCESS_SCHEMA), [dict(r, ReportId=i + 1) for i, r in enumerate(state.process_events())]
    else:
        return bad("Unsupported table %r" % table)
    if since is not None:
        rows = [r for r in rows if (r.get("Timestamp") or "") >= since]
    for stage in parts[1:]:
        words = stage.split(None, 1)
        op = words[0].lower() if words else ""
        rest = words[1] if len(words) > 1 else ""
        names = [n for n, _t in schema]
        if op == "where":
            tests = [make_condition(c, names) for c in re.split(r"\s+and\s+", rest, flags=re.I)]
            rows = [r for r in rows if all(t(r) for t in tests)]
        elif op == "project":
            cols = _cols(rest)
            for col in cols:
                if col not in names:
                    bad("Unknown column '%s'" % col)
            types = dict(schema)
            schema = [(c, types[c]) for c in cols]
            rows = [{c: r.get(c) for c in cols} for r in rows]
        elif op in ("take", "limit"):
            if not re.match(r"^\d+$", rest.strip()):
                bad("%s expects a number" % op)
            rows = rows[: int(rest)]
        elif op == "count" and not rest:
            schema, rows = [("Count", "Int64")], [{"Count": len(rows)}]
        elif op == "summarize":
            match = re.match(r"^count\(\)\s+by\s+(.+)$", rest.strip(), re.I)
            if not match:
                bad("Only 'summarize count() by <columns>' is supported")
            cols = _cols(match.group(1))
            for col in cols:
                if col not in names:
                    bad("Unknown column '%s'" % col)
            counts = {}
            for row in rows:
                key = tuple(row.get(c) for c in cols)
                counts[key] = counts.get(key, 0) + 1
            types = dict(schema)
            schema = [(c, types[c]) for c in cols] + [("count_", "Int64")]
            rows = [dict(zip(cols, key), count_=n) for key, n in counts.items()]
        elif op in ("order", "sort"):
            match = re.match(r"^by\s+(\w+)(?:\s+(asc|desc))?$", rest.strip(), re.I)
            if not match or match.group(1) not in names:
                bad("Unsupported %s clause %r" % (op, stage))
            col, desc = match.group(1), (match.group(2) or "desc").lower() == "desc"
            rows = sorted(rows, key=lambda r, c=col: (r.get(c) is not None, r.get(c)), reverse=desc)
        else:
            bad("Unsupported operator %r" % stage)
    return schema, rows[:MAX_ROWS]


def run(ctx):
    body = check_body(ctx.body, required=("Query",))
    if not isinstance(body["Query"], str):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: Query must be a string")
    schema, rows = run_query(ctx.state, body["Query"])
    return json_response({"Schema": [{"Name": n, "Type": t} for n, t in schema], "Results": rows})


ROUTES = [("POST", r"/advancedqueries/run", "/api/advancedqueries/run", run, ("AdvancedQuery.Read.All",), "hunting")]
