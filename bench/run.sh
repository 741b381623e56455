#!/usr/bin/env bash
# Runs the socketio-sessions benchmarks: session overhead against plain socketioxide (B0) and
# against Node socket.io + express-session, in one table.
#
#   bench/run.sh            full run (3 repeats per row, ~15 min on 2 cores)
#   bench/run.sh --quick    CI smoke test (< 2 min after the build): every scenario must finish
#                           with zero errors; the last line is `N passed, 0 failed`
#   bench/run.sh --sql      the SQL rows only (~5 min): S1 and S3 on SQLite, Postgres and MySQL
#                           against B0 and against each store's raw conditional-update loop
#                           (the same as `--only S1,S3 --stores sqlite,postgres,mysql`)
#
# Other options go to `socketio-sessions-bench run` (see bench/src/main.rs). It builds the
# release binaries, installs the Node peer's packages from its lockfile when node_modules is
# missing or stale, and starts a redis-server of its own on a free port; every process it
# starts is stopped at the end. Postgres and MySQL rows use the machine's servers
# (SOCKETIO_SESSIONS_POSTGRES, default postgres://postgres@127.0.0.1:5432;
# SOCKETIO_SESSIONS_MYSQL, default mysql://root@127.0.0.1:3306), in a database of the run's own
# (sios_bench_<pid>) dropped at the end. Without node, redis-server or a reachable database
# server those rows are skipped with the reason, unless SOCKETIO_SESSIONS_REQUIRE_ALL=1 (then
# the run fails).
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

target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
bin="$target_dir/release/socketio-sessions-bench"
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
