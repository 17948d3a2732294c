"""Consumer groups with real clients: --shards 2, so groups, their
__consumer_offsets partitions and their topics sit on different shards."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

FAST = ["--override", "group.initial.rebalance.delay.ms=0"]


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(extra_args=FAST)


def create(broker, topic, partitions):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def produce(broker, topic, count, partitions, start=0):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
    for i in range(start, start + count):
        p.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


class GroupConsumer:
    """A confluent-kafka consumer polled on a thread; records what it gets."""

    def __init__(self, broker, group, topic, **conf):
        settings = {"bootstrap.servers": broker.bootstrap, "group.id": group,
                    "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500, "enable.auto.commit": True,
                    "auto.commit.interval.ms": 200}
        settings.update(conf)
        self.assignment = set()
        self.assign_events = 0
        self.values = []
        self.errors = []
        self.consumer = Consumer(settings)
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.cooperative = settings.get("partition.assignment.strategy") == "cooperative-sticky"

    def _on_assign(self, consumer, partitions):
        self.assign_events += 1
        if self.cooperative:
            self.assignment |= {p.partition for p in partitions}
        else:
            self.assignment = {p.partition for p in partitions}

    def _on_revoke(self, consumer, partitions):
        if self.cooperative:
            self.assignment -= {p.partition for p in partitions}
        else:
            self.assignment = set()

    def _run(self):
        while not self.stop.is_set():
            m = self.consumer.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(m.error())
                continue
            self.values.append(int(m.value()))

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


def test_two_members_split_then_one_takes_all(gbroker):
    create(gbroker, "split", 6)
    produce(gbroker, "split", 600, 6)
    a = GroupConsumer(gbroker, "g-split", "split")
    b = GroupConsumer(gbroker, "g-split", "split")
    try:
        wait_until(lambda: len(a.assignment) + len(b.assignment) == 6 and a.assignment and b.assignment,
                   timeout=30, message="both members assigned")
        assert not (a.assignment & b.assignment)
        wait_until(lambda: len(a.values) + len(b.values) >= 600, timeout=30, message="all consumed")
        assert sorted(a.values + b.values) == list(range(600))
        time.sleep(1)  # let auto-commit run
        b.close()
        wait_until(lambda: a.assignment == set(range(6)), timeout=10, message="survivor takes all six")
        produce(gbroker, "split", 60, 6, start=600)
        wait_until(lambda: len(a.values) + len(b.values) >= 660, timeout=20, message="new data")
        assert not a.errors and not b.errors
    finally:
        a.close()
    # A new member of the group resumes from the committed offsets.
    produce(gbroker, "split", 30, 6, start=660)
    c = GroupConsumer(gbroker, "g-split", "split")
    try:
        wait_until(lambda: len(c.values) >= 30, timeout=30, message="resume")
        time.sleep(1)
        assert sorted(c.values) == list(range(660, 690)), "no re-reading, nothing skipped"
    finally:
        c.close()


CONSUMER_SCRIPT = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "auto.offset.reset": "earliest"})
    def on_assign(consumer, parts):
        print("ASSIGNED", sorted(p.partition for p in parts), flush=True)
    c.subscribe([sys.argv[3]], on_assign=on_assign)
    while True:
        c.poll(0.2)
""")


