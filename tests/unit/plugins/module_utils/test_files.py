"""Private directories, locked reads and atomic writes (module_utils/files.py)."""
import errno
import multiprocessing
import os
import stat

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.files import UnsafeFileError

from tests.unit.helpers import owned_by_another


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_atomic_write_makes_a_private_file_whatever_the_umask(tmp_path, open_umask):
    path = tmp_path / "state.json"
    files.atomic_write(str(path), '{"a": "\u00e9"}')
    assert path.read_bytes() == b'{"a": "\xc3\xa9"}' and mode(path) == 0o600
    path.chmod(0o644)
    files.atomic_write(str(path), b"two")
    assert path.read_bytes() == b"two" and mode(path) == 0o600
    assert sorted(os.listdir(str(tmp_path))) == ["state.json"]  # no temporary file left
    files.atomic_write(str(path), b"three", mode=0o640)
    assert mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.json"
    files.atomic_write(str(path), "old")
    with pytest.raises(RuntimeError):
        with files.atomic_writer(str(path), text=True) as f:
            f.write("half of the new")
            raise RuntimeError("the transfer dropped")
    assert path.read_text() == "old" and os.listdir(str(tmp_path)) == ["checkpoint.json"]


def test_atomic_writer_streams_bytes(tmp_path):
    path = tmp_path / "package.zip"
    with files.atomic_writer(str(path)) as f:
        for _i in range(3):
            f.write(b"x" * 1000)
        assert not path.exists()  # nothing is visible before the block ends
    assert path.stat().st_size == 3000 and mode(path) == 0o600


def test_symlinks_are_refused_as_symlinks(tmp_path):
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    target.chmod(0o644)
    link = tmp_path / "tokens.json"
    os.symlink(str(target), str(link))
    for call in (lambda: files.read_file(str(link)), lambda: files.read_file(str(link), private=False),
                 lambda: files.atomic_write(str(link), "x")):
        with pytest.raises(UnsafeFileError) as e:
            call()
        assert "symbolic link (to %s)" % target in str(e.value) and "chmod" not in str(e.value)
        assert e.value.remedy == "remove the link" and e.value.path == str(link)
    with pytest.raises(UnsafeFileError) as e:
        with files.locked(str(link)):
            pass
    assert "symbolic link" in str(e.value)
    os.unlink(str(target))  # a dangling link is no different
    with pytest.raises(UnsafeFileError):
        with files.locked(str(link)):
            pass
    assert not target.exists() and os.path.islink(str(link))


def test_read_file(tmp_path, monkeypatch):
    path = tmp_path / "tokens.json"
    assert files.read_file(str(path)) is None
    files.atomic_write(str(path), b"data")
    assert files.read_file(str(path)) == b"data"
    path.chmod(0o644)
    with pytest.raises(UnsafeFileError) as e:
        files.read_file(str(path))
    assert "has permissions 0644, which let other users read it" in str(e.value)
    assert "chmod 600 %s" % path in str(e.value)
    assert files.read_file(str(path), private=False) == b"data"
    path.chmod(0o600)
    owned_by_another(monkeypatch, path)
    with pytest.raises(UnsafeFileError) as e:
        files.read_file(str(path))
    assert "owned by uid 4242, not by you" in str(e.value)


def test_a_directory_or_a_fifo_in_place_of_the_file(tmp_path):
    os.mkdir(str(tmp_path / "tokens.json"))
    with pytest.raises(OSError) as e:
        files.read_file(str(tmp_path / "tokens.json"))
    assert e.value.errno == errno.EISDIR and e.value.filename == str(tmp_path / "tokens.json")
    with pytest.raises(OSError) as e:
        files.atomic_write(str(tmp_path / "tokens.json"), "x")
    assert e.value.errno == errno.EISDIR and os.listdir(str(tmp_path)) == ["tokens.json"]
    os.mkfifo(str(tmp_path / "fifo"), 0o600)
    with pytest.raises(OSError) as e:  # and does not wait for a writer
        files.read_file(str(tmp_path / "fifo"))
    assert e.value.errno == errno.EINVAL


