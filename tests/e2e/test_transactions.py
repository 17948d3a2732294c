"""Kafka transactions (exactly-once) against one broker, to Kafka's
documented semantics (transaction version 1: no KIP-890 epoch bump per
transaction): commit and abort across partitions and topics with control
markers in the logs, the last stable offset holding read_committed
consumers back, ListOffsets by isolation level, fencing, the coordinator
aborting a timed-out transaction, kill -9 of the broker mid-transaction
and right after a commit, kafka-python and aiokafka producers, Java's
consume-transform-produce loop killed -9 and restarted, and the
DescribeTransactions / ListTransactions admin APIs.

Every check compares exact sets of records with `txn_check.LogModel`, the
log Kafka would hold: a transaction's records at the offsets they were
appended at, one control record per partition it wrote to when it ends."""

import asyncio
import collections
import queue
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

import txn_check as T
from txn_check import READ_COMMITTED, READ_UNCOMMITTED, LogModel, Reader

pytestmark = pytest.mark.timeout(120)

TRANSACTIONAL_ID_NOT_FOUND = 105  # Kafka's error code (librdkafka names none)


@pytest.fixture
def broker(broker_factory):
    return broker_factory(extra_args=T.SINGLE_BROKER_ARGS)


def tps_of(topics):
    return [(t, p) for t, n in topics.items() for p in range(n)]


def values(txn, tp, n):
    return [f"{txn}-{tp[0]}-{tp[1]}-{i}" for i in range(n)]


def check_views(bootstrap, model, tps, timeout=30):
    """Both isolation levels read exactly what the model says, to the ends
    the model says."""
    for isolation in (READ_COMMITTED, READ_UNCOMMITTED):
        got = T.read(bootstrap, tps, isolation, model.ends(tps, isolation), timeout)
        assert got == model.visible(tps, isolation), f"{isolation} view differs"


# ---------------------------------------------------------------------------
# 1. Commit, abort, commit across partitions of two topics.

def test_commit_abort_markers_and_list_offsets(broker):
    topics = {"txa": 3, "txb": 2}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    model = LogModel()
    p = T.transactional_producer(broker.bootstrap, "tx-basic")

    def run(txn, writes, outcome):
        p.begin_transaction()
        expected = model.write(txn, writes)
        assert T.send(p, writes) == expected, f"{txn}: offsets differ from Kafka's layout"
        if outcome == "commit":
            p.commit_transaction(T.END_TIMEOUT_S)
        elif outcome == "abort":
            p.abort_transaction(T.END_TIMEOUT_S)
        if outcome:
            model.end(txn, outcome)

    run("t1", {tp: values("t1", tp, 5 + tp[1]) for tp in tps}, "commit")
    run("t2", {tp: values("t2", tp, 4) for tp in tps}, "abort")
    # t3 leaves txb-1 alone: no marker there.
    run("t3", {tp: values("t3", tp, 3) for tp in tps if tp != ("txb", 1)}, "commit")

    # Each transaction took one offset per partition it wrote to.
    assert model.markers(("txa", 0)) == [5, 10, 14]
    assert model.markers(("txb", 1)) == [6, 11]
    check_views(broker.bootstrap, model, tps)
    ends = model.ends(tps, READ_UNCOMMITTED)
    assert T.list_ends(admin, tps, READ_COMMITTED) == ends
    assert T.list_ends(admin, tps, READ_UNCOMMITTED) == ends

    # An open transaction: the last stable offset stops at its first record
    # in the partitions it wrote to; the high watermark does not.
    open_writes = {("txa", 0): values("t4", ("txa", 0), 6), ("txb", 0): values("t4", ("txb", 0), 2)}
    run("t4", open_writes, None)
    committed, uncommitted = T.list_ends(admin, tps, READ_COMMITTED), T.list_ends(admin, tps, READ_UNCOMMITTED)
    assert uncommitted == model.ends(tps, READ_UNCOMMITTED)
    assert committed == model.ends(tps, READ_COMMITTED)
    assert committed[("txa", 0)] == ends[("txa", 0)] < uncommitted[("txa", 0)] == ends[("txa", 0)] + 6
    assert committed[("txa", 1)] == uncommitted[("txa", 1)]
    check_views(broker.bootstrap, model, tps)

    p.commit_transaction(T.END_TIMEOUT_S)
    model.end("t4", "commit")
    want = model.ends(tps, READ_UNCOMMITTED)
    # commit_transaction may return before the markers are written (Kafka
    # writes them after PrepareCommit is durable).
    assert T.wait_stable(admin, tps, want=want) == want
    check_views(broker.bootstrap, model, tps)


