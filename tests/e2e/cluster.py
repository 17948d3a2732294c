"""A multi-node ringbroker cluster on 127.0.0.1 for end-to-end tests.

`Cluster` starts N ringbroker processes that form one KRaft-style cluster
(combined broker+controller nodes by default; `roles` mixes controller-only
and broker-only nodes), every port a free one from the OS. Node ids are 1..N
(Kafka's ids, so `kill(2)` kills node 2). Each node writes its output to
`<root>/node<id>.log`, next to its data directory `<root>/node<id>-data`.

Below the harness are hand-built requests for the cluster-facing APIs, sent
to ONE node over its own connection (Metadata v7 with leader epochs and
offline replicas, DescribeCluster, CreateTopics, DeleteTopics,
CreatePartitions, IncrementalAlterConfigs, DescribeConfigs, FindCoordinator,
ListOffsets, Produce, Fetch). Client libraries route requests on their own
(librdkafka sends CreateTopics to the controller it learned from Metadata),
so "the broker I asked answers" is tested with these.

Used by tests/e2e/test_cluster.py and scripts/cluster-figures.py.
"""

import ctypes
import itertools
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from conftest import BIN, api_versions_ok, free_port
from kafka_wire import (Reader, fetch_v4, fetch_v4_error, produce_v3, produce_v3_result,
                        read_response, record_batch, request, string, string_nullable)

# Kafka error codes the cluster tests look at.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
NOT_CONTROLLER = 41

# Errors a predicate passed to wait_until may raise while a node is
# starting, stopping or electing: retried until the deadline (the last one
# is reported). Assertion errors are not among them.
TRANSIENT = (OSError, KafkaException, struct.error, EOFError)

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it when the test process dies,
    so a killed pytest run leaves no broker holding ports."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class Not:
    """A false predicate result that says why (wait_until reports the last
    one when it times out)."""

    def __init__(self, why):
        self.why = why

    def __bool__(self):
        return False

    def __repr__(self):
        return self.why


def free_ports(n):
    """n distinct free ports (free_port may hand out the same one twice)."""
    ports = set()
    deadline = time.monotonic() + 10
    while len(ports) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("could not find free ports")
        ports.add(free_port())
    return list(ports)


