"""Kafka parity: AlterConfigs, dynamic broker configs, group configs,
authorized operations, ListOffsets max timestamp, every Kafka topic config,
keys on compacted topics, DescribeLogDirs, DescribeProducers and feature
flags, with librdkafka (confluent-kafka) and the Java Admin client."""

import os
import pathlib
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AclOperation, AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, OffsetSpec, ResourceType)

import kafka_wire as kw
from conftest import wait_until
from test_java import JAVA_DIR, classpath, run_java

SOURCE_TOPIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
SOURCE_DYNAMIC_BROKER = ConfigSource.DYNAMIC_BROKER_CONFIG.value
SOURCE_DEFAULT = ConfigSource.DEFAULT_CONFIG.value
SOURCE_GROUP = ConfigSource.GROUP_CONFIG.value


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    client = admin(broker)
    client.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)


def describe(broker, restype, name):
    client = admin(broker)
    res = ConfigResource(restype, name)
    return client.describe_configs([res])[res].result(30)


def incremental(broker, restype, name, entries):
    client = admin(broker)
    res = ConfigResource(restype, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.DELETE if v is None else AlterConfigOpType.SET)
        for k, v in entries.items()])
    return client.incremental_alter_configs([res])[res].result(30)


def error_of(future):
    with pytest.raises(KafkaException) as e:
        future.result(30)
    return e.value.args[0]


def produce(broker, topic, messages, conf=None):
    """messages: (key, value, partition, timestamp); returns (error, message) delivery reports."""
    reports = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 100, **(conf or {})})
    for key, value, partition, timestamp in messages:
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        p.produce(topic, key=key, value=value, on_delivery=lambda e, m: reports.append((e, m)), **kwargs)
    assert p.flush(60) == 0
    return reports


@pytest.fixture(scope="module")
def java(tmp_path_factory):
    out = tmp_path_factory.mktemp("javaclasses")
    cp = classpath()
    sources = [str(p) for p in JAVA_DIR.glob("*.java")]
    subprocess.run(["javac", "-nowarn", "-cp", cp, "-d", str(out), *sources], check=True, timeout=300)
    return f"{out}:{cp}"


def admin_check(java, broker, *args):
    return [l for l in run_java(java, "AdminCheck", broker.bootstrap, *args) if not l.startswith("SLF4J")]


# 1. AlterConfigs (API 33): the given set replaces all overrides.

