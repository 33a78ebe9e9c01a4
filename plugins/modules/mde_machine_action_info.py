#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_machine_action_info
short_description: List machine actions in Microsoft Defender for Endpoint and download investigation packages
version_added: 0.1.0
description:
  - Returns machine actions (response actions such as isolation, scans or investigation package collection) as
    the API returns them, one by id or all matching filters. Filters are sent to the API as one OData C($filter);
    all pages are read.
  - For a succeeded C(CollectInvestigationPackage) action, returns the package's short-lived download URI
    (O(package_uri)) and downloads the package to the controller (O(dest)).
  - Needs the WindowsDefenderATP application permission C(Machine.Read.All) or C(Machine.ReadWrite.All).
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.time_filters
attributes:
  check_mode:
    support: full
    description: The module only reads; in check mode a package is not downloaded.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  action_id:
    description:
      - The id (a GUID) of one machine action. Returns that one action.
      - Mutually exclusive with the filters.
    type: str
  machine_id:
    description: Only actions on this machine (its Defender device id, 40 hexadecimal characters).
    type: str
  type:
    description: Only actions of these types, as the API names them.
    type: list
    elements: str
    choices:
      - Isolate
      - Unisolate
      - RestrictCodeExecution
      - UnrestrictCodeExecution
      - RunAntiVirusScan
      - CollectInvestigationPackage
      - StopAndQuarantineFile
      - Offboard
      - LiveResponse
  status:
    description: Only actions with one of these statuses.
    type: list
    elements: str
    choices: [Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled]
  requestor:
    description: Only actions requested by this identity (C(requestor), a user principal name or an application id).
    type: str
  limit:
    description: Return at most this many actions, in the order the API returns them. By default all are returned.
    type: int
  package_uri:
    description:
      - Also return the download URI of the investigation package of O(action_id) (C(GET
        /api/machineactions/{id}/GetPackageUri)), which must be a succeeded C(CollectInvestigationPackage) action.
      - The URI is short-lived and grants access to the package to whoever holds it; treat it as a secret.
      - The API allows 2 such calls a minute and 120 an hour.
    type: bool
    default: false
  dest:
    description:
      - Download the investigation package of O(action_id) to this path on the controller, with mode C(0600).
        When O(dest) is an existing directory, the file is C(<dest>/<action_id>.zip).
      - An existing file is left alone (no API call) unless O(force) is true.
      - The download URI carries its own credential; the bearer token is not sent with it.
    type: path
  force:
    description: With O(dest), download again even when the file exists.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Pending and running isolations of one machine
  defender.endpoint.mde_machine_action_info:
    machine_id: 1e5bc9d7e413ddd7902c2932e418702b84d0cc07
    type: [Isolate, Unisolate]
    status: [Pending, InProgress]
  register: isolations

- name: Every action the automation account requested today
  defender.endpoint.mde_machine_action_info:
    requestor: "{{ mde_client_id }}"
    created_after: 24h

- name: Download an investigation package to the controller
  defender.endpoint.mde_machine_action_info:
    action_id: 69dc3630-1ccc-4342-acf3-35286eec741d
    dest: /var/forensics/
  register: package

- name: Where it was written
  ansible.builtin.debug:
    msg: "{{ package.dest }} ({{ package.size }} bytes, sha256 {{ package.sha256 }})"
'''

RETURN = r'''
machine_actions:
  description: The MachineAction entities, as the API returns them (camelCase keys).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 69dc3630-1ccc-4342-acf3-35286eec741d
      type: CollectInvestigationPackage
      scope: null
      requestor: Analyst@contoso.com
      requestorComment: test
      status: Succeeded
      machineId: f46b9bb259ed4a7fb9981b73510e3cc7aa81ec1f
      computerDnsName: desktop-39g9tgl
      creationDateTimeUtc: "2018-12-04T12:43:57.2011911Z"
      lastUpdateTimeUtc: "2018-12-04T12:45:25.4049122Z"
      relatedFileInfo: null
filter:
  description: The OData C($filter) that was sent, if any.
  returned: always
  type: str
  sample: "machineId eq 'f46b9bb259ed4a7fb9981b73510e3cc7aa81ec1f' and status eq 'Succeeded'"
package_uri:
  description: The short-lived download URI of the investigation package.
  returned: when O(package_uri) is true
  type: str
  sample: "https://userrequests-us.securitycenter.windows.com:443/safedownload/WDATP_Investigation_Package.zip?token=..."
dest:
  description: The file the investigation package was written to (or would be, in check mode).
  returned: when O(dest) is set
  type: str
  sample: /var/forensics/69dc3630-1ccc-4342-acf3-35286eec741d.zip
