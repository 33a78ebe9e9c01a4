# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live response library: listing, uploading (multipart/form-data) and deleting its files.

Plain Python (no Ansible import), used by mde_library_file, mde_library_file_info and mde_live_response. Endpoints:
``GET /api/libraryfiles`` (https://learn.microsoft.com/en-us/defender-endpoint/api/list-library-files),
``POST /api/libraryfiles`` with the form fields ``File``, ``Description``, ``ParametersDescription``,
``HasParameters`` and ``OverrideIfExists`` (https://learn.microsoft.com/en-us/defender-endpoint/api/upload-library;
20 MB at most) and ``DELETE /api/libraryfiles/{fileName}``
(https://learn.microsoft.com/en-us/defender-endpoint/api/delete-library). All need ``Library.Manage``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.defender.endpoint.plugins.module_utils import files, odata

PATH = "/api/libraryfiles"
# "File max size limitation is 20MB" (upload-library, "Limitations").
MAX_SIZE = 20 * 1024 * 1024
# What a library file name may hold: a plain file name (it becomes a path segment of DELETE and the name a command
# gives), no directory, no control character.
_BAD_NAME = re.compile(r"[\\/\x00-\x1f\x7f]")


def check_file_name(value, option="file_name"):
    """A library file name, stripped; ValueError naming ``option`` for an empty one, a path, or control characters."""
    name = (value or "").strip()
    if not name:
        raise ValueError("%s must not be empty" % option)
    if _BAD_NAME.search(name) or name in (".", ".."):
        raise ValueError("%s must be a plain file name (no directory, no control characters), got %s" % (
            option, odata.shown(value)))
    return name


def check_local_file(path, option="path"):
    """``(sha256, size)`` of the local file to upload; ValueError when it is missing, not a file, or over 20 MB."""
    if not path or not os.path.isfile(path):
        raise ValueError("%s: %s is not a file on the controller" % (option, path))
    size = os.path.getsize(path)
    if size > MAX_SIZE:
        raise ValueError("%s: %s has %d bytes; the live response library takes files of at most 20 MB (%d bytes)" % (
            option, path, size, MAX_SIZE))
    return files.file_digest(path)


def list_files(client):
    """Every library file (LibraryFile entities as the API returns them). The page documents no paging: one GET, then
    any @odata.nextLink the API sends."""
    return list(client.list(PATH, use_top=False))


def find(files_, name):
    """The library file named ``name`` (compared case-insensitively: the library is a Windows-style namespace), or
    None."""
    wanted = name.lower()
    for entry in files_:
        if str(entry.get("fileName") or "").lower() == wanted:
            return entry
    return None


def _text(value):
    """A text property as compared: None and "" are the same (the page: "Default value is an empty string")."""
    return value or ""


def differences(entry, sha256, description=None, has_parameters=None, parameters_description=None):
    """The names of what differs between the library's ``entry`` and the wanted file; [] when nothing does.
    Options left unset (None) are not compared."""
    diffs = []
    if str(entry.get("sha256") or "").lower() != sha256.lower():
        diffs.append("sha256")
    if description is not None and _text(entry.get("description")) != description:
        diffs.append("description")
    if has_parameters is not None and bool(entry.get("hasParameters")) != has_parameters:
        diffs.append("has_parameters")
    if parameters_description is not None and _text(entry.get("parametersDescription")) != parameters_description:
        diffs.append("parameters_description")
    return diffs


def form(file_name, content, description=None, has_parameters=None, parameters_description=None, override=True):
    """The multipart/form-data parts of an upload, as the page's example sends them."""
    parts = [("File", (file_name, content, "application/octet-stream"))]
    if description is not None:
        parts.append(("Description", (None, description)))
    if parameters_description is not None:
        parts.append(("ParametersDescription", (None, parameters_description)))
    if has_parameters is not None:
        parts.append(("HasParameters", (None, "true" if has_parameters else "false")))
    parts.append(("OverrideIfExists", (None, "true" if override else "false")))
    return parts


def upload(client, file_name, content, sha256, description=None, has_parameters=None, parameters_description=None,
           override=True):
    """``POST /api/libraryfiles``; the LibraryFile entity. A lost answer is reconciled: the library is read again, and
    the upload took effect when the file is there with this content and metadata."""

    def reconcile():
        entry = find(list_files(client), file_name)
        if entry and not differences(entry, sha256, description, has_parameters, parameters_description):
            return entry
        return None

    parts = form(file_name, content, description, has_parameters, parameters_description, override)
    return odata.entity(client.request("POST", PATH, files=parts, reconcile=reconcile))


def delete(client, file_name):
    """``DELETE /api/libraryfiles/{fileName}``. A 404 (gone already, e.g. a retry after a lost answer) is success."""
    client.delete("%s/%s" % (PATH, odata.path_segment(file_name)), ok_statuses=(404,))
