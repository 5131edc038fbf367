#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (the cargo-fuzz targets in fuzz/)
# for SECONDS each (default 600), one target after another.
#
#   scripts/fuzz.sh [SECONDS]
#
# Builds the targets with `cargo +nightly fuzz build` (needs a nightly
# toolchain and `cargo install cargo-fuzz`), seeds each target's corpus
# fuzz/corpus/TARGET from the committed fuzz/seeds/TARGET, runs it with
# libFuzzer's -max_total_time and -rss_limit_mb=2048, prints the number of
# executions and whether it crashed, and writes the table to
# fuzz/results/latest.md (full logs in fuzz/results/logs/). Exits non-zero
# if any target crashed. Not part of scripts/test.sh.
#
# A crash leaves its input in fuzz/artifacts/TARGET/; reproduce it with
#
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
#
# and shrink it with `cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…`.
# FUZZ_NOTE (optional) is written under the table, e.g. what else the
# machine was doing.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-600}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]  (SECONDS: a positive integer)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz and a nightly toolchain are required:" >&2
  echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
  exit 1
fi

echo "==> cargo +nightly fuzz build"
cargo +nightly fuzz build

targets=$(cargo +nightly fuzz list)
logs=fuzz/results/logs
mkdir -p "$logs"
rows=()
crashed=()
for target in $targets; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  if [ -d "fuzz/seeds/$target" ]; then
    cp -n "fuzz/seeds/$target"/* "$corpus"/ 2>/dev/null || true
  fi
  log="$logs/$target.log"
  echo "==> $target for ${secs}s"
  status=0
  cargo +nightly fuzz run "$target" "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  # libFuzzer's final statistics; `Done N runs` when they are missing.
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  if [ -z "$execs" ]; then
    execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  fi
  execs="${execs:-?}"
  crashes=$(grep -cE 'Test unit written to .*/(crash|oom|timeout|leak)-' "$log" || true)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    # Failed without an artifact (e.g. the run itself broke): count it.
    crashes=1
  fi
  if [ "$crashes" -gt 0 ]; then
    crashed+=("$target")
    grep -E -A1 'panicked at' "$log" | sed 's/^/    /' || true
    grep -E 'Test unit written to' "$log" | sed 's/^/    /' || true
    echo "    $target: $execs executions, CRASHED (log: $log)"
  else
    echo "    $target: $execs executions, no crash"
  fi
  rows+=("| $target | $secs | $execs | $crashes |")
done

mkdir -p fuzz/results
{
  echo "# Fuzzing results"
  echo
  echo "scripts/fuzz.sh $secs, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Machine: $(nproc) cores, $(uname -sm), niceness $(nice), $(rustc +nightly --version)."
  if [ -n "${FUZZ_NOTE:-}" ]; then
    echo "$FUZZ_NOTE"
  fi
  echo
  echo "| target | seconds | executions | crashes |"
  echo "|---|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} >fuzz/results/latest.md
echo "==> wrote fuzz/results/latest.md"

if [ "${#crashed[@]}" -gt 0 ]; then
  echo "crashed: ${crashed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "==> no crash"
