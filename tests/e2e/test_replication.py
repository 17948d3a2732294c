"""Partition replication across real 3-node clusters (cluster.py): leader
kills under an acks=all load with a checker (chaos.py), ISR shrink and
rejoin, and what acks=all and acks=1 get with replicas down."""

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

import chaos
from cluster import Cluster

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", n=3, extra={"replica.lag.time.max.ms": "3000",
                                                   "group.initial.rebalance.delay.ms": "0"})
    print(f"cluster logs: {c.root}")
    c.start()
    yield c
    c.close()


def test_leader_kills_lose_nothing_acknowledged(cluster):
    problems, failovers, gap = chaos.run(cluster, cycles=3)
    assert problems == []
    assert len(failovers) == 3
    print(f"failover ms: {[round(f * 1000) for f in failovers]}; longest ack gap {gap * 1000:.0f} ms")


def produce_one(bootstrap, topic, acks, timeout=20):
    """One record; returns the delivery error (None when acknowledged)."""
    result = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": str(acks), "message.timeout.ms": timeout * 1000,
                  "retries": 0})
    p.produce(topic, b"x", on_delivery=lambda err, msg: result.append(err))
    p.flush(timeout + 10)
    assert result, "no delivery report"
    return result[0]


def test_a_paused_follower_leaves_the_isr_and_rejoins(cluster):
    admin = cluster.admin(1)
    admin.create_topics([NewTopic("lag", 1, 3, config={"min.insync.replicas": "2"})])["lag"].result(30)
    cluster.wait_topic("lag", 1, timeout=30)
    pm = cluster.metadata(1).topics["lag"].partitions[0]
    leader = pm.leader
    follower = next(r for r in pm.replicas if r != leader)
    cluster.pause(follower)
    try:
        # acks=all goes on with two of three once the ISR shrinks.
        assert produce_one(cluster.node(leader).bootstrap, "lag", "all", timeout=30) is None
        isr = cluster.wait_until(lambda: (lambda i: i if follower not in i else None)(
            cluster.metadata(leader).topics["lag"].partitions[0].isrs), timeout=30, what="the ISR to shrink")
        assert leader in isr and follower not in isr
    finally:
        cluster.resume(follower)
    cluster.wait_until(lambda: follower in cluster.metadata(leader).topics["lag"].partitions[0].isrs,
                       timeout=30, what="the follower back in the ISR")


def test_two_brokers_down_refuse_acks_all_and_serve_acks_1(cluster):
    admin = cluster.admin(1)
    admin.create_topics([NewTopic("few", 1, 3, config={"min.insync.replicas": "2"})])["few"].result(30)
    cluster.wait_topic("few", 1, timeout=30)
    assert produce_one(cluster.bootstrap, "few", "all") is None
    leader = cluster.metadata(1).topics["few"].partitions[0].leader
    others = [i for i in (1, 2, 3) if i != leader]
    # Pausing keeps the two voters down without losing the leader's quorum
    # role for good; the leader's ISR shrinks to itself.
    for i in others:
        cluster.pause(i)
    try:
        def shrunk():
            try:
                return produce_one(cluster.node(leader).bootstrap, "few", 1, timeout=10) is None
            except Exception:
                return False
        cluster.wait_until(shrunk, timeout=60, what="acks=1 to be served")
        err = produce_one(cluster.node(leader).bootstrap, "few", "all", timeout=10)
        assert err is not None and err.name() in ("NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                                                  "REQUEST_TIMED_OUT", "_MSG_TIMED_OUT"), err
    finally:
        for i in others:
            cluster.resume(i)


def test_committed_offsets_survive_a_coordinator_kill(cluster):
    from confluent_kafka import Consumer, TopicPartition
    from cluster import find_coordinator
    admin = cluster.admin(1)
    admin.create_topics([NewTopic("gc", 1, 3)])["gc"].result(30)
    cluster.wait_topic("gc", 1, timeout=30)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("gc", b"m%d" % i)
    assert p.flush(30) == 0

    def coordinator(port):
        error, node, _, _ = find_coordinator(port, "gcg")
        return node if error == 0 else None
    first = cluster.wait_until(lambda: coordinator(cluster.node(1).port), timeout=30, what="a coordinator")
    settings = {"bootstrap.servers": cluster.bootstrap, "group.id": "gcg", "auto.offset.reset": "earliest",
                "enable.auto.commit": False}
    c = Consumer(settings)
    c.subscribe(["gc"])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 60 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) >= 60
    c.commit(offsets=[TopicPartition("gc", 0, 60)], asynchronous=False)
    c.close()

    cluster.kill(first)
    survivor = next(n for n in cluster.live_brokers() if n.id != first)
    second = cluster.wait_until(lambda: (lambda n: n if n not in (None, first) else None)(coordinator(survivor.port)),
                                timeout=60, what="a new coordinator")
    assert second != first
    survivors = ",".join(n.bootstrap for n in cluster.live_brokers() if n.id != first)
    c = Consumer(dict(settings, **{"bootstrap.servers": survivors}))
    try:
        committed = cluster.wait_until(
            lambda: (lambda o: o if o >= 0 else None)(c.committed([TopicPartition("gc", 0)], timeout=5)[0].offset),
            timeout=60, what="the committed offset from the new coordinator")
        assert committed == 60
    finally:
        c.close()
