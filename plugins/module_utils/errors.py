# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception family raised by the shared client, and the one way API and device text enters a message.
Plain Python: no Ansible import."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Text from the API or a device (an error message, a transcript, a device name) is untrusted: shown in a message, it
# must not move the terminal's cursor, clear the screen or forge a line of Ansible's output. Control characters
# (C0 but TAB, DEL, C1 and the Unicode line and paragraph separators) are shown as escapes, and a long text is cut.
_TERMINAL_CONTROL = re.compile(u"[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]")
# How many characters of one API or device text a message shows.
TEXT_LIMIT = 2000
# How many characters a whole message may have, whatever it quotes.
MESSAGE_LIMIT = 8000


def _escape(match):
    code = ord(match.group(0))
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def quoted(text, limit=TEXT_LIMIT):
    """``text`` (from the API or a device) fit for a message: control characters escaped (``\\x1b``), cut to
    ``limit`` characters with a note of its full length. None stays None."""
    if text is None:
        return None
    text = text if isinstance(text, str) else str(text)
    cut = len(text) > limit
    shown = _TERMINAL_CONTROL.sub(_escape, text[:limit] if cut else text)
    if cut:
        shown += "... (cut: %d characters in all)" % len(text)
    return shown


def for_terminal(message, limit=MESSAGE_LIMIT):
    """A whole message (a task's ``msg``, a warning) with no control characters but line feeds and tabs (a carriage
    return would let a text overwrite the line Ansible printed), at most ``limit`` characters: the last guard before
    Ansible prints it."""
    if not isinstance(message, str):
        return message
    cut = len(message) > limit
    text = message[:limit] if cut else message
    text = re.sub(u"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]", _escape, text)
    if cut:
        text += "... (cut: %d characters in all)" % len(message)
    return text


class MDEError(Exception):
    """Any failure talking to Defender for Endpoint or to Entra ID.

    Carries the HTTP status, the API's ``error.code`` and ``error.message`` and the request's
    method and path (never a token, a secret or a query string with one).
    """

    def __init__(self, message, status=None, code=None, api_message=None, method=None, path=None,
                 permission=None, retry_after=None, **facts):
        super(MDEError, self).__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.api_message = api_message
        self.method = method
        self.path = path
        self.permission = permission
        self.retry_after = retry_after
        self.facts = facts  # more facts a task returns beside msg, such as the candidates of an ambiguous name

    def __str__(self):
        return self.message

    def to_dict(self):
        """The facts a module returns beside ``msg`` when it fails."""
        return dict((k, v) for k, v in (
            ("status", self.status),
            ("error_code", self.code),
            ("error_message", self.api_message),
            ("method", self.method),
            ("path", self.path),
            ("permission", self.permission),
        ) + tuple(self.facts.items()) if v is not None)


class MDENotFound(MDEError):
    """What the task names does not exist in Defender for Endpoint (a machine id or name, an alert...)."""


class MDEAmbiguous(MDEError):
    """A name matches more than one entity; ``facts["candidates"]`` lists their ids."""


class MDEConfigError(MDEError):
    """Bad or conflicting options, found before any network call."""


class MDEAuthError(MDEError):
    """Entra ID refused to issue a token, or the token cache cannot be used safely."""


class MDEDependencyError(MDEError):
    """A Python library the requested operation needs is not installed."""

    def __init__(self, library, reason=None):
        super(MDEDependencyError, self).__init__(
            "The Python library %s is required%s" % (library, " " + reason if reason else ""))
        self.library = library