def test_killed_member_is_evicted_after_session_timeout(gbroker, tmp_path):
    create(gbroker, "evict", 4)
    script = tmp_path / "member.py"
    script.write_text(CONSUMER_SCRIPT)
    victim = subprocess.Popen([sys.executable, str(script), gbroker.bootstrap, "g-evict", "evict"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert victim.stdout.readline().startswith("ASSIGNED")
        survivor = GroupConsumer(gbroker, "g-evict", "evict")
        wait_until(lambda: survivor.assignment and len(survivor.assignment) < 4, timeout=30,
                   message="partitions shared with the victim")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        wait_until(lambda: survivor.assignment == set(range(4)), timeout=25, message="eviction")
        elapsed = time.monotonic() - killed_at
        assert elapsed >= 3, f"reassigned after {elapsed:.1f}s: before the session timeout could pass"
        survivor.close()
    finally:
        if victim.poll() is None:
            victim.kill()


def test_static_member_restart_keeps_partitions(gbroker):
    create(gbroker, "static", 4)
    conf = {"session.timeout.ms": 10000}
    a = GroupConsumer(gbroker, "g-static", "static", **{"group.instance.id": "a", **conf})
    b = GroupConsumer(gbroker, "g-static", "static", **{"group.instance.id": "b", **conf})
    wait_until(lambda: len(a.assignment) + len(b.assignment) == 4 and a.assignment and b.assignment,
               timeout=30, message="initial assignment")
    time.sleep(1)
    before_a = set(a.assignment)
    b_events = b.assign_events
    a.close()  # a static member does not leave the group on close
    a2 = GroupConsumer(gbroker, "g-static", "static", **{"group.instance.id": "a", **conf})
    try:
        wait_until(lambda: a2.assignment, timeout=20, message="restarted member assigned")
        assert a2.assignment == before_a
        time.sleep(2)
        assert b.assign_events == b_events, "the other member saw no rebalance"
    finally:
        a2.close()
        b.close()


def test_cooperative_sticky(gbroker):
    create(gbroker, "coop", 6)
    produce(gbroker, "coop", 120, 6)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = GroupConsumer(gbroker, "g-coop", "coop", **conf)
    wait_until(lambda: a.assignment == set(range(6)), timeout=30, message="first member has all")
    b = GroupConsumer(gbroker, "g-coop", "coop", **conf)
    try:
        wait_until(lambda: a.assignment and b.assignment and len(a.assignment) + len(b.assignment) == 6,
                   timeout=30, message="incremental rebalance")
        assert not (a.assignment & b.assignment)
        wait_until(lambda: len(set(a.values + b.values)) == 120, timeout=30, message="consumed")
        assert not a.errors and not b.errors
    finally:
        a.close()
        b.close()


def test_kcat_group(gbroker):
    produce(gbroker, "kcatg", 50, 1)
    out = subprocess.run(["kcat", "-b", gbroker.bootstrap, "-G", "g-kcat", "kcatg", "-e", "-f", "%s\n",
                          "-X", "auto.offset.reset=earliest"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert sorted(int(v) for v in out.stdout.split()) == list(range(50))
    # A second run of the same group starts after the committed offsets.
    produce(gbroker, "kcatg", 5, 1, start=50)
    out = subprocess.run(["kcat", "-b", gbroker.bootstrap, "-G", "g-kcat", "kcatg", "-e", "-f", "%s\n"],
                         capture_output=True, timeout=60)
    assert sorted(int(v) for v in out.stdout.split()) == list(range(50, 55))


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_kafka_python_group(gbroker, strategy):
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignor = RangePartitionAssignor if strategy == "range" else RoundRobinPartitionAssignor
    topic = f"kp-{strategy}"
    create(gbroker, topic, 4)
    produce(gbroker, topic, 200, 4)
    consumers = [KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=f"g-kp-{strategy}",
                               auto_offset_reset="earliest", partition_assignment_strategy=[assignor],
                               session_timeout_ms=10000, heartbeat_interval_ms=1000,
                               # A leader that assigned before it saw the new
                               # topic's partitions notices within a second
                               # and rebalances again (a loaded machine).
                               metadata_max_age_ms=1000) for _ in range(2)]
    values = []
    assignments = [set(), set()]
    deadline = time.monotonic() + 60
    # Poll both until the group has settled with both members assigned.
    while time.monotonic() < deadline and not (len(set(values)) == 200 and all(assignments)):
        for c in consumers:
            for records in c.poll(timeout_ms=200).values():
                values.extend(int(r.value) for r in records)
        assignments = [set(tp.partition for tp in c.assignment()) for c in consumers]
    for c in consumers:
        # close() commits what was consumed; a commit refused because the
        # group is rebalancing again (it may, on a loaded machine) is logged
        # by the client, not raised, and nothing below depends on it.
        c.close()
    # Members may re-read what the other had not committed before the rebalance.
    assert set(values) == set(range(200))
    assert all(assignments), f"both members got partitions: {assignments}"
    assert not (assignments[0] & assignments[1])


def test_aiokafka_group_round_trip(gbroker):
    import aiokafka

    async def main():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=gbroker.bootstrap)
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait("aio", b"%d" % i)
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer("aio", bootstrap_servers=gbroker.bootstrap, group_id="g-aio",
                                             auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got = []
        try:
            async def read():
                async for msg in consumer:
                    got.append(int(msg.value))
                    if len(got) == 50:
                        return
            await asyncio.wait_for(read(), 60)
            await consumer.commit()
            committed = await consumer.committed(aiokafka.TopicPartition("aio", 0))
        finally:
            await consumer.stop()
        return got, committed

    got, committed = asyncio.run(main())
    assert got == list(range(50))
    assert committed == 50


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_offsets_and_group_state_survive_restart(gbroker, how):
    create(gbroker, "persist", 3)
    produce(gbroker, "persist", 90, 3)
    a = GroupConsumer(gbroker, "g-persist", "persist", **{"enable.auto.commit": False})
    wait_until(lambda: len(a.values) >= 90, timeout=30, message="consumed")
    a.stop.set()
    a.thread.join(10)
    a.consumer.commit(asynchronous=False)
    committed = a.consumer.committed([TopicPartition("persist", p) for p in range(3)], timeout=10)
    assert sorted(tp.offset for tp in committed) == [30, 30, 30]
    a.consumer.close()
    if how == "sigterm":
        assert gbroker.stop() == 0
    else:
        gbroker.kill9()
    gbroker.start()
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": "g-persist", "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition("persist", p) for p in range(3)], timeout=10)
        assert [tp.offset for tp in committed] == [30, 30, 30]
    finally:
        c.close()
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    groups = admin.list_consumer_groups().result(30)
    assert "g-persist" in [g.group_id for g in groups.valid]
    produce(gbroker, "persist", 9, 3, start=90)
    b = GroupConsumer(gbroker, "g-persist", "persist")
    try:
        wait_until(lambda: len(b.values) >= 9, timeout=30, message="resume after restart")
        time.sleep(0.5)
        assert sorted(b.values) == list(range(90, 99))
    finally:
        b.close()


def test_admin_list_describe_delete(gbroker):
    create(gbroker, "adm", 2)
    produce(gbroker, "adm", 10, 2)
    a = GroupConsumer(gbroker, "g-adm", "adm")
    wait_until(lambda: len(a.values) >= 10, timeout=30, message="consumed")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    desc = admin.describe_consumer_groups(["g-adm"])["g-adm"].result(30)
    assert str(desc.state).endswith("STABLE")
    assert len(desc.members) == 1
    assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1}
    from confluent_kafka import ConsumerGroupState
    listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(30)
    assert "g-adm" in [g.group_id for g in listed.valid]
    # Deleting a non-empty group is refused.
    with pytest.raises(Exception) as e:
        admin.delete_consumer_groups(["g-adm"])["g-adm"].result(30)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    time.sleep(0.5)
    a.close()
    wait_until(lambda: str(admin.describe_consumer_groups(["g-adm"])["g-adm"].result(30).state).endswith("EMPTY"),
               timeout=15, message="group empty")
    admin.delete_consumer_groups(["g-adm"])["g-adm"].result(30)
    listed = admin.list_consumer_groups().result(30)
    assert "g-adm" not in [g.group_id for g in listed.valid]


