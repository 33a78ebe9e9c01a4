#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_detection_rule
short_description: Create, update or delete a custom detection rule in Microsoft Graph security (Defender XDR)
version_added: 0.3.0
description:
  - Keeps one custom detection rule of Microsoft Defender XDR as the task declares it, through Microsoft Graph
    (C(/v1.0/security/rules/detectionRules), the API as reworked in 2026, where the client chooses the rule's id).
  - Reads the rule by O(rule_id) first. A missing rule is created (C(POST)); an existing one gets one C(PATCH) with
    only the properties that differ; when nothing differs nothing is sent. O(state=absent) sends one C(DELETE), and
    nothing when the rule is already gone.
  - An option left out is left as it is in the tenant (but O(status), whose default is V(enabled)). Inside O(alert), a key left out is left as it is too.
    O(automated_actions) and O(alert.entity_mappings) are whole sets - the kinds they do not list are cleared; to
    remove every automated action give O(automated_actions={}); to remove the custom details give
    O(alert.custom_details={}); an empty O(device_groups) list makes the rule apply to every device.
  - Options are snake_case and sent in Graph's camelCase (C(device_id_column) becomes C(deviceIdColumn)); the keys of
    O(alert.custom_details) are the alert's detail names and are sent exactly as written.
  - With O(validate_query) (the default), before any write of the rule - in check mode too, which is what a CI check
    wants - the query runs once through C(runHuntingQuery) (the last hour, C(| take 0)) and its columns are checked -
    C(Timestamp) (or C(TimeGenerated)); C(DeviceId) and C(ReportId) for C(Device*) tables, C(ObservationId) for
    C(Observation*) tables, C(ReportId) for the other Defender XDR tables but C(Alert*); and every column a mapping, an
    action or a custom detail names. A query that does not parse or lacks a column fails the task with no rule write.
  - A near-real-time rule (O(frequency=0)) must query one table, without joins, unions, C(externaldata) or comment
    lines; that is checked before any call.
  - A C(409) or C(400) answer to a create is reconciled by reading the rule back - a create that took effect is not
    an error. Every option is checked before any call; a bad one fails the task with one sentence and no request.
  - The rule's texts are sent as written. In a playbook, Ansible would render the C({{ColumnName}}) placeholders of a
    dynamic alert title as templates; the role C(defender.endpoint.detection_rules) reads rules from files and sends
    them as written.
  - Needs the Microsoft Graph permission C(CustomDetection.ReadWrite.All) (application or delegated), and
    C(ThreatHunting.Read.All) for O(validate_query).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: Reads the rule, validates the query (O(validate_query)) and reports what would change, without writing.
  diff_mode:
    support: full
    description: The rule before and after, in the module's options (the export's file format).
