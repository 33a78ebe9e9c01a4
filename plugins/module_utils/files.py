# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private directories, locked reads and atomic writes of the files the collection keeps.

Plain Python: no Ansible import.

Every file the collection keeps between runs (the token cache, the call budget, the EDA checkpoint, a downloaded
package) is written the same way: into a temporary file in the same directory, mode 0600 from its creation, flushed
to disk, then renamed over the old one, so that a reader sees the old file or the new one and never a part of one.
Files that several processes update are read and written while holding an exclusive lock on a separate lock file.

Symbolic links are never followed where such a file should be: a link there is refused as a link. A directory that
holds secrets must belong to the user and be closed to everybody else (mode 0700).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import io
import os
import stat
import tempfile

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # pragma: no cover - Windows is not a supported controller
    HAS_FCNTL = False

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO put in a file's place must not hang the reader
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeFileError(Exception):
    """A path the collection refuses to use: a symbolic link, owned by another user, or open to other users.

    ``problem``: what is wrong, a sentence without its full stop ("the file /x is a symbolic link ...");
    ``remedy``: what the user can do about it ("remove the link", "run 'chmod 600 /x'"). ``str()`` is both.
    """

    def __init__(self, path, problem, remedy):
        self.path = path
        self.problem = problem
        self.remedy = remedy
        super(UnsafeFileError, self).__init__("%s%s. %s%s." % (problem[:1].upper(), problem[1:], remedy[:1].upper(),
                                                               remedy[1:]))


def _mode(st):
    return "0%03o" % stat.S_IMODE(st.st_mode)


def _symlink_error(path, kind="file"):
    try:
        target = " (to %s)" % os.readlink(path)
    except OSError:
        target = ""
    return UnsafeFileError(path, "the %s %s is a symbolic link%s, and the collection does not follow symbolic "
                                 "links there" % (kind, path, target), "remove the link")


def check_private(path, st, kind="file"):
    """Raise UnsafeFileError unless ``st`` (of ``path``) is owned by the current user and closed to all others."""
    if st.st_uid != os.getuid():
        raise UnsafeFileError(path, "the %s %s is owned by uid %d, not by you (uid %d)"
                              % (kind, path, st.st_uid, os.getuid()), "remove it")
    if st.st_mode & 0o077:
        what = "change" if st.st_mode & 0o022 else "read"
        raise UnsafeFileError(path, "the %s %s has permissions %s, which let other users %s it" % (
            kind, path, _mode(st), what), "run 'chmod %s %s'" % ("700" if kind == "directory" else "600", path))