def test_alter_configs_replaces_every_override(broker):
    create(broker, "legacy", 1, {"retention.ms": "1000", "segment.ms": "60000"})
    a = admin(broker)
    res = ConfigResource(ResourceType.TOPIC, "legacy", set_config={"retention.ms": "2000", "delete.retention.ms": "7"})
    assert a.alter_configs([res])[res].result(30) is None
    configs = describe(broker, ResourceType.TOPIC, "legacy")
    assert (configs["retention.ms"].value, configs["retention.ms"].source) == ("2000", SOURCE_TOPIC)
    assert (configs["delete.retention.ms"].value, configs["delete.retention.ms"].source) == ("7", SOURCE_TOPIC)
    # segment.ms was not in the set: back to the default.
    assert (configs["segment.ms"].value, configs["segment.ms"].source) == ("604800000", SOURCE_DEFAULT)
    # validate_only changes nothing.
    res = ConfigResource(ResourceType.TOPIC, "legacy", set_config={"retention.ms": "3000"})
    assert a.alter_configs([res], validate_only=True)[res].result(30) is None
    assert describe(broker, ResourceType.TOPIC, "legacy")["retention.ms"].value == "2000"
    # Kafka's errors: bad value and unknown name INVALID_CONFIG, unknown topic.
    for bad in ({"retention.ms": "soon"}, {"no.such.config": "1"}):
        res = ConfigResource(ResourceType.TOPIC, "legacy", set_config=bad)
        assert error_of(a.alter_configs([res])[res]).code() == KafkaError.INVALID_CONFIG
    res = ConfigResource(ResourceType.TOPIC, "nope", set_config={"retention.ms": "1"})
    assert error_of(a.alter_configs([res])[res]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The broker resource: dynamic keys replace the broker's set; static ones are refused.
    broker_res = ConfigResource(ResourceType.BROKER, "0", set_config={"log.retention.ms": "86400000"})
    assert a.alter_configs([broker_res])[broker_res].result(30) is None
    entry = describe(broker, ResourceType.BROKER, "0")["log.retention.ms"]
    assert (entry.value, entry.source) == ("86400000", SOURCE_DYNAMIC_BROKER)
    broker_res = ConfigResource(ResourceType.BROKER, "0", set_config={"num.partitions": "3"})
    err = error_of(a.alter_configs([broker_res])[broker_res])
    assert err.code() == KafkaError.INVALID_REQUEST and "Cannot update these configs dynamically" in err.str()
    # An empty set removes the broker's dynamic configs.
    broker_res = ConfigResource(ResourceType.BROKER, "0", set_config={})
    assert a.alter_configs([broker_res])[broker_res].result(30) is None
    assert describe(broker, ResourceType.BROKER, "0")["log.retention.ms"].source != SOURCE_DYNAMIC_BROKER


# 2. Dynamic broker configs.

def test_dynamic_broker_config_applies_on_every_shard_and_survives_restart(broker):
    create(broker, "dyn", 4)
    create(broker, "dyn-own", 1, {"max.message.bytes": "100000"})
    big = b"z" * 20_000
    plain = {"compression.type": "none"}
    assert all(e is None for e, _ in produce(broker, "dyn", [(None, big, p, None) for p in range(4)], plain))
    # message.max.bytes is dynamic: the topic default drops on every shard at once.
    incremental(broker, ResourceType.BROKER, "0", {"message.max.bytes": "10000"})
    reports = produce(broker, "dyn", [(None, big, p, None) for p in range(4)], plain)
    assert sorted(m.partition() for _, m in reports) == [0, 1, 2, 3]
    assert all(e is not None and e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e, _ in reports), reports
    # A topic with its own override keeps it.
    assert produce(broker, "dyn-own", [(None, big, 0, None)], plain)[0][0] is None
    entry = describe(broker, ResourceType.BROKER, "0")["message.max.bytes"]
    assert (entry.value, entry.source, entry.is_read_only) == ("10000", SOURCE_DYNAMIC_BROKER, False)
    entry = describe(broker, ResourceType.TOPIC, "dyn")["max.message.bytes"]
    assert (entry.value, entry.source) == ("10000", SOURCE_DYNAMIC_BROKER)
    # Read-only configs get Kafka's answer.
    with pytest.raises(KafkaException) as e:
        incremental(broker, ResourceType.BROKER, "0", {"num.partitions": "8"})
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically: Set(num.partitions)" in e.value.args[0].str()
    with pytest.raises(KafkaException) as e:
        incremental(broker, ResourceType.BROKER, "0", {"log.retention.ms": "soon"})
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    # Persisted in the metadata directory: still applied after a restart.
    broker.restart()
    entry = describe(broker, ResourceType.BROKER, "0")["message.max.bytes"]
    assert (entry.value, entry.source) == ("10000", SOURCE_DYNAMIC_BROKER)
    reports = produce(broker, "dyn", [(None, big, p, None) for p in range(4)], plain)
    assert all(e is not None and e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e, _ in reports), reports
    # Deleting it restores the static default everywhere.
    incremental(broker, ResourceType.BROKER, "0", {"message.max.bytes": None})
    assert all(e is None for e, _ in produce(broker, "dyn", [(None, big, p, None) for p in range(4)], plain))


def test_cluster_wide_broker_defaults_with_java(broker_factory, java):
    broker = broker_factory(extra_args=["--override", "log.retention.ms=3600000"])
    lines = admin_check(java, broker, "set-broker", "", "log.retention.ms", "7200000")
    assert lines == ["SET OK"], lines
    # The cluster-default resource lists only the dynamic defaults.
    lines = admin_check(java, broker, "describe-broker", "")
    assert lines == ["CONFIG log.retention.ms 7200000 DYNAMIC_DEFAULT_BROKER_CONFIG readOnly=false "
                     "log.retention.ms=7200000@DYNAMIC_DEFAULT_BROKER_CONFIG"], lines
    # The broker's own view: the dynamic default wins over the static value, both in the synonyms.
    line, = admin_check(java, broker, "describe-broker", "0", "log.retention.ms")
    assert line.startswith("CONFIG log.retention.ms 7200000 DYNAMIC_DEFAULT_BROKER_CONFIG readOnly=false "
                           "log.retention.ms=7200000@DYNAMIC_DEFAULT_BROKER_CONFIG "
                           "log.retention.ms=3600000@STATIC_BROKER_CONFIG"), line
    # A per-broker value wins over the cluster default.
    assert admin_check(java, broker, "set-broker", "0", "log.retention.ms", "1800000") == ["SET OK"]
    line, = admin_check(java, broker, "describe-broker", "0", "log.retention.ms")
    assert line.startswith("CONFIG log.retention.ms 1800000 DYNAMIC_BROKER_CONFIG"), line
    create(broker, "inherits", 1)
    assert describe(broker, ResourceType.TOPIC, "inherits")["retention.ms"].value == "1800000"
    # Read-only keys: Kafka's InvalidRequestException and message.
    lines = admin_check(java, broker, "set-broker", "", "log.retention.hours", "1")
    assert lines == ["SET ERROR InvalidRequestException: Cannot update these configs dynamically: "
                     "Set(log.retention.hours)"], lines
    line, = admin_check(java, broker, "describe-broker", "0", "num.partitions")
    assert "readOnly=true" in line


# 3. Group configs (resource type 32).

def test_group_configs_described_with_defaults_and_altered(broker, java):
    configs = describe(broker, ResourceType.GROUP, "orders")
    assert (configs["consumer.session.timeout.ms"].value, configs["consumer.session.timeout.ms"].source) == \
        ("45000", SOURCE_DEFAULT)
    assert configs["consumer.heartbeat.interval.ms"].value == "5000"
    incremental(broker, ResourceType.GROUP, "orders", {"consumer.session.timeout.ms": "50000"})
    configs = describe(broker, ResourceType.GROUP, "orders")
    assert (configs["consumer.session.timeout.ms"].value, configs["consumer.session.timeout.ms"].source) == \
        ("50000", SOURCE_GROUP)
    # Kafka's bounds (group.consumer.min.session.timeout.ms) and names.
    for bad in ({"consumer.session.timeout.ms": "1000"}, {"session.timeout.ms": "1"}):
        with pytest.raises(KafkaException) as e:
            incremental(broker, ResourceType.GROUP, "orders", bad)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    lines = admin_check(java, broker, "group-configs", "orders", "consumer.heartbeat.interval.ms", "6000")
    assert "SET OK" in lines
    assert "CONFIG consumer.heartbeat.interval.ms 6000 DYNAMIC_GROUP_CONFIG" in lines
    assert "CONFIG consumer.session.timeout.ms 50000 DYNAMIC_GROUP_CONFIG" in lines
    assert "CONFIG share.record.lock.duration.ms 30000 DEFAULT_CONFIG" in lines
    broker.restart()
    configs = describe(broker, ResourceType.GROUP, "orders")
    assert configs["consumer.heartbeat.interval.ms"].value == "6000"


# 4. Authorized operations.

def test_authorized_operations_without_authorizer(broker, java):
    create(broker, "ops", 1)
    a = admin(broker)
    cluster = a.describe_cluster(include_authorized_operations=True).result(30)
    assert sorted(op.name for op in cluster.authorized_operations) == [
        "ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"]
    topic = a.describe_topics(TopicCollection(["ops"]), include_authorized_operations=True)["ops"].result(30)
    assert sorted(op.name for op in topic.authorized_operations) == [
        "ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"]
    assert not a.describe_cluster().result(30).authorized_operations
    # DescribeGroups (v3+) too, for a group that exists (it committed).
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ops-group",
                  "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition("ops", 0, 0)], asynchronous=False)
    finally:
        c.close()
    group = a.describe_consumer_groups(["ops-group"], include_authorized_operations=True)["ops-group"].result(30)
    assert sorted(op.name for op in group.authorized_operations) == [
        "ALTER_CONFIGS", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ"]
    lines = admin_check(java, broker, "cluster-ops", "ops")
    assert lines == ["CLUSTER ALTER,ALTER_CONFIGS,CLUSTER_ACTION,CREATE,DESCRIBE,DESCRIBE_CONFIGS,IDEMPOTENT_WRITE",
                     "TOPIC ALTER,ALTER_CONFIGS,CREATE,DELETE,DESCRIBE,DESCRIBE_CONFIGS,READ,WRITE"], lines


# 5. ListOffsets MAX_TIMESTAMP (KIP-734).

def test_list_offsets_max_timestamp_finds_the_record(broker, java):
    create(broker, "maxts", 1)
    t = 1_700_000_000_000
    reports = produce(broker, "maxts", [(None, b"a", 0, t), (None, b"b", 0, t + 2), (None, b"c", 0, t + 1)],
                      {"linger.ms": 500})
    assert [m.offset() for _, m in reports] == [0, 1, 2]
    client = admin(broker)
    found = client.list_offsets({TopicPartition("maxts", 0): OffsetSpec.max_timestamp()})
    result = found[TopicPartition("maxts", 0)].result(30)
    assert (result.offset, result.timestamp) == (1, t + 2)
    assert admin_check(java, broker, "max-timestamp", "maxts") == [f"MAXTS 1 {t + 2}"]


# 6. Every Kafka 4.x topic config.

def test_every_kafka_topic_config_is_accepted_stored_and_described(broker):
    configs = {
        "segment.jitter.ms": "1000", "delete.retention.ms": "5000", "min.compaction.lag.ms": "10",
        "max.compaction.lag.ms": "600000", "min.cleanable.dirty.ratio": "0.25", "compression.gzip.level": "6",
        "compression.lz4.level": "10", "compression.zstd.level": "5", "message.timestamp.before.max.ms": "60000",
        "message.timestamp.after.max.ms": "60000", "local.retention.ms": "-2", "local.retention.bytes": "-2",
        "remote.storage.enable": "false", "remote.log.copy.disable": "false", "remote.log.delete.on.disable": "false",
        "message.downconversion.enable": "false", "leader.replication.throttled.replicas": "0:0",
        "follower.replication.throttled.replicas": "*",
    }
    create(broker, "allconfigs", 1, configs)
    described = describe(broker, ResourceType.TOPIC, "allconfigs")
    for key, value in configs.items():
        assert (described[key].value, described[key].source) == (value, SOURCE_TOPIC), key
    create(broker, "defaults", 1)
    described = describe(broker, ResourceType.TOPIC, "defaults")
    assert described["delete.retention.ms"].value == "86400000"
    assert described["min.cleanable.dirty.ratio"].value == "0.5"
    assert described["message.timestamp.after.max.ms"].value == "3600000"
    # Refused as Kafka 4.x refuses them: removed names, bad values, tiered storage.
    for name, config in [("r1", {"message.format.version": "3.0"}),
                         ("r2", {"message.timestamp.difference.max.ms": "1000"}),
                         ("r3", {"min.cleanable.dirty.ratio": "2"}),
                         ("r4", {"compression.lz4.level": "99"}),
                         ("r5", {"remote.storage.enable": "true"}),
                         ("r6", {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})]:
        client = admin(broker)
        t = NewTopic(name, 1, 1, config=config)
        assert error_of(client.create_topics([t])[name]).code() == KafkaError.INVALID_CONFIG, name
    # Stored configs can be altered like the enforced ones.
    incremental(broker, ResourceType.TOPIC, "allconfigs", {"delete.retention.ms": "9"})
    assert describe(broker, ResourceType.TOPIC, "allconfigs")["delete.retention.ms"].value == "9"


# 7. Records without a key on a compacted topic.

def test_compacted_topic_refuses_records_without_key(broker):
    create(broker, "compacted", 2, {"cleanup.policy": "compact"})
    for codec in ["none", "lz4", "zstd"]:
        reports = produce(broker, "compacted", [(b"k1", b"a", 0, None), (None, b"b", 0, None),
                                                (b"k3", b"c", 0, None), (None, b"d", 0, None)],
                          {"compression.type": codec, "linger.ms": 500})
        codes = [(m.key(), e.code() if e else None) for e, m in reports]
        # librdkafka fails exactly the keyless records with INVALID_RECORD and the
        # others of the refused batch as collateral.
        assert codes == [(b"k1", KafkaError._INVALID_DIFFERENT_RECORD), (None, KafkaError.INVALID_RECORD),
                         (b"k3", KafkaError._INVALID_DIFFERENT_RECORD), (None, KafkaError.INVALID_RECORD)], (codec, codes)
    # Records with keys go in, on both partitions (and shards).
    reports = produce(broker, "compacted", [(b"x", b"1", 0, None), (b"y", b"2", 1, None)])
    assert all(e is None for e, _ in reports), reports
    low, high = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "w"}).get_watermark_offsets(
        TopicPartition("compacted", 0), timeout=10)
    assert (low, high) == (0, 1), "nothing of the refused batches was appended"
    # Kafka's per-record errors and summary (KIP-467), seen on the wire.
    batch = kw.record_batch([b"a", b"b", b"c"], keys=[b"k", None, None])
    with kw.connect(broker.port) as s:
        s.sendall(kw.request(0, 8, 7, kw.produce_v3("compacted", 0, batch)))
        error, base, record_errors, message = kw.produce_v8_result(kw.read_response(s))
    text = "Compacted topic cannot accept message without key in topic partition compacted-0"
    assert (error, base) == (87, -1)
    assert record_errors == [(1, text), (2, text)]
    assert message == ("One or more records have been rejected due to 2 record errors in total, and only showing "
                       f"the first three errors at most: [RecordError(batchIndex=1, message='{text}'), "
                       f"RecordError(batchIndex=2, message='{text}')]")
    # The same batch goes into a topic that is not compacted.
    create(broker, "deleting", 1)
    with kw.connect(broker.port) as s:
        s.sendall(kw.request(0, 8, 8, kw.produce_v3("deleting", 0, batch)))
        assert kw.produce_v8_result(kw.read_response(s))[:3] == (0, 0, [])
    # A dynamic log.cleanup.policy=compact applies to topics without an override.
    incremental(broker, ResourceType.BROKER, "0", {"log.cleanup.policy": "compact"})
    with kw.connect(broker.port) as s:
        s.sendall(kw.request(0, 8, 9, kw.produce_v3("deleting", 0, batch)))
        assert kw.produce_v8_result(kw.read_response(s))[0] == 87


