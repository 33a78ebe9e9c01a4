"""The ansible-core versions the collection claims, each in a venv of its own that installs itself.

``python tests/cores.py [VERSION ...]`` makes (or keeps) ``.venvs/core-<VERSION>``; tests use ``bin_dir(version)``.
The main venv (.venv, tests/requirements-dev.txt) carries the version ``MAIN`` and the test tools.
"""
import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "tests", "requirements-core.txt")
MAIN = "2.19"
# version -> (the newest patch release, the Python it runs on here)
CORES = {
    "2.16": ("2.16.19", "3.11"),
    "2.17": ("2.17.14", "3.11"),
    "2.18": ("2.18.19", "3.11"),
    "2.19": ("2.19.14", "3.11"),
    "2.20": ("2.20.10", "3.12"),
    "2.21": ("2.21.5", "3.12"),
}
OLDEST = min(CORES, key=lambda v: tuple(int(p) for p in v.split(".")))
NEWEST = max(CORES, key=lambda v: tuple(int(p) for p in v.split(".")))


# Where no interpreter of a version is on PATH or under pyenv, uv (from PyPI) installs one here
# (https://docs.astral.sh/uv/guides/install-python/). uv downloads it from its python-build-standalone releases,
# or from UV_PYTHON_INSTALL_MIRROR when that is set.
UV = "uv==0.13.9"
UV_DIR = os.path.join(ROOT, ".venvs", "uv")
UV_PYTHONS = os.path.join(ROOT, ".venvs", "python")


def _version_of(path):
    try:
        out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _uv_python(version):
    """``(interpreter, None)`` from ``uv python install``, uv itself pip-installed into .venvs/uv; or
    ``(None, why)`` with uv's own last line."""
    uv = os.path.join(UV_DIR, "bin", "uv")
    env = dict(os.environ, UV_PYTHON_INSTALL_DIR=UV_PYTHONS, UV_PYTHON_PREFERENCE="only-managed")
    if not os.path.exists(uv):
        print("tests/cores.py: no Python %s on PATH or under pyenv; installing %s to get one" % (version, UV),
              file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", UV_DIR, UV],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0 or not os.path.exists(uv):
            return None, "pip install %s failed: %s" % (UV, _last_line(out.stderr or out.stdout))
    found = subprocess.run([uv, "python", "find", version], env=env, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        print("tests/cores.py: uv python install %s (into %s)" % (version, UV_PYTHONS), file=sys.stderr, flush=True)
        out = subprocess.run([uv, "python", "install", version], env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return None, "uv python install %s failed: %s" % (version, _gist(out.stderr or out.stdout))
        found = subprocess.run([uv, "python", "find", version], env=env, capture_output=True, text=True, check=False)
    path = found.stdout.strip()
    if found.returncode != 0 or _version_of(path) != version:
        return None, "uv python find %s found none after installing it" % version
    return path, None


def _gist(text):
    """uv's first line, the download it tried and its last cause, in one line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    kept = lines[:1] + [line for line in lines[1:-1] if "Failed to download" in line][:1] + lines[-1:][len(lines) < 2:]
    return " / ".join(kept).rstrip(".") if kept else "no message"


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def find_python(version):
    """An interpreter of this Python version: on PATH, else under pyenv's root, else one that uv installs."""
    candidates = [shutil.which("python" + version)]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version)),
                         reverse=True)
    for path in candidates:
        if path and _version_of(path) == version:
            return path
    path, why = _uv_python(version)
    if path:
        return path
    needing = [v for v, (_release, p) in sorted(CORES.items()) if p == version]
    raise RuntimeError(
        "ansible-core %s need%s Python %s. None is on PATH (python%s) or under %s/versions, and %s. Install Python %s "
        "(pyenv install %s, or your distribution's package), or set UV_PYTHON_INSTALL_MIRROR to a mirror of "
        "python-build-standalone that this machine can reach, then run make test again." % (
            " and ".join(needing), "" if len(needing) > 1 else "s", version, version, root,
            why, version, version))


def venv_dir(version):
    if version == MAIN:
        return os.path.join(ROOT, ".venv")
    return os.path.join(ROOT, ".venvs", "core-" + version)


def bin_dir(version):
    return os.path.join(venv_dir(version), "bin")


def ensure(version):
    """The venv of this ansible-core version, made or brought up to date; returns its bin directory."""
    if version == MAIN:
        return bin_dir(version)
    release, python = CORES[version]
    directory = venv_dir(version)
    import hashlib
    digest = hashlib.sha1()
    for path in (REQUIREMENTS, os.path.join(ROOT, "tests", "emulator", "requirements.txt")):
        with open(path, "rb") as f:
            digest.update(f.read())
    stamp = os.path.join(directory, ".installed-%s-%s" % (release, digest.hexdigest()[:12]))
    if os.path.exists(stamp):
        return bin_dir(version)
    if not os.path.exists(os.path.join(directory, "bin", "python")):
        subprocess.run([find_python(python), "-m", "venv", directory], check=True)
    pip = [os.path.join(directory, "bin", "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["ansible-core==" + release, "-r", REQUIREMENTS], check=True)
    for old in glob.glob(os.path.join(directory, ".installed-*")):
        os.remove(old)
    open(stamp, "w").close()
    return bin_dir(version)


if __name__ == "__main__":
    try:
        for v in sys.argv[1:] or sorted(CORES):
            print("ansible-core %s: %s" % (v, ensure(v)))
    except RuntimeError as exc:
        sys.exit("tests/cores.py: %s" % exc)
