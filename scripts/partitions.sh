#!/usr/bin/env bash
# Measures a broker with many partitions: create PARTITIONS (default 10000)
# partitions, write to all of them, restart, and time until the broker
# serves again; prints open file descriptors and resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
PARTITIONS=${PARTITIONS:-10000}
SHARDS=${SHARDS:-$(nproc)}
DIR=$(mktemp -d "$PWD/target/partitions.XXXXXX")
PORT=$((20000 + RANDOM % 20000))
cargo build --release --workspace --locked 2>&1 | tail -1
start_broker() {
    ./target/release/ringbroker --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" --shards "$SHARDS" >> "$DIR/broker.log" 2>&1 &
    BROKER=$!
    wait_for_port "$PORT" 120
}
trap 'kill $BROKER 2>/dev/null || true; wait $BROKER 2>/dev/null || true; rm -rf "$DIR/data"' EXIT
start_broker
t0=$(date +%s.%N)
./target/release/ringbroker-bench produce --bootstrap "127.0.0.1:$PORT" --topic many --partitions "$PARTITIONS" \
    --message-size 100 --batch-bytes 100 --acks 1 --duration 5 --warmup 0 > "$DIR/produce.txt"
echo "created $PARTITIONS partitions and produced for 5 s in $(echo "$(date +%s.%N) - $t0" | bc) s ($(grep '^produced' "$DIR/produce.txt"))"
echo "open fds: $(ls /proc/$BROKER/fd | wc -l), $(grep VmRSS /proc/$BROKER/status)"
t0=$(date +%s.%N); kill $BROKER; wait $BROKER || true
echo "graceful shutdown: $(echo "$(date +%s.%N) - $t0" | bc) s"
t0=$(date +%s.%N); start_broker
echo "restart until serving: $(echo "$(date +%s.%N) - $t0" | bc) s"
./target/release/ringbroker-bench consume --bootstrap "127.0.0.1:$PORT" --topic many --message-size 100 \
    --duration 5 --warmup 0 > "$DIR/consume.txt" || true
echo "after restart: $(grep '^consumed' "$DIR/consume.txt"); open fds: $(ls /proc/$BROKER/fd | wc -l), $(grep VmRSS /proc/$BROKER/status)"
