"""confluent-kafka (librdkafka) producer, consumer and AdminClient."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    client = admin(broker)
    client.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)


def consume_all(broker, topic, partitions, expected, timeout=90, extra=None):
    """Reads `expected` messages from all partitions from the beginning."""
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "unused",
            "enable.auto.commit": False, "enable.partition.eof": False}
    conf.update(extra or {})
    consumer = Consumer(conf)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
    finally:
        consumer.close()
    return out


def produce(broker, topic, messages, conf=None):
    """Produces (key, value, headers, partition) tuples; returns delivery reports."""
    settings = {"bootstrap.servers": broker.bootstrap, "linger.ms": 5}
    settings.update(conf or {})
    producer = Producer(settings)
    reports = []

    def report(err, msg):
        reports.append((err, msg))

    for key, value, headers, partition in messages:
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return reports


def test_100k_keyed_messages_with_headers_8_partitions(broker):
    create(broker, "bulk", 8)
    n = 100_000
    msgs = [(f"key-{i % 997}".encode(), f"{i}".encode(), [("seq", str(i).encode()), ("h2", b"x")], None)
            for i in range(n)]
    reports = produce(broker, "bulk", msgs, {"acks": "all"})
    assert len(reports) == n
    assert all(err is None for err, _ in reports)
    partition_of_key = {}
    for _, m in reports:
        assert partition_of_key.setdefault(m.key(), m.partition()) == m.partition()
    got = consume_all(broker, "bulk", 8, n)
    assert len(got) == n
    values = sorted(int(m.value()) for m in got)
    assert values == list(range(n)), "every message exactly once"
    by_partition = {}
    for m in got:
        by_partition.setdefault(m.partition(), []).append(m)
    assert len(by_partition) == 8
    for p, ms in by_partition.items():
        offsets = [m.offset() for m in ms]
        assert offsets == list(range(len(ms))), f"partition {p} offsets contiguous"
        seqs = [int(m.value()) for m in ms]
        assert seqs == sorted(seqs), f"partition {p} in produce order"
        for m in ms:
            assert partition_of_key[m.key()] == p
            assert dict(m.headers()) == {"seq": m.value(), "h2": b"x"}


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, codec):
    topic = f"c-{codec}"
    create(broker, topic, 2)
    msgs = [(str(i).encode(), (f"{codec} value {i} " * 20).encode(), None, None) for i in range(2000)]
    reports = produce(broker, topic, msgs, {"compression.type": codec, "acks": "all"})
    assert all(err is None for err, _ in reports)
    got = consume_all(broker, topic, 2, 2000)
    assert sorted(m.value() for m in got) == sorted(v for _, v, _, _ in msgs)


def test_idempotent_producer(broker):
    create(broker, "idem", 3)
    msgs = [(str(i).encode(), str(i).encode(), None, None) for i in range(5000)]
    reports = produce(broker, "idem", msgs, {"enable.idempotence": True, "acks": "all",
                                             "max.in.flight.requests.per.connection": 5})
    assert all(err is None for err, _ in reports)
    got = consume_all(broker, "idem", 3, 5000)
    assert len(got) == 5000
    assert sorted(int(m.value()) for m in got) == list(range(5000))


def test_acks_0_and_1(broker):
    create(broker, "acks", 1)
    produce(broker, "acks", [(None, b"a1-%d" % i, None, None) for i in range(100)], {"acks": 1})
    produce(broker, "acks", [(None, b"a0-%d" % i, None, None) for i in range(100)], {"acks": 0})
    got = consume_all(broker, "acks", 1, 200)
    assert [m.value() for m in got] == [b"a1-%d" % i for i in range(100)] + [b"a0-%d" % i for i in range(100)]


def test_min_insync_replicas_refuses_acks_all(broker):
    """One replica in sync, min.insync.replicas=2: acks=all is refused with
    NOT_ENOUGH_REPLICAS before anything is appended; acks=1 is served."""
    create(broker, "misr", 1, {"min.insync.replicas": "2"})
    reports = produce(broker, "misr", [(None, b"all", None, None)],
                      {"acks": "all", "message.timeout.ms": 3000, "retries": 0})
    err = reports[0][0]
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    reports = produce(broker, "misr", [(None, b"one", None, None)], {"acks": 1})
    assert reports[0][0] is None and reports[0][1].offset() == 0
    assert [m.value() for m in consume_all(broker, "misr", 1, 1)] == [b"one"]


def test_offsets_for_times_and_watermarks(broker):
    create(broker, "times", 1)
    base = 1_700_000_000_000
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(100):
        producer.produce("times", value=b"%d" % i, timestamp=base + i * 1000)
        if i % 10 == 9:
            producer.flush(10)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        found = consumer.offsets_for_times([TopicPartition("times", 0, base + 42_500)], timeout=10)
        assert found[0].offset == 43
        found = consumer.offsets_for_times([TopicPartition("times", 0, base)], timeout=10)
        assert found[0].offset == 0
        found = consumer.offsets_for_times([TopicPartition("times", 0, base + 10**9)], timeout=10)
        assert found[0].offset in (-1, 100)  # no such record: end (-1 on the wire)
        low, high = consumer.get_watermark_offsets(TopicPartition("times", 0), timeout=10)
        assert (low, high) == (0, 100)
    finally:
        consumer.close()


def test_out_of_range_offset_is_reported(broker):
    create(broker, "oor", 1)
    produce(broker, "oor", [(None, b"x", None, None)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "auto.offset.reset": "error"})
    consumer.assign([TopicPartition("oor", 0, 50)])
    try:
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error():
                error = m.error()
        assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET, error
    finally:
        consumer.close()


def test_admin_topics_partitions_configs(broker):
    a = admin(broker)
    # validate_only creates nothing.
    a.create_topics([NewTopic("vo", 3, 1)], validate_only=True)["vo"].result(30)
    assert "vo" not in a.list_topics(timeout=10).topics
    # Per-topic config at creation, visible in describe_configs.
    a.create_topics([NewTopic("cfg", 2, 1, config={"retention.ms": "123456", "cleanup.policy": "delete"})])["cfg"].result(30)
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    configs = a.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == ConfigResource.Type.TOPIC or configs["retention.ms"].source == 1
    assert configs["segment.bytes"].value == "1073741824"
    # Incremental alter.
    alter = ConfigResource(ConfigResource.Type.TOPIC, "cfg", incremental_configs=[
        ConfigEntry("retention.ms", "999", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([alter])[alter].result(30)
    configs = a.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "999"
    # Broker configs.
    broker_res = ConfigResource(ConfigResource.Type.BROKER, "0")
    bconf = a.describe_configs([broker_res])[broker_res].result(30)
    assert bconf["num.partitions"].value == "1"
    assert bconf["log.dirs"].value == str(broker.data_dir)
    # Create partitions: grow, then produce to the new partition.
    a.create_partitions([NewPartitions("cfg", 5)])["cfg"].result(30)
    md = a.list_topics(timeout=10)
    assert len(md.topics["cfg"].partitions) == 5
    reports = produce(broker, "cfg", [(None, b"new", None, 4)])
    assert reports[0][0] is None and reports[0][1].partition() == 4
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("cfg", 3)])["cfg"].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    # Delete.
    a.delete_topics(["cfg"])["cfg"].result(30)
    deadline = time.monotonic() + 10
    while "cfg" in a.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cfg" not in a.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["cfg"])["cfg"].result(30)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize("topic,kwargs,code", [
    ("bad/name", {}, KafkaError.TOPIC_EXCEPTION),
    ("x" * 300, {}, KafkaError.TOPIC_EXCEPTION),
    ("rf3", {"replication_factor": 3}, KafkaError.INVALID_REPLICATION_FACTOR),
    ("p0", {"num_partitions": 0}, KafkaError.INVALID_PARTITIONS),
    ("badcfg", {"config": {"retention.ms": "soon"}}, KafkaError.INVALID_CONFIG),
    ("unknowncfg", {"config": {"no.such.config": "1"}}, KafkaError.INVALID_CONFIG),
])
def test_admin_error_codes(broker, topic, kwargs, code):
    args = {"num_partitions": 1, "replication_factor": 1}
    args.update({k: v for k, v in kwargs.items() if k != "config"})
    t = NewTopic(topic, args["num_partitions"], args["replication_factor"], config=kwargs.get("config", {}))
    client = admin(broker)
    with pytest.raises(KafkaException) as e:
        client.create_topics([t])[topic].result(30)
    assert e.value.args[0].code() == code


def test_duplicate_topic(broker):
    create(broker, "dup", 1)
    with pytest.raises(KafkaException) as e:
        create(broker, "dup", 1)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_message_too_large(broker):
    create(broker, "small", 1, {"max.message.bytes": "10000"})
    reports = produce(broker, "small", [(None, b"y" * 20000, None, None)],
                      {"compression.type": "none", "message.max.bytes": 1000000})
    err = reports[0][0]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # Small messages still go through.
    reports = produce(broker, "small", [(None, b"ok", None, None)])
    assert reports[0][0] is None


def test_long_poll_wakes_on_data(broker):
    create(broker, "poll", 1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    consumer.assign([TopicPartition("poll", 0, OFFSET_BEGINNING)])
    try:
        consumer.poll(1.0)  # the consumer is now parked in a long poll
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        producer.produce("poll", value=b"wake")
        producer.flush(10)
        sent = time.monotonic()
        msg = None
        while msg is None and time.monotonic() - sent < 20:
            msg = consumer.poll(0.1)
        assert msg is not None and msg.value() == b"wake"
    finally:
        consumer.close()
