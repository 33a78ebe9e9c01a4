#!/usr/bin/env bash
# ansible-test sanity on the Python here, over a copy of the tracked tree laid out as
# ansible_collections/defender/endpoint (ansible-test needs that path). Its own test
# requirements go into venvs that ansible-test makes (--venv).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.build/sanity/ansible_collections/defender/endpoint"
rm -rf "$dest"
mkdir -p "$dest"
cd "$root"
if git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files -co --exclude-standard | grep -v '^\.ci/' | while read -r f; do
    [ -e "$f" ] && mkdir -p "$dest/$(dirname "$f")" && cp -p "$f" "$dest/$f"
  done
else
  tar --exclude=.venv --exclude=.build --exclude=.git -cf - . | tar -xf - -C "$dest"
fi
# The copy lives below this (git-ignored) checkout: give it its own git index so ansible-test lists its files.
git -C "$dest" init -q && git -C "$dest" add -A
# ansible-test's --venv mode downloads a pip bootstrap script from a host outside the package registries;
# instead, a venv of our own with ansible-core, and --requirements installs each test's needs through pip.
venv="$root/.build/sanity-venv"
core="$(grep -E '^ansible-core==' "$root/tests/requirements-demo.txt")"  # the main venv's (requirements-dev.txt includes it)
if [ ! -x "$venv/bin/ansible-test" ] || ! "$venv/bin/python" -m pip show ansible-core 2>/dev/null | grep -q "^Version: ${core#ansible-core==}$"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$core"
fi
pipver="$("$venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(type("P", (), {"version": "x"})())["pip"])')"
cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
if ! cmp -s "$root/tests/sanity/pip_bootstrap.py" "$cache" && { [ ! -f "$cache" ] || grep -q "Stand-in for the get-pip.py" "$cache"; }; then
  mkdir -p "$(dirname "$cache")"
  cp "$root/tests/sanity/pip_bootstrap.py" "$cache"
fi
pyver="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
cd "$dest"
"$venv/bin/ansible-test" sanity --local --requirements --python "$pyver" --color no "$@"
