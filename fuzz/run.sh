#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 30) on its corpus and its kept regressions.
# cargo fuzz needs nightly-only flags: on the stable toolchain RUSTC_BOOTSTRAP=1 enables them.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(cookie_header express_unsign record_decode)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "regressions/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*(ERROR|panicked|deadly))" || true
  # A crash leaves an artifact and a non-zero status: fail the run.
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz: $t found a failing input in fuzz/artifacts/$t: keep it in fuzz/regressions/$t once fixed" >&2
    exit 1
  fi
done
