# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machine response actions: the action table, request bodies, state detection and polling.

Plain Python (no Ansible import), used by the mde_machine_action and mde_machine_action_info modules.
Paths, types, body properties and permissions are those Microsoft documents for the MachineAction entity
(https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction) and each action's page, such as
https://learn.microsoft.com/en-us/defender-endpoint/api/isolate-machine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import time

from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError, quoted

ACTIVE_STATUSES = ("Pending", "InProgress")
FINAL_STATUSES = ("Succeeded", "Failed", "TimeOut", "Cancelled")
STATUSES = ACTIVE_STATUSES + FINAL_STATUSES
# The statuses of actions that put (or are putting) a machine in a state; the others changed nothing.
LIVE_STATUSES = ACTIVE_STATUSES + ("Succeeded",)
ISOLATION_TYPES = ("Full", "Selective", "UnManagedDevice")
SCAN_TYPES = ("Quick", "Full")
# Every MachineAction type the API reports (https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction),
# for filters.
ACTION_TYPES = ("RunAntiVirusScan", "Offboard", "LiveResponse", "CollectInvestigationPackage", "Isolate", "Unisolate",
                "StopAndQuarantineFile", "RestrictCodeExecution", "UnrestrictCodeExecution")
SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")
GUID_RE = odata.GUID_RE
DEFAULT_COMMENT = "Requested by Ansible (defender.endpoint.mde_machine_action)"
# Reading back an action whose answer was lost looks at actions created since this many seconds before the POST,
# the room left for the controller's clock and the API's to differ.
CLOCK_SKEW = 60

# State pairs: a machine is in the state of the latest action of its pair that did not fail.
PAIRS = {
    "isolation": dict(types=("Isolate", "Unisolate"), key="isolated"),
    "code_execution": dict(types=("RestrictCodeExecution", "UnrestrictCodeExecution"), key="code_execution_restricted"),
    # Offboarding is one-way: once an Offboard action is pending or done, the machine is (being) offboarded.
    "offboarding": dict(types=("Offboard",), key="offboarded"),
}

# snake_case action -> API path segment, MachineAction type, permission, state pair and the state it sets.
ACTIONS = {
    "isolate": dict(segment="isolate", type="Isolate", permission="Machine.Isolate",
                    pair="isolation", state=True),
    "unisolate": dict(segment="unisolate", type="Unisolate", permission="Machine.Isolate",
                      pair="isolation", state=False),
    "restrict_code_execution": dict(segment="restrictCodeExecution", type="RestrictCodeExecution",
                                    permission="Machine.RestrictExecution", pair="code_execution", state=True),
    "unrestrict_code_execution": dict(segment="unrestrictCodeExecution", type="UnrestrictCodeExecution",
                                      permission="Machine.RestrictExecution", pair="code_execution", state=False),
    "antivirus_scan": dict(segment="runAntiVirusScan", type="RunAntiVirusScan", permission="Machine.Scan",
                           pair=None, state=None),
    "collect_investigation_package": dict(segment="collectInvestigationPackage", type="CollectInvestigationPackage",
                                          permission="Machine.CollectForensics", pair=None, state=None),
    "stop_and_quarantine_file": dict(segment="StopAndQuarantineFile", type="StopAndQuarantineFile",
                                     permission="Machine.StopAndQuarantine", pair=None, state=None),
    "offboard": dict(segment="offboard", type="Offboard", permission="Machine.Offboard",
                     pair="offboarding", state=True),
}


def check_action_id(value, option="action_id"):
    """A machine action id (a GUID: https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction), stripped;
    ValueError naming ``option`` otherwise."""
    return odata.check_id(value, option, GUID_RE, "a machine action id, a GUID such as "
                                                  "5382f7ea-7557-4ab7-9782-d50480024a4e")


