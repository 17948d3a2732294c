#!/usr/bin/env bash
# Compares segment write modes on this host, interleaved in one run (the
# disk and CPU of a shared host drift; alternating modes round after round
# keeps the comparison fair):
#   buffered            page cache, no preallocation
#   buffered+prealloc   page cache, segments preallocated (the default)
#   direct+prealloc     O_DIRECT, segments preallocated
# For each: 1 KiB acks=all to 8 partitions flat out (MB/s, broker CPU s/GB),
# then the e2e run paced at half the first flat-out rate (produce-ack and
# end-to-end percentiles). Prints per-round rows and the medians with
# ratios to buffered+prealloc.
#
# Environment: ROUNDS (default 3), DURATION (s, default 8), SHARDS
# (default: cores), RATE (msgs/s for the paced run; default half of the
# first flat-out run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/common.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
SHARDS=${SHARDS:-$(nproc)}
RATE=${RATE:-}
WORK=$(mktemp -d "$ROOT/target/write-modes.XXXXXX")
BROKER=
cleanup() {
    [ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null && wait "$BROKER" 2>/dev/null
    rm -rf "$WORK/data"
}
trap cleanup EXIT
cargo build --release --workspace --locked 2>&1 | tail -1
BENCH="$ROOT/target/release/ringbroker-bench"

run_mode() {  # name mode preallocate round
    local name=$1 mode=$2 prealloc=$3 round=$4 port=$((20000 + RANDOM % 20000))
    rm -rf "$WORK/data"
    "$ROOT/target/release/ringbroker" --listen "127.0.0.1:$port" --data-dir "$WORK/data" --shards "$SHARDS" \
        --override "ringbroker.log.write.mode=$mode" --override "log.preallocate=$prealloc" \
        --override log.segment.bytes=268435456 > "$WORK/broker-$name-$round.log" 2>&1 &
    BROKER=$!
    wait_for_port "$port"
    local b a
    b=$(cpu_seconds "$BROKER")
    "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic flat --partitions 8 --message-size 1024 --acks all \
        --duration "$DURATION" --warmup 0 --json "$WORK/$name-$round-flat.json" > "$WORK/$name-$round-flat.txt" 2>&1
    a=$(cpu_seconds "$BROKER")
    if [ -z "$RATE" ]; then
        RATE=$(python3 -c "import json;print(int(json.load(open('$WORK/$name-$round-flat.json'))['produce_msgs_per_s']/2))")
        echo "paced runs: $RATE msgs/s (half of the first flat-out run)"
    fi
    "$BENCH" e2e --bootstrap "127.0.0.1:$port" --topic paced --partitions 8 --message-size 1024 --acks all \
        --rate "$RATE" --duration "$DURATION" --warmup 2 --json "$WORK/$name-$round-paced.json" \
        > "$WORK/$name-$round-paced.txt" 2>&1 || echo "   (errors: $WORK/$name-$round-paced.txt)"
    kill "$BROKER"; wait "$BROKER" || true; BROKER=
    python3 - "$WORK" "$name" "$round" "$b" "$a" <<'PY'
import json, sys
work, name, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = float(sys.argv[5]) - float(sys.argv[4])
flat = json.load(open(f"{work}/{name}-{rnd}-flat.json"))
paced = json.load(open(f"{work}/{name}-{rnd}-paced.json"))
row = {"name": name, "mbs": flat["produce_mb_per_s"],
       "cpu_s_per_gb": cpu / max(flat["produced"] * 1024 / 1e9, 1e-9),
       "ack_p99": paced["produce_ack_ms"]["p99"], "e2e_p99": paced["e2e_ms"]["p99"],
       "e2e_p999": paced["e2e_ms"]["p99.9"]}
json.dump(row, open(f"{work}/{name}-{rnd}.row.json", "w"))
print(f"round {rnd} {name:<18} {row['mbs']:8.1f} MB/s {row['cpu_s_per_gb']:6.2f} cpu s/GB  "
      f"ack p99 {row['ack_p99']:7.2f} ms  e2e p99 {row['e2e_p99']:7.2f} ms  p99.9 {row['e2e_p999']:7.2f} ms")
PY
}

for round in $(seq "$ROUNDS"); do
    run_mode buffered-prealloc buffered true "$round"
    run_mode buffered buffered false "$round"
    run_mode direct-prealloc direct true "$round"
done

python3 - "$WORK" <<'PY'
import glob, json, statistics, sys
rows = [json.load(open(f)) for f in glob.glob(f"{sys.argv[1]}/*.row.json")]
names = ["buffered-prealloc", "buffered", "direct-prealloc"]
med = {n: {k: statistics.median(r[k] for r in rows if r["name"] == n)
           for k in ("mbs", "cpu_s_per_gb", "ack_p99", "e2e_p99", "e2e_p999")} for n in names}
base = med["buffered-prealloc"]
print(f"\nmedians of {len(rows) // 3} rounds (ratio to buffered-prealloc)")
print(f"{'mode':<18} {'MB/s':>14} {'cpu s/GB':>14} {'ack p99 ms':>16} {'e2e p99 ms':>16} {'e2e p99.9 ms':>16}")
for n in names:
    m = med[n]
    cells = [f"{m[k]:7.2f} ({m[k] / base[k]:4.2f})" for k in ("mbs", "cpu_s_per_gb", "ack_p99", "e2e_p99", "e2e_p999")]
    print(f"{n:<18} {cells[0]:>14} {cells[1]:>14} {cells[2]:>16} {cells[3]:>16} {cells[4]:>16}")
PY
echo "raw output: $WORK"
