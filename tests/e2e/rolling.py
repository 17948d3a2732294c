"""Rolling restart under load, and a checker that proves nothing
acknowledged was lost or duplicated (tests/e2e/test_rolling_restart.py
runs it once, scripts/replication-figures.py reports its figures).

A cluster (cluster.py), a topic with replication factor 3 and
min.insync.replicas=2 over several partitions, and an idempotent acks=all
confluent-kafka producer writing numbered values round-robin over the
partitions from its own thread. Every broker in turn is stopped with
SIGTERM (a controlled shutdown: the controller moves its leaderships
first), started again on its data directory, and waited for until every
running broker's Metadata lists it in the ISR of every partition before
the next one goes. Then the producer flushes and every partition is read
back: every acknowledged record must be there exactly once at the offset
it was acknowledged at, and no value may be stored twice anywhere.

The figures: the longest gap between consecutive acknowledgements, over
all partitions and per partition (while a leadership moves, its
partition's acknowledgements pause), and per restart how long the stop,
the start and the ISR rejoin took.
"""

import collections
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import cluster as C
from restart_check import stop_producing

_PARTITION_EOF = -191


def value_of(i):
    return b"r%010d" % i


def index_of(value):
    return int(value[1:11])


class Load:
    """An idempotent acks=all producer on its own thread. rate: messages
    per second at most (0: as fast as the client takes them)."""

    def __init__(self, bootstrap, topic, partitions, rate=0, value_bytes=100):
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.pad = b"." * max(value_bytes - 11, 0)
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            # Long enough to ride out every restart of a run.
            "message.timeout.ms": 120000,
            "queue.buffering.max.messages": 100000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 200,
            # Connection-refused noise while a broker restarts; fatal errors
            # reach error_cb.
            "log_level": 0,
            "error_cb": self._error,
        })
        # Written by delivery callbacks, which run in whichever thread polls;
        # list appends and dict stores are atomic under the GIL, so no lock
        # (restart_check.py: with a lock, flush() once hung on it).
        self.acked = {}          # value index -> (partition, offset)
        self.ack_times = []      # (monotonic time, partition) per acknowledgement
        self.delivery_errors = []
        self.fatal = []
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def _report(self, err, msg):
        if err is not None:
            self.delivery_errors.append(err.name())
            return
        self.ack_times.append((time.monotonic(), msg.partition()))
        self.acked[index_of(msg.value())] = (msg.partition(), msg.offset())

    def _run(self):
        started = time.monotonic()
        deadline = started + 900
        i = 0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if self.rate and i >= (time.monotonic() - started) * self.rate:
                self.producer.poll(0.001)
                continue
            try:
                self.producer.produce(self.topic, value=value_of(i) + self.pad, partition=i % self.partitions,
                                      on_delivery=self._report)
                i += 1
                self.sent = i
            except BufferError:
                self.producer.poll(0.02)
            except KafkaException as e:  # a fatal idempotence error
                self.fatal.append(str(e))
                break
            self.producer.poll(0)

    def start(self):
        self.thread.start()
        return self

    def acked_on_every_partition_since(self, since, count=1):
        """True once every partition has `count` acknowledgements after
        `since` (a monotonic time)."""
        seen = collections.Counter()
        for t, p in reversed(self.ack_times):
            if t <= since:
                break
            seen[p] += 1
        return all(seen[p] >= count for p in range(self.partitions))

    def stop(self, flush_timeout=120):
        """Stops producing, waits (bounded) for outstanding deliveries;
        returns how many messages were still queued (purged)."""
        left = stop_producing(self.stopping, self.thread, self.producer, flush_timeout)
        # Destroyed now, while the brokers still run: the thread's bound
        # method makes a cycle that would leave it to the garbage collector,
        # whose destroy waits on brokers that may be gone by then.
        self.producer = None
        return left