size:
  description: The size of the file at O(dest) in bytes.
  returned: when O(dest) is set and the file exists
  type: int
  sample: 2813546
sha256:
  description: The SHA-256 digest of the file at O(dest).
  returned: when O(dest) is set and the file exists
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
'''

import os

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule
from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import options

FILTER_OPTIONS = ("machine_id", "type", "status", "requestor", "created_after")


def build_filter(p):
    created = None
    if p["created_after"]:
        created = "creationDateTimeUtc ge %s" % odata.format_time(odata.parse_time(p["created_after"], "created_after"))
    return odata.and_all(
        "machineId eq %s" % odata.quote(p["machine_id"].strip()) if p["machine_id"] else None,
        odata.any_of("type", p["type"]),
        odata.any_of("status", p["status"]),
        "requestor eq %s" % odata.quote(p["requestor"]) if p["requestor"] else None,
        created)


def download(ctx, uri, dest):
    """Stream the package at ``uri`` (a pre-signed link: no bearer token) into ``dest`` (0600, replaced atomically);
    return its size and sha256."""
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        ctx.fail_json(msg="dest: the directory %s does not exist." % directory)
    _path, sha256, size = ctx.client.download(uri, dest, what="the investigation package")
    return dict(size=size, sha256=sha256)


def package(ctx, action):
    p = ctx.params
    result = {}
    if action.get("type") != "CollectInvestigationPackage":
        ctx.fail_json(msg="%s is not a CollectInvestigationPackage action; it has no investigation package."
                      % ma.describe(action), machine_actions=[action])
    if action.get("status") != "Succeeded":
        ctx.fail_json(msg="%s is %s; its investigation package can be downloaded once it has Succeeded (use "
                      "defender.endpoint.mde_machine_action with wait: true)."
                      % (ma.describe(action), action.get("status")), machine_actions=[action])
    dest = p["dest"]
    if dest and os.path.isdir(dest):
        # Named after the id the task asked for (checked: a GUID), never after a value of the answer.
        dest = os.path.join(dest, "%s.zip" % ma.check_action_id(p["action_id"]).lower())
    fetch = bool(dest) and (p["force"] or not os.path.exists(dest))
    uri = None
    if p["package_uri"] or (fetch and not ctx.check_mode):
        data = ctx.client.get(ma.path(action["id"], "/GetPackageUri"))
        uri = ma.clean_package_uri((data or {}).get("value"))
        if not uri:
            raise MDEError("GET /api/machineactions/%s/GetPackageUri returned no URI." % action["id"])
    if p["package_uri"]:
        result["package_uri"] = uri
    if dest:
        result["dest"] = dest
        if fetch:
            result["changed"] = True
            if not ctx.check_mode:
                result.update(download(ctx, uri, dest))
        if "sha256" not in result and os.path.isfile(dest):
            sha256, size = files.file_digest(dest)
            result.update(size=size, sha256=sha256)
    return result


def run(ctx):
    p = ctx.params
    if p["action_id"]:
        action = ma.read(ctx.client, ma.check_action_id(p["action_id"]))
        result = dict(changed=False, machine_actions=[action], filter=None)
        if p["package_uri"] or p["dest"]:
            result.update(package(ctx, action))
        return result
    odata_filter = build_filter(p)
    actions = list(ctx.client.list("/api/machineactions", odata_filter=odata_filter, limit=p["limit"]))
    return dict(changed=False, machine_actions=actions, filter=odata_filter)


ARGUMENT_SPEC = options.module_spec(dict(
    action_id=dict(type="str"),
    machine_id=dict(type="str"),
    type=dict(type="list", elements="str", choices=list(ma.ACTION_TYPES)),
    status=dict(type="list", elements="str", choices=list(ma.STATUSES)),
    requestor=dict(type="str"),
), options.CREATED_AFTER, dict(
    limit=dict(type="int"),
    package_uri=dict(type="bool", default=False),
    dest=dict(type="path"),
    force=dict(type="bool", default=False),
))
SPEC_OPTIONS = dict(
    mutually_exclusive=[["action_id", f] for f in FILTER_OPTIONS + ("limit",)],
    # The package of one CollectInvestigationPackage action; force replaces a file at dest.
    required_if=[["package_uri", True, ["action_id"]], ["force", True, ["dest"]]],
    required_by=dict(dest="action_id"),
)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    ctx.check_given(action_id=ma.check_action_id, machine_id=mu.check_machine_id)
    if p["limit"] is not None and p["limit"] < 1:
        ctx.fail_json(msg="limit must be at least 1, got %d." % p["limit"])
    ctx.checked(options.CREATED_AFTER.check, p)


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
