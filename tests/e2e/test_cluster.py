"""Several ringbroker processes as one KRaft-style cluster (cluster.py).

Tests that only read or add topics share one 3-node cluster (module
fixture); tests that kill, stop or pause nodes start their own. Every node
runs with broker.heartbeat.interval.ms=500 and broker.session.timeout.ms=3000.
Requests that must reach one particular broker are hand-built (cluster.py);
the real clients are bootstrapped with a single broker that does not lead
the partition they use.

Until replication lands followers hold no data: data is only checked on
replication factor 1 topics or on leaders that did not change.
"""

import base64
import collections
import itertools
import json
import pathlib
import subprocess
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from cluster import (INVALID_REPLICATION_FACTOR, LEADER_NOT_AVAILABLE, NONE, NOT_LEADER_OR_FOLLOWER,
                     TOPIC_ALREADY_EXISTS, TOPIC_RESOURCE, COORDINATOR_NOT_AVAILABLE, Cluster, Not,
                     create_partitions, create_topic, create_topics, delete_topics, describe_cluster,
                     describe_configs, fetch_error, find_coordinator, incremental_alter_configs,
                     list_offsets, metadata, produce)

JAVA_DIR = pathlib.Path(__file__).parent / "java"

# Every node: no initial rebalance delay (groups form at once).
FAST = {"group.initial.rebalance.delay.ms": "0"}
# How long other brokers may take to show a change the answering broker made.
PROPAGATION = 10
# Controller elections, fencing after the 3 s session timeout, restarts.
FAULT = 30


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("shared-cluster"), n=3, extra=FAST)
    c.start()
    yield c
    c.close()


@pytest.fixture
def logs(request):
    """Prints where the shared cluster's logs are (shown when a test fails)."""
    if "shared" in request.fixturenames:
        print(f"cluster logs: {request.getfixturevalue('shared').root}")


@pytest.fixture
def make_cluster(tmp_path):
    made = []

    def make(start=True, **kwargs):
        kwargs.setdefault("extra", FAST)
        c = Cluster(tmp_path / f"cluster{len(made)}", **kwargs)
        made.append(c)
        print(f"cluster logs: {c.root}")
        return c.start() if start else c

    yield make
    for c in made:
        c.close()


# Every wait is bounded, but a broken cluster can add them up past the
# ini's 300 s (which ends the whole run): a larger cap per test.
pytestmark = [pytest.mark.usefixtures("logs"), pytest.mark.timeout(480)]


def expected_brokers(c):
    return {n.id: ("127.0.0.1", n.port) for n in c.brokers()}


def group_partition(group, partitions):
    """Kafka's __consumer_offsets partition of a group: Java's
    String.hashCode, made non-negative, modulo the partition count."""
    h = 0
    units = group.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


def coordinator(c, group, via):
    """(node_id, host, port) of the group's coordinator as named by node
    `via`, retrying COORDINATOR_NOT_AVAILABLE (__consumer_offsets is being
    created); any other error fails."""
    def found():
        err, node_id, host, port = find_coordinator(via.port, group)
        if err == COORDINATOR_NOT_AVAILABLE:
            return Not("COORDINATOR_NOT_AVAILABLE")
        assert err == NONE, f"FindCoordinator error {err} from node {via.id}"
        return node_id, host, port
    return c.wait_until(found, FAULT, f"node {via.id} to name the coordinator of {group!r}")


