"""Helpers the unit tests share."""
import os


def owned_by_another(monkeypatch, path, uid=4242):
    """Make ``path`` look owned by ``uid`` to os.fstat and os.stat (chown needs root; the tests must not)."""
    real_stat, real_fstat, target = os.stat, os.fstat, os.stat(str(path))

    def disguise(st):
        if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
            return st
        fields = list(st[:10])
        fields[4] = uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", lambda p, *a, **kw: disguise(real_stat(p, *a, **kw)))
    monkeypatch.setattr(os, "fstat", lambda fd: disguise(real_fstat(fd)))


def _validated(module, args):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.defender.endpoint.plugins.module_utils import options
    from ansible_collections.defender.endpoint.plugins.module_utils.module import env_fallback
    validator = ArgumentSpecValidator(options.full_spec(module.ARGUMENT_SPEC, env_fallback),
                                      **getattr(module, "SPEC_OPTIONS", {}))
    return validator.validate(dict(args))


def spec_errors(module, args):
    """The messages ansible-core's validator gives for ``args`` against a module's argument spec (the shared options
    plus its own) and rules (SPEC_OPTIONS), as a task of the action plugin meets them; empty when it accepts them."""
    return " ".join(_validated(module, args).error_messages)


def refusal(module, args):
    """Why a task of ``module`` with ``args`` fails before any call: the argument spec's messages, else the message
    of the module's ``validate(ctx)``; empty when both accept them."""
    from ansible_collections.defender.endpoint.plugins.module_utils.context import Context, TaskFailed
    checked = _validated(module, args)
    if checked.error_messages:
        return " ".join(checked.error_messages)
    try:
        module.validate(Context(checked.validated_parameters))
    except TaskFailed as e:
        return e.msg
    return ""
