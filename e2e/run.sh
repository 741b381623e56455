#!/usr/bin/env bash
# End-to-end tests with real clients: builds the demo, installs the npm packages of e2e/,
# client/ and e2e/typed-app/ (`npm ci`) when node_modules is missing or stale, then runs every
# e2e/*.test.mjs with `node --test`: socket.io-client over WebSocket and polling, the client
# helper (against the demo and a scripted socket.io server), the session lifecycle, the demo
# page in headless Chromium, the npm package (version, `tsc --checkJs`), and a TypeScript page
# built with Vite from the packed package, in Chromium. Arguments replace the list of test files.
# Without Node/npm this prints why and skips; with SOCKETIO_SESSIONS_REQUIRE_ALL=1 it fails
# instead (and so do the parts that need chromium or redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [[ "${SOCKETIO_SESSIONS_REQUIRE_ALL:-}" == 1 ]]; then
    echo "e2e: FAIL: $1 (SOCKETIO_SESSIONS_REQUIRE_ALL=1 requires every part)" >&2
    exit 1
  fi
  echo "e2e: skip: $1"
  exit 0
}

command -v node >/dev/null 2>&1 || skip "node not found (Node >= 20.14 runs the end-to-end tests)"
command -v npm >/dev/null 2>&1 || skip "npm not found (it installs socket.io-client and playwright-core)"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 14) ? 0 : 1)' ||
  skip "node $(node --version) is too old: the end-to-end tests need Node >= 20.14"

echo "== e2e: cargo build --example demo"
cargo build --example demo

# `npm ci` in $1 when its node_modules was not installed from the current package-lock.json.
npm_ci() {
  local stamp=$1/node_modules/.installed-from-lock
  if ! cmp -s "$1/package-lock.json" "$stamp" 2>/dev/null; then
    echo "== e2e: npm ci in $1"
    (cd "$1" && npm ci --no-audit --no-fund)
    cp "$1/package-lock.json" "$stamp"
  fi
}
npm_ci e2e           # socket.io-client, socket.io (a scripted server), playwright-core
npm_ci client        # the npm package's own checks: typescript, socket.io-client's types
npm_ci e2e/typed-app # a TypeScript page on the packed package: vite, typescript, socket.io-client

cd e2e
if (($# == 0)); then set -- *.test.mjs; fi
echo "== e2e: node --test $*"
# One file at a time (each starts its own demo; timing checks need a quiet machine), and exit
# once the tests are done even if a failed test left a connection open.
node --test --test-reporter=spec --test-concurrency=1 --test-force-exit "$@"
