"""A disk error (a full filesystem) fails the partition with
KAFKA_STORAGE_ERROR; acknowledged data stays readable and the broker and
its other connections keep running."""

import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING

from conftest import Broker


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_gives_storage_error(small_fs):
    broker = Broker(small_fs / "data").start()
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                             "retries": 0, "message.timeout.ms": 20000})
        reports = []
        for i in range(60):
            producer.produce("full", value=bytes([65 + i % 26]) * 100_000, partition=0,
                             on_delivery=lambda e, m: reports.append((e, m)))
            producer.flush(20)
        ok = [m for e, m in reports if e is None]
        failed = [e for e, m in reports if e is not None]
        assert ok, "some messages fit on the disk"
        assert failed, "the disk filled up"
        assert all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in failed), failed[:3]
        assert broker.alive()
        # Acknowledged messages are readable, intact.
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
        c.assign([TopicPartition("full", 0, OFFSET_BEGINNING)])
        got = []
        for _ in range(100):
            for m in c.consume(100, 0.2):
                assert not m.error(), m.error()
                got.append(m)
            if len(got) >= len(ok):
                break
        c.close()
        assert [m.offset() for m in got] == [m.offset() for m in ok]
        assert all(len(m.value()) == 100_000 for m in got)
        # Metadata and other requests still work.
        from confluent_kafka.admin import AdminClient
        assert "full" in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics
    finally:
        broker.kill9()