# 8. DescribeLogDirs, DescribeProducers, features.

def test_describe_log_dirs_with_java(broker, java):
    create(broker, "dirs", 4)
    produce(broker, "dirs", [(None, b"v" * 1000, p, None) for p in range(4) for _ in range(p + 1)])
    lines = admin_check(java, broker, "log-dirs", "0")
    dirs = [l.split() for l in lines if l.startswith("DIR")]
    assert len(dirs) == 1
    _, path, total, usable, error = dirs[0]
    assert path == str(broker.data_dir.resolve()) and error == "error=none"
    total, usable = int(total.split("=")[1]), int(usable.split("=")[1])
    assert 0 < usable <= total
    replicas = {(t, int(p)): (int(size), int(lag), future) for _, t, p, size, lag, future in
                (l.split() for l in lines if l.startswith("REPLICA"))}
    for p in range(4):
        size = sum(f.stat().st_size for f in (broker.data_dir / f"dirs-{p}").glob("*.log"))
        assert replicas[("dirs", p)] == (size, 0, "false"), p
        assert size > 1000 * (p + 1)
    assert ("__consumer_offsets", 0) in replicas


def test_describe_producers_with_java(broker, java):
    create(broker, "idem", 2)
    reports = produce(broker, "idem", [(None, b"v", p, None) for p in (0, 1) for _ in range(3)],
                      {"enable.idempotence": True, "linger.ms": 0, "max.in.flight.requests.per.connection": 1})
    assert all(e is None for e, _ in reports)
    lines = admin_check(java, broker, "producers", "idem", "2")
    producers = [l.split() for l in lines if l.startswith("PRODUCER")]
    assert sorted(int(p[1]) for p in producers) == [0, 1], lines
    assert len({p[2] for p in producers}) == 1, "one producer id on both partitions"
    for _, _, _, epoch, last_sequence, last_timestamp, coordinator_epoch, txn_start in producers:
        assert (epoch, last_sequence, coordinator_epoch, txn_start) == ("0", "2", "-1", "-1")
    assert "PARTITIONS 2" in lines


