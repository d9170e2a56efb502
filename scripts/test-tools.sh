#!/usr/bin/env bash
# Tools the signature-verification tests run the spec's snippets with:
# node + the jsonwebtoken and standardwebhooks (the Standard Webhooks reference
# library) packages (into .cache/node), python3, php-cli; and chromium, which the
# admin web UI's browser tests drive (e2e/ui_test.go).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$root/.cache/node/node_modules/jsonwebtoken" ] || [ ! -d "$root/.cache/node/node_modules/standardwebhooks" ]; then
  mkdir -p "$root/.cache/node"
  (cd "$root/.cache/node" && { [ -f package.json ] || echo '{"private":true}' > package.json; } && npm install --silent --no-audit --no-fund jsonwebtoken@9.0.2 standardwebhooks@1.1.1)
fi
missing=()
command -v php >/dev/null || missing+=(php-cli)
command -v python3 >/dev/null || missing+=(python3)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (install them to run the signature snippet tests)" >&2
    exit 1
  fi
fi
# chromium: installed when possible; without it the UI's browser tests skip
# (unless CI is set, where they fail).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: the web UI's browser tests (e2e/ui_test.go) will skip (apt-get install chromium)" >&2
  fi
fi
