# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: indicators_from_csv
short_description: Read custom indicators from CSV text
version_added: 0.1.0
description:
  - Turns CSV text with a header row into a list of indicator dictionaries for the O(defender.endpoint.mde_indicator#module:indicators)
    option of M(defender.endpoint.mde_indicator).
  - The header names the columns with that option's keys (C(indicator_value), C(indicator_type), C(action), C(title),
    C(description), C(severity), C(expiration_time), C(recommended_actions), C(rbac_group_names), C(generate_alert),
    C(application), C(educate_url)); header names are stripped of blanks and lower-cased.
  - Cells are stripped of surrounding blanks; an empty cell leaves its key out. Lines that are empty or start with
    C(#) are skipped, except inside a quoted cell, which may span several lines (kept, with LF line ends).
  - A UTF-8 byte order mark at the start (Excel's C(CSV UTF-8) format) is ignored.
  - C(rbac_group_names) is split on C(;) into a list. C(generate_alert) is read as a boolean (V(true), V(yes), V(1) or
    V(false), V(no), V(0)).
  - Keys are not checked here; M(defender.endpoint.mde_indicator) validates every item before any API call.
positional: _input
options:
  _input:
    description: The CSV text, for example the content of a file.
    type: str
    required: true
author:
  - defender.endpoint maintainers (@defender-endpoint)
'''

EXAMPLES = r'''
# iocs.csv:
#   indicator_value,indicator_type,action,title,description,severity,rbac_group_names
#   198.51.100.7,IpAddress,Block,C2 server,"Seen in incident 4711, stage 2",High,Servers;The-A-Team
- name: Keep Defender's indicators equal to the file
  defender.endpoint.mde_indicator:
    indicators: "{{ lookup('ansible.builtin.file', 'iocs.csv') | defender.endpoint.indicators_from_csv }}"
    purge: true
'''

RETURN = r'''
_value:
  description: One dictionary per data row, with the keys of the non-empty cells.
  type: list
  elements: dict
'''

import csv
import io

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

TRUE = ("true", "yes", "1", "on")
FALSE = ("false", "no", "0", "off")


def _records(text):
    """The CSV records of ``text``: lists of cells. Blank lines and lines starting with ``#`` between records are
    skipped; inside a quoted cell, every line is kept, blank or not (a cell may span lines)."""
    state = dict(start=True)

    def lines():
        # newline="": lines end at \n, \r\n or \r and keep their ending, as the csv module wants them
        for line in io.StringIO(text, newline=""):
            if state["start"] and (not line.strip() or line.lstrip().startswith("#")):
                continue
            state["start"] = False
            yield line

    for row in csv.reader(lines()):
        state["start"] = True   # the reader asks for the next line only to start the next record
        yield [cell.replace("\r\n", "\n").replace("\r", "\n") for cell in row]


def indicators_from_csv(text):
    """CSV text with a header row -> list of indicator dicts (empty cells dropped)."""
    if not isinstance(text, (str, bytes)):
        raise AnsibleFilterError("indicators_from_csv expects CSV text, got %s" % type(text).__name__)
    text = to_text(text)
    # Excel's "CSV UTF-8" starts the file with a byte order mark, which would otherwise become part of the first
    # column's name.
    if text.startswith(u"\ufeff"):
        text = text[1:]
    try:
        rows = list(_records(text))
    except csv.Error as e:
        raise AnsibleFilterError("indicators_from_csv: the CSV text cannot be read: %s" % e)
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    if "" in header or len(set(header)) != len(header):
        raise AnsibleFilterError("indicators_from_csv: the header row must name every column once, got %s" % rows[0])
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise AnsibleFilterError("indicators_from_csv: data row %d has %d cells, the header names %d"
                                     % (number, len(row), len(header)))
        item = {}
        for key, cell in zip(header, row):
            cell = cell.strip()
            if cell == "":
                continue
            if key == "rbac_group_names":
                item[key] = [g.strip() for g in cell.split(";") if g.strip()]
            elif key == "generate_alert":
                if cell.lower() in TRUE:
                    item[key] = True
                elif cell.lower() in FALSE:
                    item[key] = False
                else:
                    raise AnsibleFilterError("indicators_from_csv: data row %d: generate_alert must be true or false, "
                                             "got %r" % (number, cell))
            else:
                item[key] = cell
        if item:
            out.append(item)
    return out


class FilterModule(object):
    def filters(self):
        return {"indicators_from_csv": indicators_from_csv}