def test_feature_flags_in_api_versions(broker, java):
    lines = admin_check(java, broker, "features")
    assert "SUPPORTED metadata.version 7 7" in lines
    assert "FINALIZED metadata.version 7 7" in lines
    assert any(l.startswith("EPOCH ") and l != "EPOCH none" for l in lines), lines


def test_api_versions_advertise_the_new_apis(broker):
    import struct
    with kw.connect(broker.port) as s:
        s.sendall(kw.request(18, 0, 1, b""))
        r = kw.Reader(kw.read_response(s))
    r.take(">i")
    assert r.take(">h") == 0
    versions = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">hhh")
        versions[key] = (low, high)
    assert versions[33] == (0, 2), "AlterConfigs"
    assert versions[35] == (1, 4), "DescribeLogDirs"
    assert versions[61] == (0, 0), "DescribeProducers"
    assert versions[44] == (0, 1), "IncrementalAlterConfigs"
    assert versions[21] == (0, 2), "DeleteRecords"
    assert versions[23] == (2, 4), "OffsetForLeaderEpoch"
    assert versions[43] == (0, 2), "ElectLeaders"
    assert versions[45] == (0, 1), "AlterPartitionReassignments"
    assert versions[46] == (0, 0), "ListPartitionReassignments"
    # Transactions at transaction.version 1 (no KIP-890 versions).
    assert versions[24] == (0, 3), "AddPartitionsToTxn"
    assert versions[25] == (0, 4), "AddOffsetsToTxn"
    assert versions[26] == (0, 4), "EndTxn"
    assert versions[27] == (1, 1), "WriteTxnMarkers"
    assert versions[28] == (0, 4), "TxnOffsetCommit"
    assert versions[65] == (0, 0), "DescribeTransactions"
    assert versions[66] == (0, 1), "ListTransactions"


