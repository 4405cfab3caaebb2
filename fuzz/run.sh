#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each, from the seed corpus in corpus/.
# Needs the nightly toolchain (libFuzzer's coverage flags); cargo-fuzz itself is optional:
# this builds with the same instrumentation cargo fuzz uses, without AddressSanitizer
# (safe Rust; libssh2 is not linked into any target's hot path).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}; shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here; tests/parsers.rs covers the same parsers on stable" >&2
  exit 0
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v flytube-fuzz))
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo +nightly build -q --release --target "$triple" --bins
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  "target/$triple/release/$t" "corpus/$t" -max_total_time="$seconds" -max_len=8192 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|ERROR|panicked|SUMMARY" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $t found a crash: $(ls artifacts/$t/crash-*)" >&2
    exit 1
  fi
done