def tcp_accepts(port, timeout=1.0, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path, chars=3000):
    try:
        return pathlib.Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Node:
    """One ringbroker process of a cluster; restartable on its data dir and
    ports."""

    def __init__(self, cluster, node_id, roles, client_port, controller_port):
        self.cluster = cluster
        self.id = node_id
        self.roles = roles
        self.port = client_port  # None for a controller-only node
        self.controller_port = controller_port  # None for a broker-only node
        self.data_dir = cluster.root / f"node{node_id}-data"
        self.log_path = cluster.root / f"node{node_id}.log"
        self.overrides = {}  # this node's own --override keys (win over the cluster's)
        # Set before the node starts to run it elsewhere (test_netns.py: its
        # own network namespace): the 127/8 address it listens on, and words
        # put before the command (["ip", "netns", "exec", NAME]).
        self.host = "127.0.0.1"
        self.command_prefix = []
        self.proc = None
        self.paused = False
        self.starts = 0
        # Started by the harness and not killed or stopped by it since: its
        # exit is a crash (wait_until reports it at once).
        self.expected_running = False

    @property
    def is_broker(self):
        return "broker" in self.roles

    @property
    def is_controller(self):
        return "controller" in self.roles

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}" if self.port else None

    @property
    def shards(self):
        if self.cluster.shards is not None:
            return self.cluster.shards
        return 2 if self.id % 2 else 1

    @property
    def address(self):
        """(host, client port): what the hand-built requests below take."""
        return (self.host, self.port) if self.port else None

    def settings(self, overrides=None):
        """The --override keys of this node: cluster layout, the cluster's
        extra keys, the node's own, then `overrides`."""
        if self.cluster.standalone:
            return {**self.cluster.extra, **self.overrides, **(overrides or {})}
        listeners = []
        if self.is_broker:
            listeners.append(f"PLAINTEXT://{self.host}:{self.port}")
        if self.is_controller:
            listeners.append(f"CONTROLLER://{self.host}:{self.controller_port}")
        out = {
            "process.roles": ",".join(r for r in ("broker", "controller") if r in self.roles),
            "controller.quorum.voters": self.cluster.voters_value(),
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
        }
        out.update(self.cluster.extra)
        out.update(self.overrides)
        out.update(overrides or {})
        return out

    def args(self, overrides=None):
        args = [*self.command_prefix, self.cluster.binary, "--node-id", str(self.id),
                "--data-dir", str(self.data_dir), "--shards", str(self.shards)]
        if self.is_broker:
            args += ["--listen", self.bootstrap]
        for key, value in self.settings(overrides).items():
            args += ["--override", f"{key}={value}"]
        return args

    def spawn(self, overrides=None, expect_exit=False):
        """Starts the process without waiting for it (see wait_ready).
        expect_exit: the node is meant to refuse to start (its exit is not
        a crash)."""
        if self.alive():
            raise RuntimeError(f"node {self.id} is already running")
        self.starts += 1
        args = self.args(overrides)
        with open(self.log_path, "a") as log:
            log.write(f"\n===== start {self.starts}: {' '.join(args)} =====\n")
            log.flush()
            env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent)
        self.paused = False
        self.expected_running = not expect_exit
        return self.proc

    def status(self):
        if self.proc is None:
            return "never started"
        code = self.proc.poll()
        if code is None:
            return "paused" if self.paused else "running"
        how = "crashed" if self.expected_running else "stopped"
        return f"{how}: exit {code}" if code >= 0 else f"{how}: signal {-code}"

    def crashed(self):
        return self.expected_running and self.proc is not None and self.proc.poll() is not None

    def ready(self):
        """Brokers: ApiVersions answers on the client port. Controller-only
        nodes (no client port): the CONTROLLER port accepts connections."""
        if self.is_broker:
            return api_versions_ok(self.port, host=self.host)
        return tcp_accepts(self.controller_port, host=self.host)

    def wait_ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.id} exited with {self.proc.returncode}:\n{self.log()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.dump_threads()
        raise RuntimeError(f"node {self.id} not ready in time:\n{self.log()}")

    def dump_threads(self):
        """Every thread's stack of a running node into node<id>.stacks
        (with gdb, when installed): what a node that does not come up is
        doing."""
        if not self.alive() or shutil.which("gdb") is None:
            return
        try:
            out = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                                 capture_output=True, text=True, timeout=60).stdout
            (self.cluster.root / f"node{self.id}.stacks").write_text(out)
        except (OSError, subprocess.SubprocessError):
            pass

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def up(self):
        """Running and not stopped by SIGSTOP."""
        return self.alive() and not self.paused

    def log(self, chars=3000):
        return tail(self.log_path, chars)

    def last_start_output(self):
        """The log lines of the latest start."""
        text = tail(self.log_path, 1_000_000)
        marker = text.rfind("===== start ")
        if marker >= 0:
            text = text[marker:].partition("\n")[2]
        return [line for line in text.splitlines() if line.strip()]

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        self.expected_running = False
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
        self.paused = False

    def stop(self, timeout=30):
        """SIGTERM (SIGCONT first when paused); returns the exit code."""
        self.expected_running = False
        if not self.alive():
            return self.proc.returncode if self.proc else None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"node {self.id} did not stop within {timeout}s:\n{self.log()}")

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False


