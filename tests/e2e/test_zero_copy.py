"""Fetch sends record bytes from the segment files with sendfile: the bytes
clients receive are the file's bytes, and the broker's zero-copy counter
covers them."""

import re

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING

from kafka_wire import connect, fetch_v4, read_response, request


def test_fetch_bytes_come_from_the_segment_file(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(2000):
        p.produce("zc", value=b"zero-copy %06d " % i + b"z" * 200, partition=0)
    assert p.flush(30) == 0
    segment = sorted((broker.data_dir / "zc-0").glob("*.log"))[0]
    on_disk = segment.read_bytes()

    # A raw Fetch v4 from offset 0: the records field must be exactly the
    # file's bytes (base offsets stamped, nothing re-encoded).
    s = connect(broker.port)
    s.sendall(request(1, 4, 1, fetch_v4("zc", 0, 0)))
    response = read_response(s)
    assert on_disk[: min(len(on_disk), 1 << 20)] in response

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "zc", "enable.auto.commit": False})
    c.assign([TopicPartition("zc", 0, OFFSET_BEGINNING)])
    got = 0
    for _ in range(200):
        got += len([m for m in c.consume(1000, 0.2) if not m.error()])
        if got >= 2000:
            break
    c.close()
    assert got == 2000
    assert broker.stop() == 0
    sent = sum(int(n) for n in re.findall(r"(\d+) bytes sent zero-copy", broker.log()))
    assert sent >= 2 * len(on_disk), (sent, len(on_disk))
