# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The machine a task acts on (module_utils/options.py MACHINE_TARGET): machine_id or machine_name.
    DOCUMENTATION = r'''
options:
  machine_id:
    description:
      - The machine, by its Defender device id (40 hexadecimal characters, compared case-insensitively).
      - Give O(machine_id) or O(machine_name), not both. One of them is required, unless an option of the module
        says it is a third way to choose.
    type: str
  machine_name:
    description:
      - The machine, by its C(computerDnsName), compared case-insensitively; a name without a dot also matches the
        first label of the DNS name.
      - Exactly one onboarded machine must have that name. When none does, the task fails naming the closest names
        it read; when several do, it fails naming the candidates (use O(machine_id) then).
    type: str
'''
