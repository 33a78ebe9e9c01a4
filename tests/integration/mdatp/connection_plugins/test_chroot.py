# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only connection: run a host's tasks inside a directory with chroot(8), as community.general.chroot does.

ansible-core has no chroot connection, and the mdatp role test should not pull community.general in for one; this
is the smallest honest equivalent: every command runs as ``chroot <dir> /bin/sh -c <cmd>``, files are copied into
and out of the directory. It needs root. The directory is the host's ``ansible_host``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: test_chroot
short_description: Run tasks in a chroot directory (tests only)
description:
  - Runs commands with C(chroot <dir> /bin/sh -c) and copies files into and out of the directory.
author: defender.endpoint maintainers (@defender-endpoint)
options:
  remote_addr:
    description: The chroot directory.
    default: inventory_hostname
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_host
"""

import os
import shutil
import subprocess

from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = "test_chroot"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def _root(self):
        root = self.get_option("remote_addr")
        if not os.path.isfile(os.path.join(root, "bin", "sh")):
            raise AnsibleError("test_chroot: %s is not a root directory with /bin/sh" % root)
        return root

    def _connect(self):
        self._root()
        self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        proc = subprocess.Popen(["chroot", self._root(), "/bin/sh", "-c", cmd], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                                     "HOME": "/root", "LANG": "C.UTF-8"})
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def _inside(self, path):
        return os.path.join(self._root(), os.path.normpath(path).lstrip("/"))

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        shutil.copyfile(in_path, self._inside(out_path))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        shutil.copyfile(self._inside(in_path), out_path)

    def close(self):
        self._connected = False
