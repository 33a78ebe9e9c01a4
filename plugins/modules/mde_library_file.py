#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_library_file
short_description: Keep a script or file in the Microsoft Defender for Endpoint live response library
version_added: 0.1.0
description:
  - Uploads a file from the controller to the live response library, where M(defender.endpoint.mde_live_response)
    runs it (C(RunScript)) or puts it on a machine (C(PutFile)); or deletes it from the library.
  - B(Idempotent.) The library is read first; the file is uploaded (with C(OverrideIfExists)) only when it is
    missing, when its content differs (compared by SHA-256) or when O(description), O(has_parameters) or
    O(parameters_description) differ from what the library shows. Otherwise nothing is sent and C(changed) is false.
  - The library takes files of at most 20 MB; a larger one fails the task before any call.
  - Needs the WindowsDefenderATP application permission C(Library.Manage).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
attributes:
  check_mode:
    support: full
    description: The library is read; nothing is uploaded or deleted.
  diff_mode:
    support: full
    description: The library entry's C(sha256) and metadata before and after.
options:
  path:
    description:
      - The file on the controller to upload. Required with O(state=present).
    type: path
  file_name:
    description:
      - The file's name in the library, which commands refer to (C(script_name), C(file_name)).
      - Defaults to the base name of O(path). Required with O(state=absent) when O(path) is not given.
      - Names are compared case-insensitively.
    type: str
  description:
    description: The file's description in the library. Not compared when omitted.
    type: str
  has_parameters:
    description: Whether the script takes parameters (C(HasParameters)). Not compared when omitted.
    type: bool
  parameters_description:
    description: What the script's parameters are (C(ParametersDescription)). Not compared when omitted.
    type: str
  state:
    description: V(present) uploads the file when needed; V(absent) deletes it from the library.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: defender.endpoint.mde_library_file_info
  - module: defender.endpoint.mde_live_response
  - name: Upload files to the live response library
    description: Microsoft's reference of the upload endpoint.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/upload-library
'''

EXAMPLES = r'''
- name: Keep the collection script in the library
  defender.endpoint.mde_library_file:
    path: files/collect-triage.ps1
    description: Collects triage data into C:\Windows\Temp\triage.zip
    has_parameters: true
    parameters_description: "-Days <n>"

- name: Remove an old script
  defender.endpoint.mde_library_file:
    file_name: old-collector.ps1
    state: absent
'''

RETURN = r'''
library_file:
  description:
    - The LibraryFile entity as the API returns it (camelCase keys), after the task; V(null) when it is absent
      (or would be uploaded, in check mode).
  returned: always
  type: dict
  sample:
    fileName: collect-triage.ps1
    sha256: 6e212a0db618507c44e4ec8ee7499dfef7e5767e5f8d31144df3b96fd1145caf
    description: Collects triage data
    creationTime: "2019-10-24T10:54:23.2009016Z"
    lastUpdatedTime: "2019-10-24T10:54:23.2009016Z"
    createdBy: admin
    hasParameters: true
    parametersDescription: "-Days <n>"
differences:
  description: What made the task upload the file (C(missing), C(sha256), C(description), C(has_parameters),
    C(parameters_description)); empty when nothing was to change.
  returned: with O(state=present)
  type: list
  elements: str
'''

import hashlib
import os

from ansible_collections.defender.endpoint.plugins.module_utils import library
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule

PERMISSION = "Library.Manage"


def _view(entry):
    if not entry:
        return None
    return dict((k, entry.get(k)) for k in ("fileName", "sha256", "description", "hasParameters",
                                            "parametersDescription"))


def file_name_of(p):
    return library.check_file_name(p["file_name"] if p["file_name"] is not None else os.path.basename(p["path"] or ""))


def run(ctx):
    p = ctx.params
    name = file_name_of(p)
    existing = library.find(library.list_files(ctx.client), name)
    result = dict(changed=False, library_file=existing)
    if p["state"] == "absent":
        if existing:
            result.update(changed=True, library_file=None, diff=dict(before=_view(existing), after={}))
            if not ctx.check_mode:
                library.delete(ctx.client, existing.get("fileName") or name)
        return result
    sha256, _size = library.check_local_file(p["path"])
    diffs = ["missing"] if existing is None else library.differences(
        existing, sha256, p["description"], p["has_parameters"], p["parameters_description"])
    result["differences"] = diffs
    if not diffs:
        return result
    after = dict(_view(existing) or {"fileName": name}, sha256=sha256)
    for key, option in (("description", "description"), ("hasParameters", "has_parameters"),
                        ("parametersDescription", "parameters_description")):
        if p[option] is not None:
            after[key] = p[option]
    result.update(changed=True, diff=dict(before=_view(existing) or {}, after=after))
    if ctx.check_mode:
        result["library_file"] = existing
        return result
    with open(p["path"], "rb") as f:
        content = f.read()
    if len(content) > library.MAX_SIZE:  # changed since it was checked
        ctx.fail_json(msg="path: %s has grown past 20 MB; it was not uploaded." % p["path"])
    # The digest of the bytes sent (the file may have changed since it was compared): what reading back looks for.
    result["library_file"] = library.upload(ctx.client, name, content, hashlib.sha256(content).hexdigest(),
                                            p["description"], p["has_parameters"], p["parameters_description"])
    return result


ARGUMENT_SPEC = dict(
    path=dict(type="path"),
    file_name=dict(type="str"),
    description=dict(type="str"),
    has_parameters=dict(type="bool"),
    parameters_description=dict(type="str"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)
SPEC_OPTIONS = dict(
    required_if=[["state", "present", ["path"]]],
    required_one_of=[["path", "file_name"]],
)


def validate(ctx):
    """Checks before any call: the name, and (state present) the local file and its size."""
    p = ctx.params
    ctx.checked(file_name_of, p)
    if p["state"] == "present":
        ctx.checked(library.check_local_file, p["path"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