options:
  rule_id:
    description:
      - The rule's id. Microsoft documents no shape; the module accepts 1 to 128 letters, digits, C(.), C(_) or C(-)
        (a rule made before the 2026 rework has a number the service chose, such as V(7506)).
    type: str
    required: true
  state:
    description: Whether the rule exists.
    type: str
    choices: [present, absent]
    default: present
  display_name:
    description: The rule's name (unique in the tenant). Required to create the rule.
    type: str
  description:
    description: The rule's description.
    type: str
  status:
    description: Whether the rule runs. A rule the service turned off (C(autoDisabled)) counts as V(disabled).
    type: str
    choices: [enabled, disabled]
    default: enabled
  query:
    description: The rule's advanced hunting (KQL) query. Required to create the rule.
    type: str
  frequency:
    description:
      - How often the rule runs, an ISO 8601 duration (V(PT1H), V(P1D)) or V(0)/V(nrt) (near real time, sent as
        V(PT0S)), V(1h), V(3h), V(12h), V(24h). Compared by value, so V(24h), V(P1D) and V(PT24H) are the same; sent
        in its shortest form (V(P1D)). Besides 0, from 5 minutes to 14 days. Required to create the rule.
    type: str
  alert:
    description: The alert the rule raises (C(detectionAction.alertTemplate)). Required to create the rule.
    type: dict
    suboptions:
      title:
        description: The alert's title (unique in the tenant); C({{Column}}) placeholders take values from the query.
        type: str
        required: true
      description:
        description: The alert's description.
        type: str
      severity:
        description: The alert's severity.
        type: str
        choices: [informational, low, medium, high]
      recommended_actions:
        description: What the analyst should do, one text.
        type: str
      tactics:
        description:
          - "MITRE ATT&CK tactics and techniques, as a list of C({tactic, techniques}) where C(techniques) is a list of
            C({technique, sub_techniques}), for example C([{tactic: Execution, techniques: [{technique: T1059,
            sub_techniques: [T1059.001]}]}])."
        type: list
        elements: dict
      custom_details:
        description: "Detail name -> query column, for example C({Command line: ProcessCommandLine})."
        type: dict
      entity_mappings:
        description:
          - "Entity kind -> list of column mappings, in snake_case, for example C({hosts: [{device_id_column: DeviceId}],
            accounts: [{name_column: AccountName}]}). The kinds are C(accounts), C(amazon_resources),
            C(azure_resources), C(cloud_applications), C(dns), C(files), C(google_cloud_resources), C(hosts), C(ips),
            C(mailboxes), C(mail_clusters), C(mail_messages), C(o_auth_applications), C(processes),
            C(registry_values), C(security_groups), C(urls); the keys of each are Graph's column properties in
            snake_case (C(device_id_column), C(sha1_column), ...)."
        type: dict
  automated_actions:
    description:
      - "Action kind -> list of actions, in snake_case, for example C({isolate_devices: [{device_id_column: DeviceId,
        isolation_type: full}]}). The kinds are C(isolate_devices), C(collect_investigation_packages),
        C(initiate_investigations), C(restrict_app_executions), C(run_antivirus_scans), C(allow_files), C(block_files),
        C(stop_and_quarantine_files), C(mark_users_as_compromised), C(disable_users), C(force_user_password_resets),
        C(hard_delete_emails), C(soft_delete_emails), C(move_emails_to_deleted_items), C(move_emails_to_inbox),
        C(move_emails_to_junk)."
      - The whole set; V({}) removes every action.
    type: dict
  device_groups:
    description: The device groups the rule applies to; an empty list means every device.
    type: list
    elements: str
  validate_query:
    description: Run the query through C(runHuntingQuery) and check its columns before writing the rule.
    type: bool
    default: true
  graph_version:
    description:
      - The Graph version to call. Microsoft documents the endpoints under V(v1.0); V(beta) is for tenants where they
        are not live in v1.0 yet. The module sends the same (new) properties to both.
    type: str
    choices: [v1.0, beta]
    default: v1.0
seealso:
  - name: detectionRule resource type (Microsoft Graph)
    description: The rule's properties.
    link: https://learn.microsoft.com/en-us/graph/api/resources/security-detectionrule
  - name: Create and manage custom detection rules (Defender XDR)
    description: What a rule's query must return, frequencies, near-real-time rules.
    link: https://learn.microsoft.com/en-us/defender-xdr/custom-detection-rules
  - module: defender.endpoint.mde_detection_rule_info
'''

EXAMPLES = r'''
- name: Keep a rule as written in git
  defender.endpoint.mde_detection_rule:
    rule_id: ansible-encoded-powershell
    display_name: Encoded PowerShell
    frequency: 1h
    query: >-
      DeviceProcessEvents | where ProcessCommandLine has "-enc"
      | project Timestamp, DeviceId, ReportId, DeviceName, FileName, SHA1
    alert:
      title: Encoded PowerShell
      severity: medium
      tactics:
        - tactic: Execution
          techniques: [{technique: T1059, sub_techniques: [T1059.001]}]
      custom_details:
        Process: FileName
      entity_mappings:
        hosts: [{device_id_column: DeviceId, name_column: DeviceName}]
        files: [{name_column: FileName, sha1_column: SHA1}]
    automated_actions:
      isolate_devices: [{device_id_column: DeviceId, isolation_type: full}]

