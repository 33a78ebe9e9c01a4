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


def find_python(version):
    """An interpreter of this Python version: on PATH, else under pyenv's root."""
    candidates = [shutil.which("python" + version)]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version)),
                         reverse=True)
    for path in candidates:
        if not path:
            continue
        try:
            out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return path
    raise RuntimeError("ansible-core %s needs Python %s, which this machine does not have." % (
        [v for v, (_release, p) in CORES.items() if p == version], version))


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
    for v in sys.argv[1:] or sorted(CORES):
        print("ansible-core %s: %s" % (v, ensure(v)))
