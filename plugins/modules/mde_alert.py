#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_alert
short_description: Update (triage) alerts in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Sets the status, owner, classification and determination of one alert or of a list of alerts, and adds a comment.
  - Reads the alerts first and writes only what differs, so a re-run changes nothing. A comment is idempotent by its
    text - it is added to an alert unless the alert already carries a comment with exactly that text (the API appends
    every comment it is sent to the alert's C(comments)); O(force_comment=true) adds it anyway.
  - One alert is updated with C(PATCH /api/alerts/{id}); a list with C(POST /api/alerts/batchUpdate), one call per
    set of differing fields (the endpoint applies one body to every alert it lists), only for the alerts that need it.
    The batch endpoint allows 10 calls a minute; the shared client waits when the API answers HTTP 429.
  - All input is validated before the first API call. An alert id the API does not know fails the task before any write.
  - Needs the WindowsDefenderATP application permission C(Alert.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: Reads the alerts and reports what would change, without writing.
  diff_mode:
    support: full
    description: Per alert id, the fields that change, before and after (and the comment that would be added).
options:
  alert_id:
    description:
      - The id of the alert to update, such as V(da637472900382838869_1364969609).
      - Exactly one of O(alert_id) and O(alert_ids) is required.
    type: str
  alert_ids:
    description:
      - The ids of several alerts to update the same way. Repeated ids are updated once.
      - They are read 50 per request (C(id eq ... or id eq ...)) and written with the batch update endpoint.
    type: list
    elements: str
  status:
    description: The alert status to set.
    type: str
    choices: [New, InProgress, Resolved]
  assigned_to:
    description:
      - The owner of the alert, a user principal name such as V(secop2@contoso.com).
      - Compared case-insensitively with the current owner.
    type: str
  classification:
    description: The classification to set.
    type: str
    choices: [TruePositive, InformationalExpectedActivity, FalsePositive]
  determination:
    description:
      - The determination to set. Requires O(classification), because the valid values depend on it
        (C(Other) goes with every classification).
      - With V(TruePositive) one of V(MultiStagedAttack), V(MaliciousUserActivity), V(CompromisedUser), V(Malware),
        V(Phishing), V(UnwantedSoftware), V(Other).
      - With V(InformationalExpectedActivity) one of V(SecurityTesting), V(LineOfBusinessApplication),
        V(ConfirmedUserActivity), V(Other).
      - With V(FalsePositive) one of V(Clean), V(InsufficientData), V(Other).
      - Values are spelled as the API's alert entity page spells them. The update page's spellings V(ConfirmedActivity)
        and V(NotMalicious) are accepted too and sent as V(ConfirmedUserActivity) and V(Clean).
    type: str
    choices: [MultiStagedAttack, MaliciousUserActivity, CompromisedUser, Malware, Phishing, UnwantedSoftware, Other,
              SecurityTesting, LineOfBusinessApplication, ConfirmedUserActivity, Clean, InsufficientData,
              ConfirmedActivity, NotMalicious]
  comment:
    description:
      - A comment to add to the alert(s), unless an alert already carries a comment with exactly this text.
    type: str
  force_comment:
    description: Add O(comment) even to alerts that already carry an identical one.
    type: bool
    default: false
    version_added: 0.2.0
notes:
  - When O(classification) changes without O(determination) and an alert's current determination does not go with the
    new classification, the task fails before writing and asks for O(determination).
  - For a list, the returned C(alerts) are read again after the batch update, because the batch endpoint answers with an
    empty body. In check mode they are the alerts as read, with the planned fields set.
'''

EXAMPLES = r'''
- name: Take an alert
  defender.endpoint.mde_alert:
    alert_id: da637472900382838869_1364969609
    status: InProgress
    assigned_to: secop2@contoso.com

- name: Resolve the high-severity alerts found earlier as true-positive malware
  defender.endpoint.mde_alert:
    alert_ids: "{{ found.alerts | map(attribute='id') | list }}"
    status: Resolved
    classification: TruePositive
    determination: Malware
    comment: Machine re-imaged by the remediation playbook
  register: triage

- name: Mark a penetration test as expected activity
  defender.endpoint.mde_alert:
    alert_id: da637472900382838869_1364969609
    status: Resolved
    classification: InformationalExpectedActivity
    determination: SecurityTesting
'''

RETURN = r'''
alert:
  description:
    - The Alert entity, as the API returns it (camelCase keys), after the update.
    - In check mode, the alert as read with the planned fields set.
  returned: when O(alert_id) is given
  type: dict
  sample:
    id: da637472900382838869_1364969609
    status: Resolved
    assignedTo: secop2@contoso.com
    classification: TruePositive
    determination: Malware
    severity: Low
    comments:
      - comment: Resolve my alert and assign to secop2
        createdBy: secop2@contoso.com
        createdTime: "2021-01-26T01:00:37.8404534Z"
alerts:
  description:
    - The Alert entities of O(alert_ids), in their order, as the API returns them after the update.
    - In check mode, the alerts as read with the planned fields set.
  returned: when O(alert_ids) is given
  type: list
  elements: dict
updated_ids:
  description:
    - The ids of the alerts that were (in check mode, would be) updated.
    - When a write call for a list fails part way, the task fails and this lists the alerts that the calls before
      it had already updated.
  returned: always
  type: list
  elements: str
  sample: [da637472900382838869_1364969609]
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import alerts as alerts_utils

PERMISSION = "Alert.ReadWrite.All"


def read_current(ctx, ids, single):
    """The current Alert entities of ``ids`` (in that order); fails naming ids the API does not know."""
    if single:
        try:
            return [odata.entity(ctx.client.get("/api/alerts/%s" % odata.path_segment(ids[0])))]
        except MDEError as e:
            if e.status == 404:
                ctx.fail_json(msg="No alert with id %s in Defender for Endpoint; nothing was changed." % ids[0],
                              **e.to_dict())
            raise
    found = alerts_utils.read_by_ids(ctx.client, ids)
    missing = [i for i in ids if i.lower() not in found]
    if missing:
        ctx.fail_json(msg="%d of the %d alert ids are not in Defender for Endpoint; nothing was changed: %s "
                      "(missing_ids lists them all)." % (len(missing), len(ids), odata.summary(missing)),
                      missing_ids=missing)
    return [found[i.lower()] for i in ids]


def run(ctx):
    p = ctx.params
    single = p["alert_id"] is not None
    ids = [alerts_utils.check_alert_id(p["alert_id"])] if single else \
        odata.unique(alerts_utils.check_alert_ids(p["alert_ids"]))
    desired = alerts_utils.desired_fields(p["status"], p["assigned_to"], p["classification"], p["determination"])
    comment = p["comment"]
    force = p["force_comment"]

    current = read_current(ctx, ids, single)
    plans = []
    invalid = []
    diff = dict(before={}, after={})
    for alert in current:
        changes = alerts_utils.plan_update(alert, desired)
        error = alerts_utils.resulting_combination_error(alert, changes)
        if error:
            invalid.append("%s (now %s/%s): %s" % (alert["id"], alert.get("classification"),
                                                   alert.get("determination"), error))
        # A comment is idempotent by its text: added unless the alert already holds an identical one.
        with_comment = comment if comment and (force or not alerts_utils.comment_count(alert, comment)) else None
        if not changes and not with_comment:
            continue
        plans.append((alert["id"], changes, with_comment))
        diff["before"][alert["id"]] = dict((k, alert.get(k)) for k in changes)
        diff["after"][alert["id"]] = dict(changes, **({"comment": comment} if with_comment else {}))
    if invalid:
        ctx.fail_json(msg="Nothing was changed: set determination too, because the current determination of %d "
                      "alert(s) does not go with the new classification: %s."
                      % (len(invalid), odata.summary(invalid, show=str, sep="; ")))

    updated_ids = [ident for ident, _changes, _comment in plans]
    result = dict(changed=bool(plans), updated_ids=updated_ids, diff=diff)
    if not plans or ctx.check_mode:
        planned = dict((ident, changes) for ident, changes, _comment in plans)
        entities = [dict(a, **planned.get(a["id"], {})) for a in current]
    elif single:
        # A lost answer is reconciled: the alert is read back (fields, and how often it holds the comment) before the
        # PATCH is ever sent again, so a comment is never added twice.
        entities = [alerts_utils.update(ctx.client, current[0], plans[0][1], plans[0][2])]
    else:
        done = []
        by_id = dict((a["id"], a) for a in current)
        for (changes, with_comment), group in alerts_utils.batch_groups(
                [(ident, (changes, with_comment)) for ident, changes, with_comment in plans]):
            for part in odata.chunks(group, alerts_utils.BATCH_CHUNK):
                try:
                    alerts_utils.batch_update(ctx.client, [by_id[i] for i in part], changes, with_comment)
                except MDEError as e:
                    ctx.fail_partway(e, done, len(updated_ids), "alerts")
                done.extend(part)
        # batchUpdate answers 200 with an empty body: read the updated alerts again to return them.
        fresh = alerts_utils.read_by_ids(ctx.client, updated_ids)
        entities = [fresh.get(a["id"].lower(), a) for a in current]
    if single:
        result["alert"] = entities[0]
    else:
        result["alerts"] = entities
    return result


ARGUMENT_SPEC = dict(
    alert_id=dict(type="str"),
    alert_ids=dict(type="list", elements="str"),
    status=dict(type="str", choices=alerts_utils.STATUSES),
    assigned_to=dict(type="str"),
    classification=dict(type="str", choices=alerts_utils.CLASSIFICATIONS),
    determination=dict(type="str", choices=alerts_utils.DETERMINATION_CHOICES),
    comment=dict(type="str"),
    force_comment=dict(type="bool", default=False),
)
SPEC_OPTIONS = dict(
    mutually_exclusive=[["alert_id", "alert_ids"]],
    required_one_of=[["alert_id", "alert_ids"],
                     ["status", "assigned_to", "classification", "determination", "comment"]],
    required_by=dict(determination="classification"),
)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(alert_id=alerts_utils.check_alert_id, alert_ids=alerts_utils.check_alert_ids)
    ctx.checked(alerts_utils.validate_update, p["assigned_to"], p["classification"], p["determination"], p["comment"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