def private_directory(path, may_tighten=None, warnings=None):
    """Make sure ``path`` is a directory of the current user that nobody else can use; create it (mode 0700).

    A missing directory is created with mode 0700 in one step (mkdir(2) takes the mode), so that no other program
    can create it first with its own default mode; missing parents get the usual mode. An existing directory must
    be owned by the user and closed to everybody else (a symbolic link to such a directory is accepted: its
    target is checked). One exception, ``may_tighten(name) -> bool``: a directory of the user that nobody else
    could write in (no group or other write bit), is no link, and holds only entries for which ``may_tighten``
    is true, is changed to mode 0700 with a warning appended to ``warnings`` (a list), instead of being refused.

    Raises UnsafeFileError for a directory that is not safe, OSError when it cannot be created or is not a
    directory (a read-only file system, EACCES, a file in its place).
    """
    try:
        os.makedirs(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    if st.st_uid == os.getuid() and st.st_mode & 0o077 and not st.st_mode & 0o022 and may_tighten is not None \
            and not os.path.islink(path) and all(may_tighten(name) for name in os.listdir(path)):
        # Nobody else could write in it, so everything in it was put there by this user, and it holds only what
        # the caller makes: its own directory, opened by another program's default mode (Ansible's jsonfile cache
        # plugin creates missing directories 0755). The XDG base directory specification asks to create such a
        # directory 0700 and to leave the mode of an existing one alone
        # (https://specifications.freedesktop.org/basedir-spec/latest/): a directory holding anything else is the
        # user's, and its mode theirs to choose (refused below, never changed); this one is demonstrably ours.
        os.chmod(path, 0o700)
        message = ("Changed the permissions of the directory %s from %s to 0700, so that other users cannot read "
                   "what is kept there." % (path, _mode(st)))
        if warnings is not None and message not in warnings:
            warnings.append(message)
        return
    check_private(path, st, "directory")


def read_file(path, private=True):
    """The bytes of ``path``, or None when there is no such file.

    A symbolic link is refused (UnsafeFileError), and so, with ``private``, is a file that is not the user's or
    that other users can read or change. Anything else that is not a readable regular file (a directory in its
    place, EACCES, EIO) raises OSError naming ``path``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        if e.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise _symlink_error(path)
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "a directory is where the file should be", path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if private:
            check_private(path, st)
    except BaseException:
        os.close(fd)
        raise
    with io.open(fd, "rb") as f:
        return f.read()


@contextlib.contextmanager
def locked(lock_path):
    """Hold an exclusive flock(2) on ``lock_path`` (created mode 0600; a symbolic link is refused).

    The lock file only serves to lock: the data lives in another file, replaced by atomic_write while the lock is
    held, so that the lock survives the replacement. Raises UnsafeFileError or OSError (cannot create it).
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o600)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(lock_path):
            raise _symlink_error(lock_path, "lock file")
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", lock_path)
        if HAS_FCNTL:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock_path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _refuse_link(path):
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_error(path)
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "a directory is where the file should be", path)


def _fsync_directory(directory):
    """Make the rename itself durable (a crash right after it must not bring back the old file)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path, mode=0o600, text=False, lock_path=None, fsync=True):
    """Yield a file object whose content replaces ``path`` atomically when the block ends without an exception.

    The temporary file ``.<name>.<random>.tmp`` is made in the same directory with mode 0600 (then ``mode``),
    written, flushed and fsync'ed, then renamed over ``path`` (os.replace). On an exception the temporary file is
    removed and ``path`` is left as it was. ``text``: a text file (UTF-8) instead of bytes. ``lock_path``: hold
    the lock on that file meanwhile (see locked(); not needed when the caller already holds it). ``fsync=False``:
    skip the two fsync(2) calls, for a file whose last update may be lost in a crash (the call budget, rewritten
    twice a request under a lock every fork waits for); the replacement stays atomic. A symbolic link
    or a directory at ``path`` is refused (UnsafeFileError, OSError). The directory is not checked here: call
    private_directory() first for a file that holds secrets.
    """
    if lock_path is not None:
        with locked(lock_path):
            with atomic_writer(path, mode=mode, text=text, fsync=fsync) as f:
                yield f
        return
    _refuse_link(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        f = io.open(fd, "w", encoding="utf-8") if text else io.open(fd, "wb")
        fd = None
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    if fsync:
        _fsync_directory(directory)


def atomic_write(path, data, mode=0o600, lock_path=None, fsync=True):
    """Replace ``path`` with ``data`` (bytes, or text written as UTF-8) atomically; see atomic_writer()."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    with atomic_writer(path, mode=mode, lock_path=lock_path, fsync=fsync) as f:
        f.write(data)


def file_digest(path, chunk_size=1024 * 1024):
    """``(sha256 hex digest, size in bytes)`` of the file at ``path``, read in chunks."""
    import hashlib
    digest = hashlib.sha256()
    size = 0
    with io.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def where(error, default):
    """The path an OSError is about (``error.filename`` when it is one), else ``default``."""
    name = getattr(error, "filename", None)
    return name if isinstance(name, str) and name else default


