# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Waiting for what a task started (module_utils/options.py WAIT): a machine action, an investigation, a live
    # response session. A module that waits by default, or longer, documents the other default with its own option
    # entry (default: only).
    DOCUMENTATION = r'''
options:
  wait:
    description:
      - Wait until what the task started, or found already under way instead of starting it again, is over; the
        module's description says when that is and which outcomes fail the task.
      - The module polls the API, slowly more seldom; throttling (HTTP 429) is waited out as the API asks.
    type: bool
    default: false
  wait_timeout:
    description:
      - With O(wait), how many seconds to wait before failing the task; at least 1. What the task started keeps
        running in Defender.
      - A machine that is offline keeps its actions and sessions pending until it comes back (the API keeps them for
        days).
    type: int
    default: 1800
'''