class Cluster:
    """N ringbroker nodes forming one cluster.

    roles: "broker,controller" (every node combined), or one roles string
    per node, e.g. ["controller"] * 3 + ["broker"] * 2 (then n is its
    length). extra: --override keys for every node (dict, or "key=value"
    strings). heartbeat_ms / session_timeout_ms set
    broker.heartbeat.interval.ms / broker.session.timeout.ms (None: the
    server's defaults). roles=None: n independent single-node brokers with
    no cluster keys at all (today's mode; for checking the harness).

    shards: one count for every node, or None for a mix: odd node ids run
    two shards (requests cross the mesh), even ones one (everything local),
    so every cluster test covers both; scripts/test.sh runs the cluster
    suites once."""

    def __init__(self, root, n=3, shards=None, extra=None, roles="broker,controller",
                 heartbeat_ms=500, session_timeout_ms=3000, binary=None):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.binary = binary or BIN
        self.shards = shards
        self.standalone = roles is None
        if self.standalone:
            roles = "broker"
            heartbeat_ms = session_timeout_ms = None
        if isinstance(roles, str):
            roles = [roles] * n
        self.extra = {}
        if heartbeat_ms is not None:
            self.extra["broker.heartbeat.interval.ms"] = str(heartbeat_ms)
        if session_timeout_ms is not None:
            self.extra["broker.session.timeout.ms"] = str(session_timeout_ms)
        if isinstance(extra, dict):
            self.extra.update({k: str(v) for k, v in extra.items()})
        else:
            for item in extra or ():
                key, value = item.split("=", 1)
                self.extra[key] = value
        self.session_timeout_ms = int(self.extra.get("broker.session.timeout.ms", 9000))
        parsed = [tuple(r.strip() for r in spec.split(",") if r.strip()) for spec in roles]
        ports = iter(free_ports(sum(("broker" in r) + ("controller" in r) for r in parsed) + 8))
        self._spare_ports = ports
        self.nodes = {}
        for i, r in enumerate(parsed, start=1):
            self.nodes[i] = Node(self, i, r, next(ports) if "broker" in r else None,
                                 next(ports) if "controller" in r else None)
        self._voters = [node for node in self.nodes.values() if node.is_controller]
        if not self._voters and not self.standalone:
            raise ValueError("a cluster needs at least one controller")

    # ----- layout -----

    def voters_value(self):
        return ",".join(f"{v.id}@{v.host}:{v.controller_port}" for v in self._voters)

    @property
    def voter_ids(self):
        return [v.id for v in self._voters]

    def node(self, i):
        return self.nodes[i]

    def brokers(self):
        return [n for n in self.nodes.values() if n.is_broker]

    def live_brokers(self):
        return [n for n in self.brokers() if n.up()]

    def live_broker_ids(self):
        return {n.id for n in self.live_brokers()}

    @property
    def bootstrap(self):
        """Every client listener (whether the node runs or not)."""
        return ",".join(n.bootstrap for n in self.brokers())

    def spare_port(self):
        try:
            return next(self._spare_ports)
        except StopIteration:
            return free_port()

    def add_node(self, roles="broker"):
        """A new node (next id, fresh data dir) with the cluster's voters;
        not started (node.spawn(), or start_node)."""
        node_id = max(self.nodes) + 1
        r = tuple(x.strip() for x in roles.split(","))
        node = Node(self, node_id, r, self.spare_port() if "broker" in r else None,
                    self.spare_port() if "controller" in r else None)
        self.nodes[node_id] = node
        return node

    # ----- lifecycle -----

    def start(self, timeout=90):
        """Starts every node at once (a quorum needs its peers to come up),
        waits until each is ready and every broker's Metadata lists every
        broker."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes.values():
                node.spawn()
            for node in self.nodes.values():
                node.wait_ready(deadline)
            # wait_until fails at once should a node die on the way.
            self.wait_formed(timeout=max(deadline - time.monotonic(), 1))
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, i, timeout=60, wait_unfenced=True):
        """Starts a stopped node; waits until it is ready and (brokers)
        listed unfenced by every running broker, itself included."""
        node = self.nodes[i]
        node.spawn()
        node.wait_ready(time.monotonic() + timeout)
        if wait_unfenced and node.is_broker:
            self.wait_unfenced(i, timeout=timeout)
        return node

    def kill(self, i):
        """SIGKILL."""
        self.nodes[i].kill()

    def stop(self, i, timeout=30):
        """SIGTERM; returns the exit code."""
        return self.nodes[i].stop(timeout)

    def pause(self, i):
        """SIGSTOP."""
        self.nodes[i].pause()

    def resume(self, i):
        """SIGCONT."""
        self.nodes[i].resume()

    def restart(self, i, timeout=60, wait_unfenced=True):
        """Stops the node if it runs (SIGTERM), then start_node."""
        if self.nodes[i].alive():
            self.stop(i)
        return self.start_node(i, timeout=timeout, wait_unfenced=wait_unfenced)

    def close(self):
        """SIGKILLs every node still running (the fixture finalizer)."""
        for node in self.nodes.values():
            try:
                node.kill()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- waiting -----

    def logs(self, chars=3000):
        return "\n".join(f"----- node {n.id}, {n.status()} ({n.log_path}) -----\n{n.log(chars)}"
                         for n in self.nodes.values())

    def wait_until(self, predicate, timeout=30.0, what="condition", interval=0.1):
        """Calls predicate until it returns something true (returned) or the
        deadline passes (AssertionError with the last value or transient
        error and the nodes' log tails)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            crashed = [n for n in self.nodes.values() if n.crashed()]
            if crashed:
                raise AssertionError(
                    f"while waiting for {what}: node(s) {[n.id for n in crashed]} exited unexpectedly "
                    f"(codes {[n.proc.returncode for n in crashed]})\n{self.logs()}")
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except TRANSIENT as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n"
                             f"{self.logs()}")

    def _lists_brokers(self, expected, nodes):
        for node in nodes:
            got = set(metadata(node.address).brokers)
            if got != expected:
                return Not(f"node {node.id} lists brokers {sorted(got)}, expected {sorted(expected)}")
        return True

    def wait_formed(self, timeout=60):
        """Every running broker's Metadata lists exactly the running brokers
        (standalone nodes: each lists itself); when every voter is a broker
        too, they also agree on the active controller."""
        if self.standalone:
            self.wait_until(lambda: all(self._lists_brokers({n.id}, [n]) for n in self.live_brokers()),
                            timeout, "every node to list itself")
            return
        deadline = time.monotonic() + timeout
        self.wait_until(lambda: self._lists_brokers(self.live_broker_ids(), self.live_brokers()),
                        timeout, "every broker to list every running broker")
        if all(v.is_broker for v in self._voters) and any(v.up() for v in self._voters):
            self.wait_controller(timeout=max(deadline - time.monotonic(), 1))

    def wait_unfenced(self, i, timeout=30):
        """Node i is in every running broker's Metadata (its own too)."""
        def listed():
            for n in self.live_brokers():
                got = metadata(n.address).brokers
                if i not in got:
                    return Not(f"node {n.id} lists brokers {sorted(got)}")
            return True
        self.wait_until(listed, timeout, f"node {i} to be listed by every running broker")

    def wait_fenced(self, i, timeout=30):
        """Node i is in no other running broker's Metadata."""
        others = [n for n in self.live_brokers() if n.id != i]

        def gone():
            for n in others:
                got = metadata(n.address).brokers
                if i in got:
                    return Not(f"node {n.id} lists brokers {sorted(got)}")
            return True
        self.wait_until(gone, timeout, f"node {i} to disappear from the other brokers' Metadata")

    def wait_controller(self, exclude=(), timeout=30):
        """The active controller id once every running broker's
        DescribeCluster agrees on one running voter not in `exclude`."""
        def agreed():
            ids = {n.id: describe_cluster(n.address).controller_id for n in self.live_brokers()}
            values = set(ids.values())
            cid = values.pop()
            if values or cid in exclude or cid not in self.voter_ids or not self.nodes[cid].up():
                return Not(f"controller id by node: {ids}")
            return cid
        return self.wait_until(agreed, timeout, "the brokers to agree on a running controller")

    def wait_topic(self, name, partitions=None, nodes=None, timeout=10, leaders=True):
        """Waits until the topic shows on every node of `nodes` (default:
        the running brokers) with error 0, `partitions` partitions and (when
        `leaders`) a leader for each; returns {node id: TopicMetadata}."""
        nodes = nodes if nodes is not None else self.live_brokers()

        def shown():
            out = {}
            for node in nodes:
                topic = metadata(node.address, [name]).topics.get(name)
                if (topic is None or topic.error != NONE
                        or (partitions is not None and len(topic.partitions) != partitions)
                        or (leaders and any(p.leader < 0 for p in topic.partitions.values()))):
                    return Not(f"node {node.id}: {topic}")
                out[node.id] = topic
            return out
        return self.wait_until(shown, timeout, f"topic {name!r} on nodes {[n.id for n in nodes]}")

    def wait_topic_gone(self, name, nodes=None, timeout=10):
        nodes = nodes if nodes is not None else self.live_brokers()

        def gone():
            for n in nodes:
                if name in metadata(n.address).topics:
                    return Not(f"node {n.id} still lists it")
            return True
        self.wait_until(gone, timeout, f"topic {name!r} gone from nodes {[n.id for n in nodes]}")

    # ----- clients -----

    def admin(self, i, **conf):
        """A confluent AdminClient bootstrapped with node i only."""
        return AdminClient({"bootstrap.servers": self.nodes[i].bootstrap, **conf})

    def metadata(self, i, timeout=10):
        """confluent ClusterMetadata from a fresh AdminClient bootstrapped with
        node i only (librdkafka may still ask another broker it learned of;
        `raw_metadata` asks exactly node i)."""
        return self.admin(i).list_topics(timeout=timeout)

    def raw_metadata(self, i, topics=None):
        """Metadata v7 from node i (leader epochs and offline replicas)."""
        return metadata(self.nodes[i].address, topics)

    def controller_id(self, i=None):
        """The active controller as node i (default: the first running
        broker) names it in DescribeCluster (API key 60); None when it
        names none. Not confluent's describe_cluster(): librdkafka builds
        that from a Metadata response, whose controller id is a broker to
        send admin requests to (Kafka puts any live broker there)."""
        i = i if i is not None else self.live_brokers()[0].id
        cid = describe_cluster(self.nodes[i].address).controller_id
        return cid if cid >= 0 else None