class StateStore:
    """One JSON state file that every process of the controller updates (the token cache, the call budget, the
    session slots, the live response status board, the event sources' checkpoints): ``update(fn)`` takes the lock,
    reads the file, keeps the top-level entries that
    ``check(key, value)`` returns a value for (one warning when it drops any: a file damaged, or written with wrong
    types, is repaired on the next update instead of failing every run), runs ``fn(state)``, and writes the state
    back atomically (no fsync: after a crash it may forget the last update, never hold half a file).

    Where the file cannot be used (a read-only file system, a directory in its place, a full disk) the state lives
    in this process's memory from then on, with one warning. A file that is not safe to use (another owner, open to
    other users, a symbolic link) raises ``refuse(UnsafeFileError)`` (the UnsafeFileError itself by default).
    ``what`` names the file in warnings ("call budget"); ``warnings`` is a list (or anything with ``append``).
    ``file_name``: the file's own name when it is not ``<name>.json`` (a path the user chose; the lock is still
    ``<name>.lock``). ``private=False``: for a file that holds no secret (an event checkpoint): it is still written
    mode 0600 and its missing directory made 0700, but an existing directory and file are used whatever their mode
    (never a symbolic link, nothing but a regular file). ``error``: the OSError that moved the state into memory.
    """

    def __init__(self, directory, name, what, check=None, warnings=None, may_tighten=None, refuse=None,
                 file_name=None, private=True):
        self.directory = directory
        self.path = os.path.join(directory, file_name or name + ".json") if directory else None
        self.lock_path = os.path.join(directory, name + ".lock") if directory else None
        self.private = private
        self.error = None
        self.what = what
        self.check = check or (lambda key, value: value)
        self.warnings = [] if warnings is None else warnings
        self.may_tighten = may_tighten
        self.refuse = refuse
        self.memory = {}
        self.in_memory = not directory or not HAS_FCNTL

    def _warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def _read(self):
        import json
        data = read_file(self.path, private=self.private)
        if data is None:
            return {}
        try:
            state = json.loads(data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            state = None
        clean = {}
        if isinstance(state, dict):
            for key, value in state.items():
                try:
                    value = self.check(key, value)
                except (TypeError, ValueError, AttributeError, KeyError):
                    value = None
                if value is not None:
                    clean[key] = value
        if not isinstance(state, dict) or len(clean) < len(state):
            self._warn("The %s file %s was damaged: its unreadable entries were dropped." % (self.what, self.path))
        return clean

    def read(self):
        """A copy of the checked state, read under the lock; nothing is written (no file is created)."""
        import copy
        return self.update(copy.deepcopy, write=False)

    def update(self, fn, save_on_error=False, write=True):
        """``fn(state)``'s result, ``state`` (a dict) saved afterwards; when ``fn`` raises, nothing is saved unless
        ``save_on_error`` (what ``fn`` recorded before it failed is then kept, and the error raised). ``write=False``:
        nothing is saved at all (read())."""
        import json
        if self.in_memory:
            return fn(self.memory)
        state, done, result, failure = None, False, None, None
        try:
            if self.private:
                private_directory(self.directory, may_tighten=self.may_tighten, warnings=self.warnings)
            else:
                os.makedirs(self.directory, 0o700, exist_ok=True)
            with locked(self.lock_path):
                state = self._read()
                try:
                    result, done = fn(state), True
                except Exception as e:  # pylint: disable=broad-except
                    # fn's own error (a token request's connection error is an IOError too): never the file's.
                    failure = e
                if write and (done or save_on_error):
                    atomic_write(self.path, json.dumps(state, separators=(",", ":")), fsync=False)
        except UnsafeFileError as e:
            if self.refuse is not None:
                raise self.refuse(e)
            raise
        except (IOError, OSError) as e:
            self.in_memory, self.error = True, e
            self.memory = state if state is not None else {}
            self._warn("The %s file %s cannot be used (%s): this process keeps it in memory only." % (
                self.what, where(e, self.path), e.strerror or e))
            if not done and failure is None:
                return fn(self.memory)
        if failure is not None:
            raise failure
        return result
