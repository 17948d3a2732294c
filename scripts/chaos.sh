#!/usr/bin/env bash
# Kills the leader of a partition under an idempotent acks=all load, N
# cycles (default 20), on a 3-node cluster of target/release/ringbroker,
# then checks that every acknowledged record is in the log exactly once at
# its offset and that nothing a consumer read was truncated away.
#   bash scripts/chaos.sh [cycles]      (SHARDS=1|2, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" - "${1:-20}" <<'PY'
import pathlib, sys, tempfile, os
sys.path.insert(0, str(pathlib.Path("tests/e2e").resolve()))
import chaos
from cluster import Cluster
cycles = int(sys.argv[1])
root = pathlib.Path(tempfile.mkdtemp(prefix="ringbroker-chaos-"))
print(f"data and logs under {root}")
c = Cluster(root, n=3, shards=int(os.environ.get("SHARDS", "2")),
            extra={"replica.lag.time.max.ms": "3000"})
c.start()
try:
    problems, failovers, gap = chaos.run(c, cycles)
finally:
    c.close()
f = sorted(x * 1000 for x in failovers)
print(f"failover (kill -9 -> first ack after it), {len(f)} kills: "
      f"min {f[0]:.0f} ms, median {f[len(f) // 2]:.0f} ms, max {f[-1]:.0f} ms; "
      f"longest gap between acks {gap * 1000:.0f} ms")
for p in problems:
    print("PROBLEM:", p)
print("OK: nothing acknowledged was lost" if not problems else f"FAILED: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
