# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The time filters of the info modules (module_utils/options.py CREATED_AFTER, UPDATED_AFTER). Every module that
    # filters by time has created_after (defender.endpoint.time_filters); those whose entities record an update time
    # also have updated_after (defender.endpoint.time_filters.updated_after).
    DOCUMENTATION = r'''
options:
  created_after:
    description:
      - Only those created (an investigation, started) at or after this time; the API filters by it.
      - An ISO 8601 time such as V(2026-01-31T08:00:00Z), or an age such as V(30m), V(24h) or V(7d).
    type: str
'''

    UPDATED_AFTER = r'''
options:
  updated_after:
    description:
      - Only those last updated at or after this time; the API filters by it.
      - An ISO 8601 time such as V(2026-01-31T08:00:00Z), or an age such as V(30m), V(24h) or V(7d).
    type: str
'''