# ---------------------------------------------------------------------------
# 2. An open transaction holds read_committed back, plain records too.

def test_open_transaction_blocks_read_committed(broker):
    tp = ("txopen", 0)
    T.create_topics(broker.bootstrap, {"txopen": 1})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    model = LogModel()
    plain = T.plain_producer(broker.bootstrap)
    w = {tp: values("before", tp, 3)}
    assert T.send(plain, w) == model.write("before", w, plain=True)

    p = T.transactional_producer(broker.bootstrap, "tx-open")
    p.begin_transaction()
    w = {tp: values("open", tp, 5)}
    assert T.send(p, w) == model.write("open", w)
    w = {tp: values("after", tp, 5)}
    assert T.send(plain, w) == model.write("after", w, plain=True)
    assert model.last_stable(tp) == 3 and model.high_watermark(tp) == 13

    committed = Reader(broker.bootstrap, [tp], READ_COMMITTED)
    try:
        got = committed.read_until({tp: 3})
        assert got == model.visible([tp], READ_COMMITTED) == {tp: [(i, f"before-txopen-0-{i}") for i in range(3)]}
        assert committed.eof[tp] == 3, "read_committed must stop at the first open offset"
        assert T.list_ends(admin, [tp], READ_COMMITTED) == {tp: 3}
        assert T.list_ends(admin, [tp], READ_UNCOMMITTED) == {tp: 13}
        check_views(broker.bootstrap, model, [tp])

        p.commit_transaction(T.END_TIMEOUT_S)
        model.end("open", "commit")
        assert model.high_watermark(tp) == 14
        got = committed.read_until({tp: 14})
        assert got == model.visible([tp], READ_COMMITTED)
        assert [o for o, _ in got[tp]] == list(range(13))
    finally:
        committed.close()
    check_views(broker.bootstrap, model, [tp])


# ---------------------------------------------------------------------------
# 3. Fencing.

def test_a_second_instance_fences_the_first_and_aborts_its_transaction(broker):
    topics = {"txfence": 2}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    model = LogModel()
    first = T.transactional_producer(broker.bootstrap, "tx-fence")
    first.begin_transaction()
    w = {tp: values("first", tp, 3) for tp in tps}
    assert T.send(first, w) == model.write("first", w)

    # init_transactions of the new instance aborts the open transaction
    # (it waits for the abort markers) and bumps the epoch.
    second = T.transactional_producer(broker.bootstrap, "tx-fence")
    model.end("first", "abort")

    with pytest.raises(KafkaException) as raised:
        first.produce("txfence", b"late", partition=0)
        first.commit_transaction(T.END_TIMEOUT_S)
    err = raised.value.args[0]
    assert err.fatal() or T.fenced(err), f"expected a fatal fenced error, got {err}"

    second.begin_transaction()
    w = {tp: values("second", tp, 2) for tp in tps}
    assert T.send(second, w) == model.write("second", w)
    second.commit_transaction(T.END_TIMEOUT_S)
    model.end("second", "commit")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    T.wait_stable(admin, tps, want=model.ends(tps, READ_UNCOMMITTED))
    check_views(broker.bootstrap, model, tps)


# ---------------------------------------------------------------------------
# 4. kafka-python and aiokafka.

