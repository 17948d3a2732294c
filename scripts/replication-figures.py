#!/usr/bin/env python3
"""Replication figures for ringbroker: what replication factor 3 costs
against replication factor 1, on 127.0.0.1, in one run.

  (a) Replication cost. RF3: three combined (broker+controller) nodes
      (tests/e2e/cluster.py), a topic with replication factor 3 and
      min.insync.replicas=2 created with confluent's AdminClient.
      RF1: one broker started with no cluster keys, a topic with
      replication factor 1. The same ringbroker-bench command on each:
      produce, --message-size 1024, --acks all, --producers threads, flat
      out for --duration seconds with no warmup (every acknowledged byte
      counts). The bench keeps at most 5 requests of 64 KiB in flight per
      producer thread and leader, so when the brokers leave cores idle
      (the "cores" column) flat-out throughput follows the acks=all
      latency rather than CPU; --producers widens that window. Broker CPU
      is utime+stime of every broker process (all threads) from
      /proc/<pid>/stat just before and just after the bench; CPU per GB
      is that over the payload bytes the bench had acknowledged (1e9
      bytes). Figure: cpu_per_gb(RF3, all three brokers) /
      (3 x cpu_per_gb(RF1)), 1.0 meaning a replica costs what a leader
      does; target <= 1.2. Also throughput RF3/RF1 (MB/s and msgs/s from
      the bench's --json). The configurations alternate (RF1, RF3, RF1,
      RF3, ... --rounds each, every round on fresh processes and data
      directories) so drifting noise hits both; each round and the medians
      are reported, with the machine's busy CPU not charged to the brokers
      or the bench (/proc/stat: kernel workers, softirq, other processes)
      as a noise indicator.
  (b) Produce-ack latency (p50, p99, p99.9, max) at a paced --rate
      (default 10000 msgs/s, about a quarter of RF3's flat-out rate here), same
      message size and acks=all, on a second topic of the same processes
      right after (a)'s run of each round; RF3 and RF1 side by side. The
      bench times every message from its intended send time (no
      coordinated omission). The rate is reported as a share of the RF3
      flat-out rate of (a).
  (c) Bytes replicated zero-copy. After each RF3 round every broker is
      stopped with SIGTERM and logs per shard "stopped (..., N bytes sent
      zero-copy)" (sendfile bytes of Fetch responses; only followers fetch
      here). Their sum is compared with 2 x the payload bytes the bench
      acknowledged in (a) and (b) (two followers fetch each byte; record
      batch framing makes this ratio a little above 1), and with 2 x the
      bytes in the topics' log files (exact: framing included); the
      replicas' log files are also compared with each other.
  (d) Rolling restart (tests/e2e/rolling.py): a fresh RF3 cluster, a topic
      with --rolling-partitions partitions, replication factor 3 and
      min.insync.replicas=2, an idempotent acks=all confluent-kafka
      producer (100-byte values; --rolling-rate, 0 = as fast as the
      Python client goes) with a delivery callback recording every ack
      time; every broker in turn is stopped with SIGTERM (a controlled
      shutdown), restarted and waited for until every running broker's
      Metadata has it in every ISR, and --rolling-acks more acks (one on
      every partition at least) come before the next. Figure: the longest
      gap between consecutive acks, overall and per partition, with the
      restart step each ended in; then every partition is read back and
      every acknowledged record must be there exactly once (the script
      exits 1 otherwise). Every wait is bounded (120 s).

The machine this was written on has 2 cores: the three brokers of RF3
(and the bench or the Python producer) share them, so RF3 has a third of
the CPU per broker RF1 has. Hence --shards 1 by default (for both
configurations). Heartbeat 500 ms and session 3000 ms are the harness's
defaults; every other setting is the server's default.

usage: .venv/bin/python scripts/replication-figures.py target/release/ringbroker
       [--shards 1] [--rounds 2] [--duration 10] [--partitions 3] [--producers 1] [--rate 10000]
       [--latency-duration 10] [--rolling-partitions 6] [--rolling-rate 0]
       [--rolling-acks 20000] [--only a,b,c,d] [--keep]
((a) and (c) come from the same runs; (b) runs inside (a)'s rounds.)
"""

import argparse
import json
import os
import pathlib
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from confluent_kafka.admin import NewTopic  # noqa: E402

import cluster as C  # noqa: E402  (after the path is set)
import rolling  # noqa: E402

