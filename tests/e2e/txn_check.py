"""Shared helpers of the transaction tests (test_transactions.py,
test_txn_cluster.py) and scripts/txn-figures.py.

- `LogModel`: what every partition's log must hold after a sequence of
  transactional and plain writes, in Kafka's layout (a transaction's
  records where they were appended, one COMMIT or ABORT control record per
  partition the transaction wrote to when it ends), and so what a
  read_committed and a read_uncommitted consumer must see, and where the
  last stable offset and the high watermark sit.
- `Reader`: a confluent-kafka consumer that reads assigned partitions from
  the beginning until each reports end-of-partition at a given offset
  (read_committed ends at the last stable offset, read_uncommitted at the
  high watermark; control records are never delivered but do move the
  position).
- ListOffsets through confluent's AdminClient with either isolation level.
- DescribeTransactions (API 65) and ListTransactions (API 66) as raw
  requests (confluent's AdminClient has neither).
- The Java client program TxnCheck.java, compiled once per module.
"""

import collections
import itertools
import pathlib
import struct
import subprocess
import time
from dataclasses import dataclass, field

from confluent_kafka import (OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from cluster import FlexReader, call

JAVA_DIR = pathlib.Path(__file__).parent / "java"

# How long init_transactions may take: the first one of a broker creates
# __transaction_state (librdkafka retries COORDINATOR_NOT_AVAILABLE).
INIT_TIMEOUT_S = 30
# commit_transaction / abort_transaction: markers written to every partition.
END_TIMEOUT_S = 30

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"

# What a fenced transactional producer gets, by client: librdkafka raises
# its own _FENCED (fatal) for PRODUCER_FENCED and INVALID_PRODUCER_EPOCH.
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}

# Broker keys every transaction test passes. The abort check runs every
# 500 ms (Kafka: 10 s) so a timed-out transaction ends within a test; a
# single broker keeps __transaction_state at replication factor 1.
SINGLE_BROKER_ARGS = [
    "--override", "transaction.state.log.replication.factor=1",
    "--override", "transaction.state.log.min.isr=1",
    "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    "--override", "group.initial.rebalance.delay.ms=0",
]


def java_hash(s):
    """Java's String.hashCode (UTF-16 code units), as a signed int32."""
    h = 0
    units = s.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_abs(n):
    """Kafka's Utils.abs: Math.abs with Integer.MIN_VALUE mapped to 0."""
    return 0 if n == -(1 << 31) else abs(n)


def txn_partition(transactional_id, partitions=50):
    """Kafka's __transaction_state partition of a transactional id
    (TransactionStateManager.partitionFor)."""
    return kafka_abs(java_hash(transactional_id)) % partitions


# ---------------------------------------------------------------------------
# Topics, producers.

