#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) with
# libFuzzer under AddressSanitizer, from the seed corpus the workspace test
# writes. A crash stops the script; its input is under
# load-tests/fuzz/artifacts/<target>/ — fix the code, then keep the input in
# load-tests/fuzz/regressions/<target>/ so every CI run replays it.
#
#   load-tests/fuzz/run.sh [seconds per target] [target …]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Not part of CI's test run: fuzzing is open-ended; its regressions are.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(plug_reading household_config incident_event token)
fi
export CARGO_TARGET_DIR=${DOLBOM_FUZZ_TARGET_DIR:-/var/tmp/dolbom-fuzz-target}
work=${DOLBOM_FUZZ_WORK:-/var/tmp/dolbom-fuzz-work}
mkdir -p "$work"
# The seeds: well-formed records of each kind.
DOLBOM_FUZZ_SEEDS="$work/seeds" CARGO_TARGET_DIR=${DOLBOM_TEST_TARGET_DIR:-/var/tmp/dolbom-ci-target} \
    cargo test -q -p dolbom-load-tests --test fuzz_regressions >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "load-tests/fuzz/artifacts/$t"
    echo "== $t: ${secs}s"
    cargo +nightly fuzz run --fuzz-dir load-tests/fuzz -O "$t" \
        "$work/corpus/$t" "$work/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 \
        -artifact_prefix="load-tests/fuzz/artifacts/$t/" 2>&1 |
        grep -E '^(#[0-9]+ *(DONE|INITED)|Done|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' || true
    # libFuzzer exits non-zero on a crash; the pipe above hides it.
    if ls "load-tests/fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "!! $t crashed: see load-tests/fuzz/artifacts/$t/"
        exit 1
    fi
done
