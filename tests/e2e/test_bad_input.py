"""Bad input over raw sockets: an error code or a closed connection, never
a crash or a hang; other connections keep working."""

import os
import socket
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_wire import (Reader, connect, fetch_v4, fetch_v4_error, is_closed, metadata_v1,
                        metadata_v1_topic_errors, produce_v3, produce_v3_error, read_response,
                        record_batch, request)


def api_versions(sock, version=0, correlation_id=7):
    sock.sendall(request(18, version, correlation_id, b""))
    return read_response(sock)


@pytest.mark.parametrize("payload", [
    struct.pack(">i", 2**31 - 1) + b"\x00" * 16,
    struct.pack(">i", 200 * 1024 * 1024) + b"\x00" * 16,
    struct.pack(">i", -5),
    os.urandom(4096),
    b"\xff" * 64,
    struct.pack(">i", 10) + struct.pack(">hhi", 999, 0, 1) + b"\x00\x00",  # unknown API key
    struct.pack(">i", 2) + b"\x00\x03",  # frame shorter than a header
])
def test_garbage_closes_only_that_connection(broker, payload):
    bystander = connect(broker.port)
    api_versions(bystander)
    s = connect(broker.port)
    s.sendall(payload)
    assert is_closed(s), "connection should be closed"
    s.close()
    # The bystander and new connections still work.
    assert struct.unpack(">i", api_versions(bystander, correlation_id=8)[:4])[0] == 8
    fresh = connect(broker.port)
    assert struct.unpack(">i", api_versions(fresh, correlation_id=9)[:4])[0] == 9
    assert broker.alive()


def test_produce_to_the_offsets_topic_is_refused(broker):
    # Only the group coordinator writes __consumer_offsets (Kafka answers
    # clients INVALID_TOPIC_EXCEPTION); its records are replayed at start.
    s = connect(broker.port)
    s.sendall(request(0, 3, 1, produce_v3("__consumer_offsets", 0, record_batch([b"x"]))))
    assert produce_v3_error(read_response(s)) == 17
    api_versions(s)


def test_truncated_frame_then_close(broker):
    s = connect(broker.port)
    s.sendall(struct.pack(">i", 100) + b"\x00" * 10)
    s.shutdown(socket.SHUT_WR)
    assert is_closed(s)
    fresh = connect(broker.port)
    api_versions(fresh)


def test_too_new_api_versions_gets_v0_fallback(broker):
    s = connect(broker.port)
    s.sendall(request(18, 99, 42, b""))
    r = Reader(read_response(s))
    assert r.take(">i") == 42
    assert r.take(">h") == 35  # UNSUPPORTED_VERSION
    apis = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">hhh")
        apis[key] = (low, high)
    assert apis[18][1] >= 3 and 0 in apis and 1 in apis
    # The connection stays usable with a supported version.
    assert struct.unpack(">i", api_versions(s, 0, 43)[:4])[0] == 43


def test_unsupported_version_of_another_api(broker):
    s = connect(broker.port)
    s.sendall(request(0, 99, 5, b""))  # Produce v99
    # Either an error response then close, or a close.
    assert is_closed(s)
    api_versions(connect(broker.port))


def test_bad_crc_and_oversize_batches(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("raw", 1, 1, config={"max.message.bytes": "2000"})])["raw"].result(30)
    s = connect(broker.port)
    good = record_batch([b"hello", b"world"])
    s.sendall(request(0, 3, 1, produce_v3("raw", 0, good)))
    assert produce_v3_error(read_response(s)) == 0

    bad = bytearray(good)
    bad[-3] ^= 0x55
    s.sendall(request(0, 3, 2, produce_v3("raw", 0, bytes(bad))))
    assert produce_v3_error(read_response(s)) == 2  # CORRUPT_MESSAGE

    big = record_batch([b"x" * 5000])
    s.sendall(request(0, 3, 3, produce_v3("raw", 0, big)))
    assert produce_v3_error(read_response(s)) == 10  # MESSAGE_TOO_LARGE

    truncated = good[:-7]
    s.sendall(request(0, 3, 4, produce_v3("raw", 0, truncated)))
    assert produce_v3_error(read_response(s)) == 2

    s.sendall(request(0, 3, 5, produce_v3("raw", 0, b"\x00" * 80)))
    assert produce_v3_error(read_response(s)) == 2

    # acks other than -1, 0, 1: INVALID_REQUIRED_ACKS, nothing appended.
    s.sendall(request(0, 3, 50, produce_v3("raw", 0, good, acks=2)))
    assert produce_v3_error(read_response(s)) == 21

    s.sendall(request(1, 4, 6, fetch_v4("raw", 0, 1000)))
    assert fetch_v4_error(read_response(s)) == 1  # OFFSET_OUT_OF_RANGE

    s.sendall(request(1, 4, 7, fetch_v4("raw", 9, 0)))
    assert fetch_v4_error(read_response(s)) == 3  # UNKNOWN_TOPIC_OR_PARTITION

    s.sendall(request(3, 1, 8, metadata_v1(["bad/name", "ok-auto"])))
    errors = metadata_v1_topic_errors(read_response(s))
    assert errors == {"bad/name": 17, "ok-auto": 0}

    # Only the good batch is in the log, and clients read it normally.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("raw", 0, OFFSET_BEGINNING)])
    values = []
    try:
        for _ in range(40):
            m = consumer.poll(0.25)
            if m is not None and not m.error():
                values.append(m.value())
            if len(values) == 2:
                break
    finally:
        consumer.close()
    assert values == [b"hello", b"world"]
    watcher = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "u", "enable.auto.commit": False})
    low, high = watcher.get_watermark_offsets(TopicPartition("raw", 0), timeout=10)
    watcher.close()
    assert (low, high) == (0, 2)


def test_many_bad_connections_then_normal_traffic(broker):
    for i in range(50):
        s = connect(broker.port, timeout=5)
        s.sendall(os.urandom(64 + i))
        s.close()
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("after-garbage", value=b"fine")
    assert p.flush(30) == 0
    assert broker.alive()


@pytest.mark.parametrize("api,version,body", [
    # Metadata v1 declaring two billion topics in a few bytes.
    (3, 1, struct.pack(">i", 2**31 - 1) + b"\x00\x01a"),
    # Produce v3: huge topic array.
    (0, 3, struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 2**31 - 1)),
    # Produce v3: one topic, huge record bytes length.
    (0, 3, struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + b"\x00\x01t" + struct.pack(">ii", 1, 0) + struct.pack(">i", 2**31 - 1)),
    # CreateTopics v2: huge topic array.
    (19, 2, struct.pack(">i", 2**31 - 2)),
    # Fetch v4: huge topic array.
    (1, 4, struct.pack(">iiiib", -1, 0, 1, 1000, 0) + struct.pack(">i", 2**31 - 1)),
])
def test_huge_declared_counts_do_not_crash(broker, api, version, body):
    s = connect(broker.port)
    s.sendall(request(api, version, 1, body))
    assert is_closed(s)
    assert broker.alive()
    assert struct.unpack(">i", api_versions(connect(broker.port), correlation_id=3)[:4])[0] == 3