def test_kafka_python_commit_and_abort(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaTopicPartition
    topics = {"txkp": 2}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-kafka-python",
                      enable_idempotence=True, max_block_ms=30000, request_timeout_ms=15000)
    try:
        p.init_transactions()
        sent = collections.defaultdict(list)
        for txn, outcome in (("c1", "commit"), ("a1", "abort"), ("c2", "commit")):
            p.begin_transaction()
            for t, part in tps:
                for v in values(txn, (t, part), 3):
                    md = p.send(t, v.encode(), partition=part).get(timeout=30)
                    sent[txn].append(((t, part), md.offset, v))
            p.flush(30)
            if outcome == "commit":
                p.commit_transaction()
            else:
                p.abort_transaction()
    finally:
        p.close(timeout=10)
    # Kafka's layout: 3 records and a marker per transaction and partition.
    for (t, part), offset, v in sent["c2"]:
        assert offset in (8, 9, 10), (t, part, offset, v)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    ends = T.wait_stable(admin, tps)
    assert ends == {tp: 12 for tp in tps}
    want = {tp: [(o, v) for txn in ("c1", "c2") for (x, o, v) in sent[txn] if x == tp] for tp in tps}
    assert T.read(broker.bootstrap, tps, READ_COMMITTED, ends) == want

    # kafka-python's own read_committed consumer skips the aborted batches.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                      enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        c.assign([KafkaTopicPartition(t, part) for t, part in tps])
        c.seek_to_beginning()
        got = collections.defaultdict(list)
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < 12 and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=500).items():
                got[(tp.topic, tp.partition)].extend((r.offset, r.value.decode()) for r in records)
        assert dict(got) == want
    finally:
        c.close()


def test_aiokafka_transaction_context(broker):
    from aiokafka import AIOKafkaProducer
    tp = ("txaio", 0)
    T.create_topics(broker.bootstrap, {"txaio": 1})

    class Abort(Exception):
        pass

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-aiokafka",
                                    enable_idempotence=True, request_timeout_ms=15000)
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(4):
                    await producer.send_and_wait("txaio", f"kept-{i}".encode(), partition=0)
            try:
                async with producer.transaction():
                    for i in range(3):
                        await producer.send_and_wait("txaio", f"dropped-{i}".encode(), partition=0)
                    raise Abort()
            except Abort:
                pass
            async with producer.transaction():
                await producer.send_and_wait("txaio", b"kept-4", partition=0)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), 60))
    model = LogModel()
    model.write("k1", {tp: [f"kept-{i}" for i in range(4)]})
    model.end("k1", "commit")
    model.write("d1", {tp: [f"dropped-{i}" for i in range(3)]})
    model.end("d1", "abort")
    model.write("k2", {tp: ["kept-4"]})
    model.end("k2", "commit")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    T.wait_stable(admin, [tp], want=model.ends([tp], READ_UNCOMMITTED))
    check_views(broker.bootstrap, model, [tp])


# ---------------------------------------------------------------------------
# 5. The coordinator aborts a transaction past its timeout.

