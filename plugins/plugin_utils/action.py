# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action base every module of the collection runs through, in the controller's own worker process.

A task of the collection never opens a connection to the host the play targets: its arguments are validated
against the module's own argument spec (environment fallbacks, defaults, choices, mutually exclusive options:
ansible-core's own validator, so the same messages), and the module's ``run(ctx)`` is called here, with the shared
client, in the Python that runs ansible-playbook. ``module_defaults`` reach it through ansible-core as they reach a
module; the ``environment:`` keyword of the task or play is in ``os.environ`` while it runs, and only then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import importlib
import os
import re

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.defender.endpoint.plugins.module_utils import options
from ansible_collections.defender.endpoint.plugins.module_utils.context import Context, execute, validation_text
from ansible_collections.defender.endpoint.plugins.module_utils.module import env_fallback

display = Display()

SPEC_KEYWORDS = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


def validation_message(result, name):
    """The message AnsibleModule fails with for these validation errors (context.validation_text explains the one
    change: a first error that names no option gives way to those that do)."""
    if isinstance(result.errors[0], UnsupportedError):
        return "Unsupported parameters for (%s) module: %s" % (name, result.errors.msg)
    return validation_text(result.errors.msg, result.error_messages)


def no_log_values(checked):
    """The values to mask wherever they would appear in a result: those ansible-core's validator collected while it
    validated the task's arguments (no_log options and suboptions, their environment fallbacks included). Every
    core the collection claims (2.16 to 2.21) keeps them in the ValidationResult's ``_no_log_values``, which has no
    public name."""
    return set(checked._no_log_values)  # pylint: disable=protected-access


@contextlib.contextmanager
def environment(overlay):
    """``os.environ`` with ``overlay`` for the duration of the block, then exactly as before."""
    saved = dict(os.environ)
    try:
        for key, value in overlay.items():
            os.environ[str(key)] = str(value)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# The modules this action plugin may run: the collection's own, by name.
_MODULE_NAME = re.compile(r"^mde_[a-z0-9_]+$")
COLLECTION = "defender.endpoint"


def module_for(action):
    """The Python module of the collection's module ``action`` names (``defender.endpoint.mde_machine``)."""
    collection, _dot, name = action.rpartition(".")
    if collection not in ("", COLLECTION) or not _MODULE_NAME.match(name):
        raise AnsibleError("%s is not a module of %s, which this action plugin runs." % (action, COLLECTION))
    return importlib.import_module("ansible_collections.defender.endpoint.plugins.modules.%s" % name)


class MDEActionBase(ActionBase):
    """Runs a module's ``run(ctx)`` in the controller's worker: ``MODULE`` when a subclass sets it, else the module
    the task resolved to (meta/runtime.yml routes every module of the collection to one action plugin, so adding a
    module needs no action plugin file of its own)."""

    MODULE = None
    TRANSFERS_FILES = False
    _requires_connection = False  # ansible-core 2.19+: no connection is made for this action
    _supports_async = True  # so that run() itself says why async is refused, on every core

    def _task_environment(self):
        """The ``environment:`` of the task, its block and its play, templated, the task's values winning."""
        final = {}
        environments = self._task.environment
        if environments is None:
            return final
        if not isinstance(environments, list):
            environments = [environments]
        for env in environments:
            if not env:
                continue
            env = self._templar.template(env)
            if not isinstance(env, dict):
                raise AnsibleError("environment must be a dictionary, received %s (%s)" % (env, type(env)))
            final.update(env)
        return final

    def _sign_in_prompt(self, task_vars):
        """Show a device code sign-in message (auth_mode device_code) on the controller's display now, while the
        task waits for the user: from a worker, Display sends it to the main process at once. On standard error, as
        Ansible's warnings, so that a JSON stdout callback's output stays JSON."""
        host = (task_vars or {}).get("inventory_hostname") or "localhost"
        task = self._task.get_name()

        def show(message):
            display.display("defender.endpoint: task '%s' (host %s) needs a user to sign in. %s" % (task, host, message),
                            color=C.COLOR_HIGHLIGHT, stderr=True)
        return show

    def _progress_display(self, task_vars):
        """How a long wait (progress.Progress) shows its lines: as the sign-in message, on the controller's display
        at once, on standard error."""
        host = (task_vars or {}).get("inventory_hostname") or "localhost"
        task = self._task.get_name()

        def show(line):
            display.display("defender.endpoint: task '%s' (host %s) is %s" % (task, host, line), stderr=True)
        return show

    def run(self, tmp=None, task_vars=None):
        del tmp  # no temporary directory on any host: nothing is transferred
        result = super(MDEActionBase, self).run(task_vars=task_vars)
        name = self._task.action
        # The action as the task names it: the task's resolved_action is this plugin's own name on some cores.
        module = self.MODULE or module_for(name)
        if self._task.async_val:
            result.update(failed=True, msg="%s runs on the controller in the worker of its task and does not support "
                                           "async; use its wait and wait_timeout options, or forks, instead." % name)
            return result
        spec = options.full_spec(module.ARGUMENT_SPEC, env_fallback)
        with environment(self._task_environment()):
            validator = ArgumentSpecValidator(spec, **dict((k, getattr(module, "SPEC_OPTIONS", {}).get(k))
                                                           for k in SPEC_KEYWORDS))
            checked = validator.validate(dict(self._task.args))
            # A task that gives its own credential or its own app (a customer's own app, from the inventory's host
            # variables) does not also get the environment's.
            environment_client_id = options.first_set(options.SHARED_OPTIONS["client_id"]["env"], os.environ)
            params = options.own_credential(self._task.args, checked.validated_parameters, environment_client_id)
            masked = no_log_values(checked)
            if checked.error_messages:
                result.update(failed=True, msg=validation_message(checked, name))
            else:
                ctx = Context(params, check_mode=self._play_context.check_mode, diff=self._play_context.diff,
                              name=name, sign_in=self._sign_in_prompt(task_vars),
                              progress=self._progress_display(task_vars), verbose=display.verbosity >= 1)
                outcome = execute(module.run, ctx, permission=getattr(module, "PERMISSION", None),
                                  validate=getattr(module, "validate", None))
                if ctx.warnings:
                    outcome["warnings"] = list(outcome.get("warnings") or []) + ctx.warnings
                result.update(outcome)
            result["invocation"] = {"module_args": params}
        # As AnsibleModule does: booleans and None stay what they are, whatever a secret's text is.
        kept = dict((k, v) for k, v in result.items() if v is None or isinstance(v, bool))
        result = remove_values(result, masked)
        result.update(kept)
        return result
