"""Partition replication across real 3-node clusters (cluster.py): leader
kills under an acks=all load with a checker (chaos.py), ISR shrink and
rejoin, and what acks=all and acks=1 get with replicas down."""

import pathlib
import subprocess
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
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


# ----- operations: reassignment and leader elections -----

JAVA_DIR = pathlib.Path(__file__).parent / "java"


@pytest.fixture(scope="module")
def admin_java(tmp_path_factory):
    """AdminCheck.java compiled against Apache Kafka's Java client."""
    from test_java import classpath
    out = tmp_path_factory.mktemp("adminjava")
    cp = classpath()
    subprocess.run(["javac", "-cp", cp, "-d", str(out), str(JAVA_DIR / "AdminCheck.java")], check=True, timeout=180)
    return f"{cp}:{out}"


def admin_check(cp, bootstrap, *args):
    from test_java import run_java
    return run_java(cp, "AdminCheck", bootstrap, *map(str, args))


def partition_meta(cluster, i, topic, p=0):
    return cluster.metadata(i).topics[topic].partitions[p]


def produce_all(bootstrap, topic, values, partition):
    """acks=all, idempotent; returns {offset: value} of what was acknowledged."""
    acked = {}
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})

    def done(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(err)
    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=done)
    assert p.flush(60) == 0
    assert errors == []
    return acked


def read_all(bootstrap, topic, partition, count, timeout=60):
    """{offset: value} of the first `count` records, read from the leader."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.monotonic_ns()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    got = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got[m.offset()] = m.value()
    finally:
        c.close()
    return got


def test_reassignment_moves_partitions_between_brokers(cluster, admin_java):
    admin = cluster.admin(1)
    admin.create_topics([NewTopic("moving", 2, replica_assignment=[[1, 2], [1, 2]])])["moving"].result(30)
    cluster.wait_topic("moving", 2, timeout=30)
    acked = {p: produce_all(cluster.bootstrap, "moving", [b"a%d" % i for i in range(200)], p) for p in (0, 1)}
    # Broker 3 stopped: the replicas being added cannot catch up, so the
    # reassignments stay running where admins can list and cancel them.
    cluster.pause(3)
    cluster.wait_fenced(3)
    via = cluster.node(1).bootstrap
    try:
        # One JVM runs the admin calls in order; each prints its lines.
        out = admin_check(admin_java, via, "script", ";".join([
            "reassign moving 0 2,3", "reassign moving 1 1,3", "reassignments",
            "reassign moving 1 cancel", "reassign moving 1 cancel", "reassign moving 0 2,9"]))
        assert out[:2] == ["REASSIGN OK", "REASSIGN OK"], out
        listed = out[2:out.index("LISTED 2") + 1]
        assert "RUNNING moving-0 [2, 3, 1] [3] [1]" in listed, out
        assert "RUNNING moving-1 [1, 3, 2] [3] [2]" in listed, out
        after = out[out.index("LISTED 2") + 1:]
        assert after[0] == "REASSIGN OK", out
        assert after[1].startswith("REASSIGN ERROR NoReassignmentInProgressException"), out
        assert after[2].startswith("REASSIGN ERROR InvalidReplicaAssignmentException"), out
        # Still served while it runs.
        acked[0].update(produce_all(via, "moving", [b"b%d" % i for i in range(100)], 0))
    finally:
        cluster.resume(3)
    # Broker 3 catches up and joins the ISR; broker 1 leaves, so does its
    # leadership and its copy of the partition.
    cluster.wait_until(lambda: (lambda m: m.replicas == [2, 3] and sorted(m.isrs) == [2, 3] and m.leader in (2, 3))(
        partition_meta(cluster, 2, "moving", 0)), timeout=60, what="moving-0 on brokers 2 and 3")
    cluster.wait_until(lambda: not (cluster.node(1).data_dir / "moving-0").exists(), timeout=30,
                       what="broker 1 to delete its copy of moving-0")
    assert sorted(partition_meta(cluster, 1, "moving", 1).replicas) == [1, 2]
    assert admin_check(admin_java, cluster.bootstrap, "reassignments") == ["LISTED 0"]
    acked[0].update(produce_all(cluster.bootstrap, "moving", [b"c%d" % i for i in range(100)], 0))
    # Broker 3 holds everything: with broker 2 gone it leads with the
    # whole log.
    cluster.kill(2)
    cluster.wait_until(lambda: partition_meta(cluster, 3, "moving", 0).leader == 3, timeout=30,
                       what="broker 3 to lead moving-0")
    assert read_all(cluster.node(3).bootstrap, "moving", 0, len(acked[0])) == acked[0]


def test_preferred_leader_election_on_request(cluster, admin_java):
    from confluent_kafka import ElectionType
    admin = cluster.admin(1)
    admin.create_topics([NewTopic("pref", 1, replica_assignment=[[1, 2, 3]])])["pref"].result(30)
    cluster.wait_topic("pref", 1, timeout=30)
    acked = produce_all(cluster.bootstrap, "pref", [b"p%d" % i for i in range(100)], 0)
    cluster.stop(1)
    cluster.wait_until(lambda: partition_meta(cluster, 2, "pref").leader in (2, 3), timeout=30,
                       what="leadership to move off broker 1")
    cluster.start_node(1)
    cluster.wait_until(lambda: 1 in partition_meta(cluster, 2, "pref").isrs, timeout=60,
                       what="broker 1 back in the ISR")
    # auto.leader.rebalance.enable checks every 300 s by default: nothing
    # moved yet, so the admin asks.
    assert partition_meta(cluster, 2, "pref").leader != 1
    tp = TopicPartition("pref", 0)
    admin = cluster.admin(2)  # kept: the future needs its client alive
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(30)
    assert result[tp] is None, result
    cluster.wait_until(lambda: all(partition_meta(cluster, i, "pref").leader == 1 for i in (1, 2, 3)),
                       timeout=30, what="broker 1 to lead again everywhere")
    assert admin_check(admin_java, cluster.bootstrap, "elect", "preferred", "pref", 0)[0].startswith(
        "ELECT ERROR ElectionNotNeededException")
    acked.update(produce_all(cluster.bootstrap, "pref", [b"q%d" % i for i in range(100)], 0))
    assert read_all(cluster.node(1).bootstrap, "pref", 0, len(acked)) == acked


def test_leaders_return_to_preferred_replicas_by_themselves(tmp_path):
    c = Cluster(tmp_path / "cluster", n=3, extra={"leader.imbalance.check.interval.seconds": "1"})
    c.start()
    try:
        admin = c.admin(1)
        admin.create_topics([NewTopic("auto", 3, replica_assignment=[[1, 2, 3], [2, 3, 1], [3, 1, 2]])])["auto"].result(30)
        c.wait_topic("auto", 3, timeout=30)
        c.stop(1)
        c.wait_until(lambda: all(p.leader != 1 for p in c.metadata(2).topics["auto"].partitions.values()),
                     timeout=30, what="leadership to move off broker 1")
        c.start_node(1)
        c.wait_until(lambda: [p.leader for _, p in sorted(c.metadata(1).topics["auto"].partitions.items())] == [1, 2, 3],
                     timeout=60, what="every partition led by its first replica again")
    finally:
        c.close()
