#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_library_file_info
short_description: List the files of the Microsoft Defender for Endpoint live response library
version_added: 0.1.0
description:
  - Lists every file of the live response library, or the one named O(file_name).
  - Needs the WindowsDefenderATP application permission C(Library.Manage).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
options:
  file_name:
    description:
      - Only the library file of this name (compared case-insensitively). C(library_files) is empty when there is
        none.
    type: str
seealso:
  - module: defender.endpoint.mde_library_file
  - name: List library files
    description: Microsoft's reference of the endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/list-library-files
'''

EXAMPLES = r'''
- name: Every library file
  defender.endpoint.mde_library_file_info:
  register: library

- name: Is the collection script there?
  defender.endpoint.mde_library_file_info:
    file_name: collect-triage.ps1
  register: script

- name: Show its hash
  ansible.builtin.debug:
    msg: "{{ script.library_files[0].sha256 if script.library_files else 'not in the library' }}"
'''

RETURN = r'''
library_files:
  description: LibraryFile entities as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - fileName: script1.ps1
      sha256: 6e212a0db618507c44e4ec8ee7499dfef7e5767e5f8d31144df3b96fd1145caf
      description: null
      creationTime: "2019-10-24T10:54:23.2009016Z"
      lastUpdatedTime: "2019-10-24T10:54:23.2009016Z"
      createdBy: admin
      hasParameters: true
      parametersDescription: test
'''

from ansible_collections.defender.endpoint.plugins.module_utils import library
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule

PERMISSION = "Library.Manage"


def run(ctx):
    found = library.list_files(ctx.client)
    if ctx.params["file_name"] is not None:
        entry = library.find(found, library.check_file_name(ctx.params["file_name"]))
        found = [entry] if entry else []
    return dict(changed=False, library_files=found)


ARGUMENT_SPEC = dict(file_name=dict(type="str"))
SPEC_OPTIONS = dict()


def validate(ctx):
    ctx.check_given(file_name=library.check_file_name)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
