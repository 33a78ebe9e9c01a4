#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_indicator
short_description: Create, update or delete custom indicators (IoCs) in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Manages custom indicators of compromise (file hashes, certificate thumbprints, IP addresses, domain names and
    URLs), one at a time or many at once.
  - B(One indicator) (O(indicator_value) and the options beside it) is read with one filtered list call and written
    with C(POST /api/indicators), which creates or updates, or deleted with C(DELETE /api/indicators/{id}).
  - B(Many indicators) (O(indicators)) are read with as few list calls as the API allows (one call filtered on
    their values for up to 10 indicators whose values fit a short query, otherwise every visible indicator in pages
    of 10,000, so at most two calls), never one call per indicator. Only new and changed ones are written, through
    C(POST /api/indicators/import) in batches of at most 500; deletions go through
    C(POST /api/indicators/BatchDelete) in batches of at most 500.
  - An indicator is identified by its type and value (the value compared case-insensitively, except for URLs).
    It is written only when one of the fields given differs from what Defender holds; fields not given are left
    as they are. O(application) is honoured by Defender only when an indicator is created, so it is not compared.
  - Every value is validated for its type before any API call, and so are the action (which actions each type
    accepts, and that V(Audit) needs O(generate_alert=true)), O(expiration_time) and O(educate_url). A failed
    validation names the offending item and makes no API call at all (not even a token request).
  - "Defender holds at most 15,000 active indicators per tenant. When O(indicators) would create indicators, the
    module counts the active indicators it can see, and fails before writing anything if the result would pass
    that limit."
  - Needs the WindowsDefenderATP application permission C(Ti.ReadWrite.All), or C(Ti.ReadWrite). An application
    with only C(Ti.ReadWrite) sees and changes only the indicators it created itself; for it, "already present",
    "already absent", the limit count and O(purge) concern those indicators only, and writing an indicator that
    another application or a user created fails for that indicator.
