"""kcat (librdkafka's command-line client) against a real broker."""

import json
import subprocess

import pytest


def kcat(broker, *args, input=None, timeout=60):
    result = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input,
                            capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode() + broker.log()
    return result.stdout.decode()


def test_produce_consume_and_metadata(broker):
    lines = [f"key{i}:value number {i}" for i in range(500)]
    kcat(broker, "-P", "-t", "lines", "-K:", input=("\n".join(lines) + "\n").encode())
    out = kcat(broker, "-C", "-t", "lines", "-e", "-o", "beginning", "-f", "%k:%s\n")
    assert out.splitlines() == lines

    meta = kcat(broker, "-L")
    assert f"broker 0 at {broker.bootstrap}" in meta
    assert 'topic "lines" with 1 partitions' in meta

    meta_json = json.loads(kcat(broker, "-L", "-J"))
    assert any(t["topic"] == "lines" for t in meta_json["topics"])


def test_partition_specific_produce_and_json_offsets(broker):
    # Auto-created topics get one partition; create more via a cross-shard topic.
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("parts", 4, 1)])["parts"].result(30)
    for p in range(4):
        data = "".join(f"p{p}-m{i}\n" for i in range(20 + p))
        kcat(broker, "-P", "-t", "parts", "-p", str(p), input=data.encode())
    for p in range(4):
        out = kcat(broker, "-C", "-t", "parts", "-p", str(p), "-e", "-o", "beginning", "-J")
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [r["payload"] for r in records] == [f"p{p}-m{i}" for i in range(20 + p)]
        assert [r["offset"] for r in records] == list(range(20 + p))
        assert all(r["partition"] == p for r in records)
    # Reading from an offset in the middle.
    out = kcat(broker, "-C", "-t", "parts", "-p", "3", "-o", "10", "-e", "-f", "%o %s\n")
    assert out.splitlines()[0] == "10 p3-m10"


@pytest.mark.parametrize("shards", [1])
def test_single_shard_smoke(broker_factory, shards):
    b = broker_factory(shards=shards)
    kcat(b, "-P", "-t", "one", input=b"a\nb\nc\n")
    assert kcat(b, "-C", "-t", "one", "-e", "-f", "%s\n").splitlines() == ["a", "b", "c"]