def read_back(bootstrap, topic, partitions, timeout=120):
    """{partition: [(offset, value)]}, every record up to each partition's
    end (partition EOF)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rolling-check",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "check.crcs": True, "log_level": 0})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = {p: [] for p in range(partitions)}
    at_end = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == _PARTITION_EOF:
                        at_end.add(m.partition())
                        continue
                    raise KafkaException(m.error())
                at_end.discard(m.partition())
                out[m.partition()].append((m.offset(), m.value()))
    finally:
        consumer.close()
    if len(at_end) < partitions:
        raise AssertionError(f"did not reach the end of partitions {sorted(set(range(partitions)) - at_end)} "
                             f"of {topic} in {timeout}s")
    return out


def check(load, log):
    """Problems (strings) comparing the acknowledgements with the log."""
    problems = []
    where = {}  # value index -> [(partition, offset)]
    for p, records in log.items():
        for offset, value in records:
            where.setdefault(index_of(value), []).append((p, offset))
    lost = [(i, at) for i, at in load.acked.items() if at not in where.get(i, ())]
    for i, at in lost[:10]:
        problems.append(f"acknowledged {value_of(i)!r} at partition/offset {at}; the log has it at "
                        f"{where.get(i, 'nowhere')}")
    if len(lost) > 10:
        problems.append(f"... {len(lost)} acknowledged records lost or moved in all")
    duplicated = {i: at for i, at in where.items() if len(at) > 1}
    for i, at in list(duplicated.items())[:10]:
        problems.append(f"{value_of(i)!r} is stored {len(at)} times: {at}")
    if len(duplicated) > 10:
        problems.append(f"... {len(duplicated)} values stored more than once in all")
    return problems


def longest_gap(times):
    """(longest gap between consecutive sorted times, the time it
    ended); (0.0, None) for fewer than two."""
    best, end = 0.0, None
    for a, b in zip(times, times[1:]):
        if b - a > best:
            best, end = b - a, b
    return best, end


def in_every_isr(cluster, node_id, topic, partitions):
    """Every running broker's Metadata shows a leader for every partition
    and node_id in every ISR (a Not saying which is missing otherwise)."""
    for n in cluster.live_brokers():
        t = cluster.raw_metadata(n.id, [topic]).topics.get(topic)
        if t is None or t.error != C.NONE or len(t.partitions) != partitions:
            return C.Not(f"node {n.id}: {t}")
        for pm in t.partitions.values():
            if pm.leader < 0 or node_id not in pm.isr:
                return C.Not(f"node {n.id}: partition {pm.id} leader {pm.leader} isr {pm.isr}")
    return True


def phase(restarts, t):
    """Which step of the rolling restart monotonic time t falls in."""
    name = "before the first SIGTERM"
    for r in restarts:
        for key, what in (("sigterm", "stopping"), ("exited", "down, restarting"),
                          ("started", "unfenced, joining the ISRs"), ("rejoined", "back in every ISR")):
            if t >= r[key]:
                name = f"node {r['node']} {what}"
    return name


class Result:
    """What a rolling restart run found and measured."""

    def __init__(self):
        self.problems = []
        # dicts: node; controller (it was the active controller when
        # stopped); stop_s, start_s, rejoin_s; monotonic times sigterm,
        # exited, started (unfenced), rejoined (in every ISR)
        self.restarts = []
        self.sent = 0
        self.acked = 0
        self.stored = 0
        self.purged = 0
        self.delivery_errors = collections.Counter()
        self.fatal = []
        self.gap_s = 0.0
        self.gap_phase = None    # the restart step the longest gap ended in
        self.partition_gaps_s = {}
        self.partition_gap_phases = {}
        self.produce_s = 0.0

    def summary(self):
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.delivery_errors.items())) or "none"
        per = ", ".join(f"p{p} {g * 1000:.0f} ({self.partition_gap_phases[p]})"
                        for p, g in sorted(self.partition_gaps_s.items()))
        steps = "; ".join(f"node {r['node']}{' (controller)' if r['controller'] else ''}: stop {r['stop_s']:.2f} s, "
                          f"start {r['start_s']:.2f} s, "
                          f"back in every ISR {r['rejoin_s']:.2f} s" for r in self.restarts)
        return (f"sent {self.sent}, acknowledged {self.acked} ({self.acked / max(self.produce_s, 1e-9):.0f}/s "
                f"over {self.produce_s:.1f} s), stored {self.stored}, purged {self.purged}, "
                f"delivery errors: {errors}, fatal: {self.fatal or 'none'}\n"
                f"longest gap between acks {self.gap_s * 1000:.0f} ms overall ({self.gap_phase}); "
                f"per partition, ms (the step it ended in): {per}\n"
                f"restarts: {steps}")


def run(cluster, topic="rolling", partitions=6, rate=0, acks_between=2000, timeout=60, log=print):
    """Creates the topic, produces while restarting every broker in turn
    (each after `acks_between` more acknowledgements and an ack on every
    partition), checks the log. Returns a Result; every wait is bounded by
    `timeout` seconds."""
    result = Result()
    admin = cluster.admin(cluster.live_brokers()[0].id)
    admin.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    del admin
    cluster.wait_topic(topic, partitions, timeout=timeout)
    cluster.wait_until(lambda: all(in_every_isr(cluster, n.id, topic, partitions) for n in cluster.brokers()),
                       timeout, "every replica in the ISR")
    load = Load(cluster.bootstrap, topic, partitions, rate=rate).start()
    began = time.monotonic()
    try:
        def going(target, since):
            if load.fatal:
                raise AssertionError(f"producer fatal error: {load.fatal}")
            if len(load.acked) < target or not load.acked_on_every_partition_since(since):
                return C.Not(f"{len(load.acked)} acknowledged (waiting for {target} and one per "
                             f"partition after the last step); delivery errors {load.delivery_errors[-3:]}")
            return True
        cluster.wait_until(lambda: going(acks_between, began), timeout, "the producer to get going")
        for node in cluster.brokers():
            controller = cluster.controller_id()
            t0 = time.monotonic()
            code = cluster.stop(node.id, timeout=timeout)
            t1 = time.monotonic()
            if code != 0:
                result.problems.append(f"node {node.id} exited with {code} on SIGTERM")
            cluster.start_node(node.id, timeout=timeout)
            t2 = time.monotonic()
            cluster.wait_until(lambda: in_every_isr(cluster, node.id, topic, partitions), timeout,
                               f"node {node.id} back in every ISR of {topic}")
            t3 = time.monotonic()
            result.restarts.append({"node": node.id, "controller": node.id == controller, "stop_s": t1 - t0,
                                    "start_s": t2 - t1, "rejoin_s": t3 - t2,
                                    "sigterm": t0, "exited": t1, "started": t2, "rejoined": t3})
            log(f"  node {node.id}{' (the active controller)' if node.id == controller else ''}: SIGTERM -> exit "
                f"{t1 - t0:.2f} s, start -> unfenced {t2 - t1:.2f} s, -> in every ISR {t3 - t2:.2f} s; "
                f"{len(load.acked)} acknowledged so far")
            target = len(load.acked) + acks_between
            cluster.wait_until(lambda: going(target, t3), timeout,
                               f"acknowledgements on every partition after node {node.id} rejoined")
    finally:
        result.purged = load.stop()
    result.produce_s = time.monotonic() - began
    result.sent = load.sent
    result.acked = len(load.acked)
    result.delivery_errors = collections.Counter(load.delivery_errors)
    result.fatal = list(load.fatal)
    result.gap_s, end = longest_gap(sorted(t for t, _ in load.ack_times))
    result.gap_phase = phase(result.restarts, end) if end is not None else None
    for p in range(partitions):
        gap, end = longest_gap(sorted(t for t, q in load.ack_times if q == p))
        result.partition_gaps_s[p] = gap
        result.partition_gap_phases[p] = phase(result.restarts, end) if end is not None else None
    stored = read_back(cluster.bootstrap, topic, partitions, timeout=timeout * 2)
    result.stored = sum(len(r) for r in stored.values())
    result.problems += check(load, stored)
    if result.fatal:
        result.problems.append(f"producer fatal error(s): {result.fatal}")
    if result.delivery_errors:
        result.problems.append(f"delivery errors: {dict(result.delivery_errors)}")
    if result.purged:
        result.problems.append(f"{result.purged} messages never delivered (purged after the flush)")
    return result