def validate(action, comment=None, sha1=None):
    """Check the module input before any API call: the API's rules the argument spec cannot say (mde_machine_action's
    spec has the choices, and sha1 required with stop_and_quarantine_file). Raises ValueError naming the option."""
    if action == "stop_and_quarantine_file":
        if not SHA1_RE.match((sha1 or "").strip()):
            raise ValueError("sha1 must be the file's SHA-1 hash, 40 hexadecimal characters, got %r." % sha1)
    elif sha1:
        raise ValueError("sha1 is only used with action stop_and_quarantine_file, not with %s." % action)
    if action == "offboard" and not (comment or "").strip():
        raise ValueError("action offboard cannot be undone: set comment explicitly to say why the machine is "
                         "offboarded.")
    if comment is not None and not comment.strip():
        raise ValueError("comment must not be empty.")


def build_body(action, comment=None, isolation_type="Full", scan_type="Quick", sha1=None):
    """The request body, PascalCase as the action endpoints require (for example
    https://learn.microsoft.com/en-us/defender-endpoint/api/isolate-machine and
    https://learn.microsoft.com/en-us/defender-endpoint/api/run-av-scan)."""
    body = {"Comment": comment if comment else DEFAULT_COMMENT}
    if action == "isolate":
        body["IsolationType"] = isolation_type or "Full"
    elif action == "antivirus_scan":
        body["ScanType"] = scan_type or "Quick"
    elif action == "stop_and_quarantine_file":
        body["Sha1"] = sha1.strip().lower()
    return body


def action_path(action, machine_id):
    return "/api/machines/%s/%s" % (odata.path_segment(machine_id), ACTIONS[action]["segment"])


def request_action(client, action, machine_id, body, params, known_ids=(), now=None):
    """POST the action (``body`` from build_body) and return the MachineAction, reconciled when the answer is lost.

    Reading back (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection, filterable by
    machineId, type and creationDateTimeUtc): the machine's actions of this type created since just before the POST
    (CLOCK_SKEW), that the caller had not already read (``known_ids``), that carry this request's comment
    (``requestorComment``) and are the same action (scan type, file). The newest such action is the one the POST
    created; none means it did not take effect, and the client sends it once more.
    """
    spec = ACTIONS[action]
    since = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(seconds=CLOCK_SKEW)
    known = set(str(i) for i in known_ids if i)
    odata_filter = odata.and_all(machine_filter(machine_id, [spec["type"]]),
                                 "creationDateTimeUtc ge %s" % odata.format_time(since))

    def reconcile():
        ours = [a for a in client.list("/api/machineactions", odata_filter=odata_filter)
                if str(a.get("id")) not in known and same_action(action, params, a)
                and (a.get("requestorComment") or "") == body.get("Comment", "")]
        return latest(ours)

    return entity(client.post(action_path(action, machine_id), json=body, reconcile=reconcile))


def entity(data):
    """A MachineAction read from an answer, its id checked to be a GUID before anything uses it (odata.answer_id)."""
    action = odata.entity(data)
    odata.answer_id(action, "machine_action")
    return action


def path(action_id, suffix=""):
    """``/api/machineactions/{id}{suffix}`` for an id that has the documented shape (a GUID)."""
    return "/api/machineactions/%s%s" % (odata.path_segment(odata.answer_id({"id": action_id}, "machine_action")), suffix)


def read(client, action_id):
    """``GET /api/machineactions/{id}``: the action, refused (MDEError) unless the answer is the action asked for."""
    action = entity(client.get(path(action_id)))
    if action["id"].lower() != str(action_id).strip().lower():
        raise MDEError("The API answered GET /api/machineactions/%s with another action (%s): the answer was refused, "
                       "and nothing was done with it." % (action_id, quoted(action["id"], 60)),
                       method="GET", path="/api/machineactions/%s" % action_id)
    return action


def latest(actions):
    """The most recently created action (by ``creationDateTimeUtc``), or None."""
    best = None
    best_time = None
    for action in actions:
        created = odata.time_or_none(action.get("creationDateTimeUtc")) or odata.EPOCH
        if best is None or created > best_time:
            best, best_time = action, created
    return best


def machine_filter(machine_id, types=None, statuses=None):
    """``machineId eq '<id>' and (type eq 'A' or type eq 'B')`` (filterable: id, status, machineId, type, requestor,
    creationDateTimeUtc; https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection)."""
    return odata.and_all("machineId eq %s" % odata.quote(machine_id), odata.any_of("type", types),
                         odata.any_of("status", statuses))


