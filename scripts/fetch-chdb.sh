#!/usr/bin/env bash
# Installs libchdb.so (embedded ClickHouse) from the npm package
# @chdb/lib-linux-x64-gnu into the git-ignored .cache/chdb/<version>/.
# Idempotent: does nothing when the library is already there.
set -euo pipefail
version="${1:?usage: fetch-chdb.sh VERSION}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/chdb/$version"
if [ -s "$dest/libchdb.so" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required to fetch libchdb.so (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching @chdb/lib-linux-x64-gnu@$version (about 180 MB, once)..." >&2
(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null)
tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-*.tgz -C "$tmp" package/libchdb.so
mkdir -p "$dest"
mv "$tmp/package/libchdb.so" "$dest/libchdb.so.tmp"
mv "$dest/libchdb.so.tmp" "$dest/libchdb.so"
echo "installed $dest/libchdb.so" >&2
