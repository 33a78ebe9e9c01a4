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
