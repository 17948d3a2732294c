"""Malformed or stale group requests get Kafka's error codes, and the
coordinator keeps serving other groups."""

import struct

import pytest
from confluent_kafka import Consumer, Producer

from conftest import wait_until
from kafka_wire import (Reader, connect, heartbeat_v0, join_group_v1, offset_commit_v2, read_response,
                        request, sync_group_v0)

FAST = ["--override", "group.initial.rebalance.delay.ms=0"]


class Raw:
    def __init__(self, broker):
        self.sock = connect(broker.port, timeout=30)
        self.corr = 0

    def call(self, api, version, body):
        self.corr += 1
        self.sock.sendall(request(api, version, self.corr, body))
        r = Reader(read_response(self.sock))
        assert r.take(">i") == self.corr
        return r

    def join(self, group, member_id="", protocols=(("range", b"\x00\x00\x00\x00\x00\x00"),), **kw):
        r = self.call(11, 1, join_group_v1(group, member_id, list(protocols), **kw))
        error, generation = r.take(">h"), r.take(">i")
        protocol, leader, member = r.string(), r.string(), r.string()
        return error, generation, protocol, leader, member

    def heartbeat(self, group, generation, member_id):
        return self.call(12, 0, heartbeat_v0(group, generation, member_id)).take(">h")

    def sync(self, group, generation, member_id, assignments=()):
        r = self.call(14, 0, sync_group_v0(group, generation, member_id, list(assignments)))
        return r.take(">h")

    def commit(self, group, generation, member_id, topic="t", partition=0, offset=1):
        r = self.call(8, 2, offset_commit_v2(group, generation, member_id, topic, partition, offset))
        assert r.take(">i") == 1
        r.string()
        assert r.take(">i") == 1
        r.take(">i")
        return r.take(">h")


def test_group_error_codes(broker_factory):
    broker = broker_factory(extra_args=FAST)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("t", value=b"x")
    assert p.flush(30) == 0
    raw = Raw(broker)
    # A member joins and syncs as leader: the group is stable.
    error, generation, protocol, leader, member = raw.join("g1")
    assert (error, protocol) == (0, "range") and leader == member and generation >= 1
    assert raw.sync("g1", generation, member, [(member, b"")]) == 0
    assert raw.heartbeat("g1", generation, member) == 0

    assert raw.heartbeat("g1", generation, "no-such-member") == 25      # UNKNOWN_MEMBER_ID
    assert raw.heartbeat("g1", generation + 7, member) == 22           # ILLEGAL_GENERATION
    assert raw.heartbeat("never-created", 1, "m") == 25
    assert raw.sync("g1", generation + 1, member) == 22
    assert raw.join("g1", member_id="stranger")[0] == 25
    assert raw.join("g2", protocols=())[0] == 23                          # INCONSISTENT_GROUP_PROTOCOL
    assert raw.join("g2", protocol_type="")[0] == 23
    assert raw.join("g1", protocols=(("roundrobin", b""),), member_id="")[0] == 23  # no common protocol
    assert raw.join("g2", protocols=(("range", b"x" * (2 * 1024 * 1024)),))[0] == 23  # huge metadata
    assert raw.join("g2", session_ms=10)[0] == 26                         # INVALID_SESSION_TIMEOUT
    assert raw.join("")[0] == 24                                          # INVALID_GROUP_ID
    assert raw.commit("g1", generation + 3, member) == 22
    assert raw.commit("g1", generation, "stranger") == 25
    assert raw.commit("g1", generation, member, topic="missing-topic") == 3
    assert raw.commit("g1", generation, member) == 0
    # The coordinator still serves: the member heartbeats, and another group
    # works end to end with a real client.
    assert raw.heartbeat("g1", generation, member) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-ok", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    c.subscribe(["t"])
    got = []
    try:
        wait_until(lambda: (lambda m: got.append(m) if m is not None and not m.error() else None)(c.poll(0.2)) or got,
                   timeout=30, message="message via a group")
    finally:
        c.close()
    assert got[0].value() == b"x"
    assert broker.alive()