def test_transaction_timeout_is_bounded_by_the_broker(broker):
    """transaction.timeout.ms above transaction.max.timeout.ms (900000 by
    default) is refused: INVALID_TRANSACTION_TIMEOUT, fatal for the
    producer; at the bound it is accepted."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-too-long",
                  "transaction.timeout.ms": 900_001})
    with pytest.raises(KafkaException) as refused:
        p.init_transactions(T.INIT_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, refused.value
    T.transactional_producer(broker.bootstrap, "tx-longest", **{"transaction.timeout.ms": 900_000})


def test_timed_out_transaction_is_aborted_by_the_broker(broker):
    topics = {"txtimeout": 2}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    model = LogModel()
    plain = T.plain_producer(broker.bootstrap)
    w = {("txtimeout", 0): values("before", ("txtimeout", 0), 2)}
    assert T.send(plain, w) == model.write("before", w, plain=True)

    p = T.transactional_producer(broker.bootstrap, "tx-timeout",
                                 **{"transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
    p.begin_transaction()
    w = {tp: values("stuck", tp, 3) for tp in tps}
    assert T.send(p, w) == model.write("stuck", w)
    w = {("txtimeout", 0): values("after", ("txtimeout", 0), 2)}
    assert T.send(plain, w) == model.write("after", w, plain=True)
    started = time.monotonic()
    # Nothing more from the producer: the coordinator (checking every
    # 500 ms) aborts it and the last stable offset moves past it.
    model.end("stuck", "abort")
    want = model.ends(tps, READ_UNCOMMITTED)
    T.wait_stable(admin, tps, timeout=30, want=want)
    assert time.monotonic() - started < 30
    check_views(broker.bootstrap, model, tps)
    assert model.visible([("txtimeout", 0)], READ_COMMITTED)[("txtimeout", 0)] == [
        (0, "before-txtimeout-0-0"), (1, "before-txtimeout-0-1"), (5, "after-txtimeout-0-0"),
        (6, "after-txtimeout-0-1")]

    with pytest.raises(KafkaException) as raised:
        p.commit_transaction(T.END_TIMEOUT_S)
    err = raised.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), f"commit after the timeout abort: {err}"
    # Still aborted: the late commit changed nothing.
    assert T.list_ends(admin, tps, READ_COMMITTED) == want
    check_views(broker.bootstrap, model, tps)


# ---------------------------------------------------------------------------
# 6. kill -9 of the broker.

def test_kill9_with_an_open_transaction_aborts_it(broker):
    topics = {"txkill": 3}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    model = LogModel()
    old = T.transactional_producer(broker.bootstrap, "tx-kill-open")
    old.begin_transaction()
    w = {tp: values("t1", tp, 4) for tp in tps}
    assert T.send(old, w) == model.write("t1", w)
    old.commit_transaction(T.END_TIMEOUT_S)
    model.end("t1", "commit")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    T.wait_stable(admin, tps, want=model.ends(tps, READ_UNCOMMITTED))
    old.begin_transaction()
    w = {tp: values("t2", tp, 5) for tp in tps}
    assert T.send(old, w) == model.write("t2", w)

    broker.kill9()
    broker.start()
    # A new instance aborts what the old one left open, and fences it.
    new = T.transactional_producer(broker.bootstrap, "tx-kill-open")
    model.end("t2", "abort")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    T.wait_stable(admin, tps, want=model.ends(tps, READ_UNCOMMITTED))
    check_views(broker.bootstrap, model, tps)
    with pytest.raises(KafkaException) as raised:
        old.commit_transaction(T.END_TIMEOUT_S)
    assert raised.value.args[0].fatal(), raised.value.args[0]

    new.begin_transaction()
    w = {tp: values("t3", tp, 2) for tp in tps}
    assert T.send(new, w) == model.write("t3", w)
    new.commit_transaction(T.END_TIMEOUT_S)
    model.end("t3", "commit")
    T.wait_stable(admin, tps, want=model.ends(tps, READ_UNCOMMITTED))
    check_views(broker.bootstrap, model, tps)


def test_kill9_right_after_commit_keeps_the_whole_transaction(broker):
    topics = {"txkillc": 3, "txkilld": 1}
    T.create_topics(broker.bootstrap, topics)
    tps = tps_of(topics)
    model = LogModel()
    p = T.transactional_producer(broker.bootstrap, "tx-kill-commit")
    p.begin_transaction()
    w = {tp: values("t1", tp, 7) for tp in tps}
    assert T.send(p, w) == model.write("t1", w)
    p.commit_transaction(T.END_TIMEOUT_S)
    broker.kill9()
    model.end("t1", "commit")

    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # The coordinator finishes the commit from its log if it was not logged
    # complete before the kill (its markers may then be written twice).
    T.wait_complete(broker.port, "tx-kill-commit")
    ends = T.wait_stable(admin, tps)
    model.resent_markers("t1", ends)
    assert ends == model.ends(tps, READ_UNCOMMITTED), ends
    check_views(broker.bootstrap, model, tps)

    again = T.transactional_producer(broker.bootstrap, "tx-kill-commit")
    again.begin_transaction()
    w = {tp: values("t2", tp, 2) for tp in tps}
    assert T.send(again, w) == model.write("t2", w)
    again.commit_transaction(T.END_TIMEOUT_S)
    model.end("t2", "commit")
    T.wait_stable(admin, tps, want=model.ends(tps, READ_UNCOMMITTED))
    check_views(broker.bootstrap, model, tps)


# ---------------------------------------------------------------------------
# 6b. Offsets sent to a transaction: pending until the transaction ends,
# then committed (COMMIT) or dropped (ABORT); a plain commit keeps working.

def committed_offsets(bootstrap, group, tps):
    """The group's committed offsets, without waiting for pending
    transactional ones (a read_committed consumer asks with require_stable
    and waits while a transaction holds offsets: UNSTABLE_OFFSET_COMMIT)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": "read_uncommitted"})
    try:
        got = c.committed([TopicPartition(t, p) for t, p in tps], timeout=30)
    finally:
        c.close()
    return {(tp.topic, tp.partition): tp.offset for tp in got}


