"""Group coordinator behaviour against real clients: members whose
heartbeats stop expire after their session timeout in every group state
(a consumer destroyed without closing; static members that close), and
ListGroups reports and filters the group type (v5)."""

import gc
import struct
import time

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType,
                             KafkaError, TopicPartition)
from confluent_kafka.admin import AdminClient

from conftest import wait_until
from kafka_wire import Reader, connect, crc32c, read_response, request, string
from test_group_errors import Raw
from test_groups import FAST, GroupConsumer, create, gbroker  # noqa: F401 (fixture)

SESSION_S = 6
# Time a new member needs beyond the old member's session: its own
# JoinGroup round trips, SyncGroup and the client's polling.
MARGIN_S = 10


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(30)


def poll_until_assigned(consumer, timeout=30):
    assigned = []
    consumer.subscribe(["expiry"], on_assign=lambda c, parts: assigned.extend(parts))
    deadline = time.monotonic() + timeout
    while not assigned and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert assigned, "no assignment"
    return assigned


def test_destroyed_consumer_expires_while_a_new_member_waits(gbroker):
    """A consumer destroyed without close() sends no LeaveGroup. A new member
    joining then starts a rebalance that waits for the old one; the old one
    must expire after its session timeout (not the 300 s rebalance timeout)
    and the new member get every partition."""
    create(gbroker, "expiry", 4)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    old = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": "g-destroyed",
                    "session.timeout.ms": SESSION_S * 1000, "heartbeat.interval.ms": 500})
    assert len(poll_until_assigned(old)) == 4
    del old
    gc.collect()
    destroyed_at = time.monotonic()
    # No LeaveGroup was sent: the old member is still in the group.
    assert len(describe(admin, "g-destroyed").members) == 1
    new = GroupConsumer(gbroker, "g-destroyed", "expiry", **{"session.timeout.ms": SESSION_S * 1000})
    try:
        wait_until(lambda: new.assignment == set(range(4)), timeout=SESSION_S + MARGIN_S,
                   message="the new member's assignment after the old member's session timeout")
        elapsed = time.monotonic() - destroyed_at
        assert elapsed < SESSION_S + MARGIN_S
        members = describe(admin, "g-destroyed").members
        assert len(members) == 1 and members[0].client_id.startswith("rdkafka")
    finally:
        new.close()


def test_closed_static_members_expire_and_the_group_can_be_deleted(gbroker):
    """Static members do not send LeaveGroup when they close; they expire
    after their session timeout, the group becomes Empty and DeleteGroups
    succeeds."""
    create(gbroker, "static-expiry", 2)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    conf = {"session.timeout.ms": SESSION_S * 1000}
    a = GroupConsumer(gbroker, "g-static-expiry", "static-expiry", **{"group.instance.id": "a", **conf})
    b = GroupConsumer(gbroker, "g-static-expiry", "static-expiry", **{"group.instance.id": "b", **conf})
    wait_until(lambda: len(a.assignment) + len(b.assignment) == 2 and a.assignment and b.assignment,
               timeout=30, message="both static members assigned")
    a.close()
    b.close()
    closed_at = time.monotonic()
    assert len(describe(admin, "g-static-expiry").members) == 2, "static members stay after close"
    try:
        admin.delete_consumer_groups(["g-static-expiry"])["g-static-expiry"].result(30)
        raise AssertionError("a group with members was deleted")
    except Exception as e:  # noqa: BLE001 (KafkaException carries the code)
        assert e.args[0].code() == KafkaError.NON_EMPTY_GROUP, e
    wait_until(lambda: str(describe(admin, "g-static-expiry").state).endswith("EMPTY"),
               timeout=SESSION_S + MARGIN_S, interval=0.2, message="group empty after the session timeout")
    assert time.monotonic() - closed_at < SESSION_S + MARGIN_S
    admin.delete_consumer_groups(["g-static-expiry"])["g-static-expiry"].result(30)
    listed = admin.list_consumer_groups().result(30)
    assert "g-static-expiry" not in [g.group_id for g in listed.valid]


