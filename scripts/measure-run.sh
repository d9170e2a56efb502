#!/usr/bin/env bash
# Times `make run` from start to /readyz 200, in a fresh clone.
#   scripts/measure-run.sh          # warm: this machine's Go caches
#   COLD=1 scripts/measure-run.sh   # cold: empty Go module and build caches, no libchdb
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'pkill -INT -f "$dir/bin/webhookd dev" 2>/dev/null || true; rm -rf "$dir"' EXIT
git clone -q "$src" "$dir/repo"
if [ "${COLD:-}" = 1 ]; then
  export GOMODCACHE="$dir/gomod" GOCACHE="$dir/gocache"
else
  mkdir -p "$dir/repo/.cache" && cp -r "$src/.cache/chdb" "$dir/repo/.cache/" 2>/dev/null || true
fi
cd "$dir/repo"
export WEBHOOKD_ADMIN_TOKEN=measure-token-0123456789 WEBHOOKD_DATA_DIR="$dir/data"
start=$(date +%s.%N)
make run > "$dir/run.log" 2>&1 &
until curl -sf localhost:8080/readyz >/dev/null 2>&1; do
  sleep 0.1
  kill -0 $! 2>/dev/null || { tail -20 "$dir/run.log"; exit 1; }
done
echo "make run → /readyz 200 in $(echo "$(date +%s.%N) - $start" | bc) s"
pkill -INT -f "bin/webhookd dev"; wait
