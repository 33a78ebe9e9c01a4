# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data from the API is untrusted: it reaches Ansible marked so, on every supported ansible-core.

A device controls its own tags and computer name, and through them what alerts say about it. Before
ansible-core 2.19 a variable's value is rendered as a template whenever it is used, unless it is marked
unsafe; from 2.19 on, only data explicitly trusted as a template is ever rendered
(https://docs.ansible.com/ansible/latest/porting_guides/porting_guide_core_2.19.html). ``untrusted()``
marks a value on the cores that need it and leaves it alone where untrusted is already the default.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:  # ansible-core 2.19 and later: nothing is a template unless tagged as trusted
    from ansible.template import trust_as_template as _trust_as_template  # noqa: F401 pylint: disable=unused-import
    UNTRUSTED_BY_DEFAULT = True
except ImportError:  # 2.16 - 2.18: every string is a template unless marked unsafe
    UNTRUSTED_BY_DEFAULT = False

from ansible.utils.unsafe_proxy import wrap_var

# What no host name from the API may hold: template delimiters, white space and control characters (C0 and C1: a C1
# CSI, \x9b, starts a terminal sequence as ESC [ does).
_NOT_A_HOST_NAME = re.compile(u"[{}%#\\s\x00-\x1f\x7f-\x9f]")
# The longest host name from the API: "Each name can be up to 255 bytes total"
# (https://learn.microsoft.com/en-us/windows/win32/sysinfo/computer-names).
MAX_HOST_NAME = 255


def untrusted(value):
    """``value`` (nested lists and dictionaries included) as data that is never rendered as a template."""
    if UNTRUSTED_BY_DEFAULT:
        return value
    return wrap_var(value)


def safe_host_name(name):
    """True when ``name`` can be an inventory host name: no template delimiters, white space or control characters,
    at most MAX_HOST_NAME characters, and not ``.`` or ``..`` (a role that names a folder after its host would leave
    its directory)."""
    return (bool(name) and len(name) <= MAX_HOST_NAME and name not in (".", "..")
            and not _NOT_A_HOST_NAME.search(name))
