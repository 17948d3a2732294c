#!/usr/bin/env python3
"""Transaction figures for ringbroker: what Kafka transactions cost a
producer and a consumer against the same work without them, on 127.0.0.1,
in one run.

  (a) Producer. One confluent-kafka producer (librdkafka) writes --messages
      messages of 1 KiB, round-robin over --partitions partitions of a fresh
      topic, in three configurations: "idempotent" (enable.idempotence,
      no transactions, one flush at the end), "txn-1000" and "txn-100"
      (transactional.id; begin, 1000 or 100 messages, commit_transaction,
      which flushes and writes one COMMIT marker per partition). Time runs
      from the first produce() to the last delivery report (idempotent) or
      the last commit's return (transactional); init_transactions is
      outside it. Figures: msgs/s and MB/s, broker CPU (utime+stime of the
      broker process, /proc/<pid>/stat) per GB of payload, and the ratios
      txn-N / idempotent of the medians.
  (b) Consumer. The txn-100 topic of each round (one marker per partition
      per 100 messages) read from the beginning to its end by a fresh
      confluent-kafka consumer with isolation.level read_committed and
      read_uncommitted, alternately first. Figures: msgs/s, broker CPU per
      GB, and the ratios read_committed / read_uncommitted.

Every configuration runs --rounds times, the order rotating each round so
drifting noise hits all of them; each run and the medians are printed.
One broker (a standalone node, --shards shards) serves every run; each run
writes a topic of its own. Every wait is bounded.

usage: .venv/bin/python scripts/txn-figures.py target/release/ringbroker
       [--shards 1] [--rounds 3] [--messages 50000] [--partitions 3]
       [--configs idempotent,txn-1000,txn-100] [--keep]
"""

import argparse
import os
import pathlib
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import cluster as C  # noqa: E402  (after the path is set)

MESSAGE_BYTES = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT_S = 600
PRODUCERS = {"idempotent": 0, "txn-1000": 1000, "txn-100": 100}
BROKER_KEYS = {"transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process, all its threads (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """Wall time, broker CPU and this process's CPU (the client library's
    threads included) between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.t0, self.broker0, self.self0 = time.monotonic(), cpu_seconds(self.pid), self_cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t0
        self.broker = cpu_seconds(self.pid) - self.broker0
        self.client = self_cpu() - self.self0


def produce(bootstrap, topic, partitions, messages, per_txn):
    producer_conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                     "queue.buffering.max.messages": 200000, "log_level": 3}
    if per_txn:
        producer_conf["transactional.id"] = f"figures-{topic}"
    p = Producer(producer_conf)
    if per_txn:
        p.init_transactions(60)
    payload = b"x" * MESSAGE_BYTES
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with Meter(BROKER_PID) as m:
        sent = 0
        while sent < messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: not done in {RUN_TIMEOUT_S}s")
            chunk = min(per_txn or 1000, messages - sent)
            if per_txn:
                p.begin_transaction()
            for i in range(chunk):
                while True:
                    try:
                        p.produce(topic, payload, partition=(sent + i) % partitions, on_delivery=report)
                        break
                    except BufferError:
                        p.poll(0.005)
            p.poll(0)
            if per_txn:
                p.commit_transaction(120)
            sent += chunk
        if p.flush(120) != 0:
            raise RuntimeError(f"{topic}: undelivered messages")
    if errors:
        raise RuntimeError(f"{topic}: delivery errors {errors[:5]}")
    return m


