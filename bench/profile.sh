#!/usr/bin/env bash
# Profiles the server side of the per-message path with valgrind's callgrind: bench-server runs
# under callgrind while socketio-sessions-bench drives it (10 connections x window 4, or 8
# churning dialers, for a few seconds), then callgrind_annotate summarizes it. Instruction
# counts hardly depend on how busy the machine is, so "instructions per event" compares B0 and
# the sessions far more precisely than throughput on a shared 2-core VM (the batching of
# syscalls still varies a little with timing; the handler's own count does not).
#
#   bench/profile.sh [OUT_DIR]     (default target/bench-profile)
#
# Prints one line per variant (instructions per handled event) and writes, per variant, the
# callgrind output and `callgrind_annotate --inclusive=yes` (top inclusive functions) to OUT_DIR.
source "$(dirname "$0")/valgrind.sh"
out="${1:-$root/target/bench-profile}"
mkdir -p "$out"

# name | bench-server arguments | event | load shape
closed="--conns 10 --window 4"
churn="--churn 8 --sessions 64"
variants=(
  "b0-echo|--kind b0|echo|$closed"
  "b0-incr|--kind b0|incr|$closed"
  "per-conn-memory-echo|--kind sessions --mode per-connection --store memory|echo|$closed"
  "per-msg-memory-echo|--kind sessions --mode per-message --store memory|echo|$closed"
  "per-msg-memory-incr|--kind sessions --mode per-message --store memory|incr|$closed"
  # Churn: one event per connection, so instructions per event = per connection's life.
  "b0-churn|--kind b0|echo|$churn"
  "per-conn-memory-churn|--kind sessions --mode per-connection --store memory|echo|$churn"
)

printf "%-22s %8s %14s %10s %16s\n" variant events instructions "Ir/event" "handler Ir/event"
for v in "${variants[@]}"; do
  IFS='|' read -r name args event shape <<<"$v"
  log="$out/$name.server.log"
  # shellcheck disable=SC2086
  start_server "$log" "$out/$name.valgrind.log" \
    --tool=callgrind --callgrind-out-file="$out/$name.callgrind" -- $args
  # shellcheck disable=SC2086
  "$bin/socketio-sessions-bench" load --addr "$addr" --event "$event" $shape \
    --warmup 1 --duration 6 >"$out/$name.load.txt" 2>&1
  stop_server
  events="$(grep -o 'handled [0-9]* events' "$log" | cut -d' ' -f2)"
  ir="$(grep -o 'Collected : [0-9]*' "$out/$name.valgrind.log" | awk '{print $3}')"
  callgrind_annotate --inclusive=yes "$out/$name.callgrind" >"$out/$name.inclusive.txt" 2>/dev/null
  callgrind_annotate "$out/$name.callgrind" >"$out/$name.self.txt" 2>/dev/null
  # The event handler's inclusive cost (session operations and the ack included) plus the
  # session extractor's: what the sessions add, independent of how syscalls were batched.
  handler="$(grep -E '\?\?\?:(bench_server::(b0_)?(echo|incr)::\{\{closure\}\}|socketio_sessions::extract::handle) ' \
    "$out/$name.inclusive.txt" | awk '{gsub(",", "", $1); s += $1} END {print s + 0}')"
  n=$((events > 0 ? events : 1))
  printf "%-22s %8s %14s %10s %16s\n" "$name" "$events" "$ir" "$((ir / n))" "$((handler / n))"
done
echo "annotations in $out (*.inclusive.txt: top inclusive functions; *.self.txt: self cost)"
