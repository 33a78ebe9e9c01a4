# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module's ``run(ctx)`` sees, whichever way the task runs.

In the controller's worker (the action plugin, the normal way) and in module mode (``main()``, AnsibleModule) a
module's logic gets the same context: validated ``params``, ``check_mode``, ``diff``, a lazily built ``client``,
``warn()`` and ``fail_json()``. ``execute()`` runs it and turns every outcome into a result dictionary. Plain Python:
no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import platform
import re
import sys
import traceback

from ansible_collections.defender.endpoint.plugins.module_utils import odata, options
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEDependencyError, MDEError, for_terminal


class TaskFailed(Exception):
    """Raised by ``ctx.fail_json``: the task fails with this message and these facts."""

    def __init__(self, msg, **facts):
        super(TaskFailed, self).__init__(msg)
        self.msg = msg
        self.facts = facts


# The collection's Python requirements where its tasks run (requirements.txt): import name -> requirement.
REQUIREMENTS = (("requests", "requests>=2.25.0"), ("msal", "msal>=1.29.0"))


def dependency_message(library):
    """The sentence Ansible's missing_required_lib() gives, without importing Ansible, naming the interpreter that
    runs the task (the controller's, in the action plugin) and the command that installs the library for it."""
    return ("Failed to import the required Python library (%s) on the Python that runs this task, %s (Python %s). "
            "Install it for that interpreter: %s -m pip install '%s' (the collection's requirements.txt lists what it "
            "needs)." % (library, sys.executable, platform.python_version(), sys.executable, library))


def missing_requirements(params):
    """The requirements the task needs whose library the running Python cannot find, checked before anything else:
    ``importlib.util.find_spec`` looks for a library without importing it (msal is imported only to sign in). A
    ready token (``access_token``) needs no msal."""
    ready_token = params.get("access_token") or params.get("auth_mode") == "access_token"
    return [requirement for name, requirement in REQUIREMENTS
            if not (name == "msal" and ready_token) and importlib.util.find_spec(name) is None]


class Context:
    """The task as a module's logic sees it."""

    def __init__(self, params, check_mode=False, diff=False, name=None, client_factory=None, sign_in=None,
                 progress=None, verbose=False):
        self.params = params
        self.check_mode = bool(check_mode)
        self.diff = bool(diff)
        self._diff = self.diff  # the AnsibleModule spelling, for module code written against it
        self.name = name
        self.warnings = []
        self._client = None
        self._client_factory = client_factory
        # How to show a device code sign-in message (auth_mode device_code): the action plugin shows it on the
        # controller's display; module mode has nowhere to show it (None).
        self.sign_in = sign_in
        # How a long wait says what it waits for (progress.Progress): the same path as the sign-in message; with
        # ``verbose`` (ansible-playbook -v) from the first second, else once it has lasted a minute.
        self.progress = progress
        self.verbose = bool(verbose)

    @property
    def client(self):
        if self._client is None:
            from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
            factory = self._client_factory or create_client
            kwargs = dict((k, self.params.get(k)) for k in options.NAMES)
            if self.sign_in is not None:
                kwargs["sign_in"] = self.sign_in
            self._client = factory(**kwargs)
        return self._client

    def waiting(self, what, limit=None):
        """A progress.Progress for a wait on ``what`` (already quoted) with ``limit`` = (seconds, option name)."""
        from ansible_collections.defender.endpoint.plugins.module_utils.progress import QUIET_FOR, Progress
        return Progress(self.progress, what, limit, quiet_for=0 if self.verbose else QUIET_FOR)

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, msg=None, **facts):
        raise TaskFailed(msg, **facts)

    def fail_error(self, error, **result):
        """Fail with an MDEError's one-sentence message plus status, error code, method and path."""
        if isinstance(error, MDEDependencyError):
            self.fail_json(msg=dependency_message(error.library))
        facts = error.to_dict()
        facts.update(result)
        self.fail_json(msg=str(error), **facts)

    def checked(self, check, *args, **kwargs):
        """``check(*args, **kwargs)``'s result; its ValueError (a sentence naming the option) fails the task."""
        try:
            return check(*args, **kwargs)
        except ValueError as e:
            text = str(e)
            self.fail_json(msg=text if text.endswith(".") else text + ".")

    def check_given(self, **checks):
        """Each option of ``checks`` (option name -> check function) that the task gives, checked as ``checked``
        does: ``ctx.check_given(alert_id=check_alert_id, machine_id=check_machine_id)``."""
        for option, check in checks.items():
            if self.params.get(option) is not None:
                self.checked(check, self.params[option])

    def fail_partway(self, error, done, total, noun, rerun=None, **result):
        """Fail after part of a list was written: how many and which (``updated_ids``), and what a re-run does;
        ``result``: more of the task's result (mde_indicator's ``counts``)."""
        text = str(error)
        rerun = rerun or "re-running the task is safe: it reads the current state and changes only what still differs"
        facts = error.to_dict() if isinstance(error, MDEError) else {}
        facts.update(result)
        self.fail_json(msg="%s%s %d of the %d %s to change had been changed before this call (updated_ids lists "
                           "them); %s." % (text, "" if text.endswith(".") else ".", len(done), total, noun, rerun),
                       changed=bool(done), updated_ids=list(done), **facts)


