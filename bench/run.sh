#!/usr/bin/env bash
# Runs the socketio-sessions benchmarks: session overhead against plain socketioxide (B0) and
# against Node socket.io + express-session, in one table.
#
#   bench/run.sh            full run (3 repeats per row, ~15 min on 2 cores)
#   bench/run.sh --quick    CI smoke test (< 2 min after the build): every scenario must finish
#                           with zero errors; the last line is `N passed, 0 failed`
#
# Other options go to `socketio-sessions-bench run` (see bench/src/main.rs). It builds the
# release binaries, installs the Node peer's packages from its lockfile when node_modules is
# missing or stale, and starts a redis-server of its own on a free port; every process it
# starts is stopped at the end. Without node (or redis-server) those rows are skipped with the
# reason, unless SOCKETIO_SESSIONS_REQUIRE_ALL=1 (then the run fails).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo build --release -p socketio-sessions-bench

peer="$root/bench/node-peer"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  stamp="$peer/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$peer/package-lock.json" -nt "$stamp" ]]; then
    echo "npm ci in bench/node-peer" >&2
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
fi

bin="$root/target/release/socketio-sessions-bench"
# Two or more cores: the generator (and redis-server) on CPU 1, each server on CPU 0.
if command -v taskset >/dev/null 2>&1 && [[ "$(nproc)" -ge 2 ]] && [[ " $* " != *" --no-pin "* ]]; then
  cmd=(taskset -c 1 "$bin" run "$@")
else
  cmd=("$bin" run "$@")
fi

"${cmd[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' INT TERM
set +e
wait "$pid"
status=$?
# A signal interrupts the first wait: wait again for the run to clean up.
if kill -0 "$pid" 2>/dev/null; then
  wait "$pid"
  status=$?
fi
exit "$status"
