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
pyver="$("$root/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
cd "$dest"
"$root/.venv/bin/ansible-test" sanity --venv --python "$pyver" --color no "$@"
