# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Automated investigations: states, filters, starting one (reconciled) and waiting for it.

Plain Python (no Ansible import), used by mde_investigation and mde_investigation_info. The entity, its states and
the endpoints are those of https://learn.microsoft.com/en-us/defender-endpoint/api/investigation,
.../get-investigation-collection (``$filter`` on startTime, id, state, machineId, triggeringAlertId) and
.../initiate-autoir-investigation (``POST /api/machines/{id}/startInvestigation``, body ``{"Comment"}``, 201 with the
Investigation; 50 calls an hour).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

STATES = ("Unknown", "Terminated", "SuccessfullyRemediated", "Benign", "Failed", "PartiallyRemediated", "Running",
          "PendingApproval", "PendingResource", "PartiallyInvestigated", "TerminatedByUser", "TerminatedBySystem",
          "Queued", "InnerFailure", "PreexistingAlert", "UnsupportedOs", "UnsupportedAlertType", "SuppressedAlert")
# Not over yet: an investigation in one of these states is "running" on its machine, and a new one is not started.
ACTIVE_STATES = ("Queued", "Running", "PendingResource", "PendingApproval")
# What ``wait`` waits through: PendingApproval waits for an analyst to approve remediation in the portal, which no
# amount of polling brings about, so waiting ends there too.
WORKING_STATES = ("Queued", "Running", "PendingResource")
# Ends in which the investigation could not do its work: with ``wait``, the task fails.
FAILED_STATES = ("Failed", "InnerFailure", "TerminatedBySystem", "UnsupportedOs")
DEFAULT_COMMENT = "Started by Ansible (defender.endpoint.mde_investigation)"
# Reading back a start whose answer was lost looks at investigations started since this long before the POST.
CLOCK_SKEW = 60


def check_investigation_id(value, option="investigation_id"):
    """An investigation id (``63017``) or the id of the alert that triggered it (the API accepts both:
    https://learn.microsoft.com/en-us/defender-endpoint/api/get-investigation-object), safe as one URL segment."""
    return odata.check_id(value, option)


def machine_filter(machine_id, states=None):
    return odata.and_all("machineId eq %s" % odata.quote(machine_id), odata.any_of("state", states))


def info_filter(machine_id=None, states=None, created_after=None, triggering_alert_id=None):
    parts = []
    if machine_id:
        parts.append("machineId eq %s" % odata.quote(machine_id))
    if triggering_alert_id:
        parts.append("triggeringAlertId eq %s" % odata.quote(triggering_alert_id))
    parts.append(odata.any_of("state", states))
    if created_after:
        parts.append("startTime ge %s" % odata.format_time(odata.parse_time(created_after, "created_after")))
    return odata.and_all(*parts)


def latest(items):
    best, best_time = None, None
    for item in items:
        started = odata.time_or_none(item.get("startTime")) or odata.EPOCH
        if best is None or started > best_time:
            best, best_time = item, started
    return best


def active_on(client, machine_id):
    """The machine's investigations that are not over (ACTIVE_STATES)."""
    return list(client.list("/api/investigations", odata_filter=machine_filter(machine_id, ACTIVE_STATES)))


def is_already_running(error):
    """Whether an MDEError is the API refusing a start because one is already running (HTTP 400)."""
    if not isinstance(error, MDEError) or error.status != 400:
        return False
    return error.code == "ActiveRequestAlreadyExists" or "already" in (error.api_message or "").lower()


def start(client, machine_id, comment, known_ids=(), now=None):
    """``POST /api/machines/{id}/startInvestigation`` and return the Investigation, reconciled when the answer is lost:
    reading back, an investigation on the machine started since just before the POST that was not there before
    (``known_ids``) is the one it started; none means it did not take effect, and the client sends it once more."""
    since = (now or odata.utcnow()) - datetime.timedelta(seconds=CLOCK_SKEW)
    known = set(str(i) for i in known_ids if i is not None)
    odata_filter = odata.and_all(machine_filter(machine_id), "startTime ge %s" % odata.format_time(since))

    def reconcile():
        return latest([i for i in client.list("/api/investigations", odata_filter=odata_filter)
                       if str(i.get("id")) not in known])

    return odata.entity(client.post("/api/machines/%s/startInvestigation" % odata.path_segment(machine_id),
                                    json={"Comment": comment or DEFAULT_COMMENT}, reconcile=reconcile))


def read(client, investigation_id):
    return odata.entity(client.get("/api/investigations/%s" % odata.path_segment(investigation_id)))


def wait_for(client, investigation, timeout, sleep=time.sleep, clock=time.monotonic, first=2.0, maximum=30.0,
             progress=None):
    """Poll ``GET /api/investigations/{id}`` until it leaves WORKING_STATES or ``timeout`` seconds have passed.
    Returns ``(investigation, settled)``. ``progress`` (progress.Progress) is told each state read."""
    deadline = clock() + timeout
    delay = first
    while investigation.get("state") in WORKING_STATES:
        if progress is not None:
            progress.update(investigation.get("state"))
        remaining = deadline - clock()
        if remaining <= 0:
            return investigation, False
        sleep(min(delay, remaining))
        delay = min(delay * 1.5, maximum)
        investigation = read(client, odata.answer_id(investigation, "investigation"))
    if progress is not None:
        progress.done(investigation.get("state"))
    return investigation, True


def describe(investigation):
    return "Investigation %s on %s" % (investigation.get("id"),
                                       investigation.get("computerDnsName") or investigation.get("machineId"))
