#!/usr/bin/env bash
# Runs the whole test suite: unit tests, doc tests, and the integration suites against every
# store (memory, SQLite, and a redis-server the tests start themselves on a free port).
# Set SOCKETIO_SESSIONS_REQUIRE_ALL=1 to fail, rather than skip, when a real part is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "note: redis-server not found: the Redis tests will be skipped (apt-get install redis-server)"
fi

# The Express app of the interop tests (express-session + connect-redis), from its lockfile.
if command -v npm >/dev/null 2>&1; then
  stamp=tests/express/node_modules/.installed-from-lock
  if ! cmp -s tests/express/package-lock.json "$stamp" 2>/dev/null; then
    (cd tests/express && npm ci --no-audit --no-fund)
    cp tests/express/package-lock.json "$stamp"
  fi
else
  echo "note: npm not found: the Express interop tests will be skipped"
fi

cargo test --all-features "$@"

# End-to-end with real clients: socket.io-client in Node (WebSocket and polling) and the demo
# page in headless Chromium. Skips without Node/npm or chromium unless SOCKETIO_SESSIONS_REQUIRE_ALL=1.
e2e/run.sh