def pair_state(action, pair_actions):
    """The state of ``action``'s pair from the machine's actions of that pair.

    Returns ``(state, deciding_action)``: the latest action that is Pending, InProgress or Succeeded decides
    (Failed, TimeOut and Cancelled ones changed nothing). No such action: the machine was never put in the
    state (not isolated, not restricted, not offboarded).
    """
    spec = ACTIONS[action]
    types = PAIRS[spec["pair"]]["types"]
    live = [a for a in pair_actions if a.get("type") in types and a.get("status") in LIVE_STATUSES]
    deciding = latest(live)
    if deciding is None:
        return False, None
    return deciding.get("type") == types[0], deciding


def same_action(action, params, existing):
    """Whether ``existing`` (a MachineAction) is the action these module params would send."""
    spec = ACTIONS[action]
    if existing.get("type") != spec["type"]:
        return False
    if action == "antivirus_scan":
        return (existing.get("scope") or "") == (params.get("scan_type") or "Quick")
    if action == "stop_and_quarantine_file":
        info = existing.get("relatedFileInfo") or {}
        return (info.get("fileIdentifier") or "").lower() == (params.get("sha1") or "").strip().lower()
    return True


def is_already_pending(error):
    """Whether an MDEError is the API's "an identical action is already pending" answer (HTTP 400,
    https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors)."""
    if not isinstance(error, MDEError) or error.status != 400:
        return False
    if error.code == "ActiveRequestAlreadyExists":
        return True
    return "already in progress" in (error.api_message or "").lower()


def describe(action):
    """``Isolate action 5382f7ea-... on desktop-test``."""
    return "%s action %s on %s" % (quoted(action.get("type"), 60), quoted(action.get("id"), 60),
                                   quoted(action.get("computerDnsName") or action.get("machineId"), 260))


def failure_text(action):
    """Why a final action did not succeed, from the entity's fields."""
    parts = []
    hresult = action.get("errorHResult")
    if hresult not in (None, 0):
        parts.append("errorHResult %s" % hresult)
    for command in action.get("commands") or []:
        for err in (command or {}).get("errors") or []:
            parts.append(str(err))
    if action.get("troubleshootInfo"):
        parts.append(str(action["troubleshootInfo"]))
    if action.get("status") == "Cancelled":
        who = action.get("cancellationRequestor")
        why = action.get("cancellationComment")
        if who or why:
            parts.append("cancelled by %s%s" % (who or "unknown", ": %s" % why if why else ""))
    return odata.summary(parts, show=quoted, sep="; ")


def poll_delays(first=2.0, factor=1.5, maximum=15.0):
    """Delays between polls: 2 s growing by half each time up to 15 s."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, maximum)


def wait_for(client, action, timeout, sleep=time.sleep, clock=time.monotonic, first=2.0, maximum=15.0, progress=None):
    """Poll ``GET /api/machineactions/{id}`` until the action is final or ``timeout`` seconds have passed.

    Returns ``(action, finished)``: the last entity read and whether it reached a final status. Throttling
    (429 with Retry-After) is handled by the client. ``progress`` (progress.Progress) is told each status read.
    """
    deadline = clock() + timeout
    delays = poll_delays(first=first, maximum=maximum)
    while action.get("status") not in FINAL_STATUSES:
        if progress is not None:
            progress.update(action.get("status"))
        remaining = deadline - clock()
        if remaining <= 0:
            return action, False
        sleep(min(next(delays), remaining))
        action = entity(client.get(path(action["id"])))
    if progress is not None:
        progress.done(action.get("status"))
    return action, True


def clean_package_uri(value):
    """The download URL from GetPackageUri's ``value``; the documented example wraps it in escaped quotes."""
    text = (value or "").strip()
    while text and text[0] in "\"\\":
        text = text[1:]
    while text and text[-1] in "\"\\":
        text = text[:-1]
    return text.strip()
