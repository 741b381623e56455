# Sourced by profile.sh and heap.sh: builds the release binaries and runs bench-server under a
# valgrind tool, stopping it on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
cargo build --release -p socketio-sessions-bench
bin="$root/target/release"

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT INT TERM

# start_server LOG VALGRIND_LOG VALGRIND_OPTION... -- BENCH_SERVER_ARG...
# Starts bench-server under valgrind and waits for it to listen; sets server_pid and addr.
start_server() {
  local log="$1" vlog="$2"
  shift 2
  local vopts=()
  while [[ "$1" != "--" ]]; do
    vopts+=("$1")
    shift
  done
  shift
  valgrind "${vopts[@]}" "$bin/bench-server" "$@" >"$log" 2>"$vlog" &
  server_pid=$!
  for _ in $(seq 120); do grep -q "listening on" "$log" && break; sleep 0.5; done
  addr="$(grep -o 'listening on .*' "$log" | cut -d' ' -f3)"
}