def consume(bootstrap, topic, partitions, count, timeout=60, conf=None, subscribe=False):
    """Reads `count` messages (assigned from the beginning, or subscribed
    with conf's group); returns them."""
    settings = {"bootstrap.servers": bootstrap, "group.id": "cluster-reader",
                "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    settings.update(conf or {})
    consumer = Consumer(settings)
    if subscribe:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
        return out, consumer
    except BaseException:
        consumer.close()
        raise


def produce_all(bootstrap, topic, values, partition=None, conf=None):
    """Produces with acks=all; returns the delivery reports (err, msg)."""
    settings = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    settings.update(conf or {})
    producer = Producer(settings)
    reports = []
    for i, value in enumerate(values):
        kwargs = {"value": value, "on_delivery": lambda err, msg: reports.append((err, msg))}
        p = partition(i) if callable(partition) else partition
        if p is not None:
            kwargs["partition"] = p
        producer.produce(topic, **kwargs)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages left undelivered after 60 s"
    assert len(reports) == len(values)
    assert [err for err, _ in reports if err is not None] == []
    return reports


def kcat(bootstrap, *args, input=None):
    result = subprocess.run(["kcat", "-b", bootstrap, *args], input=input, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def create_retrying(c, nodes, name, partitions, rf, timeout=FAULT):
    """CreateTopics through `nodes` in turn (5 s server timeout each) until
    one succeeds (or says the topic exists: an earlier try that timed out
    took effect); errors such as NOT_CONTROLLER or REQUEST_TIMED_OUT are
    retried. Returns the seconds it took."""
    start = time.monotonic()
    turn = itertools.cycle(nodes)

    def created():
        node = next(turn)
        err = create_topic(node.port, name, partitions, rf, timeout_ms=5000, timeout=10)
        return err in (NONE, TOPIC_ALREADY_EXISTS) or Not(f"node {node.id}: error {err}")
    c.wait_until(created, timeout, f"CreateTopics {name!r} through nodes {[n.id for n in nodes]}")
    return time.monotonic() - start


def other_cluster_id(current):
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if candidate != current:
            return candidate


def wait_exit(node, timeout=FAULT):
    """The exit code of a node expected to refuse to start."""
    try:
        return node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.kill()
        pytest.fail(f"node {node.id} still running {timeout}s after it was started:\n{node.log()}")


# ---------------------------------------------------------------------------
# Membership: Metadata and DescribeCluster.

def test_metadata_from_every_broker_lists_every_broker(shared):
    expected = expected_brokers(shared)
    cluster_ids = set()
    for node in shared.brokers():
        md = shared.raw_metadata(node.id)
        assert md.brokers == expected, f"Metadata from node {node.id}"
        assert md.cluster_id, f"node {node.id} reports no cluster id"
        assert md.controller_id in expected, f"node {node.id}: controller id {md.controller_id}"
        cluster_ids.add(md.cluster_id)
        # A client bootstrapped with this node alone learns every broker.
        cm = shared.metadata(node.id)
        assert {b.id: (b.host, b.port) for b in cm.brokers.values()} == expected
        assert cm.cluster_id == md.cluster_id
    assert len(cluster_ids) == 1, f"brokers disagree on the cluster id: {cluster_ids}"


def test_describe_cluster_gives_brokers_and_the_controller(shared):
    expected = expected_brokers(shared)
    cluster_ids, controllers = set(), set()
    for node in shared.brokers():
        admin = shared.admin(node.id)
        result = admin.describe_cluster(request_timeout=10).result(20)
        assert {n.id: (n.host, n.port) for n in result.nodes} == expected
        # librdkafka takes the controller from a Metadata response: a broker
        # it can send admin requests to (not necessarily the active one).
        assert result.controller is not None, f"no controller through node {node.id}"
        assert result.controller.id in expected
        assert result.cluster_id
        cluster_ids.add(result.cluster_id)
        raw = describe_cluster(node.port)
        assert raw.error == NONE and raw.brokers == expected
        assert raw.cluster_id == result.cluster_id
        controllers.add(raw.controller_id)
    assert len(cluster_ids) == 1
    # The DescribeCluster API itself names the active controller, the same
    # one on every broker.
    assert len(controllers) == 1 and controllers <= set(shared.voter_ids), \
        f"DescribeCluster controller ids: {controllers}"


# ---------------------------------------------------------------------------
# Topic administration through any broker.

def test_create_topics_through_each_broker(shared):
    ids = set(expected_brokers(shared))
    for via in shared.brokers():
        name = f"created-via-{via.id}"
        assert create_topic(via.port, name, 2, 3) == NONE
        # The answering broker shows its own change at once...
        topic = metadata(via.port, [name]).topics[name]
        assert topic.error == NONE and sorted(topic.partitions) == [0, 1]
        assert all(p.leader in ids and sorted(p.replicas) == sorted(ids) for p in topic.partitions.values())
        # ...the others shortly after.
        views = shared.wait_topic(name, 2, timeout=PROPAGATION)
        assert len({repr(t.partitions) for t in views.values()}) == 1, f"brokers disagree: {views}"
        # Any broker now knows the name is taken.
        other = next(n for n in shared.brokers() if n.id != via.id)
        assert create_topic(other.port, name, 2, 3) == TOPIC_ALREADY_EXISTS


def test_create_partitions_and_delete_topics_through_other_brokers(shared):
    n1, n2, n3 = (shared.node(i) for i in (1, 2, 3))
    assert create_topic(n1.port, "grown", 2, 3) == NONE
    shared.wait_topic("grown", 2, timeout=PROPAGATION)

    result = create_partitions(n2.port, {"grown": 5})
    assert result["grown"][0] == NONE, result
    assert len(metadata(n2.port, ["grown"]).topics["grown"].partitions) == 5
    shared.wait_topic("grown", 5, timeout=PROPAGATION)

    assert delete_topics(n3.port, ["grown"]) == {"grown": NONE}
    assert "grown" not in metadata(n3.port).topics
    shared.wait_topic_gone("grown", timeout=PROPAGATION)

    # The name is free again everywhere.
    assert create_topic(n2.port, "grown", 1, 3) == NONE
    shared.wait_topic("grown", 1, timeout=PROPAGATION)


def test_incremental_alter_configs_through_any_broker(shared):
    n1, n2, n3 = (shared.node(i) for i in (1, 2, 3))
    assert create_topic(n1.port, "configured", 1, 3) == NONE
    shared.wait_topic("configured", 1, timeout=PROPAGATION)
    default = describe_configs(n1.port, TOPIC_RESOURCE, "configured", ["retention.ms"])[1]["retention.ms"]

    err, message = incremental_alter_configs(n3.port, TOPIC_RESOURCE, "configured",
                                             {"retention.ms": "123456", "cleanup.policy": "compact"})
    assert err == NONE, message

    def shows(value, policy):
        def check():
            for node in shared.brokers():
                err, configs = describe_configs(node.port, TOPIC_RESOURCE, "configured",
                                                ["retention.ms", "cleanup.policy"])
                got = (err, configs.get("retention.ms"), configs.get("cleanup.policy"))
                if got != (NONE, value, policy):
                    return Not(f"node {node.id}: {got}")
            return True
        return check

    assert describe_configs(n3.port, TOPIC_RESOURCE, "configured", ["retention.ms"])[1] == {"retention.ms": "123456"}
    shared.wait_until(shows("123456", "compact"), PROPAGATION, "the new configs on every broker")

    # Deleting a key through another broker restores the default everywhere.
    err, message = incremental_alter_configs(n2.port, TOPIC_RESOURCE, "configured", {"retention.ms": None})
    assert err == NONE, message
    shared.wait_until(shows(default, "compact"), PROPAGATION, "retention.ms back to its default everywhere")


# ---------------------------------------------------------------------------
# Replica placement.

def test_rf3_topic_has_distinct_replicas_and_spread_leaders(shared):
    admin = shared.admin(2)
    admin.create_topics([NewTopic("spread", 6, 3)], request_timeout=30)["spread"].result(60)
    views = shared.wait_topic("spread", 6, timeout=PROPAGATION)
    ids = set(expected_brokers(shared))
    for node_id, topic in views.items():
        for p in topic.partitions.values():
            assert p.error == NONE
            assert len(p.replicas) == 3 and set(p.replicas) == ids, f"node {node_id}: {p}"
            assert p.leader == p.replicas[0], f"leader is the preferred replica: {p}"
            assert sorted(p.isr) == sorted(p.replicas) and p.offline == [], p
            assert p.epoch >= 0
        leaders = collections.Counter(p.leader for p in topic.partitions.values())
        assert leaders == {1: 2, 2: 2, 3: 2}, f"node {node_id}: leaders {leaders}"
    assert len({repr(t.partitions) for t in views.values()}) == 1, f"brokers disagree: {views}"
    # What a client sees matches.
    cm = shared.metadata(3).topics["spread"].partitions
    raw = views[3].partitions
    for i, p in cm.items():
        assert (p.leader, p.replicas, sorted(p.isrs)) == (raw[i].leader, raw[i].replicas, sorted(raw[i].isr))


def test_replica_assignment_is_honoured(shared):
    assignment = [[2, 3], [3, 1], [1, 2], [2, 1]]
    admin = shared.admin(1)
    admin.create_topics([NewTopic("placed", len(assignment), replica_assignment=assignment)],
                        request_timeout=30)["placed"].result(60)
    # And a hand-built one sent to a broker that may not be the controller.
    raw = [[3, 1], [1, 2]]
    assert create_topic(shared.node(3).port, "placed-raw", -1, -1, assignment=raw) == NONE
    for name, expected in (("placed", assignment), ("placed-raw", raw)):
        views = shared.wait_topic(name, len(expected), timeout=PROPAGATION)
        for node_id, topic in views.items():
            for i, replicas in enumerate(expected):
                p = topic.partitions[i]
                assert p.replicas == replicas, f"node {node_id}, {name}-{i}: {p}"
                assert p.leader == replicas[0] and sorted(p.isr) == sorted(replicas), p


def test_replication_factor_above_broker_count_is_refused(shared):
    admin = shared.admin(1)
    future = admin.create_topics([NewTopic("too-wide", 1, 4)], request_timeout=30)["too-wide"]
    with pytest.raises(KafkaException) as raised:
        future.result(60)
    assert raised.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, raised.value
    for node in shared.brokers():
        assert create_topic(node.port, "too-wide", 1, 4) == INVALID_REPLICATION_FACTOR
    for node in shared.brokers():
        assert "too-wide" not in metadata(node.port).topics


# ---------------------------------------------------------------------------
# Leaders serve; others answer NOT_LEADER_OR_FOLLOWER; clients route.

def test_not_leader_or_follower_from_non_leaders(shared):
    assert create_topic(shared.node(1).port, "only-leaders", -1, -1, assignment=[[1], [2], [3]]) == NONE
    views = shared.wait_topic("only-leaders", 3, timeout=PROPAGATION)
    for p in range(3):
        leader = views[1].partitions[p].leader
        assert leader == p + 1
        for node in shared.brokers():
            if node.id == leader:
                continue
            what = f"partition {p} (leader {leader}) asked of node {node.id}"
            assert produce(node.port, "only-leaders", p, [b"x"])[0] == NOT_LEADER_OR_FOLLOWER, what
            assert list_offsets(node.port, "only-leaders", p)[0] == NOT_LEADER_OR_FOLLOWER, what
            assert list_offsets(node.port, "only-leaders", p, -2)[0] == NOT_LEADER_OR_FOLLOWER, what
            assert fetch_error(node.port, "only-leaders", p) == NOT_LEADER_OR_FOLLOWER, what
        port = shared.node(leader).port
        assert produce(port, "only-leaders", p, [b"a", b"b"]) == (NONE, 0)
        assert list_offsets(port, "only-leaders", p) == (NONE, 2), "refused produces appended nothing"
        assert list_offsets(port, "only-leaders", p, -2) == (NONE, 0)
        assert fetch_error(port, "only-leaders", p) == NONE


def rf1_topic(c, name, leader):
    """A one-partition replication factor 1 topic led by `leader`."""
    assert create_topic(c.node(leader).port, name, -1, -1, assignment=[[leader]]) == NONE
    c.wait_topic(name, 1, timeout=PROPAGATION)


def test_confluent_clients_through_a_non_leader(shared):
    leader, via = shared.node(3), shared.node(1)
    rf1_topic(shared, "routed-confluent", leader.id)
    values = [b"c%d" % i for i in range(200)]
    reports = produce_all(via.bootstrap, "routed-confluent", values)
    assert sorted(m.offset() for _, m in reports) == list(range(200))
    assert list_offsets(leader.port, "routed-confluent", 0) == (NONE, 200)
    got, consumer = consume(via.bootstrap, "routed-confluent", 1, 200)
    consumer.close()
    assert [m.value() for m in got] == values


def test_kafka_python_through_a_non_leader(shared):
    leader, via = shared.node(1), shared.node(2)
    rf1_topic(shared, "routed-kp", leader.id)
    producer = KafkaProducer(bootstrap_servers=via.bootstrap, acks="all")
    futures = [producer.send("routed-kp", value=b"k%d" % i) for i in range(100)]
    producer.flush(timeout=60)
    assert [f.get(timeout=60).offset for f in futures] == list(range(100))
    producer.close()
    assert list_offsets(leader.port, "routed-kp", 0) == (NONE, 100)
    consumer = KafkaConsumer(bootstrap_servers=via.bootstrap)
    consumer.assign([KTopicPartition("routed-kp", 0)])
    consumer.seek_to_beginning()
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 100 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert values == [b"k%d" % i for i in range(100)]


def test_java_clients_through_a_non_leader(shared, tmp_path):
    # Apache Kafka's Java client (idempotent producer, acks=all) finds the
    # leaders of a topic spread over three brokers through one broker.
    from test_java import classpath, run_java
    cp = classpath()
    subprocess.run(["javac", "-cp", cp, "-d", str(tmp_path),
                    *[str(p) for p in (JAVA_DIR / "ProducerCheck.java", JAVA_DIR / "ConsumerCheck.java")]],
                   check=True, timeout=180)
    cp = f"{tmp_path}:{cp}"
    via = shared.node(2)
    assert create_topic(via.port, "routed-java", -1, -1, assignment=[[1], [2], [3]]) == NONE
    shared.wait_topic("routed-java", 3, timeout=PROPAGATION)
    acks = [l.split() for l in run_java(cp, "ProducerCheck", via.bootstrap, "routed-java", 300) if l.startswith("ACK")]
    produced = {(int(p), int(o)): v for _, p, o, v in acks}
    assert len(produced) == 300 and {p for p, _ in produced} == {0, 1, 2}
    recs = [l.split() for l in run_java(cp, "ConsumerCheck", shared.node(3).bootstrap, "routed-java", 300)
            if l.startswith("REC")]
    assert {(int(p), int(o)): v for _, p, o, k, v in recs} == produced


def test_kcat_through_a_non_leader(shared):
    leader, via = shared.node(2), shared.node(3)
    rf1_topic(shared, "routed-kcat", leader.id)
    meta = json.loads(kcat(via.bootstrap, "-L", "-J"))
    assert {b["id"]: b["name"] for b in meta["brokers"]} == {n.id: n.bootstrap for n in shared.brokers()}
    topic = next(t for t in meta["topics"] if t["topic"] == "routed-kcat")
    assert topic["partitions"][0]["leader"] == leader.id
    text = kcat(via.bootstrap, "-L", "-t", "routed-kcat")
    assert " 3 brokers:" in text
    for n in shared.brokers():
        assert f"broker {n.id} at {n.bootstrap}" in text
    assert f"partition 0, leader {leader.id}," in text

    lines = [f"line {i}" for i in range(50)]
    kcat(via.bootstrap, "-P", "-t", "routed-kcat", "-p", "0", input=("\n".join(lines) + "\n").encode())
    out = kcat(via.bootstrap, "-C", "-t", "routed-kcat", "-p", "0", "-o", "beginning", "-e", "-f", "%s\n")
    assert out.splitlines() == lines


# ---------------------------------------------------------------------------
# Group coordination.

def test_find_coordinator_is_the_leader_of_the_group_partition(shared):
    group = "coordinated-group"
    first = shared.node(1)
    node_id, host, port = coordinator(shared, group, first)
    views = shared.wait_topic("__consumer_offsets", timeout=PROPAGATION)
    offsets = views[first.id]
    assert offsets.internal
    partition = group_partition(group, len(offsets.partitions))
    leader = offsets.partitions[partition].leader
    assert node_id == leader, f"coordinator {node_id}, leader of __consumer_offsets-{partition} is {leader}"
    assert (host, port) == ("127.0.0.1", shared.node(leader).port)
    assert all(len(p.replicas) == 3 for p in offsets.partitions.values()), \
        "offsets.topic.replication.factor defaults to 3"
    for node in shared.brokers():
        shared.wait_until(lambda: find_coordinator(node.port, group) == (NONE, node_id, host, port),
                          PROPAGATION, f"node {node.id} to name coordinator {node_id}")


def test_consumer_group_commits_and_a_second_consumer_resumes(shared):
    assert create_topic(shared.node(1).port, "grouped", -1, -1, assignment=[[1], [2], [3]]) == NONE
    shared.wait_topic("grouped", 3, timeout=PROPAGATION)
    first = [b"first-%d" % i for i in range(300)]
    produce_all(shared.bootstrap, "grouped", first, partition=lambda i: i % 3)

    group = "resuming-group"
    coordinator_id = coordinator(shared, group, shared.node(1))[0]
    others = [n for n in shared.brokers() if n.id != coordinator_id]
    conf = {"group.id": group}
    got, consumer = consume(others[0].bootstrap, "grouped", 3, 300, conf=conf, subscribe=True)
    try:
        assert sorted(m.value() for m in got) == sorted(first)
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("grouped", p) for p in range(3)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == {0: 100, 1: 100, 2: 100}
    finally:
        consumer.close()

    second = [b"second-%d" % i for i in range(30)]
    produce_all(shared.bootstrap, "grouped", second, partition=lambda i: i % 3)
    got, consumer = consume(others[1].bootstrap, "grouped", 3, 30, conf=conf, subscribe=True)
    try:
        assert sorted(m.value() for m in got) == sorted(second), "resumed from the committed offsets"
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


# ---------------------------------------------------------------------------
# Faults (a cluster of their own each).

def test_controller_kill_elects_another_and_the_node_rejoins(make_cluster):
    c = make_cluster()
    old = c.wait_controller()
    c.kill(old)
    survivors = [n for n in c.brokers() if n.id != old]

    create_retrying(c, survivors, "after-failover", 3, 2)
    new = c.wait_controller(exclude={old}, timeout=FAULT)
    assert new != old and new in c.voter_ids
    assert c.controller_id(survivors[0].id) == new
    c.wait_topic("after-failover", 3, nodes=survivors, timeout=FAULT)

    # A real client on a survivor finds the new controller too.
    admin = c.admin(survivors[0].id)

    def confluent_created():
        future = admin.create_topics([NewTopic("after-failover-client", 1, 2)], request_timeout=10)
        try:
            future["after-failover-client"].result(20)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        return True
    c.wait_until(confluent_created, FAULT, "AdminClient.create_topics on a survivor")

    # Restarted on its data dir, the old controller rejoins unfenced and
    # catches up with what happened while it was down.
    c.start_node(old, timeout=FAULT)
    c.wait_formed(timeout=FAULT)
    c.wait_topic("after-failover", 3, nodes=[c.node(old)], timeout=PROPAGATION, leaders=False)
    assert create_topic(c.node(old).port, "after-rejoin", 1, 3) == NONE
    c.wait_topic("after-rejoin", 1, timeout=PROPAGATION)


def test_broker_kill_fences_it_and_moves_its_leaders(make_cluster):
    c = make_cluster()
    controller = c.wait_controller()
    ids = [n.id for n in c.brokers()]
    victim = next(i for i in ids if i != controller)
    port = c.node(controller).port
    assert create_topic(port, "rf3", 6, 3) == NONE
    assert create_topic(port, "rf1", -1, -1, assignment=[[i] for i in ids]) == NONE
    c.wait_topic("rf3", 6, timeout=PROPAGATION)
    c.wait_topic("rf1", 3, timeout=PROPAGATION)
    before = metadata(port, ["rf3", "rf1"]).topics
    rf3, rf1 = before["rf3"].partitions, before["rf1"].partitions
    led = {i for i, p in rf3.items() if p.leader == victim}
    assert led, f"node {victim} leads no rf3 partition: {rf3}"
    offline_index = next(i for i, p in rf1.items() if p.leader == victim)

    killed_at = time.monotonic()
    c.kill(victim)
    survivors = [n for n in c.brokers() if n.id != victim]
    c.wait_fenced(victim, timeout=FAULT)
    fenced_after = time.monotonic() - killed_at
    assert fenced_after > 1.5, f"fenced {fenced_after:.2f}s after the kill; the session timeout is 3 s"

    def problems(md):
        out = []
        for i, old in rf3.items():
            p = md.topics["rf3"].partitions[i]
            if p.replicas != old.replicas:
                out.append(f"rf3-{i}: replicas changed: {p}")
            if victim in p.isr or victim not in p.offline:
                out.append(f"rf3-{i}: {victim} still in ISR or not offline: {p}")
            if i in led:
                if p.error != NONE or p.leader not in set(old.isr) - {victim} or p.epoch <= old.epoch:
                    out.append(f"rf3-{i}: no new leader from ISR {old.isr} with an epoch above {old.epoch}: {p}")
            elif p.leader != old.leader:
                out.append(f"rf3-{i}: leader moved though {old.leader} is up: {p}")
        for i, old in rf1.items():
            p = md.topics["rf1"].partitions[i]
            if i == offline_index:
                if p.leader != -1 or p.error != LEADER_NOT_AVAILABLE or victim not in p.offline:
                    out.append(f"rf1-{i}: expected offline (leader -1, LEADER_NOT_AVAILABLE): {p}")
            elif p.leader != old.leader or p.error != NONE:
                out.append(f"rf1-{i}: leader changed: {p}")
        return out

    def settled():
        views = {}
        for n in survivors:
            md = metadata(n.port, ["rf3", "rf1"])
            if found := problems(md):
                return Not(f"node {n.id}: {found}")
            views[n.id] = md
        return views
    views = c.wait_until(settled, PROPAGATION, f"leaders to move off node {victim}")
    offline_epoch = views[survivors[0].id].topics["rf1"].partitions[offline_index].epoch
    # A client sees the offline partition too.
    seen = c.metadata(survivors[0].id).topics["rf1"].partitions[offline_index]
    assert seen.leader == -1
    assert seen.error is not None and seen.error.code() == KafkaError.LEADER_NOT_AVAILABLE

    # Restarted, it is unfenced and leads its replication factor 1 partition again.
    c.start_node(victim, timeout=FAULT)

    def back():
        for n in c.brokers():
            md = metadata(n.port, ["rf3", "rf1"])
            p = md.topics["rf1"].partitions[offline_index]
            if p.leader != victim or p.error != NONE or p.epoch <= offline_epoch:
                return Not(f"node {n.id}: rf1-{offline_index}: {p}")
            still = [q for q in md.topics["rf3"].partitions.values() if victim in q.offline]
            if still:
                return Not(f"node {n.id}: {victim} still offline in {still}")
        return True
    c.wait_until(back, FAULT, f"node {victim} back as leader of rf1-{offline_index}")


def test_sigstop_fences_and_sigcont_unfences(make_cluster):
    c = make_cluster()
    controller = c.wait_controller()
    victim = next(n.id for n in c.brokers() if n.id != controller)
    paused_at = time.monotonic()
    c.pause(victim)
    c.wait_fenced(victim, timeout=FAULT)
    assert time.monotonic() - paused_at > 1.5, "fenced well before the 3 s session timeout"
    c.resume(victim)
    c.wait_unfenced(victim, timeout=FAULT)
    c.wait_formed(timeout=FAULT)


def test_quorum_works_with_one_voter_down_and_fails_cleanly_with_two(make_cluster):
    c = make_cluster()
    controller = c.wait_controller()
    others = [i for i in c.voter_ids if i != controller]
    survivor = c.node(controller)
    cluster_id = describe_cluster(survivor.port).cluster_id
    assert create_topic(survivor.port, "before", 3, 3) == NONE
    c.wait_topic("before", 3, timeout=PROPAGATION)
    replicas = {i: p.replicas for i, p in metadata(survivor.port, ["before"]).topics["before"].partitions.items()}

    # One voter down: the quorum still commits.
    c.kill(others[0])
    assert create_topic(c.node(others[1]).port, "one-down", 2, 1, timeout_ms=15000) == NONE
    c.wait_topic("one-down", 2, nodes=[c.node(others[1]), survivor], timeout=PROPAGATION, leaders=False)

    # Two down: CreateTopics is answered with an error, in bounded time.
    c.kill(others[1])
    started = time.monotonic()
    try:
        result = create_topics(survivor.port, [("two-down", 1, 1)], timeout_ms=5000, timeout=60)
    except OSError as e:
        pytest.fail(f"no CreateTopics answer without a quorum ({e}) after "
                    f"{time.monotonic() - started:.1f}s:\n{c.logs()}")
    assert result["two-down"][0] != NONE, result
    admin = c.admin(controller)
    future = admin.create_topics([NewTopic("two-down-client", 1, 1)], request_timeout=15,
                                 operation_timeout=5)["two-down-client"]
    with pytest.raises(KafkaException):
        future.result(90)
    # The survivor's metadata is intact and shows nothing uncommitted.
    md = metadata(survivor.port)
    assert {i: p.replicas for i, p in md.topics["before"].partitions.items()} == replicas
    assert len(md.topics["one-down"].partitions) == 2
    assert "two-down" not in md.topics and "two-down-client" not in md.topics

    # Both back: CreateTopics works again and nothing was lost.
    for i in others:
        c.start_node(i, timeout=FAULT, wait_unfenced=False)
    c.wait_formed(timeout=FAULT)
    create_retrying(c, c.brokers(), "after", 1, 3)
    c.wait_topic("after", 1, timeout=PROPAGATION)
    for node in c.brokers():
        md = metadata(node.port)
        assert md.cluster_id == cluster_id
        assert {i: p.replicas for i, p in md.topics["before"].partitions.items()} == replicas, f"node {node.id}"
        assert len(md.topics["one-down"].partitions) == 2, f"node {node.id}"


@pytest.mark.parametrize("variant", ["extra-voter", "missing-voter", "new-broker"])
def test_node_with_different_voters_refuses_to_start(make_cluster, variant):
    c = make_cluster()
    voters = c.voters_value()
    if variant == "new-broker":
        node = c.add_node("broker")
        wrong = f"{voters},9@127.0.0.1:{c.spare_port()}"
    else:
        node = c.node(3)
        c.kill(3)
        if variant == "extra-voter":
            wrong = f"{voters},4@127.0.0.1:{c.spare_port()}"
        else:
            wrong = ",".join(v for v in voters.split(",") if not v.startswith("2@"))
    node.spawn({"controller.quorum.voters": wrong}, expect_exit=True)
    assert wait_exit(node) != 0
    last = node.last_start_output()[-1]
    assert "voter" in last.lower(), f"last line: {last!r}"
    if variant != "new-broker":
        # With the right list it rejoins: nothing was damaged.
        c.start_node(3, timeout=FAULT)
    c.wait_formed(timeout=FAULT)
    assert {n for n in metadata(c.node(1).port).brokers} == {1, 2, 3}


@pytest.mark.parametrize("variant", ["restarted", "new-broker"])
def test_node_with_different_cluster_id_refuses_to_start(make_cluster, variant):
    c = make_cluster()
    admin = c.admin(1)
    cluster_id = admin.describe_cluster(request_timeout=10).result(20).cluster_id
    assert cluster_id and cluster_id == describe_cluster(c.node(2).port).cluster_id
    if variant == "new-broker":
        node = c.add_node("broker")
    else:
        node = c.node(3)
        c.kill(3)
    node.spawn({"cluster.id": other_cluster_id(cluster_id)}, expect_exit=True)
    assert wait_exit(node) != 0
    last = node.last_start_output()[-1]
    assert "cluster" in last.lower(), f"last line: {last!r}"
    if variant == "restarted":
        # Its own id, given explicitly, is accepted.
        node.overrides["cluster.id"] = cluster_id
        c.start_node(3, timeout=FAULT)
    c.wait_formed(timeout=FAULT)
    for n in c.brokers():
        if n.up():
            assert describe_cluster(n.port).cluster_id == cluster_id


# ---------------------------------------------------------------------------
# Separate controllers and brokers.

def test_controller_only_and_broker_only_nodes(make_cluster):
    c = make_cluster(roles=["controller"] * 3 + ["broker"] * 2,
                     extra={**FAST, "offsets.topic.replication.factor": "2"})
    expected = expected_brokers(c)
    assert set(expected) == {4, 5}
    assert c.voter_ids == [1, 2, 3]
    for node in c.brokers():
        assert metadata(node.port).brokers == expected
        admin = c.admin(node.id)
        result = admin.describe_cluster(request_timeout=10).result(20)
        assert {n.id: (n.host, n.port) for n in result.nodes} == expected

    # Created through a broker, visible on both.
    assert create_topic(c.node(4).port, "mixed", 2, 2) == NONE
    views = c.wait_topic("mixed", 2, timeout=PROPAGATION)
    assert all(sorted(p.replicas) == [4, 5] for p in views[5].partitions.values())
    assert create_topic(c.node(5).port, "mixed-rf1", -1, -1, assignment=[[4], [5]]) == NONE
    c.wait_topic("mixed-rf1", 2, timeout=PROPAGATION)

    # Produce through one broker, consume through the other.
    values = [b"m%d" % i for i in range(100)]
    produce_all(c.node(5).bootstrap, "mixed-rf1", values, partition=lambda i: i % 2)
    got, consumer = consume(c.node(4).bootstrap, "mixed-rf1", 2, 100)
    consumer.close()
    assert sorted(m.value() for m in got) == sorted(values)

    # A real AdminClient (it sends CreateTopics to the controller id from
    # Metadata, which must be a broker it can reach).
    admin = c.admin(4)
    admin.create_topics([NewTopic("mixed-client", 1, 2)], request_timeout=20)["mixed-client"].result(60)
    c.wait_topic("mixed-client", 1, timeout=PROPAGATION)
