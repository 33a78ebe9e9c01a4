# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: mdatp_package_json
version_added: 0.2.0
short_description: The JSON file inside an onboarding or offboarding package from the Defender portal
description:
  - Reads, on the controller, the onboarding package (C(WindowsDefenderATPOnboardingPackage.zip)) or offboarding
    package the Microsoft Defender portal gives for Linux with a configuration management tool as the deployment
    method, and returns the text of its C(mdatp_onboard.json) / C(mdatp_offboard.json).
  - A path to the JSON file itself is returned as it is. The text must be a JSON object.
  - The JSON file may be at most 1 MiB (the portal's is a few kilobytes); a larger one, or a zip member that
    expands past that, is refused before it is read into memory.
  - U(https://learn.microsoft.com/en-us/defender-endpoint/linux-install-with-ansible)
author: defender.endpoint maintainers (@defender-endpoint)
options:
  _terms:
    description: Path of the zip or JSON file on the controller.
    required: true
  member:
    description: The file to take from a zip.
    type: str
    default: mdatp_onboard.json
"""

RETURN = r"""
_raw:
  description: The JSON text, one per term.
  type: list
  elements: str
"""

import json
import os
import zipfile

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

# The most bytes of JSON read, from a file or out of a zip: the portal's onboarding JSON is a few kilobytes, and a
# zip member's declared size can lie (a "zip bomb" of 1 MB expands to gigabytes), so reading stops past this.
MAX_JSON = 1024 * 1024


def _read_capped(f, what):
    data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise ValueError("%s is larger than %d bytes, which no onboarding JSON is; it was not read" % (what, MAX_JSON))
    return data


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        member = self.get_option("member")
        out = []
        for term in terms:
            path = os.path.expanduser(str(term))
            try:
                if zipfile.is_zipfile(path):
                    with zipfile.ZipFile(path) as z:
                        names = [n for n in z.namelist() if os.path.basename(n) == member]
                        if len(names) != 1:
                            raise AnsibleLookupError("%s holds no single %s (it holds: %s)"
                                                     % (path, member, ", ".join(z.namelist()) or "nothing"))
                        if z.getinfo(names[0]).file_size > MAX_JSON:
                            raise ValueError("%s in it is larger than %d bytes, which no onboarding JSON is; it was not "
                                             "read" % (names[0], MAX_JSON))
                        with z.open(names[0]) as f:
                            data = _read_capped(f, names[0])
                else:
                    with open(path, "rb") as f:
                        data = _read_capped(f, path)
                text = data.decode("utf-8-sig")
                if not isinstance(json.loads(text), dict):
                    raise ValueError("not a JSON object")
            except (OSError, zipfile.BadZipFile) as e:
                raise AnsibleLookupError("cannot read the package %s: %s" % (path, e))
            except ValueError as e:
                raise AnsibleLookupError("%s is not a zip or a JSON file from the Defender portal: %s" % (path, e))
            out.append(text)
        return out
