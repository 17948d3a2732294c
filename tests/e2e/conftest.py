"""Fixtures that start a real ringbroker on a free 127.0.0.1 port."""

import os
import pathlib
import signal
import socket
import struct
import subprocess
import time

import pytest

from kafka_wire import recv_exact

DEFAULT_SHARDS = int(os.environ.get("RINGBROKER_TEST_SHARDS", "2"))

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("RINGBROKER_BIN", str(ROOT / "target" / "release" / "ringbroker"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_ok(port, timeout=1.0, host="127.0.0.1"):
    """True when the broker answers an ApiVersions v0 request."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            header = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
            s.sendall(struct.pack(">i", len(header)) + header)
            size = struct.unpack(">i", recv_exact(s, 4))[0]
            body = recv_exact(s, size)
            return struct.unpack(">i", body[:4])[0] == 1
    except OSError:
        return False


class Broker:
    """A ringbroker process; restartable on the same data dir and port."""

    def __init__(self, data_dir, shards=None, port=None, extra_args=()):
        # RINGBROKER_TEST_SHARDS runs the suite with 1 shard (scripts/test.sh
        # does both); tests that need two ask for them explicitly.
        shards = DEFAULT_SHARDS if shards is None else shards
        self.data_dir = pathlib.Path(data_dir)
        self.shards = shards
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        self.starts = 0

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def args(self):
        return [BIN, "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
                "--shards", str(self.shards), *self.extra_args]

    def start(self, timeout=30):
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"\n===== start {self.starts} =====\n")
        log.flush()
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            if api_versions_ok(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"broker did not start in {timeout}s:\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text()[-5000:]
        except OSError:
            return ""

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(f"broker did not stop within {timeout}s:\n{self.log()}")

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def broker_factory(tmp_path):
    brokers = []

    def make(shards=None, **kwargs):
        b = Broker(tmp_path / f"data{len(brokers)}", shards=shards, **kwargs)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        if b.alive():
            try:
                b.stop()
            except RuntimeError:
                pass


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def wait_until(predicate, timeout=20.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")