# ---------------------------------------------------------------------------
# Hand-built requests to one node.

_correlation = itertools.count(1000)


def call(port, api_key, version, body, timeout=10, flexible=False):
    """Sends one request to 127.0.0.1:port (or to port, a (host, port)
    pair such as Node.address) on a new connection; returns the response
    after its size (starting with the correlation id; for flexible versions
    the header's tagged fields are skipped)."""
    address = port if isinstance(port, tuple) else ("127.0.0.1", port)
    corr = next(_correlation)
    if flexible:
        header = struct.pack(">hhi", api_key, version, corr) + string("cluster-test") + b"\x00"
        frame = struct.pack(">i", len(header) + len(body)) + header + body
    else:
        frame = request(api_key, version, corr, body, client_id="cluster-test")
    with socket.create_connection(address, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(frame)
        response = read_response(s)
    got = struct.unpack(">i", response[:4])[0]
    if got != corr:
        raise EOFError(f"correlation id {got}, expected {corr}")
    if flexible:
        r = FlexReader(response)
        r.take(">i")
        r.tagged()
        return struct.pack(">i", corr) + response[r.pos:]
    return response


def _int32s(values):
    return struct.pack(">i", len(values)) + b"".join(struct.pack(">i", v) for v in values)


def _read_int32s(r):
    n = r.take(">i")
    return [r.take(">i") for _ in range(max(n, 0))]


@dataclass
class PartitionMetadata:
    id: int
    error: int
    leader: int
    epoch: int
    replicas: list
    isr: list
    offline: list


@dataclass
class TopicMetadata:
    name: str
    error: int
    internal: bool
    partitions: dict = field(default_factory=dict)  # id -> PartitionMetadata


@dataclass
class ClusterMetadata:
    brokers: dict  # id -> (host, port)
    cluster_id: str
    controller_id: int
    topics: dict  # name -> TopicMetadata


def metadata(port, topics=None, timeout=10):
    """Metadata v7 (topics None: all; never auto-creates)."""
    body = struct.pack(">i", -1) if topics is None else struct.pack(">i", len(topics)) + b"".join(
        string(t) for t in topics)
    body += b"\x00"
    r = Reader(call(port, 3, 7, body, timeout))
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    brokers = {}
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        host = r.string()
        brokers[node_id] = (host, r.take(">i"))
        r.string()  # rack
    cluster_id = r.string()
    controller_id = r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        error = r.take(">h")
        name = r.string()
        topic = TopicMetadata(name, error, bool(r.take(">b")))
        for _ in range(r.take(">i")):
            p_error, index, leader, epoch = r.take(">hiii")
            topic.partitions[index] = PartitionMetadata(index, p_error, leader, epoch, _read_int32s(r),
                                                        _read_int32s(r), _read_int32s(r))
        out[name] = topic
    return ClusterMetadata(brokers, cluster_id, controller_id, out)


class FlexReader(Reader):
    """Reader for flexible versions: unsigned varints, compact strings and
    arrays, tagged fields."""

    def uvarint(self):
        shift = value = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint() - 1
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def compact_len(self):
        return self.uvarint() - 1

    def tagged(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


@dataclass
class DescribeClusterResult:
    error: int
    message: str
    cluster_id: str
    controller_id: int
    brokers: dict  # id -> (host, port)


def describe_cluster(port, timeout=10):
    """DescribeCluster v0 (flexible) from one node."""
    body = b"\x00" + b"\x00"  # include_cluster_authorized_operations, tagged fields
    r = FlexReader(call(port, 60, 0, body, timeout, flexible=True))
    r.take(">i")
    r.take(">i")  # throttle
    error = r.take(">h")
    message = r.compact_string()
    cluster_id = r.compact_string()
    controller_id = r.take(">i")
    brokers = {}
    for _ in range(max(r.compact_len(), 0)):
        node_id = r.take(">i")
        host = r.compact_string()
        brokers[node_id] = (host, r.take(">i"))
        r.compact_string()  # rack
        r.tagged()
    return DescribeClusterResult(error, message, cluster_id, controller_id, brokers)


def create_topics(port, topics, timeout_ms=10000, validate_only=False, timeout=None):
    """CreateTopics v2. topics: (name, partitions, replication_factor) or
    (name, partitions, rf, assignment, configs) tuples; with an assignment
    (list of replica lists) pass -1 for partitions and rf. Returns
    {name: (error_code, error_message)}. The socket waits timeout_ms plus
    30 s for the answer."""
    body = struct.pack(">i", len(topics))
    for t in topics:
        name, partitions, rf = t[:3]
        assignment = t[3] if len(t) > 3 and t[3] else []
        configs = t[4] if len(t) > 4 and t[4] else {}
        body += string(name) + struct.pack(">ih", partitions, rf)
        body += struct.pack(">i", len(assignment))
        for index, replicas in enumerate(assignment):
            body += struct.pack(">i", index) + _int32s(replicas)
        body += struct.pack(">i", len(configs))
        for key, value in configs.items():
            body += string(key) + string_nullable(value)
    body += struct.pack(">ib", timeout_ms, 1 if validate_only else 0)
    r = Reader(call(port, 19, 2, body, timeout or timeout_ms / 1000 + 30))
    r.take(">i")
    r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        name = r.string()
        out[name] = (r.take(">h"), r.string())
    return out


def create_topic(port, name, partitions, rf, assignment=None, configs=None, timeout_ms=10000,
                 timeout=None):
    """The error code of creating one topic through the node at port."""
    return create_topics(port, [(name, partitions, rf, assignment, configs)], timeout_ms,
                         timeout=timeout)[name][0]


def delete_topics(port, names, timeout_ms=10000):
    """DeleteTopics v1: {name: error_code}."""
    body = struct.pack(">i", len(names)) + b"".join(string(n) for n in names)
    body += struct.pack(">i", timeout_ms)
    r = Reader(call(port, 20, 1, body, timeout_ms / 1000 + 30))
    r.take(">i")
    r.take(">i")
    return {r.string(): r.take(">h") for _ in range(r.take(">i"))}


def create_partitions(port, counts, timeout_ms=10000):
    """CreatePartitions v0 ({topic: new total}): {name: (error, message)}."""
    body = struct.pack(">i", len(counts))
    for name, count in counts.items():
        body += string(name) + struct.pack(">ii", count, -1)  # no assignment
    body += struct.pack(">ib", timeout_ms, 0)
    r = Reader(call(port, 37, 0, body, timeout_ms / 1000 + 30))
    r.take(">i")
    r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        name = r.string()
        out[name] = (r.take(">h"), r.string())
    return out


TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4


def incremental_alter_configs(port, resource_type, name, configs):
    """IncrementalAlterConfigs v0 on one resource ({key: value}; value None
    deletes the key): (error_code, error_message)."""
    body = struct.pack(">i", 1) + struct.pack(">b", resource_type) + string(name)
    body += struct.pack(">i", len(configs))
    for key, value in configs.items():
        body += string(key) + struct.pack(">b", 1 if value is None else 0) + string_nullable(value)
    body += b"\x00"
    r = Reader(call(port, 44, 0, body))
    r.take(">i")
    r.take(">i")
    assert r.take(">i") == 1
    return r.take(">h"), r.string()


def describe_configs(port, resource_type, name, keys=None):
    """DescribeConfigs v1 of one resource: (error_code, {key: value})."""
    body = struct.pack(">i", 1) + struct.pack(">b", resource_type) + string(name)
    body += struct.pack(">i", -1) if keys is None else struct.pack(">i", len(keys)) + b"".join(
        string(k) for k in keys)
    body += b"\x00"  # include_synonyms
    r = Reader(call(port, 32, 1, body))
    r.take(">i")
    r.take(">i")
    assert r.take(">i") == 1
    error = r.take(">h")
    r.string()
    r.take(">b")
    r.string()
    configs = {}
    for _ in range(max(r.take(">i"), 0)):
        key = r.string()
        configs[key] = r.string()
        r.take(">bbb")  # read_only, source, sensitive
        for _ in range(max(r.take(">i"), 0)):
            r.string()
            r.string()
            r.take(">b")
    return error, configs


def find_coordinator(port, key, key_type=0):
    """FindCoordinator v1: (error_code, node_id, host, port)."""
    r = Reader(call(port, 10, 1, string(key) + struct.pack(">b", key_type)))
    r.take(">i")
    r.take(">i")
    error = r.take(">h")
    r.string()
    node_id = r.take(">i")
    host = r.string()
    return error, node_id, host, r.take(">i")


def list_offsets(port, topic, partition, timestamp=-1):
    """ListOffsets v1 (timestamp -1 latest, -2 earliest): (error_code, offset)."""
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iq", partition, timestamp)
    r = Reader(call(port, 2, 1, body))
    r.take(">i")
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    r.take(">i")
    error = r.take(">h")
    r.take(">q")  # timestamp
    return error, r.take(">q")


def produce(port, topic, partition, values, acks=-1):
    """Produce v3 of one uncompressed batch: (error_code, base_offset)."""
    return produce_v3_result(call(port, 0, 3, produce_v3(topic, partition, record_batch(values), acks)))


def fetch_error(port, topic, partition, offset=0):
    """The partition error of a Fetch v4 from one node."""
    return fetch_v4_error(call(port, 1, 4, fetch_v4(topic, partition, offset)))
