#!/usr/bin/env bash
# Restart soak: an idempotent confluent-kafka producer writes numbered values
# flat out to a one-partition topic while the broker is stopped and started
# again CYCLES times on the same data directory; then the partition is read
# back and compared with every delivery report. Prints lost / duplicated /
# producer errors; exits non-zero on any of them.
#
#   bash scripts/restart-soak.sh                 # 100 SIGTERM restarts
#   KILL=1 bash scripts/restart-soak.sh          # kill -9 instead
#   CYCLES=20 SHARDS=1 BUSY_CORE=0 bash scripts/restart-soak.sh
#   OVERRIDES="ringbroker.log.write.mode=direct" bash scripts/restart-soak.sh
#
# Needs the Python packages of tests/e2e (scripts/test.sh installs them
# into .venv) and a release build (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CYCLES=${CYCLES:-100}
ACKS_PER_CYCLE=${ACKS_PER_CYCLE:-5000}
SHARDS=${SHARDS:-2}
BUSY_CORE=${BUSY_CORE:-1}
KILL=${KILL:-0}

PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
export RINGBROKER_BIN=${RINGBROKER_BIN:-$ROOT/target/release/ringbroker}
[ -x "$RINGBROKER_BIN" ] || cargo build --release --bin ringbroker

args=(--cycles "$CYCLES" --acks-per-cycle "$ACKS_PER_CYCLE" --shards "$SHARDS")
[ "$BUSY_CORE" = 1 ] && args+=(--busy-core)
[ "$KILL" = 1 ] && args+=(--kill)
for o in ${OVERRIDES:-}; do
    args+=(--override "$o")
done
exec "$PYTHON" tests/e2e/restart_check.py "${args[@]}"