seealso:
  - plugin: defender.endpoint.indicators_from_csv
    plugin_type: filter
    description: Custom indicators from CSV text, in the shape O(indicators) takes.
  - name: The defender.endpoint.ioc_sync role
    description: Keeps the tenant's indicators in step with a CSV feed (this filter and this module, with O(purge)).
    link: https://github.com/defender-endpoint/defender.endpoint/tree/main/roles/ioc_sync
  - name: Indicators API (Defender for Endpoint)
    description: The endpoints, their limits and the permission.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/ti-indicator
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: Reads, plans and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Shows the fields of each created, updated or deleted indicator before and after.
options:
  state:
    description:
      - V(present) creates or updates the indicator(s); V(absent) deletes them.
      - With V(absent) only the value and type of each indicator are needed.
    type: str
    choices: [present, absent]
    default: present
  indicator_value:
    description:
      - The value of a single indicator; its format depends on O(indicator_type).
      - V(FileSha1) and V(CertificateThumbprint) are 40 hexadecimal characters, V(FileSha256) 64, V(FileMd5) 32.
      - V(IpAddress) is one IPv4 or IPv6 address, no CIDR ranges. An IPv6 address may be given in any form
        (V(2001:db8::77)); it is sent in full, 8 groups, as the API wants.
      - V(DomainName) is a host or domain name without scheme or path, and matches its subdomains too.
      - V(Url) is an http or https URL, with or without the scheme.
      - Leading and trailing spaces are removed. Mutually exclusive with O(indicators).
    type: str
  indicator_type:
    description: The type of the single indicator. Required with O(indicator_value).
    type: str
    choices: [FileSha1, FileSha256, FileMd5, CertificateThumbprint, IpAddress, DomainName, Url]
  action:
    description:
      - What Defender does when it sees the indicator. Required with O(state=present).
      - Files accept V(Allowed), V(Audit), V(Warn), V(Block) and V(BlockAndRemediate); IP addresses, domains and
        URLs V(Allowed), V(Audit), V(Warn) and V(Block); certificates V(Allowed) and V(BlockAndRemediate).
      - V(Audit) requires O(generate_alert=true).
      - The legacy V(Alert) and V(AlertAndBlock) (end of support January 2022) are sent as given, with a warning.
    type: str
    choices: [Warn, Block, Audit, Alert, AlertAndBlock, BlockAndRemediate, Allowed]
  title:
    description: The indicator's title (alert title). Required with O(state=present).
    type: str
  description:
    description: The indicator's description. Required with O(state=present).
    type: str
  severity:
    description: The severity of alerts the indicator raises. Defender uses V(Informational) when it is not given on creation.
    type: str
    choices: [Informational, Low, Medium, High]
  expiration_time:
    description:
      - When the indicator expires, an ISO 8601 time such as V(2026-12-31T00:00:00Z) (UTC when no offset is given).
      - It must be in the future. Defender lists only active indicators, so an expired one is seen as absent.
      - Once set it cannot be removed by this module, only changed.
    type: str
  recommended_actions:
    description: Recommended actions shown with alerts the indicator raises.
    type: str
  rbac_group_names:
    description:
      - Names of the device groups the indicator applies to. An empty list means all devices.
      - Compared without regard to order.
    type: list
    elements: str
  generate_alert:
    description:
      - Whether a match raises an alert. Must be V(true) with O(action=Audit).
      - An indicator for which Defender does not return this field counts as V(false).
    type: bool
  application:
    description: The application associated with the indicator. Used by Defender only when the indicator is created.
    type: str
  educate_url:
    description: A URL shown to users whom the indicator blocks or warns; only with O(action) V(Block) or V(Warn).
    type: str
  indicators:
    description:
      - Many indicators, each a dictionary with the same keys as the single form (O(indicator_value),
        O(indicator_type), O(action), ...). Mutually exclusive with the single-form options.
      - Each indicator may appear once (type and value). With O(state=absent) only value and type are needed.
      - Build long lists from a variables file or with Jinja rather than one task per indicator. From a threat feed's
        CSV export, the P(defender.endpoint.indicators_from_csv#filter) filter builds this list; the
        C(defender.endpoint.ioc_sync) role and playbook read a feed and keep the tenant's indicators in step with it.
    type: list
    elements: dict
    suboptions:
      indicator_value:
        description: See O(indicator_value). Required.
        type: str
      indicator_type:
        description: See O(indicator_type). Required.
        type: str
        choices: [FileSha1, FileSha256, FileMd5, CertificateThumbprint, IpAddress, DomainName, Url]
      action:
        description: See O(action). Required with O(state=present).
        type: str
        choices: [Warn, Block, Audit, Alert, AlertAndBlock, BlockAndRemediate, Allowed]
      title:
        description: See O(title). Required with O(state=present).
        type: str
      description:
        description: See O(description). Required with O(state=present).
        type: str
      severity:
        description: See O(severity).
        type: str
        choices: [Informational, Low, Medium, High]
      expiration_time:
        description: See O(expiration_time).
        type: str
      recommended_actions:
        description: See O(recommended_actions).
        type: str
      rbac_group_names:
        description: See O(rbac_group_names).
        type: list
        elements: str
      generate_alert:
        description: See O(generate_alert).
        type: bool
      application:
        description: See O(application).
        type: str
      educate_url:
        description: See O(educate_url).
        type: str
  purge:
    description:
      - With O(indicators) and O(state=present), also delete the indicators that this application created and that
        the list no longer holds.
      - "Exactly these can be deleted: active indicators the credentials can see whose C(createdBy) equals this
        application's client ID (O(client_id), compared case-insensitively) and whose type and value are not in
        O(indicators). Indicators created by users in the portal (C(createdBy) is a user name), by other
        applications, or already expired, are never touched."
      - With O(access_token), the module cannot know which application the token belongs to, so O(purge) requires
        O(client_id) (or E(MDE_CLIENT_ID)) set to the application (client) ID the token was issued to; the token
        itself is not decoded.
      - An empty O(indicators) list with O(purge=true) deletes every indicator this application created.
    type: bool
    default: false
notes:
  - C(POST /api/indicators/import) and C(BatchDelete) are limited to 30 calls a minute; throttled calls are retried
    after the C(Retry-After) the API sends, so a sync of 15,000 indicators (30 import calls) takes about a minute.
  - Creating and updating are retried after server errors, since Defender matches an indicator by its type and value
    and writing it twice changes nothing. A repeated C(BatchDelete) after a lost answer gets HTTP 404; the module then
    reads the indicators again and deletes only those still there.
  - With O(indicators), the entity returned for a written indicator is the indicator as read before, with the fields
    written and the id the import API answered; the module does not read it back.
'''

EXAMPLES = r'''
- name: Block a file by its SHA-256
  defender.endpoint.mde_indicator:
    indicator_value: 881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd
    indicator_type: FileSha256
    action: BlockAndRemediate
    title: Ransomware dropper
    description: Seen in incident 4711
    severity: High
    rbac_group_names: [Servers]
    expiration_time: "2030-12-31T00:00:00Z"

- name: Audit a domain (Audit needs generate_alert)
  defender.endpoint.mde_indicator:
    indicator_value: login-contoso.example.net
    indicator_type: DomainName
    action: Audit
    generate_alert: true
    title: Look-alike domain
    description: Reported by the phishing mailbox

- name: Remove an IP indicator
  defender.endpoint.mde_indicator:
    indicator_value: 198.51.100.7
    indicator_type: IpAddress
    state: absent

- name: Sync a threat feed; delete what this app created earlier and the feed no longer lists
  hosts: localhost
  gather_facts: false
  vars_files:
    # feed_indicators: a list of dictionaries with the keys of the single form, for example
    # - {indicator_value: 198.51.100.7, indicator_type: IpAddress, action: Block, title: C2, description: Feed}
    - feed.yml
  tasks:
    - name: Push the feed
      defender.endpoint.mde_indicator:
        indicators: "{{ feed_indicators }}"
        purge: true
      register: sync

    - name: Show what happened
      ansible.builtin.debug:
        var: sync.counts
'''

RETURN = r'''
indicator:
  description:
    - The single indicator as the API returned it (camelCase keys) after the change, or as it is when nothing
      changed. After a deletion, the indicator as it was; V(null) when it did not exist.
    - In check mode, the indicator as it would be written (no C(id) for a new one).
  returned: when O(indicator_value) is used
  type: dict
  sample:
    id: "995"
    indicatorValue: 12.13.14.15
    indicatorType: IpAddress
    action: Block
    application: demo-test
    source: TestPrdApp
    sourceType: AadApp
    createdBy: 45097602-1234-5678-1234-9f453233e62c
    severity: Informational
    title: test
    description: test
    recommendedActions: test
    creationTimeDateTimeUtc: "2018-10-24T11:15:35.3688259Z"
    expirationTime: "2030-12-12T00:00:00Z"
    lastUpdateTime: "2019-10-24T10:54:23.2009016Z"
    lastUpdatedBy: TestPrdApp
    rbacGroupNames: []
indicators:
  description:
    - One entry per indicator of O(indicators), in the same order, then one per indicator deleted by O(purge).
  returned: when O(indicators) is used
  type: list
  elements: dict
  contains:
    indicator_value:
      description: The indicator's value.
      type: str
    indicator_type:
      description: The indicator's type.
      type: str
    result:
      description:
        - What happened (or, in check mode, would happen) to it, V(created), V(updated), V(deleted), V(unchanged)
          (including already absent with O(state=absent)) or V(failed) (the import API refused it).
      type: str
    changes:
      description: For V(updated), the API fields that differed.
      type: list
      elements: str
    purged:
      description: V(true) for an indicator deleted because of O(purge).
      type: bool
    failure_reason:
      description: For V(failed), the reason the import API gave.
      type: str
    entity:
      description: The indicator (camelCase keys) after the change; before it for V(deleted); V(null) if it does not exist.
      type: dict
  sample:
    - indicator_value: 220e7d15b011d7fac48f2bd61114db1022197f7f
      indicator_type: FileSha1
      result: created
      entity:
        id: "2841"
        indicatorValue: 220e7d15b011d7fac48f2bd61114db1022197f7f
        indicatorType: FileSha1
        action: Block
        title: demo
        description: demo
counts:
  description:
    - How many indicators were (or, in check mode, would be) created, updated, deleted, or left unchanged, and how
      many the import API refused (V(failed)).
  returned: always
  type: dict
  sample: {created: 1200, updated: 0, deleted: 3, unchanged: 17, failed: 0}
'''

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import indicators as ti
from ansible_collections.defender.endpoint.plugins.module_utils import odata

PATH = "/api/indicators"
SINGLE_OPTIONS = [option for option, _api in ti.FIELDS]


def read_existing(ctx, bodies, single, purge):
    """Existing indicators that may match ``bodies``; and whether that is every visible indicator."""
    if (single or len(bodies) <= ti.SMALL_LIST) and not purge:
        if not bodies:
            return [], False
        return ti.find_existing(ctx.client, bodies, PATH)  # long URLs: a full read keeps the query string short
    return list(ctx.client.list(PATH, page_size=ti.PAGE_SIZE)), True


def item_result(item):
    body = item["body"]
    out = dict(indicator_value=body["indicatorValue"], indicator_type=body["indicatorType"], result=item["result"])
    if item["result"] == "updated":
        out["changes"] = item["changes"]
    if item.get("purged"):
        out["purged"] = True
    if item["result"] in ("created", "updated"):
        out["entity"] = ti.merged(item["existing"], body)
    else:
        out["entity"] = item["existing"]
    return out


def diff_of(items):
    before, after = {}, {}
    for item in items:
        if item["result"] not in ("created", "updated", "deleted"):
            continue
        key = ti.describe(item["body"])
        fields = list(item["body"].keys())
        if item["result"] != "created":
            before[key] = ti.view(item["existing"], fields if item["result"] == "updated" else
                                  ["indicatorValue", "indicatorType"] + list(ti.COMPARED))
        if item["result"] != "deleted":
            after[key] = dict(item["body"])
    return dict(before=before, after=after)


def run(ctx):
    p = ctx.params
    state = p["state"]
    single = p["indicators"] is None
    # 1. Validate everything; nothing below touches ctx.client before this is done.
    if single:
        spec = dict((option, p[option]) for option in SINGLE_OPTIONS)
        body, warnings = ti.build(spec, state, "indicator")
        bodies = [body]
    else:
        bodies, warnings = ti.build_all(p["indicators"], state)
    if p["purge"]:
        if single:
            raise ValueError("purge needs indicators (the list form).")
        if state != "present":
            raise ValueError("purge is only used with state=present.")
        if not p["client_id"]:
            raise ValueError("purge deletes the indicators this application created (createdBy = its client ID), "
                             "so it needs client_id; with access_token, set client_id to the application (client) "
                             "ID the token was issued to.")
    for warning in warnings[:5]:
        ctx.warn(warning)
    if len(warnings) > 5:
        ctx.warn("%d more indicators use a legacy action." % (len(warnings) - 5))

    # 2. Read current state and plan.
    existing, complete = read_existing(ctx, bodies, single, p["purge"])
    plan = ti.plan(bodies, existing, state, purge=p["purge"], owner=p["client_id"])
    if not single and plan.creates:
        total = len(existing) if complete else sum(1 for _entity in ctx.client.list(PATH, page_size=ti.PAGE_SIZE))
        message = ti.limit_error(total, plan)
        if message:
            ctx.fail_json(msg=message, counts=plan.counts(), changed=False)

    changed = bool(plan.creates or plan.updates or plan.deletes)
    result = dict(changed=changed, counts=plan.counts())
    if ctx._diff:
        if single:
            item = plan.items[0]
            fields = list(item["body"].keys()) if state == "present" else ["indicatorValue", "indicatorType"] + list(ti.COMPARED)
            result["diff"] = dict(before=ti.view(item["existing"], fields),
                                  after=dict(item["body"]) if item["result"] in ("created", "updated") else
                                  ti.view(item["existing"], fields) if item["result"] == "unchanged" else {})
        else:
            result["diff"] = diff_of(plan.items)

    # 3. Write, unless check mode.
    if single:
        item = plan.items[0]
        written = None
        if changed and not ctx.check_mode:
            # Each write is reconciled when its answer is lost: read back before it is ever sent again.
            if item["result"] == "deleted":
                ti.delete_one(ctx.client, item["existing"], PATH)
            else:
                written = odata.entity(ti.submit(ctx.client, item["body"], PATH))
        if written is not None:
            result["indicator"] = written
        elif item["result"] in ("created", "updated"):
            result["indicator"] = ti.merged(item["existing"], item["body"])
        else:
            result["indicator"] = item["existing"]
        return result

    results = [item_result(item) for item in plan.items]
    if ctx.check_mode or not changed:
        result["indicators"] = results
        return result
    deletes = [str(item["existing"]["id"]) for item in plan.deletes]
    if deletes:
        ti.batch_delete(ctx.client, deletes)
    writes = [(n, item) for n, item in enumerate(plan.items) if item["result"] in ("created", "updated")]
    failures = []
    done = 0
    # What took effect, for a failure part of the way: the ids deleted, then those the imports answered for.
    changed_ids = list(deletes)
    # A large import (15,000 indicators: 30 calls, within the API's rate limit) says how far it is once a minute.
    progress = ctx.waiting("the import of %d indicators in batches of %d" % (len(writes), ti.BATCH_SIZE))
    for chunk in odata.chunks(writes, ti.BATCH_SIZE):
        progress.update("importing", "%d of %d sent" % (done, len(writes)))
        try:
            response = ti.import_batch(ctx.client, [item["body"] for _n, item in chunk], PATH)
        except MDEError as e:
            ctx.fail_partway(e, changed_ids, len(deletes) + len(writes), "indicators", counts=plan.counts())
        done += len(chunk)
        pairs = ti.pair_results([item["body"] for _n, item in chunk], response)
        for (n, item), (_body, answer) in zip(chunk, pairs):
            if answer.get("isFailed"):
                results[n]["result"] = "failed"
                results[n]["failure_reason"] = answer.get("failureReason") or "no reason given"
                results[n]["entity"] = item["existing"]
                failures.append((n, item, results[n]["failure_reason"]))
                continue
            changed_ids.append(str(answer["id"]) if answer.get("id") is not None else ti.describe(item["body"]))
            if results[n]["entity"] is not None and answer.get("id") is not None:
                results[n]["entity"]["id"] = str(answer["id"])
    progress.done("imported", "%d of %d sent" % (done, len(writes)))
    counts = dict(created=0, updated=0, deleted=0, unchanged=0, failed=0)
    for r in results:
        counts[r["result"]] += 1
    result.update(indicators=results, counts=counts,
                  changed=bool(counts["created"] or counts["updated"] or counts["deleted"]))
    if failures:
        shown = "; ".join("indicators[%d] (%s): %s" % (n, ti.describe(item["body"]), reason)
                          for n, item, reason in failures[:10])
        more = " (and %d more)" % (len(failures) - 10) if len(failures) > 10 else ""
        ctx.fail_json(msg="Defender refused %d of %d indicators written: %s%s." % (
            len(failures), len(writes), shown, more), **result)
    return result


INDICATOR_OPTIONS = dict(
    indicator_value=dict(type="str"),
    indicator_type=dict(type="str", choices=ti.TYPES),
    action=dict(type="str", choices=ti.ACTIONS),
    title=dict(type="str"),
    description=dict(type="str"),
    severity=dict(type="str", choices=ti.SEVERITIES),
    expiration_time=dict(type="str"),
    recommended_actions=dict(type="str"),
    rbac_group_names=dict(type="list", elements="str"),
    generate_alert=dict(type="bool"),
    application=dict(type="str"),
    educate_url=dict(type="str"),
)
ARGUMENT_SPEC = dict(
    INDICATOR_OPTIONS,
    state=dict(type="str", default="present", choices=["present", "absent"]),
    indicators=dict(type="list", elements="dict", options=INDICATOR_OPTIONS),
    purge=dict(type="bool", default=False),
)
SPEC_OPTIONS = dict(
    mutually_exclusive=[["indicators", option] for option in SINGLE_OPTIONS],
    required_one_of=[["indicator_value", "indicators"]],
)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
