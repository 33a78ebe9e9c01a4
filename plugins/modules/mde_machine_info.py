#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_machine_info
short_description: List or look up machines in Microsoft Defender for Endpoint
version_added: 0.1.0
description:
  - Returns Defender for Endpoint machines (devices) as the API returns them, by id, by name or by filters.
  - Filters are sent to the API as one server-side OData C($filter); all pages are read.
  - Needs the WindowsDefenderATP application permission C(Machine.Read.All) or C(Machine.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  machine_id:
    description:
      - The Defender device id (40 hexadecimal characters). Returns that one machine.
      - Mutually exclusive with O(machine_name), O(machine_ids) and O(machine_names).
    type: str
  machine_ids:
    description:
      - Defender device ids (40 hexadecimal characters each). Returns the machines found, read 50 ids per call
        (never one call per machine); the ids Defender does not know are listed in RV(missing_ids), not a failure.
    type: list
    elements: str
    version_added: 0.2.0
  machine_names:
    description:
      - Several names, each looked up as O(machine_name) is. Returns every machine found, and in RV(names) the ids of
        the onboarded machines each name matched, so a play can check that each name is exactly one machine.
    type: list
    elements: str
    version_added: 0.2.0
  ip:
    description:
      - Returns the machines that had this internal IP address around O(ip_timestamp)
        (C(GET /api/machines/findbyip(...)), that is within 15 minutes before or after it, in the last 30 days).
      - One IPv4 or IPv6 address, checked before any call.
    type: str
    version_added: 0.2.0
  ip_timestamp:
    description:
      - With O(ip), the moment the address was in use, an ISO 8601 time or an age such as V(2h) (that long ago).
        Defaults to now. It must be within the last 30 days.
    type: str
    version_added: 0.2.0
  tag:
    description:
      - Returns the machines carrying this tag (C(GET /api/machines/findbytag)), compared exactly.
    type: str
    version_added: 0.2.0
  tag_starts_with:
    description: With O(tag), return the machines with a tag that starts with O(tag) instead.
    type: bool
    default: false
    version_added: 0.2.0
  logon_users:
    description:
      - Also return the users logged on to each machine returned (C(GET /api/machines/{id}/logonusers)), in
        RV(logon_users). One call per machine; combine it with a selection or O(limit).
      - Needs the application permission C(User.Read.All).
    type: bool
    default: false
    version_added: 0.2.0
  machine_name:
    description:
      - The machine's C(computerDnsName), compared case-insensitively. A name without a dot also matches the
        first label of the DNS name (V(ws-00001) matches C(ws-00001.contoso.local)).
      - Returns every machine with that name (a re-imaged device can be there twice, and devices that are not
        onboarded are included).
    type: str
  os_platform:
    description: Only machines with one of these C(osPlatform) values, for example V(Windows11), V(WindowsServer2022), V(Linux).
    type: list
    elements: str
  health_status:
    description: Only machines with one of these C(healthStatus) values.
    type: list
    elements: str
    choices: [Active, Inactive, ImpairedCommunication, NoSensorData, NoSensorDataImpairedCommunication, Unknown]
  onboarding_status:
    description: Only machines with one of these C(onboardingStatus) values.
    type: list
    elements: str
    choices: [Onboarded, CanBeOnboarded, Unsupported, InsufficientInfo]
  exposure_level:
    description: Only machines with one of these C(exposureLevel) values.
    type: list
    elements: str
    choices: [None, Low, Medium, High]
  risk_score:
    description: Only machines with one of these C(riskScore) values.
    type: list
    elements: str
    choices: [None, Informational, Low, Medium, High]
  rbac_group_name:
    description:
      - Only machines in one of these device groups (C(rbacGroupName)).
      - The API cannot filter on the group name, so this one is matched after reading.
    type: list
    elements: str
  machine_tags:
    description: Only machines carrying at least one of these tags (C(machineTags)).
    type: list
    elements: str
  last_seen_within:
    description:
      - Only machines whose C(lastSeen) is within this age, such as V(7d), V(24h) or V(30m), or after this ISO 8601 time.
      - C(lastSeen) is the time of the device's last full report, about once a day.
    type: str
  odata_filter:
    description:
      - A raw OData C($filter) expression, ANDed with the filters above, for example C(osBuild gt 19000).
      - The API answers HTTP 400 (C(ODataError)) for a field it does not filter on.
    type: str
  limit:
    description: Return at most this many machines. By default all are returned.
    type: int
'''

EXAMPLES = r'''
- name: Read one machine by name
  defender.endpoint.mde_machine_info:
    machine_name: ws-00001.contoso.local
  register: ws1

- name: High-exposure Windows servers seen this week, with credentials from module_defaults
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/defender.endpoint.mde:
      tenant_id: "{{ mde_tenant_id }}"
      client_id: "{{ mde_client_id }}"
      client_secret: "{{ mde_client_secret }}"
  tasks:
    - name: Find them
      defender.endpoint.mde_machine_info:
        os_platform: [WindowsServer2019, WindowsServer2022]
        exposure_level: High
        last_seen_within: 7d
      register: servers

    - name: Show their names
      ansible.builtin.debug:
        msg: "{{ servers.machines | map(attribute='computerDnsName') | list }}"

- name: Machines tagged for patching, with a raw OData filter
  defender.endpoint.mde_machine_info:
    machine_tags: [patch-wave-1]
    odata_filter: "osBuild ge 19045"
    limit: 100

- name: Several machines by id, 50 per call; unknown ids come back in missing_ids
  defender.endpoint.mde_machine_info:
    machine_ids:
      - 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
      - 7292e4ab76d9a5c1b6d8ec2f09a3c0d64a5d1f20
  register: found

- name: The machines that had this internal IP address two hours ago, with who was logged on
  defender.endpoint.mde_machine_info:
    ip: 10.0.0.7
    ip_timestamp: 2h
    logon_users: true
  register: by_ip

- name: Machines with a tag starting with "patch-"
  defender.endpoint.mde_machine_info:
    tag: patch-
    tag_starts_with: true

- name: Several names; check that each is exactly one onboarded machine
  defender.endpoint.mde_machine_info:
    machine_names: [ws-00000, ws-00002]
  register: named
  failed_when: named.names.values() | map('length') | reject('eq', 1) | list | length > 0
'''

RETURN = r'''
machines:
  description: The Machine entities, as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
      computerDnsName: mymachine1.contoso.com
      firstSeen: "2018-08-02T14:55:03.7791856Z"
      lastSeen: "2021-01-25T07:27:36.052313Z"
      osPlatform: Windows10
      version: "1901"
      osBuild: 19042
      lastIpAddress: 10.166.113.46
      lastExternalIpAddress: 167.220.203.175
      healthStatus: Active
      onboardingStatus: Onboarded
      rbacGroupId: 140
      rbacGroupName: The-A-Team
      riskScore: Low
      exposureLevel: Medium
      deviceValue: Normal
      isAadJoined: true
      aadDeviceId: 80fe8ff8-2624-418e-9591-41f0491218f9
      machineTags: [test tag 1, test tag 2]
missing_ids:
  description: With O(machine_ids), the ids (lower case) of which Defender knows no machine.
  returned: when O(machine_ids) is given
  type: list
  elements: str
  sample: [0000000000000000000000000000000000000000]
  version_added: 0.2.0
names:
  description: With O(machine_names), each name and the ids of the onboarded machines it matched.
  returned: when O(machine_names) is given
  type: dict
  sample: {"ws-00042": [1e5bc9d7e413ddd7902c2932e418702b84d0cc07]}
  version_added: 0.2.0
logon_users:
  description:
    - With O(logon_users), each machine's id and the User entities logged on to it, as the API returns them.
  returned: when O(logon_users) is true
  type: dict
  sample: {"1e5bc9d7e413ddd7902c2932e418702b84d0cc07": [{id: "contoso\\user1", accountName: user1,
           accountDomain: contoso, firstSeen: "2019-12-18T08:02:54Z", lastSeen: "2020-01-06T08:01:48Z",
           logonTypes: Interactive, isDomainAdmin: true, isOnlyNetworkUser: false}]}
  version_added: 0.2.0
filter:
  description: The OData C($filter) that was sent, if any.
  returned: always
  type: str
  sample: "(osPlatform eq 'WindowsServer2019' or osPlatform eq 'WindowsServer2022') and exposureLevel eq 'High'"
'''

import datetime

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import entities
from ansible_collections.defender.endpoint.plugins.module_utils import options

FILTER_OPTIONS = ("os_platform", "health_status", "onboarding_status", "exposure_level", "risk_score",
                  "machine_tags", "last_seen_within")


SELECTORS = ("machine_id", "machine_name", "machine_ids", "machine_names", "ip", "tag")


def run(ctx):
    result = select(ctx)
    if ctx.params["logon_users"]:
        result["logon_users"] = dict(
            (m["id"], entities.collection(ctx.client, "/api/machines/%s/logonusers" % odata.answer_id(m, "machine")))
            for m in result["machines"])
    return result


def find_by(ctx, path, params=None):
    """The machines of findbyip / findbytag (no OData paging documented on them), at most ``limit``."""
    limit = ctx.params["limit"]
    found = [m for page in ctx.client.pages(path, params=params, use_top=False, empty_on_404=True) for m in page]
    return dict(changed=False, machines=found[:limit] if limit else found, filter=None)


def select(ctx):
    p = ctx.params
    if p["ip"] is not None:
        # https://learn.microsoft.com/en-us/defender-endpoint/api/find-machines-by-ip: IP quoted, timestamp not.
        when = odata.parse_time(p["ip_timestamp"], "ip_timestamp") if p["ip_timestamp"] else odata.utcnow()
        return find_by(ctx, "/api/machines/findbyip(ip=%s,timestamp=%s)" % (
            odata.quote(entities.check_ip(p["ip"])), odata.format_time(when)))
    if p["tag"] is not None:
        # https://learn.microsoft.com/en-us/defender-endpoint/api/find-machines-by-tag
        return find_by(ctx, "/api/machines/findbytag", params={
            "tag": p["tag"], "useStartsWithFilter": "true" if p["tag_starts_with"] else "false"})
    if p["machine_ids"] is not None:
        ids = mu.check_machine_ids(p["machine_ids"])
        found = mu.read_by_ids(ctx.client, ids)
        missing = [i for i in odata.unique(ids) if i not in found]
        return dict(changed=False, machines=[found[i] for i in odata.unique(ids) if i in found][:p["limit"]],
                    missing_ids=missing, filter=None)
    if p["machine_names"] is not None:
        machines, names = [], {}
        for name in odata.unique(p["machine_names"]):
            matched = mu.machines_named(ctx.client, name)
            names[name] = [m["id"] for m in matched if (m.get("onboardingStatus") or "").lower() == "onboarded"]
            machines.extend(m for m in matched if m["id"] not in set(x["id"] for x in machines))
        return dict(changed=False, machines=machines[:p["limit"]], names=names, filter=None)
    if p["machine_id"]:
        machine = mu.find_machine(ctx.client, machine_id=p["machine_id"])
        return dict(changed=False, machines=[machine], filter=None)
    if p["machine_name"]:
        read = []
        machines = mu.machines_named(ctx.client, p["machine_name"], read)
        closest = [] if machines else mu.closest_names(p["machine_name"], read)
        if closest:
            ctx.warn("No machine is named %s.%s" % (p["machine_name"], mu.closest_text(closest)))
        return dict(changed=False, machines=machines[:p["limit"]], filter=None)
    odata_filter = odata.machine_filter(dict((k, p[k]) for k in FILTER_OPTIONS), p["odata_filter"])
    groups = set(p["rbac_group_name"] or [])
    machines = []
    # rbacGroupName is matched here, so the limit is applied after that match.
    for machine in ctx.client.list("/api/machines", odata_filter=odata_filter, empty_on_404=True,
                                   limit=None if groups else p["limit"]):
        if groups and machine.get("rbacGroupName") not in groups:
            continue
        machines.append(machine)
        if p["limit"] is not None and len(machines) >= p["limit"]:
            break
    return dict(changed=False, machines=machines, filter=odata_filter)


ARGUMENT_SPEC = dict(
    machine_id=dict(type="str"),
    machine_name=dict(type="str"),
    machine_ids=dict(type="list", elements="str"),
    machine_names=dict(type="list", elements="str"),
    os_platform=dict(type="list", elements="str"),
    health_status=dict(type="list", elements="str", choices=odata.MACHINE_ENUMS["health_status"]),
    onboarding_status=dict(type="list", elements="str", choices=odata.MACHINE_ENUMS["onboarding_status"]),
    exposure_level=dict(type="list", elements="str", choices=odata.MACHINE_ENUMS["exposure_level"]),
    risk_score=dict(type="list", elements="str", choices=odata.MACHINE_ENUMS["risk_score"]),
    rbac_group_name=dict(type="list", elements="str"),
    machine_tags=dict(type="list", elements="str"),
    last_seen_within=dict(type="str"),
    odata_filter=dict(type="str"),
    limit=dict(type="int"),
    ip=dict(type="str"),
    ip_timestamp=dict(type="str"),
    tag=dict(type="str"),
    tag_starts_with=dict(type="bool", default=False),
    logon_users=dict(type="bool", default=False),
)
SPEC_OPTIONS = dict(
    mutually_exclusive=[list(SELECTORS)] + [
        [selector, f] for selector in SELECTORS for f in FILTER_OPTIONS + ("rbac_group_name", "odata_filter")],
    required_by=dict(ip_timestamp="ip"),
    required_if=[["tag_starts_with", True, ["tag"]]],
)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.checked(options.MACHINE_TARGET.check, p)  # the group's checks; its machine_name lists every match here
    ctx.check_given(machine_ids=mu.check_machine_ids)
    for name in p["machine_names"] or []:
        ctx.checked(mu.check_machine_name, name, "machine_names")
    if p["limit"] is not None and p["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % p["limit"])
    if p["ip"] is not None:
        ctx.checked(entities.check_ip, p["ip"])
        when = ctx.checked(odata.parse_time, p["ip_timestamp"], "ip_timestamp") if p["ip_timestamp"] else None
        if when is not None and not odata.utcnow() - datetime.timedelta(days=30) <= when <= odata.utcnow() + \
                datetime.timedelta(minutes=15):
            ctx.fail_json(msg="ip_timestamp must be within the last 30 days (the API looks addresses up no further "
                              "back), got %s." % p["ip_timestamp"])
    if p["tag"] is not None:
        ctx.checked(mu.check_tags, [p["tag"]], "tag")
    if p["last_seen_within"]:
        ctx.checked(odata.parse_time, p["last_seen_within"], "last_seen_within")


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
