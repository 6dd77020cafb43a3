#!/usr/bin/env bash
# Coverage-guided fuzzing of the wire decoder and the dialplan/settings parsers with
# cargo-fuzz (libFuzzer) on nightly Rust, from the corpus in fuzz/corpus/. New inputs that
# reach new code are added to a scratch copy of the corpus; crashes land in fuzz/artifacts/
# and make this script fail.
#
#   scripts/fuzz.sh            # 30 s per target
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh
#
# Without nightly or cargo-fuzz it says so and exits 0: the stable route over the same
# corpus (tests/fuzz_parsers.rs) runs in `cargo test` either way.
set -euo pipefail
cd "$(dirname "$0")/.."
per=${SECONDS_PER_TARGET:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; skipping (tests/fuzz_parsers.rs covers the corpus on stable)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz not installed (cargo install cargo-fuzz); skipping"
  exit 0
fi
for target in twilio_inbound dialplan settings; do
  scratch=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$scratch/"
  echo "fuzz: $target for ${per}s"
  (cd fuzz && cargo +nightly fuzz run "$target" -s none "$scratch" -- \
      -max_total_time="$per" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|thread .* panicked|Done)' || true)
  status=${PIPESTATUS[0]:-0}
  rm -rf "$scratch"
  if ls fuzz/artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target found a crash:"; ls fuzz/artifacts/"$target"/
    exit 1
  fi
done
echo "fuzz: no crashes"
