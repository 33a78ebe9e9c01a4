# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MDEModule: module mode, the AnsibleModule a module's main() builds.

A task normally runs in the controller's worker through the module's action plugin (plugin_utils/action.py); a plain
module run (main(), under AnsiballZ) builds this AnsibleModule with the same argument spec (the shared options of
options.py plus the module's own) and runs the same validate(ctx) and run(ctx) with the same Context.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.defender.endpoint.plugins.module_utils.client import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.defender.endpoint.plugins.module_utils import options
from ansible_collections.defender.endpoint.plugins.module_utils.context import Context, execute, validation_text


def env_fallback(*args, **kwargs):
    """ansible-core's env_fallback, except that an empty variable counts as unset: AWX sets every field of a credential
    type, the unused ones empty (an empty MDE_AUTH_MODE is no sign-in mode; an empty path is no path)."""
    del kwargs
    value = options.first_set(args, os.environ)
    if value is None:
        raise AnsibleFallbackNotFound
    return value


AUTH_ARGUMENT_SPEC = options.argument_spec(env_fallback)


class MDEModule(AnsibleModule):
    """AnsibleModule plus the shared options; in module mode, it runs a module's logic with the shared Context."""

    def __init__(self, argument_spec=None, **kwargs):
        kwargs.setdefault("supports_check_mode", True)
        super(MDEModule, self).__init__(argument_spec=options.full_spec(argument_spec, env_fallback), **kwargs)
        if not HAS_REQUESTS:
            self.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))

    def fail_json(self, msg=None, **kwargs):
        # ansible-core reports only the first validation error. For a list of dictionaries given a string, that one is
        # "dictionary requested, could not parse JSON or key=value", which names no option; the errors after it do.
        # While the module is being built (no params checked yet), prefer the errors that name an option.
        checked = getattr(self, "validation_result", None)
        if checked is not None and not getattr(self, "_validated", False) and checked.error_messages and \
                msg == checked.errors.msg:
            msg = validation_text(msg, checked.error_messages)
        super(MDEModule, self).fail_json(msg=msg, **kwargs)

    @classmethod
    def main(cls, argument_spec, run, validate=None, permission=None, **spec_options):
        """Module mode: validate the arguments, run ``validate(ctx)`` then ``run(ctx)``, exit with the result."""
        module = cls(argument_spec=argument_spec, **spec_options)
        module._validated = True
        ctx = Context(module.params, check_mode=module.check_mode, diff=module._diff, name=module._name)
        result = execute(run, ctx, permission=permission, validate=validate)
        for text in ctx.warnings:
            module.warn(text)
        if result.pop("failed", False):
            module.fail_json(**result)
        module.exit_json(**result)