def test_lag_tool(gbroker):
    import pathlib
    tool = pathlib.Path(os.environ.get("RINGBROKER_BIN", "target/release/ringbroker")).with_name("ringbroker-groups")
    create(gbroker, "lag", 2)
    produce(gbroker, "lag", 40, 2)
    a = GroupConsumer(gbroker, "g-lag", "lag", **{"enable.auto.commit": False})
    try:
        wait_until(lambda: len(a.values) >= 40, timeout=30, message="consumed")
        a.stop.set()
        a.thread.join(10)
        a.consumer.commit(offsets=[TopicPartition("lag", 0, 15), TopicPartition("lag", 1, 20)], asynchronous=False)
        produce(gbroker, "lag", 10, 2, start=40)
        out = subprocess.run([str(tool), "--bootstrap", gbroker.bootstrap, "describe", "g-lag"],
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 0, out.stderr
        rows = {int(line.split()[2]): line.split() for line in out.stdout.splitlines() if line.startswith("g-lag ")}
        # partition: current, log end, lag, consumer id
        assert rows[0][3:6] == ["15", "25", "10"]
        assert rows[1][3:6] == ["20", "25", "5"]
        assert rows[0][6].startswith("rdkafka-") and rows[0][7] == "/127.0.0.1"
        assert "Total lag: 15" in out.stdout
        listing = subprocess.run([str(tool), "--bootstrap", gbroker.bootstrap, "list"],
                                 capture_output=True, timeout=30, text=True)
        assert any(line.split()[:2] == ["g-lag", "Stable"] for line in listing.stdout.splitlines())
    finally:
        a.consumer.close()


def test_admin_group_offsets_and_offset_delete(gbroker):
    from confluent_kafka import ConsumerGroupTopicPartitions
    create(gbroker, "ofs", 3)
    produce(gbroker, "ofs", 30, 3)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    # Offsets of a group with no members can be set (simple commits) and read.
    req = ConsumerGroupTopicPartitions("g-ofs", [TopicPartition("ofs", p, 3 + p) for p in range(3)])
    admin.alter_consumer_group_offsets([req])["g-ofs"].result(30)
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g-ofs")])["g-ofs"].result(30)
    assert sorted((tp.partition, tp.offset) for tp in listed.topic_partitions) == [(0, 3), (1, 4), (2, 5)]
    # A member of the group starts from them.
    a = GroupConsumer(gbroker, "g-ofs", "ofs")
    try:
        wait_until(lambda: len(a.values) >= 30 - 12, timeout=30, message="consumed from committed offsets")
        time.sleep(0.5)
        assert len(a.values) == 18
    finally:
        a.close()


def test_offset_delete_with_kafka_python_admin(gbroker):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    from confluent_kafka import ConsumerGroupTopicPartitions
    create(gbroker, "odel", 2)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    req = ConsumerGroupTopicPartitions("g-odel", [TopicPartition("odel", 0, 7), TopicPartition("odel", 1, 9)])
    admin.alter_consumer_group_offsets([req])["g-odel"].result(30)
    kadmin = KafkaAdminClient(bootstrap_servers=gbroker.bootstrap)
    try:
        result = kadmin.delete_group_offsets("g-odel", [KTP("odel", 0)])
        assert all(not getattr(v, "errno", 0) for v in result.values()), result
        listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g-odel")])["g-odel"].result(30)
        assert {tp.partition: tp.offset for tp in listed.topic_partitions} == {1: 9}
    finally:
        kadmin.close()
