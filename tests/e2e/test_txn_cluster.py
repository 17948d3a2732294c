"""Transactions on a 3-node cluster (cluster.py): __transaction_state and
__consumer_offsets with replication factor 3, a topic with replication
factor 3 and min.insync.replicas=2. The broker coordinating a
transactional id (the leader of its __transaction_state partition) is
killed -9 while a transaction is open; the producer's commit fails over to
the new coordinator. Whatever the outcome, a read_committed consumer sees
all of the transaction's records or none (all when the commit returned);
the next transaction of the same producer commits and is fully visible;
after the killed broker restarts, nothing changed."""

import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

import txn_check as T
from cluster import COORDINATOR_NOT_AVAILABLE, NONE, Cluster, Not, find_coordinator
from txn_check import READ_COMMITTED, READ_UNCOMMITTED

pytestmark = pytest.mark.timeout(180)

TRANSACTION_KEY = 1  # FindCoordinator key type of a transactional id
TOPIC, PARTITIONS = "txc", 3
FAULT_S = 60  # bound of every wait across a failover


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", n=3, extra={
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "offsets.topic.replication.factor": "3",
        "replica.lag.time.max.ms": "3000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "group.initial.rebalance.delay.ms": "0",
    })
    print(f"cluster logs: {c.root}")
    c.start()
    yield c
    c.close()


def full_isr(c, topic, via):
    def check():
        for pm in c.raw_metadata(via, [topic]).topics[topic].partitions.values():
            if len(pm.replicas) != 3 or sorted(pm.isr) != sorted(pm.replicas):
                return Not(f"{topic}-{pm.id}: replicas {pm.replicas} isr {pm.isr}")
        return True
    c.wait_until(check, FAULT_S, f"every replica of {topic} in the ISR")


def coordinator_of(c, tid, via):
    def found():
        err, node_id, _, _ = find_coordinator(c.node(via).port, tid, TRANSACTION_KEY)
        if err == COORDINATOR_NOT_AVAILABLE:
            return Not("COORDINATOR_NOT_AVAILABLE")
        assert err == NONE, f"FindCoordinator(TRANSACTION) error {err} from node {via}"
        return node_id
    return c.wait_until(found, FAULT_S, f"node {via} to name the coordinator of {tid!r}")


def end_transaction(p, deadline):
    """Commits, retrying retriable errors until the deadline. Returns
    "commit", "abort" (an abortable error, then aborted) or "fenced" (a
    fatal error: the outcome is the coordinator's)."""
    while True:
        try:
            p.commit_transaction(max(deadline - time.monotonic(), 1))
            return "commit"
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                return "fenced"
            if err.txn_requires_abort():
                p.abort_transaction(max(deadline - time.monotonic(), 1))
                return "abort"
            if not err.retriable() or time.monotonic() > deadline:
                raise


def committed_values(bootstrap, admin, tps):
    """{tp: [values]} read_committed sees, read once no transaction is
    open (the last stable offset equals the high watermark)."""
    ends = T.wait_stable(admin, tps, timeout=FAULT_S)
    got = T.read(bootstrap, tps, READ_COMMITTED, ends, timeout=FAULT_S)
    return {tp: [v for _, v in recs] for tp, recs in got.items()}


def test_coordinator_kill_mid_transaction(cluster):
    c = cluster
    admin = c.admin(1)  # kept: the future needs its client alive
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(30)
    c.wait_topic(TOPIC, PARTITIONS, timeout=30)
    full_isr(c, TOPIC, 1)
    tps = [(TOPIC, p) for p in range(PARTITIONS)]
    tid = "tx-cluster"
    p = T.transactional_producer(c.bootstrap, tid)

    coordinator = coordinator_of(c, tid, 1)
    state = c.wait_topic("__transaction_state", timeout=FAULT_S)[1]
    partition = T.txn_partition(tid, len(state.partitions))
    assert state.partitions[partition].leader == coordinator, \
        f"coordinator {coordinator}, leader of __transaction_state-{partition} {state.partitions[partition].leader}"
    assert all(len(pm.replicas) == 3 for pm in state.partitions.values()), \
        "transaction.state.log.replication.factor=3"
    full_isr(c, "__transaction_state", 1)

    p.begin_transaction()
    t1 = {tp: [f"t1-{tp[1]}-{i}" for i in range(20)] for tp in tps}
    T.send(p, t1)
    c.kill(coordinator)
    survivors = [n.id for n in c.live_brokers()]
    outcome = end_transaction(p, time.monotonic() + FAULT_S)
    new_coordinator = coordinator_of(c, tid, survivors[0])
    assert new_coordinator in survivors

    survivor_bootstrap = ",".join(c.node(i).bootstrap for i in survivors)
    admin = AdminClient({"bootstrap.servers": survivor_bootstrap})
    seen = committed_values(survivor_bootstrap, admin, tps)
    if outcome == "commit":
        expected_t1 = t1
    elif outcome == "abort":
        expected_t1 = {tp: [] for tp in tps}
    else:  # fenced: the coordinator decided; all or nothing either way
        expected_t1 = t1 if seen[tps[0]] else {tp: [] for tp in tps}
    assert seen == expected_t1, f"transaction 1 ({outcome}) half visible or wrong"
    print(f"transaction 1 across the coordinator kill: {outcome}; coordinator {coordinator} -> {new_coordinator}")

    if outcome == "fenced":
        p = T.transactional_producer(survivor_bootstrap, tid)
    p.begin_transaction()
    t2 = {tp: [f"t2-{tp[1]}-{i}" for i in range(10)] for tp in tps}
    T.send(p, t2)
    assert end_transaction(p, time.monotonic() + FAULT_S) == "commit"
    want = {tp: expected_t1[tp] + t2[tp] for tp in tps}
    assert committed_values(survivor_bootstrap, admin, tps) == want

    c.start_node(coordinator)
    full_isr(c, TOPIC, coordinator)
    full_isr(c, "__transaction_state", coordinator)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    assert committed_values(c.bootstrap, admin, tps) == want
    # One more transaction with the restarted broker back in every ISR;
    # read_uncommitted then holds every record written, aborted ones too.
    p.begin_transaction()
    t3 = {tp: [f"t3-{tp[1]}-{i}" for i in range(5)] for tp in tps}
    T.send(p, t3)
    assert end_transaction(p, time.monotonic() + FAULT_S) == "commit"
    want = {tp: want[tp] + t3[tp] for tp in tps}
    assert committed_values(c.bootstrap, admin, tps) == want
    uncommitted = T.read(c.bootstrap, tps, READ_UNCOMMITTED, T.list_ends(admin, tps, READ_UNCOMMITTED))
    assert {tp: [v for _, v in recs] for tp, recs in uncommitted.items()} == {
        tp: t1[tp] + t2[tp] + t3[tp] for tp in tps}