- name: Turn it off without changing anything else
  defender.endpoint.mde_detection_rule:
    rule_id: ansible-encoded-powershell
    status: disabled

- name: Remove it
  defender.endpoint.mde_detection_rule:
    rule_id: ansible-encoded-powershell
    state: absent
'''

RETURN = r'''
rule:
  description:
    - The rule, as Graph returns it (camelCase keys), after the write; in check mode, the rule as read with the planned
      changes applied; with O(state=absent), the rule as it was before the delete (empty when it did not exist).
  returned: success
  type: dict
  sample:
    id: ansible-encoded-powershell
    displayName: Encoded PowerShell
    status: enabled
    queryCondition: {queryText: "DeviceProcessEvents | ..."}
    schedule: {frequency: PT1H}
    detectionAction:
      alertTemplate: {title: Encoded PowerShell, severity: medium}
      automatedActions: {isolateDevices: [{deviceIdColumn: DeviceId, isolationType: full}]}
    createdBy: emulator-full
    createdDateTime: "2026-10-20T09:00:00Z"
columns:
  description: The columns the query returned when O(validate_query) ran it (empty when no write was needed).
  returned: success
  type: list
  elements: str
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import detections as du

PERMISSION = "CustomDetection.ReadWrite.All"


def _check_query(ctx, rule):
    if not ctx.params["validate_query"]:
        return []
    try:
        return du.check_query(ctx.client, rule)
    except MDEError as e:
        if e.status == 403:
            ctx.fail_json(msg="%s With validate_query (the default), the module runs the rule's query through "
                          "runHuntingQuery, which needs the permission ThreatHunting.Read.All as well; nothing was "
                          "written." % str(e).rstrip(".") + ".", **e.to_dict())
        raise


def run(ctx):
    p = ctx.params
    version = p["graph_version"]
    rule_id = du.check_rule_id(p["rule_id"])
    rule = du.get(ctx.client, rule_id, version)
    before = du.to_options(rule) if rule else {}
    if p["state"] == "absent":
        if rule is None:
            return dict(changed=False, rule={}, columns=[], diff=dict(before={}, after={}))
        if not ctx.check_mode:
            du.delete(ctx.client, rule_id, version)
        return dict(changed=True, rule=rule, columns=[], diff=dict(before=before, after={}))
    body = du.build(p)
    if rule is None:
        du.check_create(body)
        columns = _check_query(ctx, body)
        if ctx.check_mode:
            planned = body
        else:
            planned = du.create(ctx.client, body, version)
        return dict(changed=True, rule=planned, columns=columns, diff=dict(before={}, after=du.to_options(planned)))
    changes = du.plan(rule, body)
    if not changes:
        return dict(changed=False, rule=rule, columns=[], diff=dict(before=before, after=before))
    planned = du.merged(rule, changes)
    columns = _check_query(ctx, planned)
    if not ctx.check_mode:
        planned = du.update(ctx.client, rule, changes, version)
    return dict(changed=True, rule=planned, columns=columns, diff=dict(before=before, after=du.to_options(planned)))


ALERT_SPEC = dict(
    title=dict(type="str", required=True),
    description=dict(type="str"),
    severity=dict(type="str", choices=du.SEVERITIES),
    recommended_actions=dict(type="str"),
    tactics=dict(type="list", elements="dict"),
    custom_details=dict(type="dict"),
    entity_mappings=dict(type="dict"),
)
ARGUMENT_SPEC = dict(
    rule_id=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    display_name=dict(type="str"),
    description=dict(type="str"),
    status=dict(type="str", choices=du.STATUSES, default="enabled"),
    query=dict(type="str"),
    frequency=dict(type="str"),
    alert=dict(type="dict", options=ALERT_SPEC),
    automated_actions=dict(type="dict"),
    device_groups=dict(type="list", elements="str"),
    validate_query=dict(type="bool", default=True),
    graph_version=dict(type="str", choices=list(du.VERSIONS), default="v1.0"),
)
SPEC_OPTIONS = {}


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(du.check_rule_id, p["rule_id"])
    if p["state"] == "present":
        ctx.checked(du.build, p)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
