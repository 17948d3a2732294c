"""Leader kills under load, and a checker that proves nothing acknowledged
was lost (tests/e2e/test_replication.py runs a short version,
scripts/chaos.sh a long one).

A 3-node cluster, a topic with replication factor 3 and
min.insync.replicas=2, an idempotent acks=all confluent-kafka producer and
a consumer running while the leader of partition 0 is killed with kill -9
and restarted, N cycles. Then every partition is read back and checked:
every acknowledged record is there, exactly once, at the offset it was
acknowledged at; every record the consumer saw while the cluster failed
over is in the final log at the offset it was seen at (nothing it read was
truncated away later). Per cycle: the failover time (kill -> first record
sent after it acknowledged) and the longest gap between acknowledgements.
"""

import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

TOPIC = "chaos"
PARTITIONS = 3


class Load:
    """A producer and a consumer on their own threads."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.acked = {}          # (partition, offset) -> value
        self.ack_times = []      # (ack time, partition, send time) of every acknowledgement
        self.errors = []
        self.seen = {}           # (partition, offset) -> value, as consumed
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _report(self, err, msg, sent):
        now = time.monotonic()
        with self.lock:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.acked[(msg.partition(), msg.offset())] = msg.value()
                self.ack_times.append((now, msg.partition(), sent))

    def _produce(self):
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5,
                             "message.timeout.ms": 120000})
        i = 0
        while not self.stop.is_set():
            try:
                sent = time.monotonic()
                producer.produce(TOPIC, value=b"v%d" % i, partition=i % PARTITIONS,
                                 on_delivery=lambda err, msg, sent=sent: self._report(err, msg, sent))
                i += 1
            except BufferError:
                producer.poll(0.05)
                continue
            producer.poll(0)
            if i % 200 == 0:
                time.sleep(0.01)
        self.sent = i
        left = producer.flush(150)
        if left:
            self.errors.append(f"{left} messages undelivered at the end")

    def _consume(self):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "chaos-reader",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        try:
            while not self.stop.is_set():
                for m in consumer.consume(num_messages=1000, timeout=0.2):
                    if m.error():
                        continue
                    with self.lock:
                        self.seen[(m.partition(), m.offset())] = m.value()
        finally:
            consumer.close()

    def finish(self, timeout=180):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)


def leader_of(cluster, partition):
    """The leader with the newest leader epoch any live broker reports (a
    broker that just restarted may still be catching up on metadata)."""
    best = None
    for node in cluster.live_brokers():
        try:
            pm = cluster.raw_metadata(node.id, [TOPIC]).topics[TOPIC].partitions[partition]
        except Exception:
            continue
        if best is None or pm.epoch > best.epoch:
            best = pm
    if best is not None and best.leader >= 0 and cluster.node(best.leader).alive():
        return best.leader
    return None


def read_back(bootstrap, timeout=120):
    """Every record of every partition, from the beginning to the end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-check",
                         "enable.auto.commit": False})
    ends = {}
    deadline = time.monotonic() + timeout
    for p in range(PARTITIONS):
        while True:
            try:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5)[1]
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    log = {}
    while time.monotonic() < deadline and any(
            sum(1 for (q, _) in log if q == p) < ends[p] for p in range(PARTITIONS)):
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if not m.error():
                log[(m.partition(), m.offset())] = m.value()
    consumer.close()
    return log, ends


def run(cluster, cycles, log=print):
    """Kills the leader of partition 0 `cycles` times under load; returns
    (problems, failover times in s, longest gap between acks in s)."""
    admin = cluster.admin(cluster.live_brokers()[0].id)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(30)
    cluster.wait_topic(TOPIC, PARTITIONS, timeout=30)
    load = Load(cluster.bootstrap).start()
    cluster.wait_until(lambda: len(load.acked) > 2000, timeout=60, what="the producer to get going")
    failovers = []
    for cycle in range(1, cycles + 1):
        victim = cluster.wait_until(lambda: leader_of(cluster, 0), timeout=60, what="a leader of partition 0")
        cluster.kill(victim)
        killed = time.monotonic()

        def acked_after():
            with load.lock:
                return any(s > killed and p == 0 for _, p, s in load.ack_times[-3000:])
        cluster.wait_until(acked_after, timeout=90, what="an acknowledgement on partition 0 after the kill")
        with load.lock:
            first = min(t for t, p, s in load.ack_times[-3000:] if s > killed and p == 0)
        failovers.append(first - killed)
        new_leader = leader_of(cluster, 0)
        log(f"cycle {cycle}/{cycles}: killed leader {victim} of partition 0; first ack of a record "
            f"sent after the kill {failovers[-1] * 1000:.0f} ms (new leader {new_leader})")
        cluster.start_node(victim, timeout=90)

        def back_in_sync():
            md = cluster.metadata(victim, timeout=5)
            return all(victim in pm.isrs for pm in md.topics[TOPIC].partitions.values())
        cluster.wait_until(back_in_sync, timeout=90, what=f"broker {victim} back in every ISR")
    finished = load.finish()
    problems = [] if finished else ["the producer or consumer did not finish"]
    problems += [f"producer error: {e}" for e in sorted(set(load.errors))[:10]]
    final, ends = read_back(cluster.bootstrap)
    for key, value in load.acked.items():
        if final.get(key) != value:
            problems.append(f"acknowledged {value!r} at {key} but the log has {final.get(key)!r}")
    values = list(final.values())
    duplicates = len(values) - len(set(values))
    if duplicates:
        problems.append(f"{duplicates} duplicated records")
    for key, value in load.seen.items():
        if final.get(key) != value:
            problems.append(f"the consumer saw {value!r} at {key}; the log has {final.get(key)!r}")
    times = sorted(t for t, _, _ in load.ack_times)
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    log(f"acknowledged {len(load.acked)} of {load.sent} sent; log holds {len(final)} "
        f"(ends {ends}); consumer saw {len(load.seen)}; problems: {len(problems)}")
    return problems[:20], failovers, gap