def test_transactional_offsets_apply_only_on_commit(broker):
    T.create_topics(broker.bootstrap, {"txoff": 2})
    tps = [("txoff", 0), ("txoff", 1)]
    group = "txoff-group"
    # A consumer of the group, assigned (no membership: generation -1).
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(t, p) for t, p in tps])
        c.commit(offsets=[TopicPartition(t, p, 1) for t, p in tps], asynchronous=False)
        meta = c.consumer_group_metadata()
        p = T.transactional_producer(broker.bootstrap, "tx-offsets")
        unset = {tp: 1 for tp in tps}

        # Aborted: the offsets never become the group's.
        p.begin_transaction()
        T.send(p, {tps[0]: ["a"]})
        p.send_offsets_to_transaction([TopicPartition(t, q, 10) for t, q in tps], meta, T.END_TIMEOUT_S)
        assert committed_offsets(broker.bootstrap, group, tps) == unset, "pending offsets visible"
        p.abort_transaction(T.END_TIMEOUT_S)
        assert committed_offsets(broker.bootstrap, group, tps) == unset, "aborted offsets applied"

        # Committed: visible once the transaction commits, not before.
        p.begin_transaction()
        T.send(p, {tps[1]: ["b"]})
        p.send_offsets_to_transaction([TopicPartition(t, q, 20 + q) for t, q in tps], meta, T.END_TIMEOUT_S)
        assert committed_offsets(broker.bootstrap, group, tps) == unset, "pending offsets visible"
        # A read_committed consumer's fetch of committed offsets
        # (require_stable) is held off while the transaction is open.
        stable = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                           "isolation.level": "read_committed", "enable.auto.commit": False})
        try:
            with pytest.raises(KafkaException) as held:
                stable.committed([TopicPartition(t, q) for t, q in tps], timeout=2)
            assert held.value.args[0].code() == KafkaError._TIMED_OUT, held.value
        finally:
            stable.close()
        p.commit_transaction(T.END_TIMEOUT_S)
        want = {("txoff", 0): 20, ("txoff", 1): 21}
        wait_for(lambda: committed_offsets(broker.bootstrap, group, tps) == want, 30,
                 "the committed transaction's offsets")
        # Nothing pending any more: the read_committed fetch answers.
        stable = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                           "isolation.level": "read_committed", "enable.auto.commit": False})
        try:
            got = stable.committed([TopicPartition(t, q) for t, q in tps], timeout=10)
            assert {(tp.topic, tp.partition): tp.offset for tp in got} == want
        finally:
            stable.close()

        # They survive a restart (replayed from __consumer_offsets with the
        # marker), and a plain commit afterwards wins.
        broker.kill9()
        broker.start()
        assert committed_offsets(broker.bootstrap, group, tps) == want
        c2 = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            c2.assign([TopicPartition(t, q) for t, q in tps])
            c2.commit(offsets=[TopicPartition("txoff", 0, 30)], asynchronous=False)
        finally:
            c2.close()
        assert committed_offsets(broker.bootstrap, group, tps) == {("txoff", 0): 30, ("txoff", 1): 21}
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 7. Java consume-transform-produce, the JVM killed -9 twice.

