#!/usr/bin/env bash
# Galaxy's gates, offline: galaxy-importer (what Galaxy and Automation Hub run on an uploaded collection) over the
# built tarball, and antsibull-docs lint-collection-docs (the docsite's linter) over the installed collection.
# Each tool lives in its own venv under .build/galaxy/, made here from the pinned requirements beside this script.
# Run through `make galaxy`, which builds the tarball and installs it into .build/collections first.
# Fails when the importer fails or logs any ERROR or WARNING, or when antsibull-docs reports anything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/.build"
work="$build/galaxy"
version="$(sed -n 's/^version: *//p' "$root/galaxy.yml")"
tarball="${1:-$build/defender-endpoint-$version.tar.gz}"
collections="${ANSIBLE_COLLECTIONS_PATH:-$build/collections}"
installed="$build/collections/ansible_collections/defender/endpoint"
for f in "$tarball" "$installed/MANIFEST.json"; do
  [ -e "$f" ] || { echo "missing $f: run 'make collection' first (or 'make galaxy')" >&2; exit 2; }
done
mkdir -p "$work"

# A venv per tool, remade when its requirements file changes (the stamp holds the file's hash).
venv() {
  local dir="$work/$1" req="$here/requirements-$1.txt" sum
  sum="$(sha1sum "$req" | cut -c1-12)"
  if [ ! -f "$dir/.installed-$sum" ]; then
    echo "galaxy: installing $1 into ${dir#"$root"/}"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    touch "$dir/.installed-$sum"
  fi
}
venv galaxy-importer
venv antsibull-docs
status=0

# galaxy-importer. It calls ansible-doc and ansible-lint from PATH (its venv's, so the pinned ones), unpacks the tarball
# into a temporary ansible_collections tree and sets ANSIBLE_COLLECTIONS_PATH for them itself.
# It writes importer_result.json into the working directory: kept in .build/galaxy for a look at what Galaxy would show.
echo "galaxy: galaxy-importer on ${tarball#"$root"/}"
log="$work/importer.log"
rc=0
(cd "$work" && rm -f importer_result.json && \
  PATH="$work/galaxy-importer/bin:$PATH" GALAXY_IMPORTER_CONFIG="$here/galaxy-importer.cfg" \
  "$work/galaxy-importer/bin/python" -m galaxy_importer.main "$tarball") >"$log" 2>&1 || rc=$?
# Findings are the ERROR/WARNING lines (and whatever follows them up to the next progress line, such as a traceback),
# each group under the progress line it came after ("Loading role x"), which names the content it is about.
findings="$(awk '
  /^(ERROR|WARNING|CRITICAL): /{ if (at != shown) { print "[" at "]"; shown = at } on = 1; print "  " $0; next }
  /^(Importing|Getting|Finding|Loading|Linting|\.\.\.|Collection loading|Importer processing)/{ at = $0; on = 0; next }
  on { print "  " $0 }' "$log")"
if [ "$rc" -ne 0 ] || [ -n "$findings" ] || ! grep -q '^Importer processing completed successfully' "$log"; then
  echo "galaxy: galaxy-importer FAILED (exit $rc); its findings (full log: ${log#"$root"/}):" >&2
  if [ -n "$findings" ]; then echo "$findings" | sed 's/^/  /' >&2; else sed 's/^/  /' "$log" >&2; fi
  status=1
else
  echo "galaxy: galaxy-importer: no errors, no warnings ($(grep -c '^Loading ' "$log") contents loaded)"
fi

# antsibull-docs lint-collection-docs over the installed collection (what `make collection` put in .build/collections,
# build_ignore applied): schema and markup of every plugin's and role's documentation (--plugin-docs), references
# M()/O()/RV()/... to this collection and to ansible.builtin checked against what exists (--validate-collection-refs=all:
# every collection it can find, which here is these two), rstcheck on the RST it would generate.
# References to other collections are accepted unchecked: they are not installed here (Galaxy is not reachable).
echo "galaxy: antsibull-docs lint-collection-docs on ${installed#"$root"/}"
rc=0
PATH="$work/antsibull-docs/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$collections" \
  "$work/antsibull-docs/bin/antsibull-docs" lint-collection-docs --plugin-docs --validate-collection-refs=all \
  --check-extra-docs-refs "$installed" >"$work/antsibull-docs.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$work/antsibull-docs.log" ]; then
  echo "galaxy: antsibull-docs lint-collection-docs FAILED (exit $rc):" >&2
  # Paths as in the checkout: the linter names files in its temporary copy of the collection or in the installed one.
  sed -e "s|^\(\.\./\)*[^ ]*antsibull-docs-[^/]*/ansible_collections/defender/endpoint/||" -e "s|^$installed/||" \
    -e 's/^/  /' "$work/antsibull-docs.log" >&2
  status=1
else
  echo "galaxy: antsibull-docs lint-collection-docs: no findings"
fi
exit "$status"
