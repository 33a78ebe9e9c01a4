# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs defender.endpoint.mde_detection_rule in the controller's worker (see plugins/plugin_utils/action.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.defender.endpoint.plugins.modules import mde_detection_rule as module
from ansible_collections.defender.endpoint.plugins.plugin_utils.action import MDEActionBase


class ActionModule(MDEActionBase):
    MODULE = module
