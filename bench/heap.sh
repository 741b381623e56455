#!/usr/bin/env bash
# Where the idle connection's memory goes (S6): bench-server runs under valgrind's massif, B0
# and a sessions variant, with N idle connections (default 2000); prints the peak heap of
# each, the difference per connection, and the allocation sites of the sessions variant's peak
# snapshot that belong to the session path.
#
#   bench/heap.sh [N] [OUT_DIR] [VARIANT]   (default 2000, target/bench-profile, per-conn-memory)
#
# VARIANT: per-conn-memory, or per-msg-redis (S6's second row; starts a redis-server of its
# own on a free port, stopped on exit).
source "$(dirname "$0")/valgrind.sh"
n="${1:-2000}"
out="${2:-$root/target/bench-profile}"
variant="${3:-per-conn-memory}"
mkdir -p "$out"

redis_pid=""
stop_redis() { [[ -z "$redis_pid" ]] || kill "$redis_pid" 2>/dev/null || true; }
trap 'stop_server; stop_redis' EXIT INT TERM
case "$variant" in
  per-conn-memory) sessions_args="--kind sessions --mode per-connection --store memory" ;;
  per-msg-redis)
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$out/heap-redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" ping >/dev/null 2>&1 || { echo "redis-server did not start" >&2; exit 1; }
    sessions_args="--kind sessions --mode per-message --store redis://127.0.0.1:$port"
    ;;
  *) echo "unknown variant $variant (per-conn-memory or per-msg-redis)" >&2; exit 2 ;;
esac

peak() { # massif file -> peak useful heap bytes
  ms_print "$1" | awk '/^ +[0-9]+ +[0-9,]+ +[0-9,]+ +[0-9,]+ +[0-9,]+ +[0-9,]+$/ {v = $4; gsub(",", "", v); v += 0; if (v > m) m = v} END {print m + 0}'
}

declare -A heap
for v in "b0|--kind b0" "sessions|$sessions_args"; do
  IFS='|' read -r name args <<<"$v"
  log="$out/heap-$name.server.log"
  # shellcheck disable=SC2086
  start_server "$log" "$out/heap-$name.valgrind.log" \
    --tool=massif --massif-out-file="$out/heap-$name.massif" --depth=40 --threshold=0.05 -- $args
  # Log in n users (their stored records are in the heap before any socket connects), hold
  # n idle connections for 15 s, stop.
  { sleep 15; echo stop; } | "$bin/socketio-sessions-bench" idle --addr "$addr" --login "$n" \
    >"$out/heap-$name.idle.txt"
  stop_server
  ms_print --threshold=0.05 "$out/heap-$name.massif" >"$out/heap-$name.txt"
  heap[$name]="$(peak "$out/heap-$name.massif")"
  echo "$name: peak heap ${heap[$name]} B with $(head -1 "$out/heap-$name.idle.txt")"
done
echo "difference: $(( (heap[sessions] - heap[b0]) / n )) B per connection (stored session records included)"
echo "session-path allocation sites at the sessions variant's peak (bytes for $n connections;"
echo "massif's tree lists an allocation once per frame of its call stack, so lines overlap):"
pk="$(grep -o '[0-9]* (peak)' "$out/heap-sessions.txt" | cut -d' ' -f1)"
awk -v pk="$pk" 'NF == 6 && $1 ~ /^[0-9]+$/ {p = ($1 == pk); next} p' "$out/heap-sessions.txt" |
  grep -E '\(in ' | grep -E 'socketio_sessions|tower_sessions|tower_cookies|fred' | sed -E 's/^[| ]*->//' |
  sort -u | sort -t"(" -k2 -rn | sed -n 1,20p
