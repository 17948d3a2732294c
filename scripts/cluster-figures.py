#!/usr/bin/env python3
"""Cluster figures for ringbroker: three combined (broker+controller) nodes
on 127.0.0.1 in a temporary directory.

  (a) controller failover: kill -9 the active controller, time until a
      CreateTopics sent to a surviving broker (retried) succeeds; the killed
      node is restarted and the time until it is listed unfenced again is
      measured too. Repeated --kills times.
  (b) broker fencing and leader movement: kill -9 a non-controller broker
      that leads partitions of a fresh replication-factor-3 topic, time until
      every survivor's Metadata no longer lists it and shows new leaders for
      all its partitions. With Kafka's defaults (session 9000 ms, heartbeat
      2000 ms) and with 3000/500; --fence-rounds kills each.
  (c) metadata propagation: CreateTopics through node A returns, time until
      node B's and node C's Metadata show the topic. --propagation repeats.

usage: .venv/bin/python scripts/cluster-figures.py target/release/ringbroker [--kills 10]
       [--fence-rounds 3] [--propagation 20] [--shards 2] [--only a,b,c] [--keep]

Uses tests/e2e/cluster.py (the test harness). Times are wall-clock on this
machine, measured by polling every few milliseconds.
"""

import argparse
import itertools
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import cluster as C  # noqa: E402  (after the path is set)

POLL = 0.003  # seconds between Metadata polls
FAST = (500, 3000)  # heartbeat, session timeout (ms) for (a) and (c)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def poll_until(predicate, timeout, what, cluster):
    """Calls predicate every POLL seconds until true; returns the monotonic
    time it first was. Transient errors (a node restarting) are retried."""
    deadline = time.monotonic() + timeout
    while True:
        crashed = [n.id for n in cluster.nodes.values() if n.crashed()]
        if crashed:
            raise RuntimeError(f"node(s) {crashed} exited unexpectedly\n{cluster.logs()}")
        try:
            if predicate():
                return time.monotonic()
        except C.TRANSIENT:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{cluster.logs()}")
        time.sleep(POLL)


def create_until_ok(cluster, nodes, name, deadline_s=120):
    """CreateTopics through `nodes` in turn until one succeeds (or the topic
    exists: an earlier try took effect). Returns the monotonic time of the
    successful answer."""
    turn = itertools.cycle(nodes)
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        node = next(turn)
        try:
            err = C.create_topic(node.port, name, 1, 1, timeout_ms=5000, timeout=10)
        except C.TRANSIENT as e:
            last = e
            continue
        if err in (C.NONE, C.TOPIC_ALREADY_EXISTS):
            return time.monotonic()
        last = f"error {err} from node {node.id}"
        time.sleep(POLL)
    raise RuntimeError(f"CreateTopics {name!r} failed for {deadline_s}s (last: {last})\n{cluster.logs()}")


def controller_failover(cluster, kills):
    failover, rejoin = [], []
    for k in range(kills):
        controller = cluster.wait_controller(timeout=60)
        survivors = [n for n in cluster.brokers() if n.id != controller]
        cluster.kill(controller)
        killed = time.monotonic()
        ok = create_until_ok(cluster, survivors, f"failover-{k}")
        failover.append(ok - killed)
        restarted = time.monotonic()
        cluster.start_node(controller, timeout=120)
        rejoin.append(time.monotonic() - restarted)
        cluster.wait_formed(timeout=60)
        log(f"  kill {k + 1}/{kills}: controller {controller}, CreateTopics ok after "
            f"{failover[-1] * 1000:.0f} ms, rejoined in {rejoin[-1] * 1000:.0f} ms")
    return failover, rejoin


def fencing(binary, root, shards, heartbeat_ms, session_ms, rounds):
    fenced, moved = [], []
    c = C.Cluster(root / f"fencing-{session_ms}", n=3, shards=shards, binary=binary,
                  heartbeat_ms=heartbeat_ms, session_timeout_ms=session_ms)
    with c:
        c.start(timeout=120)
        for r in range(rounds):
            controller = c.wait_controller(timeout=60)
            candidates = [n.id for n in c.brokers() if n.id != controller]
            victim = candidates[r % len(candidates)]
            name = f"fence-{r}"
            err = C.create_topic(c.node(controller).port, name, 6, 3)
            if err != C.NONE:
                raise RuntimeError(f"CreateTopics {name}: error {err}\n{c.logs()}")
            c.wait_topic(name, 6, timeout=30)
            partitions = C.metadata(c.node(controller).port, [name]).topics[name].partitions
            led = [i for i, p in partitions.items() if p.leader == victim]
            if not led:
                log(f"  round {r + 1}: node {victim} leads no partition of {name}; skipped")
                continue
            survivors = [n for n in c.brokers() if n.id != victim]
            seen_fenced, seen_moved = {}, {}

            def settled():
                now = time.monotonic()
                for n in survivors:
                    md = C.metadata(n.port, [name])
                    if n.id not in seen_fenced and victim not in md.brokers:
                        seen_fenced[n.id] = now
                    leaders = [md.topics[name].partitions[i].leader for i in led]
                    if n.id not in seen_moved and all(x not in (victim, -1) for x in leaders):
                        seen_moved[n.id] = now
                return len(seen_fenced) == len(seen_moved) == len(survivors)

            c.kill(victim)
            killed = time.monotonic()
            poll_until(settled, session_ms / 1000 * 3 + 60, f"node {victim} fenced and its leaders moved", c)
            fenced.append(max(seen_fenced.values()) - killed)
            moved.append(max(seen_moved.values()) - killed)
            log(f"  session {session_ms} ms round {r + 1}/{rounds}: node {victim} ({len(led)} leaders) "
                f"fenced after {fenced[-1] * 1000:.0f} ms, leaders moved after {moved[-1] * 1000:.0f} ms")
            c.start_node(victim, timeout=120)
            c.wait_formed(timeout=60)
    return fenced, moved


