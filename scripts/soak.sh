#!/usr/bin/env bash
# Memory over a long flat-out run: one broker, ringbroker-bench e2e (1 KiB,
# acks=all, 8 partitions, producers and consumers flat out) for DURATION
# seconds (default 600), sampling the broker's resident size every 10 s.
# Retention keeps the disk bounded (1 GiB per partition, 128 MiB segments,
# checked every 10 s), so segments roll and are deleted during the run.
# Prints the samples, then the spread of the samples after the first
# minute relative to their median (the target is within ±10 %).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/common.sh
DURATION=${DURATION:-600}
SHARDS=${SHARDS:-$(nproc)}
WORK=$(mktemp -d "$ROOT/target/soak.XXXXXX")
PORT=$((20000 + RANDOM % 20000))
BROKER=
cleanup() {
    [ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null && wait "$BROKER" 2>/dev/null
    rm -rf "$WORK/data"
}
trap cleanup EXIT
cargo build --release --workspace --locked 2>&1 | tail -1
"$ROOT/target/release/ringbroker" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --shards "$SHARDS" \
    --override log.retention.bytes=1073741824 --override log.segment.bytes=134217728 \
    --override log.retention.check.interval.ms=10000 > "$WORK/broker.log" 2>&1 &
BROKER=$!
wait_for_port "$PORT"

"$ROOT/target/release/ringbroker-bench" e2e --bootstrap "127.0.0.1:$PORT" --topic soak --partitions 8 \
    --message-size 1024 --acks all --duration "$DURATION" --warmup 0 --json "$WORK/soak.json" \
    > "$WORK/bench.txt" 2>&1 &
LOAD=$!
: > "$WORK/rss.txt"
t0=$SECONDS
while kill -0 "$LOAD" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$BROKER/status")
    echo "$((SECONDS - t0)) $rss" | tee -a "$WORK/rss.txt"
    sleep 10
done
wait "$LOAD" || echo "ringbroker-bench reported errors (see $WORK/bench.txt)"
tail -4 "$WORK/bench.txt"
du -sh "$WORK/data"
python3 - "$WORK/rss.txt" <<'PY'
import statistics, sys
samples = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
steady = [kb for t, kb in samples if t >= 60] or [kb for _, kb in samples]
med = statistics.median(steady)
print(f"RSS after the first minute: median {med / 1024:.1f} MiB, min {min(steady) / 1024:.1f} MiB "
      f"({(min(steady) / med - 1) * 100:+.1f} %), max {max(steady) / 1024:.1f} MiB "
      f"({(max(steady) / med - 1) * 100:+.1f} %), {len(steady)} samples; "
      f"first {samples[0][1] / 1024:.1f} MiB, last {samples[-1][1] / 1024:.1f} MiB")
PY
echo "raw output: $WORK"
