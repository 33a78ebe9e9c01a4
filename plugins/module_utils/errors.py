# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception family raised by the shared client. Plain Python: no Ansible import."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


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
