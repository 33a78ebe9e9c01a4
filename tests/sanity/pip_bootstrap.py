"""Stand-in for the get-pip.py script that ansible-test downloads to bootstrap pip into its test venvs.

That download comes from a host outside the package registries this project may reach, so
tests/sanity/run.sh puts this script where ansible-test caches the download. It does the same job
with the standard library's ensurepip, then installs the requested packages (pip==<version>, ...)
from the package index with that pip. get-pip's own --no-setuptools/--no-wheel flags are dropped:
ensurepip installs neither.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# In a child process: ensurepip sets PIP_CONFIG_FILE=/dev/null in its own environment, which would hide the
# machine's pip configuration (index, CA bundle) from the install below.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
