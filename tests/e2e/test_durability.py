"""kill -9 mid-stream: every acknowledged (acks=all) message survives at its
offset, nothing corrupt is served, producing continues. Damaged segment
tails are truncated on restart."""

import os
import pathlib
import threading
import time

import pytest

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic


def read_all(broker, topic, partitions, timeout=60):
    """Reads every partition up to its high watermark; fails on any error."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "check.crcs": True})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = {}
    eof = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < partitions and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                        continue
                    raise KafkaException(m.error())
                eof.discard(m.partition())
                out[(m.partition(), m.offset())] = m.value()
    finally:
        consumer.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return out


def stream_until_killed(broker, topic, acked, stop_after):
    """Produces with acks=all until the broker dies; records acknowledged messages."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 2,
                         "message.timeout.ms": 10000, "retries": 3})
    lock = threading.Lock()

    def report(err, msg):
        if err is None:
            with lock:
                acked[(msg.partition(), msg.offset())] = msg.value()

    i = 0
    killed = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            producer.produce(topic, key=b"%d" % (i % 13), value=b"msg-%08d" % i, on_delivery=report)
            i += 1
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
        if not killed and len(acked) >= stop_after:
            broker.kill9()  # mid-stream: more messages are in flight
            killed = True
            break
    producer.flush(15)  # delivery reports for in-flight messages fail now
    assert killed, "never reached the kill point"
    return i


@pytest.mark.parametrize("write_mode,sync_scope",
                         [("buffered", "partition"), ("direct", "partition"), ("buffered", "filesystem")])
def test_kill9_keeps_every_acknowledged_message(broker_factory, write_mode, sync_scope):
    """Both write modes and both sync scopes; small segments so kills land
    around rolls too (in direct mode a segment is cut to its data when sealed)."""
    try:
        broker = broker_factory(extra_args=["--override", f"ringbroker.log.write.mode={write_mode}",
                                            "--override", f"ringbroker.log.sync.scope={sync_scope}"])
    except RuntimeError as e:
        # The broker refuses direct mode at start on a filesystem without
        # O_DIRECT (its start-up probe); that refusal is the tested behaviour there.
        if write_mode == "direct" and "does not take O_DIRECT writes" in str(e):
            pytest.skip("the test directory's filesystem has no O_DIRECT")
        raise
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("durable", 4, 1, config={"segment.bytes": "16384"})])["durable"].result(30)
    acked = {}
    for cycle in range(3):
        before = dict(acked)
        stream_until_killed(broker, "durable", acked, stop_after=len(acked) + 3000)
        broker.start()
        stored = read_all(broker, "durable", 4)
        for key, value in acked.items():
            assert stored.get(key) == value, f"cycle {cycle}: acknowledged {key} lost or changed"
        for p in range(4):
            offsets = sorted(o for (q, o) in stored if q == p)
            assert offsets == list(range(len(offsets))), f"partition {p} has gaps"
        assert len(acked) > len(before)
    # Producing continues after the last restart, after the old data.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    results = []
    producer.produce("durable", value=b"after", partition=0, on_delivery=lambda e, m: results.append((e, m)))
    producer.flush(30)
    err, msg = results[0]
    assert err is None
    assert msg.offset() >= max(o for (p, o) in acked if p == 0) + 1
    # Sealed segments hold only whole batches: no padding or preallocated
    # space survives a roll.
    broker.stop()
    for p in range(4):
        for seg in segment_files(broker.data_dir, "durable", p):
            data = seg.read_bytes()
            assert not data.endswith(b"\0" * 64), f"{seg} ends in zeros"


def segment_files(data_dir, topic, partition):
    return sorted(pathlib.Path(data_dir, f"{topic}-{partition}").glob("*.log"))


def test_torn_and_corrupt_tails_are_truncated(broker_factory):
    broker = broker_factory()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(50):
        producer.produce("torn", value=b"value-%03d" % i)
        producer.flush(10)  # one batch per message
    assert broker.stop() == 0

    log = segment_files(broker.data_dir, "torn", 0)[-1]
    size = log.stat().st_size
    # Flip a byte in the middle of the last batch and append zeros and garbage.
    with open(log, "r+b") as f:
        f.seek(size - 5)
        b = f.read(1)
        f.seek(size - 5)
        f.write(bytes([b[0] ^ 0xFF]))
        f.seek(size)
        f.write(b"\0" * 4096 + os.urandom(1000))
    broker.start()
    stored = read_all(broker, "torn", 1)
    assert sorted(stored) == [(0, o) for o in range(49)]
    assert all(stored[(0, o)] == b"value-%03d" % o for o in range(49))
    assert log.stat().st_size < size
    # New produce continues right after the last intact batch.
    results = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce("torn", value=b"new", on_delivery=lambda e, m: results.append((e, m)))
    producer.flush(30)
    assert results[0][0] is None and results[0][1].offset() == 49
    # And after a clean restart everything is still there.
    assert broker.stop() == 0
    broker.start()
    stored = read_all(broker, "torn", 1)
    assert stored[(0, 49)] == b"new" and len(stored) == 50
