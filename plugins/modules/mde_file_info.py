#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_file_info
short_description: Look a file up by hash in Microsoft Defender for Endpoint, with its statistics, machines and alerts
version_added: 0.2.0
description:
  - Returns the File profile Defender holds for a SHA-1 or SHA-256 hash (C(GET /api/files/{hash})) and, as asked in
    O(include), its organisation statistics, the machines it was seen on and the alerts it is part of.
  - A file Defender has never seen is not a failure; RV(file) is V(null) and the included parts are empty (no
    further call is made).
  - Machines and alerts are looked up by SHA-1, as the API requires; for a SHA-256 the module uses the file's own
    C(sha1) from its profile.
  - The hash is checked before any call; an MD5 hash is refused.
  - Needs the WindowsDefenderATP application permission C(File.Read.All); C(machines) also needs
    C(Machine.Read.All) (or C(Machine.ReadWrite.All)) and C(alerts) C(Alert.Read.All) (or C(Alert.ReadWrite.All)).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.attributes.info_module
options:
  file_hash:
    description: The file's SHA-1 (40 hexadecimal characters) or SHA-256 (64) hash.
    type: str
    required: true
  include:
    description:
      - What to read besides the file's profile, one call each. V(stats) is the file's prevalence in the organisation
        (C(GET /api/files/{hash}/stats)), V(machines) the machines it was seen on, V(alerts) the alerts it is part of.
      - By default all three; V([]) reads the profile only.
    type: list
    elements: str
    choices: [stats, machines, alerts]
  lookback_hours:
    description: With V(stats), the hours the statistics cover (1 to 720). The API's default is 30 days.
    type: int
seealso:
  - module: defender.endpoint.mde_indicator
  - name: File resource type
    description: Microsoft's reference of the File entity and its methods.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/files
'''

EXAMPLES = r'''
- name: Where is this file, and which alerts name it?
  defender.endpoint.mde_file_info:
    file_hash: 4388963aaa83afe2042a46a3c017ad50bdcdafb3
  register: found

- name: The names of the machines that have it
  ansible.builtin.debug:
    msg: "{{ found.machines | map(attribute='computerDnsName') | list }}"

- name: Only the profile, by SHA-256
  defender.endpoint.mde_file_info:
    file_hash: 413c58c8267d2c8648d8f6384bacc2ae9c929b2b96578b6860b5087cd1bd6462
    include: []
'''

RETURN = r'''
file:
  description: The File entity as the API returns it (camelCase keys); V(null) when Defender has never seen the file.
  returned: always
  type: dict
  sample:
    sha1: 4388963aaa83afe2042a46a3c017ad50bdcdafb3
    sha256: 413c58c8267d2c8648d8f6384bacc2ae9c929b2b96578b6860b5087cd1bd6462
    globalPrevalence: 180022
    size: 22139496
    fileType: APP
    isPeFile: true
    signer: CHENGDU YIWO Tech Development Co., Ltd.
    isValidCertificate: false
    determinationType: Pua
    determinationValue: PUA:Win32/FusionCore
stats:
  description: The file's statistics in the organisation (C(InOrgFileStats)); V(null) for an unknown file.
  returned: when O(include) has V(stats)
  type: dict
  sample: {sha1: 0991a395da64e1c5fbe8732ed11e6be064081d9f, organizationPrevalence: 14850,
           orgFirstSeen: "2019-12-07T13:44:16Z", orgLastSeen: "2020-01-06T13:39:36Z", topFileNames: [MREC.exe]}
machines:
  description: The Machine entities the file was seen on.
  returned: when O(include) has V(machines)
  type: list
  elements: dict
alerts:
  description: The Alert entities related to the file.
  returned: when O(include) has V(alerts)
  type: list
  elements: dict
'''

from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import entities

# The file's own entity is read first; machines and alerts by its SHA-1 (entities.file_lookup).
LOOKUP = entities.Lookup("file", "file_hash", entities.check_file_hash,
                         read=lambda client, value, parts, hours: entities.file_lookup(client, value[1], parts, hours))
ARGUMENT_SPEC = LOOKUP.argument_spec
run = LOOKUP.run
validate = LOOKUP.validate


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate)


if __name__ == "__main__":
    main()
