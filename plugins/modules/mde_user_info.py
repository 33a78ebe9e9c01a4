#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_user_info
short_description: Look a user account up in Microsoft Defender for Endpoint, with its machines and alerts
version_added: 0.2.0
description:
  - Returns, as asked in O(include), the machines a user account is related to (C(GET /api/users/{id}/machines))
    and the alerts related to it (C(GET /api/users/{id}/alerts)).
  - The API takes the account name only (V(user1), not V(user1@contoso.com) nor V(CONTOSO\\user1)); the module
    refuses the other forms before any call.
  - An account Defender has never seen is not a failure; it has no machines and no alerts.
  - Needs the WindowsDefenderATP application permissions C(Machine.ReadWrite.All) for V(machines) (that endpoint
    documents no read-only permission) and C(Alert.Read.All) (or C(Alert.ReadWrite.All)) for V(alerts).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  user:
    description: The account name, such as V(user1).
    type: str
    required: true
  include:
    description: What to read, one call each. By default both.
    type: list
    elements: str
    choices: [machines, alerts]
seealso:
  - name: User resource type
    description: Microsoft's reference of the User entity and its methods.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/user
'''

EXAMPLES = r'''
- name: Where has this account been, and which alerts name it?
  defender.endpoint.mde_user_info:
    user: user0001
  register: account
'''

RETURN = r'''
user:
  description: The account name as looked up.
  returned: always
  type: str
  sample: user1
machines:
  description: The Machine entities related to the account.
  returned: when O(include) has V(machines)
  type: list
  elements: dict
alerts:
  description: The Alert entities related to the account.
  returned: when O(include) has V(alerts)
  type: list
  elements: dict
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import entities

LOOKUP = entities.Lookup("user", "user", entities.check_user, "/api/users/%s", lookback=False)
ARGUMENT_SPEC = LOOKUP.argument_spec
run = LOOKUP.run
validate = LOOKUP.validate


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate)


if __name__ == "__main__":
    main()