def propagation(cluster, repeats):
    delays = []
    misses = 0
    nodes = cluster.brokers()
    for k in range(repeats):
        a = nodes[k % len(nodes)]
        others = [n for n in nodes if n.id != a.id]
        name = f"propagation-{k}"
        err = C.create_topic(a.port, name, 1, 3)
        returned = time.monotonic()
        if err != C.NONE:
            raise RuntimeError(f"CreateTopics {name} through node {a.id}: error {err}\n{cluster.logs()}")
        pending = {n.id: n for n in others}
        deadline = returned + 30
        while pending and time.monotonic() < deadline:
            for node_id, n in list(pending.items()):
                try:
                    topic = C.metadata(n.port, [name]).topics.get(name)
                except C.TRANSIENT:
                    continue
                if topic is not None and topic.error == C.NONE and topic.partitions:
                    delays.append(time.monotonic() - returned)
                    del pending[node_id]
            if pending:
                time.sleep(POLL / 3)
        misses += len(pending)
    return delays, misses


def row(label, samples, extra=""):
    if not samples:
        return f"{label:<64} {'0':>4} {'-':>8} {'-':>8} {'-':>8}  {extra}"
    ms = [s * 1000 for s in samples]
    return (f"{label:<64} {len(ms):>4} {min(ms):>8.1f} {statistics.median(ms):>8.1f} "
            f"{max(ms):>8.1f}  {extra}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="path to the ringbroker binary")
    parser.add_argument("--kills", type=int, default=10, help="controller kills for (a)")
    parser.add_argument("--fence-rounds", type=int, default=3, help="broker kills per setting for (b)")
    parser.add_argument("--propagation", type=int, default=20, help="CreateTopics calls for (c)")
    parser.add_argument("--shards", type=int, default=int(os.environ.get("RINGBROKER_TEST_SHARDS", "2")))
    parser.add_argument("--only", default="a,b,c", help="which figures: any of a,b,c")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()
    binary = str(pathlib.Path(args.binary).resolve())
    if not os.access(binary, os.X_OK):
        parser.error(f"{binary} is not an executable")
    only = {x.strip() for x in args.only.split(",")}

    root = pathlib.Path(tempfile.mkdtemp(prefix="ringbroker-cluster-figures-"))
    log(f"data dirs and logs under {root}")
    rows = []
    ok = False
    try:
        if only & {"a", "c"}:
            heartbeat, session = FAST
            c = C.Cluster(root / "failover", n=3, shards=args.shards, binary=binary,
                          heartbeat_ms=heartbeat, session_timeout_ms=session)
            with c:
                c.start(timeout=120)
                settings = f"(heartbeat {heartbeat} ms, session {session} ms)"
                if "c" in only:
                    log(f"(c) metadata propagation, {args.propagation} topics")
                    delays, misses = propagation(c, args.propagation)
                    rows.append(row("(c) CreateTopics returned on A -> topic in B's/C's Metadata", delays,
                                    f"{misses} not seen in 30 s" if misses else ""))
                if "a" in only:
                    log(f"(a) controller failover, {args.kills} kills")
                    failover, rejoin = controller_failover(c, args.kills)
                    rows.append(row("(a) kill -9 controller -> CreateTopics on a survivor ok", failover,
                                    settings))
                    rows.append(row("(a) restart killed node -> listed unfenced by every broker", rejoin,
                                    settings))
        if "b" in only:
            for heartbeat, session in ((2000, 9000), FAST):
                log(f"(b) broker fencing, session {session} ms, heartbeat {heartbeat} ms")
                fenced, moved = fencing(binary, root, args.shards, heartbeat, session, args.fence_rounds)
                settings = f"(heartbeat {heartbeat} ms, session {session} ms)"
                rows.append(row("(b) kill -9 broker -> gone from every survivor's Metadata", fenced, settings))
                rows.append(row("(b) kill -9 broker -> new leaders in every survivor's Metadata", moved,
                                settings))
        ok = True
    finally:
        print()
        print(f"ringbroker cluster figures: 3 combined nodes, {args.shards} shard(s) each, {binary}")
        print(f"{'measure':<64} {'n':>4} {'min ms':>8} {'median':>8} {'max ms':>8}")
        for line in rows:
            print(line)
        if args.keep or not ok:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
