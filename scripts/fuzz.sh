#!/usr/bin/env bash
# Runs ringbroker's cargo-fuzz targets (fuzz/fuzz_targets/) one after
# another, each for a bounded time, and prints per target the executions,
# the wall time and the corpus size. Exits non-zero when a target crashes
# (panic, abort, sanitizer report, out-of-memory or hang); the reproducer
# stays in fuzz/artifacts/<target>/. Not part of CI.
#
# Stable toolchain: with a sanitizer, cargo-fuzz passes the nightly-only
# -Zsanitizer flag to every crate; RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept it (AddressSanitizer works this way; build-script probes
# in crates such as anyhow and thiserror then also see "nightly"). With
# FUZZ_SANITIZER=none the coverage flags are all stable and no
# RUSTC_BOOTSTRAP is set: several times the executions per second, but only
# panics, aborts, hangs and memory growth are caught.
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 60)
#   FUZZ_TARGETS     space-separated targets (default: all, `cargo fuzz list`)
#   FUZZ_SANITIZER   address (default) or none
#   FUZZ_RSS_MB      memory limit of a run in MiB (default 4096)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   FUZZ_ARGS        extra libFuzzer arguments (e.g. "-max_len=65536")
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
rss_mb=${FUZZ_RSS_MB:-4096}
timeout_s=${FUZZ_TIMEOUT:-10}
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}

echo "== building fuzz targets (sanitizer: $sanitizer)"
(cd fuzz && cargo fuzz build -s "$sanitizer")

missing=0
for target in $targets; do
    [ -n "$(ls -A "fuzz/corpus/$target" 2>/dev/null)" ] || missing=1
done
if [ "$missing" = 1 ]; then
    echo "== writing seed corpora"
    cargo run -q --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus
fi

summary=()
failed=()
for target in $targets; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target/last-run.log"
    echo "== $target: ${seconds} s"
    start=$SECONDS
    status=0
    (cd fuzz && cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$timeout_s" \
        -print_final_stats=1 ${FUZZ_ARGS:-}) >"$log" 2>&1 || status=$?
    wall=$((SECONDS - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        grep -E "panicked at|ERROR:|SUMMARY:" "$log" | head -n 5 || true
        echo "   reproducer: ${artifact:-see $log}"
        failed+=("$target")
        summary+=("$(printf '%-18s %12s %8s %8s %8s  CRASH (exit %s)' "$target" "${runs:-?}" "${fuzzed:-?}" "$wall" "$corpus" "$status")")
    else
        summary+=("$(printf '%-18s %12s %8s %8s %8s  ok' "$target" "${runs:-?}" "${fuzzed:-?}" "$wall" "$corpus")")
    fi
done

echo
# fuzz_s: libFuzzer's own time; wall_s adds cargo's check (or a rebuild)
# and loading the corpus.
printf '%-18s %12s %8s %8s %8s  %s\n' target executions fuzz_s wall_s corpus result
for line in "${summary[@]}"; do
    echo "$line"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>)"
    exit 1
fi