MESSAGE_BYTES = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOPPED = re.compile(r"stopped \((\d+) requests, (\d+) connections, (\d+) flush rounds, (\d+) fdatasyncs, "
                     r"(\d+) bytes sent zero-copy; follower fetch partitions: (\d+) on their shard, "
                     r"(\d+) across the mesh\)")
BENCH_TIMEOUT_EXTRA_S = 120  # beyond --duration: start, drain, exit


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process, all its threads (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def broker_cpu(cluster):
    return sum(cpu_seconds(n.proc.pid) for n in cluster.brokers())


def machine_busy_cpu():
    """CPU seconds every core spent busy (not idle or waiting on I/O)
    since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_args(args, bootstrap, topic, duration, rate, json_path):
    return [args.bench, "produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(args.partitions),
            "--message-size", str(MESSAGE_BYTES), "--acks", "all", "--producers", str(args.producers),
            "--duration", str(duration), "--warmup", "0", "--rate", str(rate), "--json", str(json_path)]


def run_bench(args, cluster, out_path):
    """Runs the bench; returns (its --json summary, broker CPU seconds,
    bench CPU seconds, wall seconds, CPU seconds of everything else on the
    machine meanwhile)."""
    json_path = pathlib.Path(args[args.index("--json") + 1])
    duration = int(args[args.index("--duration") + 1])
    cpu0, child0, busy0, t0 = broker_cpu(cluster), children_cpu(), machine_busy_cpu(), time.monotonic()
    with open(out_path, "w") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT,
                              timeout=duration + BENCH_TIMEOUT_EXTRA_S)
    cpu1, child1, busy1, t1 = broker_cpu(cluster), children_cpu(), machine_busy_cpu(), time.monotonic()
    crashed = [n.id for n in cluster.nodes.values() if n.crashed()]
    if proc.returncode != 0 or crashed:
        raise RuntimeError(f"{shlex.join(args)} exited {proc.returncode} (crashed nodes {crashed}):\n"
                           f"{C.tail(out_path)}\n{cluster.logs()}")
    broker, bench = cpu1 - cpu0, child1 - child0
    return json.loads(json_path.read_text()), broker, bench, t1 - t0, max(busy1 - busy0 - broker - bench, 0.0)


def create_topics(cluster, names, partitions, rf, timeout=60):
    admin = cluster.admin(cluster.brokers()[0].id)
    config = {"min.insync.replicas": "2"} if rf > 1 else {}
    futures = admin.create_topics([NewTopic(n, partitions, rf, config=config) for n in names])
    for name, future in futures.items():
        future.result(timeout)
    del admin
    for name in names:
        cluster.wait_topic(name, partitions, timeout=timeout)
    if rf > 1:
        def full_isr():
            for name in names:
                for pm in cluster.raw_metadata(cluster.brokers()[0].id, [name]).topics[name].partitions.values():
                    if sorted(pm.isr) != sorted(pm.replicas) or len(pm.replicas) != rf:
                        return C.Not(f"{name}-{pm.id}: replicas {pm.replicas} isr {pm.isr}")
            return True
        cluster.wait_until(full_isr, timeout, "every replica in the ISR")


def stop_all(cluster, timeout=60):
    """SIGTERM to every node at once, then waits for each (bounded);
    returns {node id: exit code}."""
    for n in cluster.nodes.values():
        n.expected_running = False
        n.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = {}
    for n in cluster.nodes.values():
        try:
            codes[n.id] = n.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            n.kill()
            codes[n.id] = f"did not stop within {timeout}s (killed)"
    return codes


def stop_counts(cluster):
    """The shards' stop lines of the nodes' latest start, summed:
    {requests, connections, flush_rounds, fdatasyncs, zero_copy_bytes,
    lines}."""
    keys = ("requests", "connections", "flush_rounds", "fdatasyncs", "zero_copy_bytes",
            "replica_parts_local", "replica_parts_remote")
    total = dict.fromkeys(keys + ("lines",), 0)
    for n in cluster.nodes.values():
        for line in n.last_start_output():
            m = STOPPED.search(line)
            if m:
                for key, value in zip(keys, m.groups()):
                    total[key] += int(value)
                total["lines"] += 1
    return total


def log_bytes(cluster, topics):
    """{(topic, partition): {node id: bytes in its .log files}} after a
    graceful stop (segment files are trimmed to their data then)."""
    out = {}
    for n in cluster.nodes.values():
        for d in n.data_dir.iterdir():
            topic, _, index = d.name.rpartition("-")
            if d.is_dir() and topic in topics:
                size = sum(f.stat().st_size for f in d.glob("*.log"))
                out.setdefault((topic, int(index)), {})[n.id] = size
    return out


def one_round(args, config, r, root):
    """One configuration ("RF1" or "RF3") on fresh processes: (a) flat
    out, (b) paced, then a graceful stop and (c)'s counts. Returns a dict."""
    rf = 3 if config == "RF3" else 1
    where = root / f"round{r}-{config}"
    c = C.Cluster(where, n=rf, shards=args.shards, binary=args.binary,
                  roles="broker,controller" if rf == 3 else None)
    out = {"config": config, "round": r}
    with c:
        c.start(timeout=120)
        topics = ["flat", "paced"] if "b" in args.only else ["flat"]
        create_topics(c, topics, args.partitions, rf)
        # Idle broker CPU for a second, for scale.
        cpu0 = broker_cpu(c)
        time.sleep(1)
        out["idle_cpu_per_s"] = broker_cpu(c) - cpu0
        bootstrap = c.brokers()[0].bootstrap
        flat = bench_args(args, bootstrap, "flat", args.duration, 0, where / "flat.json")
        summary, cpu, bench_cpu, wall, other_cpu = run_bench(flat, c, where / "flat.out")
        gb = summary["produced"] * MESSAGE_BYTES / 1e9
        out.update(flat_cmd=flat, msgs_per_s=summary["produce_msgs_per_s"], mb_per_s=summary["produce_mb_per_s"],
                   cpu_s=cpu, gb=gb, cpu_per_gb=cpu / gb, bench_cpu_s=bench_cpu, wall_s=wall, other_cpu_s=other_cpu,
                   produced_bytes=summary["produced"] * MESSAGE_BYTES, flat_ack_ms=summary["produce_ack_ms"])
        log(f"  round {r} {config}: {summary['produce_msgs_per_s']:.0f} msg/s, {summary['produce_mb_per_s']:.1f} MB/s, "
            f"broker CPU {cpu:.2f} s for {gb:.3f} GB = {cpu / gb:.2f} s/GB (bench CPU {bench_cpu:.2f} s, "
            f"other processes {other_cpu:.2f} s, wall {wall:.1f} s)")
        if "b" in args.only:
            paced = bench_args(args, bootstrap, "paced", args.latency_duration, args.rate, where / "paced.json")
            summary, _, _, wall, other_cpu = run_bench(paced, c, where / "paced.out")
            out.update(paced_cmd=paced, ack_ms=summary["produce_ack_ms"],
                       paced_msgs_per_s=summary["produce_msgs_per_s"], paced_other_cores=other_cpu / wall)
            out["produced_bytes"] += summary["produced"] * MESSAGE_BYTES
            p = summary["produce_ack_ms"]
            log(f"  round {r} {config}: paced {summary['produce_msgs_per_s']:.0f} msg/s, produce ack p50 "
                f"{p['p50']:.2f} ms, p99 {p['p99']:.2f} ms, p99.9 {p['p99.9']:.2f} ms, max {p['max']:.2f} ms")
        out["exit_codes"] = stop_all(c)
        out["stop"] = stop_counts(c)
        out["zero_copy_bytes"], out["stop_lines"] = out["stop"]["zero_copy_bytes"], out["stop"]["lines"]
        sizes = log_bytes(c, topics)
        out["log_bytes"] = sum(max(v.values()) for v in sizes.values())
        out["replicas_identical"] = all(len(v) == rf and len(set(v.values())) == 1 for v in sizes.values())
        log(f"  round {r} {config}: stopped {out['exit_codes']}; {out['zero_copy_bytes']} bytes sent zero-copy "
            f"({out['stop_lines']} shard stop lines), {out['log_bytes']} bytes in the leaders' logs")
    if not args.keep:
        shutil.rmtree(where, ignore_errors=True)
    return out


def rolling_restart(args, root):
    c = C.Cluster(root / "rolling", n=3, shards=args.shards, binary=args.binary)
    with c:
        c.start(timeout=120)
        result = rolling.run(c, partitions=args.rolling_partitions, rate=args.rolling_rate,
                             acks_between=args.rolling_acks, timeout=120, log=log)
    return result


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="path to the ringbroker binary")
    parser.add_argument("--bench", help="ringbroker-bench (default: next to the binary)")
    parser.add_argument("--shards", type=int, default=1, help="shards per broker, both configurations")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each configuration for (a)-(c)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each flat-out run (a)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the (a)/(b) topics")
    parser.add_argument("--producers", type=int, default=1, help="bench producer threads (a)/(b)")
    parser.add_argument("--rate", type=int, default=10000, help="msgs/s of the paced runs (b)")
    parser.add_argument("--latency-duration", type=int, default=10, help="seconds of each paced run (b)")
    parser.add_argument("--rolling-partitions", type=int, default=6, help="partitions of the (d) topic")
    parser.add_argument("--rolling-rate", type=int, default=0, help="msgs/s of (d)'s producer (0: flat out)")
    parser.add_argument("--rolling-acks", type=int, default=20000,
                        help="(d): acknowledgements before the first and after each restart")
    parser.add_argument("--only", default="a,b,c,d", help="which figures: any of a,b,c,d ((c) needs (a))")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()
    args.binary = str(pathlib.Path(args.binary).resolve())
    args.bench = str(pathlib.Path(args.bench).resolve()) if args.bench else str(
        pathlib.Path(args.binary).with_name("ringbroker-bench"))
    for path in (args.binary, args.bench):
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is not an executable")
    args.only = {x.strip() for x in args.only.split(",")}
    if args.only & {"b", "c"}:
        args.only.add("a")
    command = shlex.join([sys.executable, *sys.argv])

    root = pathlib.Path(tempfile.mkdtemp(prefix="ringbroker-replication-figures-"))
    log(f"data dirs and logs under {root}")
    rows, roll = [], None
    ok = False
    try:
        if "a" in args.only:
            log(f"(a)-(c): {args.rounds} round(s) of RF1 and RF3, alternating")
            for r in range(1, args.rounds + 1):
                for config in ("RF1", "RF3"):
                    rows.append(one_round(args, config, r, root))
        if "d" in args.only:
            log("(d) rolling restart under an idempotent acks=all producer")
            roll = rolling_restart(args, root)
        ok = True
    finally:
        report(args, command, rows, roll)
        if args.keep or not ok:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if roll is not None and roll.problems:
        sys.exit(1)


