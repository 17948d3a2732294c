"""--shards 2: partitions on both shards, connections landing on either."""

import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from test_confluent import consume_all


def test_many_connections_many_partitions(broker_factory):
    broker = broker_factory(shards=2)  # cross-shard paths whatever RINGBROKER_TEST_SHARDS says
    assert broker.shards == 2
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("spread", 8, 1)])["spread"].result(30)
    producers = 8
    per_producer = 2000
    errors = []

    def run(n):
        # Each producer has its own connections, so the kernel spreads them
        # over both shards' listeners; every producer writes to every partition.
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1})
        for i in range(per_producer):
            p.produce("spread", value=b"%d-%d" % (n, i), partition=i % 8,
                      on_delivery=lambda err, msg: err and errors.append(err))
            p.poll(0)
        if p.flush(60) != 0:
            errors.append("flush timeout")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    got = consume_all(broker, "spread", 8, producers * per_producer)
    assert sorted(m.value() for m in got) == sorted(b"%d-%d" % (n, i) for n in range(producers) for i in range(per_producer))
    # Per producer, per partition order is kept.
    for n in range(producers):
        for p in range(8):
            seq = [int(m.value().split(b"-")[1]) for m in got if m.partition() == p and m.value().startswith(b"%d-" % n)]
            assert seq == sorted(seq)
    # Metadata agrees on every connection.
    for _ in range(10):
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert len(md.topics["spread"].partitions) == 8
    for p in range(8):
        assert (broker.data_dir / f"spread-{p}").is_dir()
    log = broker.log()
    # Both shards served connections (printed at shutdown).
    broker.stop()
    shard_lines = [l for l in broker.log().splitlines() if ": stopped (" in l]
    assert len(shard_lines) == 2
    assert all(" 0 connections" not in l for l in shard_lines), shard_lines
