"""The command-line contract: flags, server.properties, signals, startup errors."""

import os
import signal
import socket
import subprocess
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import BIN, Broker, free_port


def run_fail(args, timeout=30):
    result = subprocess.run([BIN, *args], capture_output=True, timeout=timeout)
    return result.returncode, result.stderr.decode()


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        # A busy port is waited for (a crashed broker's sockets linger);
        # half a second here instead of the default 10 s.
        code, err = run_fail(["--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"),
                              "--override", "ringbroker.startup.port.wait.ms=500"])
    assert code != 0
    assert f"127.0.0.1:{port}" in err and "in use" in err.lower()
    assert len(err.strip().splitlines()) <= 2  # one-line error (plus an optional wait notice)


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = run_fail(["--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(blocker / "data")])
    assert code != 0 and "data directory" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_config_value(tmp_path):
    code, err = run_fail(["--data-dir", str(tmp_path / "d"), "--override", "log.segment.bytes=abc"])
    assert code != 0 and "log.segment.bytes" in err and "abc" in err
    assert len(err.strip().splitlines()) == 1
    props = tmp_path / "bad.properties"
    props.write_text("num.partitions=lots\n")
    code, err = run_fail(["--config", str(props)])
    assert code != 0 and "num.partitions" in err


def test_data_dir_locked_by_another_broker(broker):
    code, err = run_fail(["--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(broker.data_dir)])
    assert code != 0 and "in use by another ringbroker" in err


def test_help_and_version():
    out = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert out.returncode == 0 and b"--listen" in out.stdout
    out = subprocess.run([BIN, "--version"], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith(b"ringbroker ")


def test_server_properties_file(tmp_path):
    port = free_port()
    props = tmp_path / "server.properties"
    props.write_text(
        "# Kafka server.properties\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
        f"log.dirs={tmp_path / 'kdata'}\n"
        "num.partitions=3\n"
        "zookeeper.connect=localhost:2181\n"
        "some.unknown.key=1\n")
    b = Broker(tmp_path / "kdata", port=port)
    b.args = lambda: [BIN, "--config", str(props)]
    b.start()
    try:
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce("auto3", value=b"x")
        assert p.flush(30) == 0
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert len(md.topics["auto3"].partitions) == 3
        assert (tmp_path / "kdata" / "auto3-0").is_dir()
        log = b.log()
        assert "some.unknown.key" in log and "zookeeper.connect" in log
    finally:
        assert b.stop() == 0


def test_sigterm_exits_zero_and_data_survives(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1})
    for i in range(1000):
        p.produce("term", value=b"%d" % i)
    assert p.flush(30) == 0
    started = time.monotonic()
    assert broker.stop(timeout=10) == 0
    assert time.monotonic() - started < 10
    assert "stopped cleanly" in broker.log()
    broker.start()
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition("term", 0), timeout=10)
    c.close()
    assert (low, high) == (0, 1000)


def test_sigint_also_stops(broker):
    broker.proc.send_signal(signal.SIGINT)
    assert broker.proc.wait(10) == 0


def test_memlock_too_low(tmp_path):
    # Soft and hard RLIMIT_MEMLOCK of 64 KiB for the broker process only.
    result = subprocess.run(["prlimit", "--memlock=65536:65536", BIN, "--listen", f"127.0.0.1:{free_port()}",
                             "--data-dir", str(tmp_path / "d"), "--shards", "2"],
                            capture_output=True, timeout=30)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "RLIMIT_MEMLOCK" in err and "ulimit -l" in err
    assert len(err.strip().splitlines()) == 1


def test_io_uring_disabled(tmp_path):
    knob = "/proc/sys/kernel/io_uring_disabled"
    if not os.path.exists(knob) or not os.access(knob, os.W_OK):
        import pytest
        pytest.skip("cannot toggle io_uring here")
    with open(knob) as f:
        before = f.read().strip()
    try:
        with open(knob, "w") as f:
            f.write("2")
        code, err = run_fail(["--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")])
    finally:
        with open(knob, "w") as f:
            f.write(before)
    assert code != 0 and "io_uring is unavailable" in err
    assert len(err.strip().splitlines()) == 1
