#!/usr/bin/env bash
# Where the idle connection's memory goes (S6): bench-server runs under valgrind's massif, B0
# and per-connection memory sessions, with N idle connections (default 2000); prints the peak
# heap of each, the difference per connection, and the allocation sites of the sessions
# variant's peak snapshot that belong to the session path.
#
#   bench/heap.sh [N] [OUT_DIR]     (default 2000, target/bench-profile)
source "$(dirname "$0")/valgrind.sh"
n="${1:-2000}"
out="${2:-$root/target/bench-profile}"
mkdir -p "$out"

peak() { # massif file -> peak useful heap bytes
  ms_print "$1" | awk '/^ +[0-9]+ +[0-9,]+ +[0-9,]+ +[0-9,]+ +[0-9,]+ +[0-9,]+$/ {v = $4; gsub(",", "", v); v += 0; if (v > m) m = v} END {print m + 0}'
}

declare -A heap
for v in "b0|--kind b0" "sessions|--kind sessions --mode per-connection --store memory"; do
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
  grep -E '\(in ' | grep -E 'socketio_sessions|tower_sessions|tower_cookies' | sed -E 's/^[| ]*->//' |
  sort -u | sort -t'(' -k2 -rn | head -20