def test_list_groups_type(gbroker):
    create(gbroker, "typed", 1)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    a = GroupConsumer(gbroker, "g-typed", "typed")
    try:
        wait_until(lambda: a.assignment == {0}, timeout=30, message="assigned")
        classic = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(30)
        by_id = {g.group_id: g for g in classic.valid}
        assert "g-typed" in by_id
        assert by_id["g-typed"].type == ConsumerGroupType.CLASSIC
        assert by_id["g-typed"].state == ConsumerGroupState.STABLE
        consumer = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
        assert "g-typed" not in [g.group_id for g in consumer.valid]
        both = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC},
                                          states={ConsumerGroupState.EMPTY}).result(30)
        assert "g-typed" not in [g.group_id for g in both.valid]
        # The same over the wire: ListGroups v5 with a types filter.
        assert list_groups_v5(gbroker.port, ["Classic"]) == (0, [("g-typed", "consumer", "Stable", "classic")])
        assert list_groups_v5(gbroker.port, ["consumer"]) == (0, [])
        assert list_groups_v5(gbroker.port, [])[1] == [("g-typed", "consumer", "Stable", "classic")]
    finally:
        a.close()


def uvarint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def compact_string(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def list_groups_v5(port, types):
    """(error, [(group, protocol type, state, type)]) of a ListGroups v5."""
    body = uvarint(1)  # states filter: empty compact array
    body += uvarint(len(types) + 1) + b"".join(compact_string(t) for t in types)
    body += b"\x00"  # tagged fields
    header = struct.pack(">hhi", 16, 5, 11) + string("raw-test") + b"\x00"
    payload = header + body
    with connect(port, timeout=30) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        r = CompactReader(read_response(sock))
    assert r.take(">i") == 11
    r.uvarint()  # response header tagged fields
    r.take(">i")  # throttle time
    error = r.take(">h")
    groups = []
    for _ in range(r.uvarint() - 1):
        groups.append((r.compact_string(), r.compact_string(), r.compact_string(), r.compact_string()))
        r.uvarint()
    return error, groups


class CompactReader(Reader):
    def uvarint(self):
        shift, value = 0, 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint() - 1
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def test_api_versions_advertises_list_groups_v5(broker):
    with connect(broker.port, timeout=10) as sock:
        sock.sendall(request(18, 0, 5, b""))
        r = Reader(read_response(sock))
    assert r.take(">i") == 5
    assert r.take(">h") == 0
    ranges = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">hhh")
        ranges[key] = (low, high)
    assert ranges[16] == (0, 5), "ListGroups"


def offsets_partition(group, partitions=50):
    """Kafka's placement: Java's String.hashCode, masked, modulo partitions."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


def unreadable_batch(base_offset):
    """A batch with a valid CRC that claims gzip but holds no gzip data:
    recovery keeps it (the CRC is fine), replay cannot decode it."""
    payload = b"this is not gzip data"
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 1, 0, ts, ts, -1, -1, -1, 1) + payload
    return struct.pack(">qiibI", base_offset, 4 + 1 + 4 + len(after_crc), -1, 2, crc32c(after_crc)) + after_crc


def next_offset(segment):
    data = segment.read_bytes()
    pos, offset = 0, 0
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        last_delta = struct.unpack_from(">i", data, pos + 23)[0]
        offset = base + last_delta + 1
        pos += 12 + length
    return offset


def test_unreadable_offsets_partition_fails_only_its_groups(broker_factory):
    """A read error while replaying __consumer_offsets at start is logged and
    makes that partition's groups unavailable (COORDINATOR_NOT_AVAILABLE),
    while the groups of other partitions are served."""
    broken, fine = "g-unreadable", "g-readable"
    assert offsets_partition(broken) != offsets_partition(fine)
    broker = broker_factory(extra_args=FAST)
    create(broker, "loadfail", 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for group in (broken, fine):
        req = ConsumerGroupTopicPartitions(group, [TopicPartition("loadfail", 0, 5)])
        admin.alter_consumer_group_offsets([req])[group].result(30)
    assert broker.stop() == 0
    directory = broker.data_dir / f"__consumer_offsets-{offsets_partition(broken)}"
    segment = sorted(directory.glob("*.log"))[-1]
    with open(segment, "ab") as f:
        f.write(unreadable_batch(next_offset(segment)))
    broker.start()
    raw = Raw(broker)
    # The answer comes from the partition's shard once it has tried to load.
    assert raw.heartbeat(broken, 1, "m") == 15     # COORDINATOR_NOT_AVAILABLE
    assert raw.heartbeat(fine, 1, "m") == 25       # UNKNOWN_MEMBER_ID: served
    wait_until(lambda: "cannot be loaded" in broker.log(), timeout=10, message="the load failure logged")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": fine})
    try:
        committed = c.committed([TopicPartition("loadfail", 0)], timeout=10)
        assert committed[0].offset == 5
    finally:
        c.close()
