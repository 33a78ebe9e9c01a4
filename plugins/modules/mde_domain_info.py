#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_domain_info
short_description: Look a domain up in Microsoft Defender for Endpoint, with its statistics, machines and alerts
version_added: 0.2.0
description:
  - Returns, as asked in O(include), the organisation statistics of a domain (C(GET /api/domains/{domain}/stats)),
    the machines that communicated with it (at most 500, as the API answers) and the alerts related to it.
  - A domain Defender has never seen is not a failure; its statistics show C(organizationPrevalence) 0, and it has
    no machines and no alerts.
  - The name is checked before any call (a domain name, not a URL).
  - Needs the WindowsDefenderATP application permissions C(URL.Read.All) for V(stats), C(Machine.Read.All) (or
    C(Machine.ReadWrite.All)) for V(machines) and C(Alert.ReadWrite.All) for V(alerts) (that endpoint documents no
    read-only permission).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  domain:
    description: The domain name, such as V(contoso.com).
    type: str
    required: true
  include:
    description: What to read, one call each. By default all three.
    type: list
    elements: str
    choices: [stats, machines, alerts]
  lookback_hours:
    description: With V(stats), the hours the statistics cover (1 to 720). The API's default is 30 days.
    type: int
seealso:
  - name: Get domain-related machines API
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/get-domain-related-machines
'''

EXAMPLES = r'''
- name: Which machines resolved this domain?
  defender.endpoint.mde_domain_info:
    domain: update-check.fabrikam-cdn.example
    include: [machines]
  register: seen
'''

RETURN = r'''
domain:
  description: The domain as looked up (lower case).
  returned: always
  type: str
  sample: example.com
stats:
  description: The domain's statistics in the organisation (C(InOrgDomainStats)).
  returned: when O(include) has V(stats)
  type: dict
  sample: {host: example.com, organizationPrevalence: 4070, orgFirstSeen: "2017-07-30T13:23:48Z",
           orgLastSeen: "2017-08-29T13:09:05Z"}
machines:
  description: The Machine entities related to the domain.
  returned: when O(include) has V(machines)
  type: list
  elements: dict
alerts:
  description: The Alert entities related to the domain.
  returned: when O(include) has V(alerts)
  type: list
  elements: dict
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import entities

LOOKUP = entities.Lookup("domain", "domain", entities.check_domain, "/api/domains/%s")
ARGUMENT_SPEC = LOOKUP.argument_spec
run = LOOKUP.run
validate = LOOKUP.validate


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate)


if __name__ == "__main__":
    main()