# What no text option may hold: control characters but TAB, LF and CR (a comment or a query may span lines), DEL, C1
# controls (U+0085 is a line break to some tools) and the Unicode line and paragraph separators. The API would store
# them, and every reader of the comment, title or description (a terminal, the portal, a SIEM) would meet them.
_NOT_IN_TEXT = re.compile(u"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029]")


def _bad_text(value, where):
    """``(where, text)`` of the first string in ``value`` (nested lists and dicts, keys included) that holds a
    character of _NOT_IN_TEXT; None when there is none."""
    if isinstance(value, str):
        return (where, value) if _NOT_IN_TEXT.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _bad_text(key, where) or _bad_text(item, "%s.%s" % (where, key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value, start=1):
            found = _bad_text(item, "%s item %d" % (where, n))
            if found:
                return found
    return None


def check_text(params):
    """ValueError naming the option for a module option whose text holds a control character (the shared options,
    credentials among them, have checks of their own that never echo a value)."""
    for name, value in params.items():
        if name in options.NAMES:
            continue
        found = _bad_text(value, name)
        if found:
            raise ValueError("%s must not contain control characters such as NUL, ESC or U+0085, got %s."
                             % (found[0], odata.shown(found[1])))


def validation_text(first, messages):
    """The message a task fails with for argument validation errors: ansible-core's first one, unless it names no
    option while later ones do. For a list of dictionaries given a string, the first is "dictionary requested, could
    not parse JSON or key=value"; the next ones name the option (tests/integration/test_bad_input.py has the case)."""
    if "option" in (first or ""):
        return first
    named = []
    for text in messages:
        if "option" in text and text not in named:
            named.append(text)
    return "; ".join(named) if named else first


def execute(run, ctx, permission=None, validate=None):
    """``run(ctx)`` as a result dictionary: its own, or ``failed`` with one clear sentence in ``msg``.

    ``permission``: the application permission the module as a whole needs. A 403 on a call that a weaker
    permission allows (a read before the write) then names that one too, not only the read's.
    """
    try:
        missing = missing_requirements(ctx.params)
        if missing:
            # At the start of every task: a task that would pass on a cached token must not hide a missing msal.
            ctx.fail_json(msg=dependency_message(", ".join(missing)))
        check_text(ctx.params)
        if validate is not None:
            validate(ctx)  # the checks that need no call: a failure here makes none
        result = run(ctx)
    except TaskFailed as e:
        result = dict(e.facts)
        result.update(failed=True, msg=e.msg)
    except MDEError as e:
        if permission and (e.status == 403 or e.code == "consent_required"):
            delegated = getattr(getattr(ctx._client, "token_provider", None), "delegated", False)  # pylint: disable=protected-access
            # Microsoft Graph names its delegated permissions as its application ones; the Defender API does not.
            if delegated and (e.path or "").startswith("/api/"):
                from ansible_collections.defender.endpoint.plugins.module_utils.permissions import delegated_permission
                permission = delegated_permission(permission)
            if e.permission != permission:
                e.message = "%s %s needs the %s permission %s." % (
                    e, ctx.name, "delegated" if delegated else "application", permission)
                e.permission = permission
        try:
            ctx.fail_error(e)
        except TaskFailed as failed:
            result = dict(failed.facts)
            result.update(failed=True, msg=failed.msg)
    except ValueError as e:
        text = str(e)
        result = dict(failed=True, msg=text)
    except Exception as e:  # pylint: disable=broad-except
        result = dict(failed=True, msg="Unexpected error: %s: %s" % (type(e).__name__, e),
                      exception=traceback.format_exc())
    result.setdefault("changed", False)
    for text in getattr(ctx._client, "warnings", None) or []:  # pylint: disable=protected-access
        if text not in ctx.warnings:
            ctx.warnings.append(text)
    # The last guard before Ansible prints them: no message or warning carries a control character to the terminal.
    if "msg" in result:
        result["msg"] = for_terminal(result["msg"])
    ctx.warnings[:] = [for_terminal(text) for text in ctx.warnings]
    return result
