#!/usr/bin/env bash
# Benchmarks ringbroker on this host: the disk's sequential-write ceiling
# (fio), then ringbroker-bench over a fixed matrix, printing one table with
# throughput, broker CPU seconds per GB, latency percentiles and the ratio
# of produce throughput to the fio ceiling measured in the same run.
#
# Environment: DURATION (s per run, default 10), WARMUP (default 2),
# SHARDS (default: cores), BENCH_DIR (default: a temporary directory on the
# disk under test), QUICK=1 (a 4-run subset).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/common.sh

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SHARDS=${SHARDS:-$(nproc)}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d "$ROOT/target/bench.XXXXXX")}
OUT="$BENCH_DIR/results"
mkdir -p "$OUT"

command -v fio >/dev/null 2>&1 || {
    if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q fio; else sudo apt-get install -y -q fio; fi
}
cargo build --release --workspace --locked 2>&1 | tail -1

echo "== fio: sequential 256 KiB writes, io_uring, fdatasync every 64 writes (the durable ceiling)"
fio --name=ceiling --directory="$BENCH_DIR" --rw=write --bs=256k --size=2G --ioengine=io_uring \
    --fdatasync=64 --end_fsync=1 --output-format=json > "$OUT/fio.json"
FIO_MBS=$(python3 -c "import json;d=json.load(open('$OUT/fio.json'));print(round(d['jobs'][0]['write']['bw_bytes']/1e6,1))")
rm -f "$BENCH_DIR"/ceiling*
echo "fio ceiling: $FIO_MBS MB/s"

PORT=$((20000 + RANDOM % 20000))
DATA="$BENCH_DIR/data"
# Retention bounds the disk used by a full matrix (segments roll and are
# deleted while it runs); the data directory goes when the script ends.
"$ROOT/target/release/ringbroker" --listen "127.0.0.1:$PORT" --data-dir "$DATA" --shards "$SHARDS" \
    --override log.retention.bytes=1073741824 --override log.segment.bytes=268435456 \
    --override log.retention.check.interval.ms=10000 > "$OUT/broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true; wait $BROKER 2>/dev/null || true; rm -rf "$DATA"' EXIT
wait_for_port "$PORT"

BENCH="$ROOT/target/release/ringbroker-bench"
printf "%-6s %-5s %-4s %-10s %12s %9s %9s %9s %9s %9s %9s %10s %8s\n" \
    size acks part rate "msg/s" "MB/s" "cpu s/GB" "ack p50" "ack p99" "e2e p99" "e2e p99.9" "cons s/GB" "vs fio"
run() {  # size acks partitions rate
    local size=$1 acks=$2 parts=$3 rate=$4 topic="b-$1-$2-$3-$4-$RANDOM"
    local json="$OUT/$topic.e2e.json" pcpu="-" ccpu="-"
    "$BENCH" e2e --bootstrap "127.0.0.1:$PORT" --topic "$topic" --partitions "$parts" --message-size "$size" \
        --acks "$acks" --rate "$rate" --duration "$DURATION" --warmup "$WARMUP" --json "$json" \
        --hgrm "$OUT/$topic.hgrm" > "$OUT/$topic.e2e.txt" 2>&1 || echo "   (ringbroker-bench reported errors: $OUT/$topic.e2e.txt)"
    if [ "$rate" = 0 ]; then
        # Broker CPU per GB: produce only (no consumers), then a caught-up
        # consumer reading the topic from the start (fetch only).
        local b a
        b=$(cpu_seconds "$BROKER")
        "$BENCH" produce --bootstrap "127.0.0.1:$PORT" --topic "$topic" --partitions "$parts" --message-size "$size" \
            --acks "$acks" --duration 5 --warmup 0 --json "$OUT/$topic.produce.json" > "$OUT/$topic.produce.txt" 2>&1 || true
        a=$(cpu_seconds "$BROKER")
        pcpu=$(python3 -c "import json;j=json.load(open('$OUT/$topic.produce.json'));print(round(($a-$b)/(j['produced']*$size/1e9),3))")
        b=$(cpu_seconds "$BROKER")
        "$BENCH" consume --bootstrap "127.0.0.1:$PORT" --topic "$topic" --message-size "$size" --duration 5 --warmup 0 \
            --json "$OUT/$topic.consume.json" > "$OUT/$topic.consume.txt" 2>&1 || true
        a=$(cpu_seconds "$BROKER")
        ccpu=$(python3 -c "import json;j=json.load(open('$OUT/$topic.consume.json'));print(round(($a-$b)/max(j['consumed']*$size/1e9,1e-9),3))")
    fi
    python3 - "$json" "$FIO_MBS" "$size" "$acks" "$parts" "$rate" "$pcpu" "$ccpu" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
fio = float(sys.argv[2])
size, acks, parts, rate, pcpu, ccpu = sys.argv[3:9]
print(f"{size:<6} {acks:<5} {parts:<4} {('max' if rate == '0' else rate):<10} {j['produce_msgs_per_s']:12.0f} "
      f"{j['produce_mb_per_s']:9.1f} {pcpu:>9} {j['produce_ack_ms']['p50']:9.3f} {j['produce_ack_ms']['p99']:9.3f} "
      f"{j['e2e_ms']['p99']:9.3f} {j['e2e_ms']['p99.9']:9.3f} {ccpu:>10} {j['produce_mb_per_s'] / fio:8.2f}")
PY
}

flat_rate() {  # half the flat-out msg/s of the e2e run with these settings
    python3 -c "import json,glob,os;f=max(glob.glob('$OUT/b-$1-$2-$3-0-*.e2e.json'),key=os.path.getmtime);print(max(1,int(json.load(open(f))['produce_msgs_per_s']/2)))"
}

if [ "${QUICK:-0}" = 1 ]; then
    MATRIX="1024:all:8"
else
    MATRIX="100:1:1 100:1:8 100:all:1 100:all:8 1024:1:1 1024:1:8 1024:all:1 1024:all:8"
fi
for cell in $MATRIX; do
    IFS=: read -r size acks parts <<< "$cell"
    run "$size" "$acks" "$parts" 0
    run "$size" "$acks" "$parts" "$(flat_rate "$size" "$acks" "$parts")"
done
echo "(broker --shards $SHARDS; client and broker on this host; results in $OUT)"
