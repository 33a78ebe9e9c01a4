# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: detection_rule_files
version_added: 0.3.0
short_description: The custom detection rules declared in a folder of YAML files, one rule per file
description:
  - Reads, on the controller, every C(*.yml) and C(*.yaml) file directly in the folder (sorted by name; sub-folders
    and other files are ignored). Each file holds one rule, a mapping whose keys are the options of
    M(defender.endpoint.mde_detection_rule) (C(rule_id) required; C(display_name), C(description), C(status),
    C(frequency), C(query), C(alert), C(automated_actions), C(device_groups), C(validate_query)).
  - Returns one dictionary per file, in file name order. A file that is not such a mapping, an unknown key, or two
    files with the same C(rule_id) fail the lookup, naming the file; the options themselves are checked by the module
    before any call.
  - The rules' texts are returned marked as data, not templates, so a dynamic alert title such as
    C(Encoded PowerShell on {{DeviceName}}) reaches Microsoft Graph as written.
  - This is the folder format the playbook C(defender.endpoint.export_detection_rules) writes and the role
    C(defender.endpoint.detection_rules) applies.
author: defender.endpoint maintainers (@defender-endpoint)
options:
  _terms:
    description: The folder, on the controller.
    required: true
"""

EXAMPLES = r"""
- name: Apply every rule of the folder
  defender.endpoint.mde_detection_rule:
    rule_id: "{{ item.rule_id }}"
    display_name: "{{ item.display_name | default(omit) }}"
    query: "{{ item.query | default(omit) }}"
    frequency: "{{ item.frequency | default(omit) }}"
    alert: "{{ item.alert | default(omit) }}"
  loop: "{{ query('defender.endpoint.detection_rule_files', playbook_dir ~ '/detection_rules') }}"
"""

RETURN = r"""
_raw:
  description: One rule per file, as the module's options.
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.defender.endpoint.plugins.plugin_utils.untrusted import untrusted

KEYS = ("rule_id", "display_name", "description", "status", "frequency", "query", "alert", "automated_actions",
        "device_groups", "validate_query")
# The most bytes read from one rule file: a rule's query is at most a few tens of kilobytes.
MAX_FILE = 1024 * 1024


def read_folder(folder):
    """The rules of ``folder``: a list of (file name, rule dictionary). ValueError naming the file on a problem."""
    import yaml
    names = sorted(n for n in os.listdir(folder) if n.endswith((".yml", ".yaml")) and not n.startswith(".")
                   and os.path.isfile(os.path.join(folder, n)))
    out, seen = [], {}
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise ValueError("%s is larger than %d bytes; it was not read" % (path, MAX_FILE))
        try:
            rule = yaml.safe_load(data.decode("utf-8-sig"))
        except (ValueError, yaml.YAMLError) as e:
            raise ValueError("%s is not valid YAML: %s" % (path, str(e).splitlines()[0] if str(e) else e))
        if not isinstance(rule, dict) or "rule_id" not in rule:
            raise ValueError("%s must hold one rule, a mapping with at least rule_id" % path)
        unknown = sorted(str(k) for k in rule if k not in KEYS)
        if unknown:
            raise ValueError("%s: unknown key %s; a rule file's keys are %s" % (path, unknown[0], ", ".join(KEYS)))
        rule_id = str(rule["rule_id"])
        if rule_id in seen:
            raise ValueError("%s and %s both declare the rule %s" % (seen[rule_id], path, rule_id))
        seen[rule_id] = path
        rule["rule_id"] = rule_id
        out.append((name, rule))
    return out


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        out = []
        for term in terms:
            folder = os.path.expanduser(str(term))
            if not os.path.isdir(folder):
                raise AnsibleLookupError("%s is not a folder on the controller" % folder)
            try:
                out.extend(rule for _name, rule in read_folder(folder))
            except (OSError, ValueError) as e:
                raise AnsibleLookupError(str(e))
        return untrusted(out)