# The Java Admin table in the report: what works and what does not.

WORKING_ADMIN_CALLS = {
    "createTopics", "listTopics", "describeTopics", "describeCluster", "describeConfigs", "incrementalAlterConfigs",
    "createPartitions", "deleteTopics", "listOffsets", "describeLogDirs", "describeReplicaLogDirs",
    "listConsumerGroups", "listGroups", "alterConsumerGroupOffsets", "listConsumerGroupOffsets",
    "describeConsumerGroups", "describeClassicGroups", "deleteConsumerGroupOffsets", "deleteConsumerGroups",
    "describeFeatures", "describeProducers", "deleteRecords", "electLeaders", "listPartitionReassignments",
    "listTransactions", "fenceProducers", "abortTransaction",
}


def test_java_admin_survey(broker, java):
    create(broker, "survey", 1)
    lines = admin_check(java, broker, "survey", "survey")
    results = {l.split()[1]: l.split(maxsplit=2)[2] for l in lines if l.startswith("SURVEY")}
    for call in WORKING_ADMIN_CALLS:
        assert results[call].startswith("OK"), (call, results[call])
    assert results["removeMembersFromConsumerGroup"].startswith("ERROR UnknownMemberIdException")
    # The survey cancels a reassignment that is not running.
    assert results["alterPartitionReassignments"].startswith("ERROR NoReassignmentInProgressException")
    # "tx" has no transaction state until fenceProducers (run later) creates it.
    assert results["describeTransactions"].startswith("ERROR TransactionalIdNotFoundException"), results[
        "describeTransactions"]


