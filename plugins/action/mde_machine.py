# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one action plugin: runs every module of the collection in the controller's worker.

meta/runtime.yml routes each module here (plugin_routing, modules, action_plugin: defender.endpoint.mde_machine);
the module to run is the one the task resolved to (plugins/plugin_utils/action.py). The file carries a module's name
because ansible-test wants every action plugin to have a module that documents it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.defender.endpoint.plugins.plugin_utils.action import MDEActionBase


class ActionModule(MDEActionBase):
    """Every module of defender.endpoint, in the controller's worker."""
