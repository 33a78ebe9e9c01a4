#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_ip_info
short_description: Look an IP address up in Microsoft Defender for Endpoint, with its statistics and alerts
version_added: 0.2.0
description:
  - Returns, as asked in O(include), the organisation statistics of an IP address (how many devices connected to
    it, when first and last, from C(GET /api/ips/{ip}/stats)) and the alerts related to it
    (C(GET /api/ips/{ip}/alerts)).
  - An address Defender has never seen is not a failure; its statistics show C(organizationPrevalence) 0 and it has
    no alerts.
  - The address is checked before any call (one IPv4 or IPv6 address; no ranges).
  - Needs the WindowsDefenderATP application permission C(Ip.Read.All) for V(stats) and C(Alert.Read.All) (or
    C(Alert.ReadWrite.All)) for V(alerts).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  ip:
    description: One IPv4 or IPv6 address, such as V(10.209.67.177).
    type: str
    required: true
  include:
    description: What to read, one call each. By default both.
    type: list
    elements: str
    choices: [stats, alerts]
  lookback_hours:
    description: With V(stats), the hours the statistics cover (1 to 720). The API's default is 30 days.
    type: int
seealso:
  - name: Get IP statistics API
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/get-ip-statistics
'''

EXAMPLES = r'''
- name: Has anything in the organisation talked to this address in the last two days?
  defender.endpoint.mde_ip_info:
    ip: 198.51.100.200
    lookback_hours: 48
  register: seen

- name: The machines of its alerts
  ansible.builtin.debug:
    msg: "{{ seen.alerts | map(attribute='machineId') | unique | list }}"
'''

RETURN = r'''
ip:
  description: The address as looked up (IPv6 written out in full).
  returned: always
  type: str
  sample: 10.209.67.177
stats:
  description: The address's statistics in the organisation (C(InOrgIPStats)).
  returned: when O(include) has V(stats)
  type: dict
  sample: {ipAddress: 10.209.67.177, organizationPrevalence: 63515, orgFirstSeen: "2017-07-30T13:36:06Z",
           orgLastSeen: "2017-08-29T13:32:59Z"}
alerts:
  description: The Alert entities related to the address.
  returned: when O(include) has V(alerts)
  type: list
  elements: dict
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import entities

LOOKUP = entities.Lookup("ip", "ip", entities.check_ip, "/api/ips/%s")
ARGUMENT_SPEC = LOOKUP.argument_spec
run = LOOKUP.run
validate = LOOKUP.validate


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate)


if __name__ == "__main__":
    main()