def report(args, command, rows, roll):
    print()
    print(f"ringbroker replication figures, {os.cpu_count()} cores, {args.shards} shard(s) per broker, "
          f"{args.binary}")
    print(f"command: {command}")
    rf1 = [r for r in rows if r["config"] == "RF1"]
    rf3 = [r for r in rows if r["config"] == "RF3"]
    if rows:
        print()
        print(f"(a) flat out, {MESSAGE_BYTES} B messages, acks=all, {args.partitions} partitions, "
              f"{args.duration} s per run; broker CPU = utime+stime of every broker process")
        print(f"  {'round':<10} {'msgs/s':>9} {'MB/s':>7} {'CPU s':>7} {'cores':>6} {'GB':>7} {'CPU s/GB':>9} "
              f"{'bench CPU s':>11} {'idle CPU s/s':>12} {'other CPU s':>11}  ack p50/p99 ms")
        for r in rows:
            a = r["flat_ack_ms"]
            print(f"  {r['config'] + ' #' + str(r['round']):<10} {r['msgs_per_s']:>9.0f} {r['mb_per_s']:>7.1f} "
                  f"{r['cpu_s']:>7.2f} {r['cpu_s'] / r['wall_s']:>6.2f} {r['gb']:>7.3f} {r['cpu_per_gb']:>9.2f} "
                  f"{r['bench_cpu_s']:>11.2f} {r['idle_cpu_per_s']:>12.3f} {r['other_cpu_s']:>11.2f}  "
                  f"{a['p50']:.1f}/{a['p99']:.1f}")
        print("  (cores: broker CPU seconds per wall second of the bench, all brokers together. other CPU s:\n"
              "   busy machine CPU (/proc/stat) not charged to the brokers or the bench: kernel workers,\n"
              "   softirq, and any other process running meanwhile; the noise indicator)")
    if rf1 and rf3:
        ratio = median(rf3, "cpu_per_gb") / (3 * median(rf1, "cpu_per_gb"))
        per_round = [r3["cpu_per_gb"] / (3 * r1["cpu_per_gb"]) for r1, r3 in zip(rf1, rf3)]
        print(f"  CPU per GB: RF3 (all 3 brokers) median {median(rf3, 'cpu_per_gb'):.2f} s/GB, "
              f"RF1 median {median(rf1, 'cpu_per_gb'):.2f} s/GB")
        print(f"  cpu_per_gb(RF3) / (3 x cpu_per_gb(RF1)) = {ratio:.2f} (medians; per round "
              f"{', '.join(f'{x:.2f}' for x in per_round)}; target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
        print(f"  throughput RF3/RF1: {median(rf3, 'mb_per_s') / median(rf1, 'mb_per_s'):.2f} "
              f"({median(rf3, 'mb_per_s'):.1f} / {median(rf1, 'mb_per_s'):.1f} MB/s; "
              f"{median(rf3, 'msgs_per_s'):.0f} / {median(rf1, 'msgs_per_s'):.0f} msgs/s)")
        print(f"  bench (RF3 #1; every run differs only in --bootstrap and --json): {shlex.join(rf3[0]['flat_cmd'])}")
    if rows and "ack_ms" in rows[0]:
        print()
        share = f"{args.rate / median(rf3, 'msgs_per_s') * 100:.0f}% of the RF3 flat-out rate" if rf3 else ""
        print(f"(b) produce-ack latency at {args.rate} msgs/s ({share}), acks=all, {args.latency_duration} s per run")
        print(f"  {'round':<10} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} "
              f"{'other cores':>11}  (other: as in (a), per second)")
        for r in rows:
            p = r["ack_ms"]
            print(f"  {r['config'] + ' #' + str(r['round']):<10} {r['paced_msgs_per_s']:>9.0f} {p['p50']:>8.2f} "
                  f"{p['p99']:>8.2f} {p['p99.9']:>9.2f} {p['max']:>8.2f} {r['paced_other_cores']:>11.2f}")
        for name, group in (("RF1", rf1), ("RF3", rf3)):
            if group:
                med = {k: statistics.median(r["ack_ms"][k] for r in group) for k in ("p50", "p99", "p99.9")}
                print(f"  {name} median: p50 {med['p50']:.2f} ms, p99 {med['p99']:.2f} ms, p99.9 {med['p99.9']:.2f} ms")
        print(f"  bench ({rows[0]['config']} #1; every run differs only in --bootstrap and --json): "
              f"{shlex.join(rows[0]['paced_cmd'])}")
    if rf3:
        print()
        print("(c) bytes sent zero-copy by the RF3 brokers (sum of their shards' stop lines)")
        for r in rf3:
            print(f"  RF3 #{r['round']}: {r['zero_copy_bytes']} bytes zero-copy ({r['stop_lines']} stop lines); "
                  f"/ (2 x {r['produced_bytes']} payload bytes acked) = "
                  f"{r['zero_copy_bytes'] / (2 * r['produced_bytes']):.4f}; "
                  f"/ (2 x {r['log_bytes']} log bytes) = {r['zero_copy_bytes'] / (2 * max(r['log_bytes'], 1)):.4f}; "
                  f"replicas' logs identical: {r['replicas_identical']}; exit codes {r['exit_codes']}")
        for r in rf1:
            print(f"  (RF1 #{r['round']}: {r['zero_copy_bytes']} bytes zero-copy, nothing fetches)")
        print("  stop-line totals, all brokers of a round, (a) and (b) runs together:")
        for r in rows:
            s = r["stop"]
            print(f"    {r['config']} #{r['round']}: {s['requests']} requests, {s['flush_rounds']} flush rounds, "
                  f"{s['fdatasyncs']} fdatasyncs ({s['fdatasyncs'] / (r['produced_bytes'] / 1e9):.0f} per GB acked)"
                  + (f"; follower fetch partitions {s['replica_parts_local']} on their owner shard, "
                     f"{s['replica_parts_remote']} across the mesh (the cross-core replication path)"
                     if s['replica_parts_local'] + s['replica_parts_remote'] else ""))
    if roll is not None:
        print()
        print(f"(d) rolling restart: 3 nodes, topic of {args.rolling_partitions} partitions, RF3, "
              f"min.insync.replicas=2, idempotent acks=all producer "
              f"({'flat out' if not args.rolling_rate else f'{args.rolling_rate} msgs/s'})")
        for line in roll.summary().splitlines():
            print(f"  {line}")
        print(f"  read-back: {'every acknowledged record present exactly once' if not roll.problems else 'PROBLEMS'}")
        for p in roll.problems:
            print(f"  PROBLEM: {p}")


if __name__ == "__main__":
    main()