# 9. DeleteRecords (API 21): the log start offset moves, durably.

def fetch_error(broker, topic, partition, offset):
    s = kw.connect(broker.port)
    try:
        s.sendall(kw.request(1, 4, 1, kw.fetch_v4(topic, partition, offset)))
        return kw.fetch_v4_error(kw.read_response(s))
    finally:
        s.close()


def low_high(broker, topic, partition):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lw", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def test_delete_records_moves_the_log_start_durably(broker_factory, java):
    broker = broker_factory()
    create(broker, "purge", 2, {"segment.bytes": "2048"})
    msgs = [(None, b"v%04d" % i + b"x" * 100, i % 2, None) for i in range(400)]
    assert all(e is None for e, _ in produce(broker, "purge", msgs, {"linger.ms": 0, "batch.num.messages": 1}))
    part = broker.data_dir / "purge-0"
    segments_before = sorted(part.glob("*.log"))
    assert len(segments_before) > 3
    a = admin(broker)
    found = a.delete_records([TopicPartition("purge", 0, 120), TopicPartition("purge", 1, -1)])
    lows = {tp.partition: f.result(30).low_watermark for tp, f in found.items()}
    assert lows == {0: 120, 1: 200}
    assert low_high(broker, "purge", 0) == (120, 200)
    assert low_high(broker, "purge", 1) == (200, 200)
    # Below the start: OFFSET_OUT_OF_RANGE; at the start: data.
    assert fetch_error(broker, "purge", 0, 119) == 1
    assert fetch_error(broker, "purge", 0, 120) == 0
    # Whole segments below the start are gone.
    remaining = sorted(part.glob("*.log"))
    assert len(remaining) < len(segments_before)
    assert int(remaining[0].stem) <= 120 < int(remaining[1].stem) if len(remaining) > 1 else True
    # Past the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    with pytest.raises(KafkaException) as e:
        a.delete_records([TopicPartition("purge", 0, 500)])[TopicPartition("purge", 0, 500)].result(30)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # The Java Admin client; a start never moves back.
    assert admin_check(java, broker, "delete-records", "purge", "0", "150") == ["LOW 150"]
    assert admin_check(java, broker, "delete-records", "purge", "0", "130") == ["LOW 150"]
    # Durable across SIGTERM and kill -9.
    assert broker.stop() == 0
    broker.start()
    assert low_high(broker, "purge", 0) == (150, 200)
    assert fetch_error(broker, "purge", 0, 149) == 1
    assert admin_check(java, broker, "delete-records", "purge", "0", "170") == ["LOW 170"]
    broker.kill9()
    broker.start()
    assert low_high(broker, "purge", 0) == (170, 200)
    assert (broker.data_dir / "log-start-offset-checkpoint").read_text().splitlines()[2:] == [
        "purge 0 170", "purge 1 200"]
    # A consumer from the beginning starts at the log start.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "purge-reader",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["purge"])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        got += [m for m in c.consume(100, 0.5) if not m.error()]
    c.close()
    assert sorted(m.offset() for m in got if m.partition() == 0) == list(range(170, 200))
    # A topic deleted and created again starts from 0 again.
    a = admin(broker)
    a.delete_topics(["purge"])["purge"].result(30)
    wait_until(lambda: "purge" not in a.list_topics(timeout=10).topics, message="topic gone")
    create(broker, "purge", 2)
    assert low_high(broker, "purge", 0) == (0, 0)