def create_topics(bootstrap, topics, replication=1, config=None, timeout=30):
    """topics: {name: partitions}."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, n, replication, config=config or {})
                                   for name, n in topics.items()])
    for future in futures.values():
        future.result(timeout)


def transactional_producer(bootstrap, transactional_id, **conf):
    """A confluent-kafka transactional producer after init_transactions."""
    settings = {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5}
    settings.update(conf)
    p = Producer(settings)
    try:
        p.init_transactions(INIT_TIMEOUT_S)
    except KafkaException as e:
        raise AssertionError(f"init_transactions({transactional_id!r}) failed: {e.args[0]} "
                             "(no transaction coordinator answering?)") from None
    return p


def plain_producer(bootstrap, **conf):
    settings = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    settings.update(conf)
    return Producer(settings)


def send(producer, writes, flush_timeout=30):
    """Produces {(topic, partition): [values]} and waits for every delivery
    report; returns {(topic, partition): [offsets, in the values' order]}.
    A failed delivery fails the test."""
    reports = {}
    errors = []

    def done(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[(msg.topic(), msg.partition(), msg.value().decode())] = msg.offset()
    for (topic, partition), values in writes.items():
        for v in values:
            producer.produce(topic, value=v.encode(), partition=partition, on_delivery=done)
    left = producer.flush(flush_timeout)
    assert left == 0 and not errors, f"{left} undelivered, errors {errors}"
    return {tp: [reports[(*tp, v)] for v in values] for tp, values in writes.items()}


def fenced(error):
    """True for the error a fenced transactional producer raises."""
    return error.code() in FENCED_CODES


# ---------------------------------------------------------------------------
# The expected log.

@dataclass
class Entry:
    offset: int
    value: str | None  # None: a control record
    txn: str           # the transaction (or plain write) it belongs to


@dataclass
class LogModel:
    """Every partition's log as Kafka lays it out. A write appends its
    values at the next offsets; ending a transaction appends one control
    record to each partition it wrote to. Outcomes: "commit", "abort",
    None (open) and "plain" (not transactional)."""

    logs: dict = field(default_factory=lambda: collections.defaultdict(list))
    outcome: dict = field(default_factory=dict)
    touched: dict = field(default_factory=lambda: collections.defaultdict(list))

    def write(self, txn, writes, plain=False):
        """Returns {tp: [expected offsets]}."""
        self.outcome.setdefault(txn, "plain" if plain else None)
        out = {}
        for tp, values in writes.items():
            log = self.logs[tp]
            out[tp] = [len(log) + i for i in range(len(values))]
            log.extend(Entry(len(log), v, txn) for v in values)
            if tp not in self.touched[txn]:
                self.touched[txn].append(tp)
        return out

    def end(self, txn, outcome):
        assert outcome in ("commit", "abort") and self.outcome[txn] is None, (txn, self.outcome[txn])
        self.outcome[txn] = outcome
        for tp in self.touched[txn]:
            log = self.logs[tp]
            log.append(Entry(len(log), None, txn))

    def resent_markers(self, txn, ends):
        """A coordinator that restarts between writing a transaction's
        markers and logging it complete writes them again (as Kafka's
        does): one more control record in each partition whose observed
        end is one past the model's."""
        assert self.outcome[txn] in ("commit", "abort"), (txn, self.outcome[txn])
        for tp in self.touched[txn]:
            log = self.logs[tp]
            if ends.get(tp) == len(log) + 1:
                log.append(Entry(len(log), None, txn))

    def high_watermark(self, tp):
        return len(self.logs[tp])

    def last_stable(self, tp):
        """The first offset of an open transaction in tp, else the high
        watermark."""
        return next((e.offset for e in self.logs[tp] if e.value is not None and self.outcome[e.txn] is None),
                    self.high_watermark(tp))

    def ends(self, tps, isolation):
        if isolation == READ_COMMITTED:
            return {tp: self.last_stable(tp) for tp in tps}
        return {tp: self.high_watermark(tp) for tp in tps}

    def visible(self, tps, isolation):
        """{tp: [(offset, value)]} a consumer of that isolation level reads
        from the beginning to its end."""
        out = {}
        for tp in tps:
            if isolation == READ_COMMITTED:
                lso = self.last_stable(tp)
                out[tp] = [(e.offset, e.value) for e in self.logs[tp]
                           if e.value is not None and e.offset < lso and self.outcome[e.txn] in ("commit", "plain")]
            else:
                out[tp] = [(e.offset, e.value) for e in self.logs[tp] if e.value is not None]
        return out

    def markers(self, tp):
        return [e.offset for e in self.logs[tp] if e.value is None]


# ---------------------------------------------------------------------------
# Reading.

_readers = itertools.count()


class Reader:
    """A consumer assigned to `tps` from the beginning; read_until reads
    until every partition reported end-of-partition at (at least) its
    wanted end offset, and may be called again after more is written.
    `got` accumulates {tp: [(offset, value)]}."""

    def __init__(self, bootstrap, tps, isolation, **conf):
        settings = {"bootstrap.servers": bootstrap, "group.id": f"txn-reader-{next(_readers)}",
                    "enable.auto.commit": False, "enable.partition.eof": True,
                    "isolation.level": isolation, "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 20}
        settings.update(conf)
        self.tps = list(tps)
        self.isolation = isolation
        self.consumer = Consumer(settings)
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in self.tps])
        self.got = {tp: [] for tp in self.tps}
        self.eof = {}  # tp -> the offset of its latest end-of-partition event

    def read_until(self, ends, timeout=30):
        """Returns self.got once every tp reached ends[tp]."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                tp = (m.topic(), m.partition())
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        self.eof[tp] = m.offset()
                        continue
                    raise KafkaException(m.error())
                self.got[tp].append((m.offset(), m.value().decode()))
            # A record at or past the wanted end also ends the wait (the
            # caller's assertions then say it should not be there).
            if all(self.eof.get(tp, -1) >= ends[tp] or (self.got[tp] and self.got[tp][-1][0] >= ends[tp])
                   for tp in self.tps):
                return self.got
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.isolation} reader: timed out after {timeout}s; wanted ends {ends}, "
                                     f"end-of-partition at {self.eof}, "
                                     f"last offsets read {({tp: g[-1][0] for tp, g in self.got.items() if g})}")

    def close(self):
        self.consumer.close()


def read(bootstrap, tps, isolation, ends, timeout=30):
    """{tp: [(offset, value)]} from the beginning to ends[tp]."""
    r = Reader(bootstrap, tps, isolation)
    try:
        return r.read_until(ends, timeout)
    finally:
        r.close()


def list_ends(admin, tps, isolation, timeout=10):
    """ListOffsets latest of each tp with that isolation level
    (read_committed: the last stable offset; read_uncommitted: the high
    watermark)."""
    level = IsolationLevel.READ_COMMITTED if isolation == READ_COMMITTED else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p in tps},
                                 isolation_level=level, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout + 5).offset for tp, f in futures.items()}


def wait_stable(admin, tps, timeout=30, want=None):
    """Waits until every tp's last stable offset equals its high watermark
    (no open transaction; with `want`, that end exactly); returns the ends."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            committed = list_ends(admin, tps, READ_COMMITTED)
            uncommitted = list_ends(admin, tps, READ_UNCOMMITTED)
            if committed == uncommitted and (want is None or committed == want):
                return committed
            last = (committed, uncommitted)
        except KafkaException as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise AssertionError(f"no stable end within {timeout}s (want {want}); "
                                 f"last (read_committed, read_uncommitted) ends: {last}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# DescribeTransactions and ListTransactions, raw.

def _uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _compact_string(s):
    b = s.encode()
    return _uvarint(len(b) + 1) + b


@dataclass
class DescribedTxn:
    error: int
    state: str
    timeout_ms: int
    start_ms: int
    producer_id: int
    epoch: int
    partitions: dict  # topic -> sorted partition ids


def describe_transactions(port, ids, timeout=10):
    """DescribeTransactions v0 to one broker (which must coordinate the
    ids): {transactional id: DescribedTxn}."""
    body = _uvarint(len(ids) + 1) + b"".join(_compact_string(i) for i in ids) + b"\x00"
    r = FlexReader(call(port, 65, 0, body, timeout, flexible=True))
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    out = {}
    for _ in range(max(r.compact_len(), 0)):
        error = r.take(">h")
        tid = r.compact_string()
        state = r.compact_string()
        timeout_ms, start_ms, pid, epoch = r.take(">i"), r.take(">q"), r.take(">q"), r.take(">h")
        topics = {}
        for _ in range(max(r.compact_len(), 0)):
            name = r.compact_string()
            topics[name] = sorted(r.take(">i") for _ in range(max(r.compact_len(), 0)))
            r.tagged()
        r.tagged()
        out[tid] = DescribedTxn(error, state, timeout_ms, start_ms, pid, epoch, topics)
    return out


def wait_complete(port, transactional_id, timeout=30):
    """Waits until the coordinator (a single broker on `port`) reports the
    id's transaction complete (CompleteCommit, CompleteAbort or Empty):
    every marker written and the completion logged."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = describe_transactions(port, [transactional_id]).get(transactional_id)
            if last is not None and last.error == 0 and last.state in ("CompleteCommit", "CompleteAbort", "Empty"):
                return last
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{transactional_id} not complete within {timeout}s: {last}")


def list_transactions(port, states=(), producer_ids=(), timeout=10):
    """ListTransactions v0 from one broker: (error, unknown state filters,
    {transactional id: (producer id, state)})."""
    body = _uvarint(len(states) + 1) + b"".join(_compact_string(s) for s in states)
    body += _uvarint(len(producer_ids) + 1) + b"".join(struct.pack(">q", p) for p in producer_ids)
    body += b"\x00"
    r = FlexReader(call(port, 66, 0, body, timeout, flexible=True))
    r.take(">i")
    r.take(">i")  # throttle
    error = r.take(">h")
    unknown = [r.compact_string() for _ in range(max(r.compact_len(), 0))]
    listed = {}
    for _ in range(max(r.compact_len(), 0)):
        tid = r.compact_string()
        pid = r.take(">q")
        listed[tid] = (pid, r.compact_string())
        r.tagged()
    return error, unknown, listed


# ---------------------------------------------------------------------------
# Java.

def compile_txn_check(out_dir):
    """TxnCheck.java compiled against Apache Kafka's Java client; returns
    the class path."""
    from test_java import classpath
    cp = classpath()
    subprocess.run(["javac", "-nowarn", "-cp", cp, "-d", str(out_dir), str(JAVA_DIR / "TxnCheck.java")],
                   check=True, timeout=180)
    return f"{out_dir}:{cp}"
