"""Segment roll by size, Kafka's on-disk layout, retention by size and time,
and topic metadata surviving a restart."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from conftest import wait_until


def watermarks(broker, topic, partition=0):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def fill(broker, topic, count, size=500):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(count):
        p.produce(topic, value=b"%06d" % i + b"x" * size, partition=0)
        p.poll(0)
    assert p.flush(30) == 0


def test_roll_layout_and_size_retention(broker_factory):
    broker = broker_factory(extra_args=["--override", "log.retention.check.interval.ms=1000"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("rolls", 1, 1, config={
        "segment.bytes": "16384", "retention.bytes": "40000", "index.interval.bytes": "1024"})])["rolls"].result(30)
    fill(broker, "rolls", 300)
    part = broker.data_dir / "rolls-0"
    bound = 40000 + 16384 + 1024

    # Retention runs in the background and deletes files after advancing the
    # log start offset: wait until it has settled, i.e. about retention.bytes
    # of the newest segments remain and the oldest remaining segment starts
    # at the log start offset.
    def settled():
        low, high = watermarks(broker, "rolls")
        logs = sorted(part.glob("*.log"))
        try:
            size = sum(l.stat().st_size for l in logs)
        except FileNotFoundError:  # deleted while listing
            return None
        if low > 0 and logs and int(logs[0].stem) == low and size <= bound:
            return low, high, logs
        return None

    low, high, logs = wait_until(settled, timeout=30, message="size retention to settle")
    assert high == 300 and 0 < low < 300
    assert len(logs) >= 2
    names = [l.name for l in logs]
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    # Sealed segments have Kafka index files with entries.
    assert (part / (logs[0].stem + ".index")).stat().st_size % 8 == 0
    assert (part / (logs[0].stem + ".index")).stat().st_size > 0
    assert (part / (logs[0].stem + ".timeindex")).stat().st_size % 12 == 0
    # Everything from the log start offset reads back in order.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    c.assign([TopicPartition("rolls", 0, low)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < high - low and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            assert not m.error()
            seen.append(int(m.value()[:6]))
    c.close()
    assert seen == list(range(low, high))


def test_time_retention_and_persistent_metadata(broker_factory):
    broker = broker_factory(extra_args=["--override", "log.retention.check.interval.ms=1000"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("aging", 1, 1, config={"segment.bytes": "4096"})])["aging"].result(30)
    # Old timestamps: retention.ms counts from the records' timestamps.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    old = int(time.time() * 1000) - 3_600_000
    for i in range(40):
        p.produce("aging", value=b"x" * 400, timestamp=old + i, partition=0)
        p.flush(10)
    assert watermarks(broker, "aging") == (0, 40)
    inc = ConfigResource(ConfigResource.Type.TOPIC, "aging", incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([inc])[inc].result(30)
    low, high = wait_until(lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, "aging")),
                           timeout=20, message="time retention")
    assert high == 40 and low > 0
    # Topic, partitions and configs survive a restart.
    assert broker.stop() == 0
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    d = ConfigResource(ConfigResource.Type.TOPIC, "aging")
    configs = admin.describe_configs([d])[d].result(30)
    assert configs["retention.ms"].value == "60000"
    assert configs["segment.bytes"].value == "4096"
    assert watermarks(broker, "aging") == (low, 40)