def test_private_directory_is_created_0700(tmp_path, open_umask):
    path = tmp_path / "home" / ".cache" / "defender.endpoint"
    files.private_directory(str(path))
    assert mode(path) == 0o700
    assert mode(path.parent) == 0o777  # the parents get the usual mode (here with umask 0)
    files.private_directory(str(path))


def test_private_directory_refuses(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    path.mkdir()
    path.chmod(0o755)
    with pytest.raises(UnsafeFileError) as e:
        files.private_directory(str(path))  # without may_tighten nothing is changed
    assert "directory %s has permissions 0755, which let other users read it" % path in str(e.value)
    assert "chmod 700 %s" % path in str(e.value)
    path.chmod(0o775)
    with pytest.raises(UnsafeFileError) as e:
        files.private_directory(str(path), may_tighten=lambda name: True)  # others could write in it
    assert "other users change it" in str(e.value) and mode(path) == 0o775
    path.chmod(0o755)
    owned_by_another(monkeypatch, path)
    with pytest.raises(UnsafeFileError) as e:
        files.private_directory(str(path), may_tighten=lambda name: True)  # not the user's: never changed
    assert "owned by uid 4242" in str(e.value) and mode(path) == 0o755
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as e:
        files.private_directory(str(tmp_path / "file"))
    assert e.value.errno in (errno.ENOTDIR, errno.EEXIST)


def test_private_directory_tightens_a_directory_of_its_own(tmp_path):
    path = tmp_path / "cache"
    (path / "inventory").mkdir(parents=True)
    (path / "tokens.json").write_text("{}")
    path.chmod(0o755)
    ours = {"inventory", "tokens.json"}.__contains__
    warnings = []
    files.private_directory(str(path), may_tighten=ours, warnings=warnings)
    assert mode(path) == 0o700
    assert len(warnings) == 1 and str(path) in warnings[0] and "from 0755 to 0700" in warnings[0]
    (path / "notes.txt").write_text("")
    path.chmod(0o755)
    with pytest.raises(UnsafeFileError):
        files.private_directory(str(path), may_tighten=ours, warnings=warnings)
    assert mode(path) == 0o755


def test_a_link_to_a_private_directory_is_followed_but_never_tightened(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    real.chmod(0o700)
    os.symlink(str(real), str(tmp_path / "link"))
    files.private_directory(str(tmp_path / "link"))
    real.chmod(0o755)
    with pytest.raises(UnsafeFileError):
        files.private_directory(str(tmp_path / "link"), may_tighten=lambda name: True)
    assert mode(real) == 0o755


def _count(directory, n):
    counter, lock = os.path.join(directory, "counter"), os.path.join(directory, "counter.lock")
    for _i in range(n):
        with files.locked(lock):
            value = int(files.read_file(counter) or b"0")
            files.atomic_write(counter, str(value + 1))


def test_processes_update_one_file_under_the_lock(tmp_path):
    procs = [multiprocessing.Process(target=_count, args=(str(tmp_path), 25)) for _i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    assert files.read_file(str(tmp_path / "counter")) == b"200"
    assert sorted(os.listdir(str(tmp_path))) == ["counter", "counter.lock"]
    assert mode(tmp_path / "counter.lock") == 0o600


def test_atomic_write_can_take_the_lock(tmp_path):
    files.atomic_write(str(tmp_path / "eda.json"), "{}", lock_path=str(tmp_path / "eda.lock"))
    assert (tmp_path / "eda.json").read_text() == "{}" and (tmp_path / "eda.lock").exists()


def test_a_failing_update_saves_nothing_unless_asked_and_is_not_taken_for_a_file_error(tmp_path):
    """The update's own error (an IOError from a request, say) is raised as it is: the store does not fall back to
    memory and does not run the update a second time; with save_on_error what it recorded first is kept."""
    store = files.StateStore(str(tmp_path / "state"), "things", "things")
    store.update(lambda state: state.update(kept=1))
    runs = []

    def fails(state):
        runs.append(1)
        state["half"] = 1
        raise IOError("connection reset by peer")
    with pytest.raises(IOError):
        store.update(fails)
    assert runs == [1] and not store.in_memory and store.warnings == []
    assert store.update(dict) == {"kept": 1}
    with pytest.raises(IOError):
        store.update(fails, save_on_error=True)
    assert store.update(dict) == {"kept": 1, "half": 1}
