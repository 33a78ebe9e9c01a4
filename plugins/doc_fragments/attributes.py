# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The attributes of the modules' behaviour that recur, documented once.
    DOCUMENTATION = r'''
options: {}
'''

    # A module that only reads (every *_info module): the same in check mode, nothing to show as a diff.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: The module only reads.
'''