@pytest.fixture(scope="module")
def txn_java(tmp_path_factory):
    return T.compile_txn_check(tmp_path_factory.mktemp("txnjava"))


class JavaRun:
    """TxnCheck ctp in a JVM; its stdout lines arrive on a queue."""

    def __init__(self, cp, *args):
        self.proc = subprocess.Popen(["java", "-cp", cp, "TxnCheck", "ctp", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, predicate, timeout):
        """The first line (from now) for which predicate is true; None when
        the JVM exits first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(f"no expected TxnCheck line in {timeout}s:\n" + "\n".join(self.seen[-30:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return None
            self.seen.append(line)
            if predicate(line):
                return line

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
        self.proc.wait(15)


def group_with_negative_hash():
    """A group id whose Java hashCode is negative and whose
    __consumer_offsets partition differs between Kafka's Utils.abs rule and
    a `& 0x7fffffff` one: transaction markers must reach the partition the
    group coordinator wrote the transactional offsets to."""
    for i in range(1000):
        g = f"ctp{i}-group"
        h = T.java_hash(g)
        if h < 0 and T.kafka_abs(h) % 50 != (h & 0x7FFFFFFF) % 50:
            return g
    raise AssertionError("no such group id")


@pytest.mark.timeout(240)
def test_java_consume_transform_produce_survives_kill9(broker, txn_java):
    records, partitions = 3000, 3
    T.create_topics(broker.bootstrap, {"ctp-in": partitions, "ctp-out": partitions})
    plain = T.plain_producer(broker.bootstrap)
    for n in range(records):
        plain.produce("ctp-in", key=str(n).encode(), value=str(n).encode(), partition=n % partitions)
    assert plain.flush(60) == 0
    group = group_with_negative_hash()
    args = (broker.bootstrap, "ctp-in", "ctp-out", group, "tx-ctp", partitions, 100, 90)

    # Two runs killed -9 with a transaction open (records flushed, not
    # committed), a few commits in; a third runs to the end.
    aborted_at_least = 0
    for run in range(2):
        jvm = JavaRun(txn_java, *args)
        try:
            line = jvm.wait_line(lambda l: l.startswith(("OPEN", "ERROR", "DONE")) and
                                 (not l.startswith("OPEN") or int(l.split()[1]) >= 4), timeout=60)
            assert line is not None and line.startswith("OPEN"), "\n".join(jvm.seen[-30:])
            aborted_at_least += int(line.split()[2])
        finally:
            jvm.kill()
    jvm = JavaRun(txn_java, *args)
    try:
        line = jvm.wait_line(lambda l: l.startswith(("DONE", "ERROR", "TIMEOUT")), timeout=100)
        assert line is not None and line.startswith("DONE"), "\n".join(jvm.seen[-30:])
        assert jvm.proc.wait(30) == 0
    finally:
        jvm.kill()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    out_tps = [("ctp-out", p) for p in range(partitions)]
    ends = T.wait_stable(admin, out_tps)
    committed = T.read(broker.bootstrap, out_tps, READ_COMMITTED, ends)
    counts = collections.Counter(v for recs in committed.values() for _, v in recs)
    assert set(counts) == {f"out-{n}" for n in range(records)}, "records lost"
    assert [v for v, c in counts.items() if c > 1] == [], "records duplicated"
    uncommitted = T.read(broker.bootstrap, out_tps, READ_UNCOMMITTED, ends)
    assert sum(map(len, uncommitted.values())) >= records + aborted_at_least

    in_ends = T.list_ends(admin, [("ctp-in", p) for p in range(partitions)], READ_UNCOMMITTED)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition("ctp-in", p) for p in range(partitions)], timeout=30)
    finally:
        c.close()
    assert {("ctp-in", tp.partition): tp.offset for tp in got} == in_ends


# ---------------------------------------------------------------------------
# 8. DescribeTransactions and ListTransactions.

def test_describe_and_list_transactions(broker, txn_java):
    topics = {"txadm": 2}
    T.create_topics(broker.bootstrap, topics)
    tid = "tx-admin"
    p = T.transactional_producer(broker.bootstrap, tid, **{"transaction.timeout.ms": 45000})
    d = T.describe_transactions(broker.port, [tid])[tid]
    assert (d.error, d.state, d.timeout_ms, d.partitions) == (0, "Empty", 45000, {}), d
    pid = d.producer_id
    assert pid >= 0

    p.begin_transaction()
    T.send(p, {("txadm", 0): ["a"], ("txadm", 1): ["b"]})
    d = T.describe_transactions(broker.port, [tid])[tid]
    assert (d.error, d.state, d.producer_id, d.partitions) == (0, "Ongoing", pid, {"txadm": [0, 1]}), d
    assert d.start_ms > 0
    error, unknown, listed = T.list_transactions(broker.port)
    assert (error, unknown, listed.get(tid)) == (0, [], (pid, "Ongoing")), listed
    error, unknown, listed = T.list_transactions(broker.port, states=["Ongoing", "NoSuchState"])
    assert (error, unknown) == (0, ["NoSuchState"]) and tid in listed, listed
    error, _, listed = T.list_transactions(broker.port, states=["CompleteCommit"])
    assert error == 0 and tid not in listed, listed
    error, _, listed = T.list_transactions(broker.port, producer_ids=[pid + 1000])
    assert error == 0 and tid not in listed, listed

    # Java's Admin sees the same (one JVM while the transaction is open).
    out = subprocess.run(["java", "-cp", txn_java, "TxnCheck", "transactions", broker.bootstrap, tid],
                         capture_output=True, text=True, timeout=90)
    lines = [l for l in out.stdout.splitlines() if not l.startswith("SLF4J")]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"LISTED {tid} Ongoing {pid}" in lines, lines
    described = [l.split() for l in lines if l.startswith("DESCRIBED")]
    assert len(described) == 1, lines
    _, got_id, state, timeout_ms, coordinator, partitions = described[0]
    assert (got_id, state, timeout_ms, partitions) == (tid, "Ongoing", "45000", "txadm-0,txadm-1"), lines
    assert int(coordinator) >= 0, lines

    p.commit_transaction(T.END_TIMEOUT_S)

    def complete():
        d = T.describe_transactions(broker.port, [tid])[tid]
        return d if d.state == "CompleteCommit" else None
    d = wait_for(complete, 20, "CompleteCommit")
    assert (d.error, d.producer_id, d.partitions) == (0, pid, {}), d
    error, _, listed = T.list_transactions(broker.port)
    assert listed.get(tid) == (pid, "CompleteCommit"), listed

    p.begin_transaction()
    T.send(p, {("txadm", 0): ["c"]})
    p.abort_transaction(T.END_TIMEOUT_S)
    d = wait_for(lambda: (lambda d: d if d.state == "CompleteAbort" else None)(
        T.describe_transactions(broker.port, [tid])[tid]), 20, "CompleteAbort")
    assert d.producer_id == pid

    # An id the coordinator has never seen.
    d = T.describe_transactions(broker.port, ["tx-never-used"])["tx-never-used"]
    assert d.error == TRANSACTIONAL_ID_NOT_FOUND, d


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