def consume(bootstrap, topic, partitions, isolation, want):
    """Reads the topic from the beginning until every partition reports its
    end; returns (Meter, messages read)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"figures-{topic}-{isolation}-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": isolation,
                  "fetch.wait.max.ms": 100, "log_level": 3})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = 0
    ended = set()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        with Meter(BROKER_PID) as m:
            while len(ended) < partitions:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{topic} {isolation}: not read in {RUN_TIMEOUT_S}s ({got} messages)")
                for msg in c.consume(num_messages=10000, timeout=0.5):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            ended.add(msg.partition())
                            continue
                        raise KafkaException(msg.error())
                    got += 1
    finally:
        c.close()
    if got != want:
        raise RuntimeError(f"{topic} {isolation}: read {got} messages, {want} were committed")
    return m, got


def row(config, r, m, messages):
    gb = messages * MESSAGE_BYTES / 1e9
    return {"config": config, "round": r, "msgs_per_s": messages / m.wall, "mb_per_s": messages * MESSAGE_BYTES / 1e6 / m.wall,
            "wall_s": m.wall, "broker_cpu_s": m.broker, "client_cpu_s": m.client, "cpu_per_gb": m.broker / gb}


def median(rows, config, key):
    return statistics.median(r[key] for r in rows if r["config"] == config)


def rotate(items, r):
    items = list(items)
    k = r % len(items)
    return items[k:] + items[:k]


def main():
    global BROKER_PID
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="path to the ringbroker binary")
    parser.add_argument("--shards", type=int, default=1, help="shards of the broker")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--messages", type=int, default=50000, help="messages of 1 KiB per producer run")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of every topic")
    parser.add_argument("--configs", default=",".join(PRODUCERS),
                        help="producer configurations to run ((b) needs txn-100)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and log")
    args = parser.parse_args()
    args.configs = [x.strip() for x in args.configs.split(",")]
    if not set(args.configs) <= set(PRODUCERS):
        parser.error(f"--configs: any of {','.join(PRODUCERS)}")
    args.binary = str(pathlib.Path(args.binary).resolve())
    if not os.access(args.binary, os.X_OK):
        parser.error(f"{args.binary} is not an executable")
    command = shlex.join([sys.executable, *sys.argv])

    root = pathlib.Path(tempfile.mkdtemp(prefix="ringbroker-txn-figures-"))
    log(f"data dir and log under {root}")
    produced, consumed = [], []
    ok = False
    c = C.Cluster(root, n=1, shards=args.shards, binary=args.binary, roles=None, extra=BROKER_KEYS)
    try:
        with c:
            c.start(timeout=120)
            node = c.brokers()[0]
            BROKER_PID = node.proc.pid
            bootstrap = node.bootstrap
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for r in range(1, args.rounds + 1):
                for config in rotate(args.configs, r):
                    topic = f"{config}-r{r}"
                    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(60)
                    m = produce(bootstrap, topic, args.partitions, args.messages, PRODUCERS[config])
                    produced.append(row(config, r, m, args.messages))
                    x = produced[-1]
                    log(f"  round {r} {config}: {x['msgs_per_s']:.0f} msgs/s, {x['mb_per_s']:.1f} MB/s, "
                        f"broker CPU {x['broker_cpu_s']:.2f} s ({x['cpu_per_gb']:.2f} s/GB), "
                        f"client CPU {x['client_cpu_s']:.2f} s")
                for isolation in rotate(["read_committed", "read_uncommitted"], r) if "txn-100" in args.configs else ():
                    m, got = consume(bootstrap, f"txn-100-r{r}", args.partitions, isolation, args.messages)
                    consumed.append(row(isolation, r, m, got))
                    x = consumed[-1]
                    log(f"  round {r} consume {isolation}: {x['msgs_per_s']:.0f} msgs/s, "
                        f"broker CPU {x['broker_cpu_s']:.2f} s ({x['cpu_per_gb']:.2f} s/GB)")
            if c.nodes[1].crashed():
                raise RuntimeError(f"the broker exited:\n{c.logs()}")
        ok = True
    finally:
        report(args, command, produced, consumed)
        if args.keep or not ok:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def table(rows):
    print(f"  {'run':<22} {'msgs/s':>9} {'MB/s':>7} {'wall s':>7} {'broker CPU s':>12} {'CPU s/GB':>9} "
          f"{'client CPU s':>12}")
    for r in rows:
        print(f"  {r['config'] + ' #' + str(r['round']):<22} {r['msgs_per_s']:>9.0f} {r['mb_per_s']:>7.1f} "
              f"{r['wall_s']:>7.2f} {r['broker_cpu_s']:>12.2f} {r['cpu_per_gb']:>9.2f} {r['client_cpu_s']:>12.2f}")


def report(args, command, produced, consumed):
    print()
    print(f"ringbroker transaction figures, {os.cpu_count()} cores, {args.shards} shard(s), {args.binary}")
    print(f"command: {command}")
    configs = {r["config"] for r in produced}
    if produced:
        print()
        print(f"(a) one confluent-kafka producer, {args.messages} messages of {MESSAGE_BYTES} B per run, "
              f"{args.partitions} partitions; broker CPU = utime+stime of the broker process; client CPU = "
              "this Python process (librdkafka's threads included)")
        table(produced)
        if "idempotent" in configs:
            base = median(produced, "idempotent", "msgs_per_s")
            base_cpu = median(produced, "idempotent", "cpu_per_gb")
            for config in ("txn-1000", "txn-100"):
                if config in configs:
                    per_round = [t["msgs_per_s"] / i["msgs_per_s"] for t in produced for i in produced
                                 if t["config"] == config and i["config"] == "idempotent" and t["round"] == i["round"]]
                    print(f"  {config} / idempotent: throughput {median(produced, config, 'msgs_per_s') / base:.2f} "
                          f"(medians {median(produced, config, 'msgs_per_s'):.0f} / {base:.0f} msgs/s, "
                          f"{median(produced, config, 'mb_per_s'):.1f} / {median(produced, 'idempotent', 'mb_per_s'):.1f}"
                          f" MB/s; per round {', '.join(f'{x:.2f}' for x in per_round)}), broker CPU per GB "
                          f"{median(produced, config, 'cpu_per_gb') / base_cpu:.2f}")
    if consumed:
        print()
        print(f"(b) one confluent-kafka consumer reading a txn-100 topic ({args.messages} committed messages, "
              f"one marker per partition per 100) from the beginning to its end")
        table(consumed)
        kinds = {r["config"] for r in consumed}
        if kinds == {"read_committed", "read_uncommitted"}:
            rc, ru = (median(consumed, k, "msgs_per_s") for k in ("read_committed", "read_uncommitted"))
            crc, cru = (median(consumed, k, "cpu_per_gb") for k in ("read_committed", "read_uncommitted"))
            print(f"  read_committed / read_uncommitted: throughput {rc / ru:.2f} (medians {rc:.0f} / {ru:.0f} msgs/s), "
                  f"broker CPU per GB {crc / cru:.2f} ({crc:.2f} / {cru:.2f} s/GB)")


BROKER_PID = None

if __name__ == "__main__":
    main()
