#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_incident
short_description: Update (triage) an incident in Microsoft Graph security (Microsoft Defender XDR)
version_added: 0.2.0
description:
  - Sets the status, owner, classification, determination, custom tags and resolving comment of one incident, and adds
    a comment, through Microsoft Graph (C(PATCH /v1.0/security/incidents/{id}), C(POST .../comments)).
  - Reads the incident first and sends only the properties that differ; when nothing differs, nothing is sent.
  - A O(comment) is idempotent by its text - it is posted unless the incident already carries a comment with exactly
    that text, so a re-run of a triage playbook adds nothing. O(force_comment=true) posts it anyway.
  - All input is validated before the first call, the classification/determination pair included.
  - Needs the Microsoft Graph application permission C(SecurityIncident.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: Reads the incident and reports what would change, without writing.
  diff_mode:
    support: full
    description: The properties that change, before and after (and the comment that would be added).
options:
  incident_id:
    description: The id of the incident, a number such as V(2972395).
    type: str
    required: true
  status:
    description: The status to set (V(redirected) and V(awaitingAction) are Defender's own and cannot be set).
    type: str
    choices: [active, inProgress, resolved]
  assigned_to:
    description:
      - The owner, a user principal name such as V(secop2@contoso.com); compared case-insensitively.
      - An empty string unassigns the incident.
    type: str
  classification:
    description: The classification to set.
    type: str
    choices: [unknown, falsePositive, truePositive, informationalExpectedActivity]
  determination:
    description:
      - The determination to set. Requires O(classification), because the valid values depend on it.
      - With V(truePositive) one of V(multiStagedAttack), V(maliciousUserActivity), V(compromisedAccount), V(malware),
        V(phishing), V(unwantedSoftware), V(other).
      - With V(informationalExpectedActivity) one of V(securityTesting), V(lineOfBusinessApplication),
        V(confirmedUserActivity), V(other).
      - With V(falsePositive) one of V(notMalicious), V(notEnoughDataToValidate), V(other). With V(unknown), V(unknown).
    type: str
    choices: [multiStagedAttack, maliciousUserActivity, compromisedAccount, malware, phishing, unwantedSoftware, other,
              securityTesting, lineOfBusinessApplication, confirmedUserActivity, notMalicious, notEnoughDataToValidate,
              unknown]
  custom_tags:
    description: Custom tags the incident must carry (added to its current ones, unless O(purge_custom_tags)).
    type: list
    elements: str
  purge_custom_tags:
    description: With V(true), the incident's custom tags become exactly O(custom_tags).
    type: bool
    default: false
  resolving_comment:
    description: The incident's resolving comment (C(resolvingComment)), usually set with O(status=resolved).
    type: str
  comment:
    description: A comment to add, unless the incident already carries one with exactly this text.
    type: str
  force_comment:
    description: Post O(comment) even when the incident already carries an identical one.
    type: bool
    default: false
seealso:
  - name: Update incident (Microsoft Graph)
    description: The endpoint and its permission.
    link: https://learn.microsoft.com/en-us/graph/api/security-incident-update
'''

EXAMPLES = r'''
- name: Take an incident and say so
  defender.endpoint.mde_incident:
    incident_id: "1000"
    status: inProgress
    assigned_to: secop2@contoso.com
    custom_tags: [ansible-triage]
    comment: Devices contained by Ansible

- name: Resolve it as true-positive malware
  defender.endpoint.mde_incident:
    incident_id: "1000"
    status: resolved
    classification: truePositive
    determination: malware
    resolving_comment: Machines re-imaged
'''

RETURN = r'''
incident:
  description:
    - The incident, as Graph returns it (camelCase keys), after the update; C(comments) includes the one added.
    - In check mode, the incident as read with the planned properties set.
  returned: success
  type: dict
  sample:
    id: "1000"
    status: inProgress
    assignedTo: secop2@contoso.com
    classification: unknown
    determination: unknown
    customTags: [ansible-triage]
    comments:
      - comment: Devices contained by Ansible
        createdByDisplayName: emulator-full
        createdDateTime: "2026-01-26T01:00:37.8404534Z"
comment_added:
  description: Whether O(comment) was (in check mode, would be) posted.
  returned: always
  type: bool
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import incidents as iu

PERMISSION = "SecurityIncident.ReadWrite.All"


def run(ctx):
    p = ctx.params
    ident = iu.check_incident_id(p["incident_id"])
    try:
        incident = iu.get(ctx.client, ident)
    except MDEError as e:
        if e.status == 404:
            ctx.fail_json(msg="No incident with id %s in Microsoft Graph security; nothing was changed." % ident,
                          **e.to_dict())
        raise
    desired = iu.desired_fields(p["status"], p["assigned_to"], p["classification"], p["determination"],
                                p["resolving_comment"])
    changes = iu.plan_update(incident, desired, p["custom_tags"], p["purge_custom_tags"])
    error = iu.resulting_combination_error(incident, changes)
    if error:
        ctx.fail_json(msg="Nothing was changed: set determination too, because the incident's determination %s does "
                      "not go with the new classification: %s." % (incident.get("determination"), error))
    comment = p["comment"]
    add_comment = bool(comment) and (p["force_comment"] or iu.comment_count(incident, comment) == 0)
    diff = dict(before=dict((k, incident.get(k)) for k in changes), after=dict(changes))
    if add_comment:
        diff["after"]["comment"] = comment
    result = dict(changed=bool(changes) or add_comment, comment_added=add_comment, diff=diff)
    if ctx.check_mode or not result["changed"]:
        result["incident"] = dict(incident, **changes)
        return result
    if changes:
        incident = iu.update(ctx.client, incident, changes)
    if add_comment:
        incident = dict(incident, comments=iu.add_comment(ctx.client, incident, comment))
    result["incident"] = incident
    return result


ARGUMENT_SPEC = dict(
    incident_id=dict(type="str", required=True),
    status=dict(type="str", choices=iu.SETTABLE_STATUSES),
    assigned_to=dict(type="str"),
    classification=dict(type="str", choices=iu.CLASSIFICATIONS),
    determination=dict(type="str", choices=iu.DETERMINATIONS),
    custom_tags=dict(type="list", elements="str"),
    purge_custom_tags=dict(type="bool", default=False),
    resolving_comment=dict(type="str"),
    comment=dict(type="str"),
    force_comment=dict(type="bool", default=False),
)
SPEC_OPTIONS = dict(
    required_one_of=[["status", "assigned_to", "classification", "determination", "custom_tags", "resolving_comment",
                      "comment"]],
    required_by=dict(determination="classification"),
)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(iu.check_incident_id, p["incident_id"])
    ctx.checked(iu.validate_update, p["assigned_to"], p["classification"], p["determination"],
                p["custom_tags"], p["resolving_comment"], p["comment"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
