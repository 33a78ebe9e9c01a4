# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: detection_rule_file
short_description: A custom detection rule as Graph returns it, as a rule file of the detection_rules folder format
version_added: 0.3.0
description:
  - Turns one rule from M(defender.endpoint.mde_detection_rule_info) into the file the role
    C(defender.endpoint.detection_rules) applies - the options of M(defender.endpoint.mde_detection_rule) in a stable
    key order, snake_case (the names of custom details as they are), empty parts left out, multi-line texts as YAML
    block scalars - and a file-safe name for it (the rule's id, then C(.yml)).
  - Applying the file to the tenant it came from changes nothing. A rule the service turned off (C(autoDisabled)) is
    written as V(disabled) in C(status), which that status satisfies.
  - The rule's id must have the shape the collection accepts for rule ids (letters, digits, C(.), C(_), C(-)); any
    other id fails the filter, so no answer can name a path outside the folder.
positional: _input
options:
  _input:
    description: A rule as Graph returns it (camelCase keys).
    type: dict
    required: true
author:
  - defender.endpoint maintainers (@defender-endpoint)
'''

EXAMPLES = r'''
- name: Write one file per rule
  ansible.builtin.copy:
    content: "{{ (item | defender.endpoint.detection_rule_file).content }}"
    dest: "{{ folder }}/{{ (item | defender.endpoint.detection_rule_file).name }}"
    mode: "0640"
  loop: "{{ rules.rules }}"
'''

RETURN = r'''
_value:
  description: C(name), the file's name, and C(content), its YAML text.
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.defender.endpoint.plugins.module_utils import detections as du
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.plugin_utils.untrusted import untrusted


def _plain(value):
    """Plain Python types (str, not Ansible's marked strings), for the YAML dumper."""
    if isinstance(value, dict):
        return dict((_plain(str(k)), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)  # Ansible's marked strings return themselves from str() on older cores
    return value


def to_yaml(options):
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value.strip("\n") and not any(c in value for c in "\r\t") else None
        if style and value.endswith("\n\n"):
            style = None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return "---\n" + yaml.dump(options, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120,
                               default_flow_style=False)


def detection_rule_file(rule):
    if not isinstance(rule, dict):
        raise AnsibleFilterError("detection_rule_file expects a rule (a dictionary), got %s" % type(rule).__name__)
    rule = _plain(rule)
    try:
        rule_id = du.answer_id(rule)
    except MDEError as e:
        raise AnsibleFilterError(str(e))
    return untrusted({"name": du.file_name(rule_id), "content": to_yaml(du.to_options(rule))})


class FilterModule:
    def filters(self):
        return {"detection_rule_file": detection_rule_file}
