"""tests/cores.py finds the Python each ansible-core of the matrix needs: on PATH, then under pyenv, and only then
through uv (pip-installed, `uv python install`). Real runs of a copy of the script in a scratch root."""
import os
import shutil
import stat
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scratch(tmp_path):
    (tmp_path / "tests" / "emulator").mkdir(parents=True)
    for name in ("cores.py", "requirements-core.txt", os.path.join("emulator", "requirements.txt")):
        shutil.copy(os.path.join(HERE, name), str(tmp_path / "tests" / name))
    return tmp_path


def find(root, env):
    code = "import sys; sys.path.insert(0, 'tests'); import cores; print(cores.find_python('3.12'))"
    return subprocess.run([sys.executable, "-c", code], cwd=str(root), env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_a_python_on_path_comes_first_and_uv_is_not_fetched(tmp_path):
    root = scratch(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3.12"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo 3.12
        """))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH="%s:/usr/bin:/bin" % bin_dir, PYENV_ROOT=str(tmp_path / "no-pyenv"))
    out = find(root, env)
    assert out.returncode == 0 and out.stdout.strip() == str(fake), out
    assert not (root / ".venvs").exists()


def test_without_one_uv_is_asked_and_a_failure_says_what_was_tried(tmp_path):
    """No python3.12 on PATH, an empty pyenv root: uv is pip-installed into .venvs/uv and `uv python install 3.12`
    runs. Where uv can download an interpreter, that one is used; where it cannot (this project's machines reach only
    package registries), the message names the versions, the places looked at, uv's own words and what to do."""
    root = scratch(tmp_path)
    env = dict(os.environ, PATH="/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "no-pyenv"))
    env.pop("UV_PYTHON_INSTALL_MIRROR", None)
    out = find(root, env)
    assert os.path.exists(str(root / ".venvs" / "uv" / "bin" / "uv")), out
    assert "uv python install 3.12 (into %s)" % (root / ".venvs" / "python") in out.stderr, out.stderr
    if out.returncode == 0:
        path = out.stdout.strip()
        assert path.startswith(str(root / ".venvs" / "python"))
        version = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert version == "3.12"
    else:
        assert "Traceback" in out.stderr  # find_python raises; cores.py's main turns it into one line (below)
        message = out.stderr.strip().splitlines()[-1]
        assert message.startswith("RuntimeError: ansible-core 2.20 and 2.21 need Python 3.12. None is on PATH "
                                  "(python3.12) or under %s/versions, and uv python install 3.12 failed: " % (
                                      tmp_path / "no-pyenv")), message
        assert "UV_PYTHON_INSTALL_MIRROR" in message and "pyenv install 3.12" in message
        main = subprocess.run([sys.executable, "tests/cores.py", "2.21"], cwd=str(root), env=env,
                              capture_output=True, text=True, timeout=900, check=False)
        assert main.returncode == 1 and "Traceback" not in main.stderr
        assert main.stderr.strip().splitlines()[-1] == "tests/cores.py: " + message[len("RuntimeError: "):]
