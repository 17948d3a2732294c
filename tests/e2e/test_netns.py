"""A network partition on a real 3-node cluster: every ringbroker runs in
its own network namespace, and the leader of a replicated partition is cut
off from the other two brokers while the test host can still reach it.

Topology (made and deleted by the `net` fixture; needs root, ip and
iptables, else the test skips and says why), veth pairs to one bridge:

    root namespace (pytest)      ringbroker-<tag>-hub      ringbroker-<tag>-<i>, i = 1..3
    rbh<tag> 127.77.S.254/24 --- host  [br]  n<i> ------- eth0 127.77.S.<i>/24

Servers bind to, and tests talk to, 127.0.0.0/8 only. Linux keeps 127/8 on
lo: every end with an address sets route_localnet=1 and adds a
127.77.S.0/24 route to the `local` table, which is looked up first and
otherwise sends all of 127/8 to lo. The bridge has a namespace of its own,
so no firewall of the host (Docker's FORWARD policy, which br_netfilter
applies to bridged traffic) sees the brokers' traffic; the root namespace
gets one interface, whose address, route and sysctl go with it. <tag> is
random and S a 127.77.S.0/24 nobody uses yet, so parallel runs and
leftovers do not collide. Deleting a namespace deletes its veth pairs,
sysctls and iptables rules.

The cut is an iptables DROP, both ways, in the leader's namespace, of the
other brokers' addresses (not of the test host's). The scenario: acks=all
records are acknowledged by a 3-replica partition with
min.insync.replicas=2; once cut off, the old leader acknowledges no acks=all
write sent straight to it (one of them left waiting until after the heal);
the other two elect a new leader with a higher leader epoch that takes
acks=all writes; an acks=1 write goes to the old leader, which no other
replica holds. After the heal the old leader rejoins the ISR and every
replica's log (read from its data directory with ringbroker-logdump) is the
new leader's: what the old leader appended while cut off is truncated away,
and every acks=all-acknowledged record is there exactly once, at the offset
it was acknowledged at.
"""

import collections
import os
import pathlib
import random
import re
import secrets
import shutil
import struct
import subprocess
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import NONE, TRANSIENT, Cluster, Not, call, list_offsets, metadata
from conftest import BIN
from kafka_wire import produce_v3_result, record_batch, string

pytestmark = pytest.mark.timeout(180)

TOPIC = "cut"
LOGDUMP = pathlib.Path(BIN).with_name("ringbroker-logdump")
# Election after the cut: the 3 s broker session, a controller election
# when the old leader was the active controller, the leader change.
ELECTION_S = 30
# The old leader back in the ISR and every replica's log equal.
REJOIN_S = 30
# The request left waiting on the old leader across the heal.
PENDING_MS = 15000


class Unavailable(Exception):
    """No network namespaces or iptables here (the test skips)."""


def run(*cmd, check=True):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


class Net:
    """n network namespaces with a 127.77.S.<i> address each, bridged in a
    hub namespace to the test host (the root namespace, 127.77.S.254)."""

    def __init__(self, n):
        self.tag = secrets.token_hex(3)
        used = run("ip", "-4", "route", "show", "table", "local").stdout + run("ip", "-4", "addr").stdout
        free = [s for s in range(1, 255) if f"127.77.{s}." not in used]
        if not free:
            raise Unavailable("every 127.77.S.0/24 is in use")
        self.subnet = f"127.77.{random.choice(free)}"
        self.hub = f"ringbroker-{self.tag}-hub"
        self.namespaces = [f"ringbroker-{self.tag}-{i}" for i in range(1, n + 1)]
        self.hosts = [f"{self.subnet}.{i}" for i in range(1, n + 1)]
        self.link = f"rbh{self.tag}"  # the one interface in the root namespace

    def build(self):
        first = run("ip", "netns", "add", self.hub, check=False)
        if first.returncode != 0:
            raise Unavailable(f"ip netns add failed: {first.stderr.strip()}")
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
        run("ip", "-n", self.hub, "link", "add", "name", "br", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "dev", "br", "up")
        run("ip", "link", "add", "name", self.link, "type", "veth", "peer", "name", "host", "netns", self.hub)
        self._attach("host", None, self.link, f"{self.subnet}.254")
        for i, (ns, host) in enumerate(zip(self.namespaces, self.hosts), start=1):
            run("ip", "-n", self.hub, "link", "add", "name", f"n{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
            self._attach(f"n{i}", ns, "eth0", host)
            probe = self.iptables(i, "-L", "INPUT", "-n", check=False)
            if probe.returncode != 0:
                raise Unavailable(f"iptables does not work in a network namespace: {probe.stderr.strip()}")
        return self

    def _attach(self, port, ns, link, address):
        """Puts the hub's end `port` on the bridge and gives the other end
        `link` (in namespace ns, None: the root one) route_localnet, its
        address and the subnet's route in the `local` table."""
        run("ip", "-n", self.hub, "link", "set", "dev", port, "master", "br", "up")
        setting = f"/proc/sys/net/ipv4/conf/{link}/route_localnet"
        if ns is None:
            pathlib.Path(setting).write_text("1\n")
        else:
            run("ip", "netns", "exec", ns, "sh", "-c", f"echo 1 > {setting}")
        where = ("-n", ns) if ns else ()
        run("ip", *where, "addr", "add", f"{address}/24", "dev", link)
        run("ip", *where, "link", "set", "dev", link, "up")
        run("ip", *where, "route", "add", f"{self.subnet}.0/24", "dev", link, "src", address, "table", "local")

    def iptables(self, i, *args, check=True):
        return run("ip", "netns", "exec", self.namespaces[i - 1], "iptables", "-w", "5", *args, check=check)

    def cut(self, i, peers):
        """Node i drops every packet to and from the nodes `peers`."""
        for j in peers:
            self.iptables(i, "-A", "INPUT", "-s", self.hosts[j - 1], "-j", "DROP")
            self.iptables(i, "-A", "OUTPUT", "-d", self.hosts[j - 1], "-j", "DROP")

    def heal(self, i):
        self.iptables(i, "-F", "INPUT")
        self.iptables(i, "-F", "OUTPUT")

    def _hub_has(self, link):
        return run("ip", "-n", self.hub, "link", "show", "dev", link, check=False).returncode == 0

    def close(self, timeout_s=10):
        """Deletes whatever build made (every name holds the random tag);
        raises when something is left behind. The kernel frees a deleted
        namespace, its veth included, once its last socket is gone: the hub
        stays up meanwhile so the brokers' closing TCP exchanges complete
        (cut short, they retransmit for minutes), then goes, veth pairs and
        all, whatever is left of the nodes' namespaces."""
        for ns in self.namespaces:
            run("ip", "netns", "del", ns, check=False)
        ports = [f"n{i}" for i in range(1, len(self.namespaces) + 1)]
        deadline = time.monotonic() + timeout_s
        while any(self._hub_has(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        for port in ports:
            run("ip", "-n", self.hub, "link", "del", "dev", port, check=False)
        run("ip", "netns", "del", self.hub, check=False)
        run("ip", "link", "del", "dev", self.link, check=False)
        listed = run("ip", "netns", "list").stdout
        left = [ns for ns in [self.hub, *self.namespaces] if ns in listed]
        if run("ip", "link", "show", "dev", self.link, check=False).returncode == 0:
            left.append(self.link)
        if left:
            raise RuntimeError(f"could not delete {left}")


@pytest.fixture
def net():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns, veth, iptables)")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install iproute2 iptables)")
    n = Net(3)
    try:
        try:
            n.build()
        except Unavailable as e:
            pytest.skip(f"no network namespaces here: {e}")
        print(f"network: namespaces {n.namespaces} ({n.hosts}) and {n.hub}; test host {n.link} {n.subnet}.254")
        yield n
    finally:
        n.close()


@pytest.fixture
def cluster(tmp_path, net):
    """The 3 nodes, node i in namespace i; killed before `net` is deleted.
    Leadership stays where elections put it (no automatic moves back)."""
    c = Cluster(tmp_path / "cluster", n=3, extra={"replica.lag.time.max.ms": "3000",
                                                   "auto.leader.rebalance.enable": "false"})
    for node, ns, host in zip(c.nodes.values(), net.namespaces, net.hosts):
        node.host = host
        node.command_prefix = ["ip", "netns", "exec", ns]
    print(f"cluster logs: {c.root}")
    c.start()
    yield c
    c.close()


def partition(node):
    """Partition 0 as `node` reports it (Metadata v7)."""
    return metadata(node.address, [TOPIC], timeout=5).topics[TOPIC].partitions[0]


def produce_acked(bootstrap, values, timeout_s=20):
    """Idempotent acks=all through a confluent producer: {offset: value};
    fails unless every record is acknowledged."""
    acked, errors = {}, []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.offset()] = msg.value()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": timeout_s * 1000})
    for value in values:
        p.produce(TOPIC, value, partition=0, on_delivery=report)
    left = p.flush(timeout_s + 5)
    assert not errors and not left, f"acks=all produce to {bootstrap}: errors {errors}, {left} unanswered"
    return acked


def produce_direct(node, value, acks, timeout_ms):
    """One record sent to `node` only (Produce v3 with request timeout
    timeout_ms): (error code, base offset), or (the exception's name, None)
    when no answer came."""
    batch = record_batch([value])
    body = struct.pack(">hhi", -1, acks, timeout_ms) + struct.pack(">i", 1) + string(TOPIC)
    body += struct.pack(">iii", 1, 0, len(batch)) + batch
    try:
        return produce_v3_result(call(node.address, 0, 3, body, timeout=timeout_ms / 1000 + 5))
    except TRANSIENT as e:
        return type(e).__name__, None


class Prober:
    """acks=all records sent straight to one node, each on a thread: one
    after another until `stop`, and one with a long timeout left waiting
    across the heal (`finish`)."""

    def __init__(self, node):
        self.node = node
        self.answers = []  # (value, (error, offset)) until stop
        self.pending = None  # (value, (error, offset)) of the one left waiting
        self.stopped = threading.Event()
        self.loop = threading.Thread(target=self._loop, daemon=True)
        self.waiting = threading.Thread(target=self._pending, daemon=True)

    def start(self):
        self.loop.start()
        self.waiting.start()
        return self

    def _loop(self):
        i = 0
        while not self.stopped.is_set():
            value = b"isolated-all-%d" % i
            self.answers.append((value, produce_direct(self.node, value, -1, 1500)))
            i += 1
            self.stopped.wait(0.1)

    def _pending(self):
        self.pending = (b"isolated-pending", produce_direct(self.node, b"isolated-pending", -1, PENDING_MS))

    def stop(self):
        """Ends the loop (its last request answered); returns its answers."""
        self.stopped.set()
        self.loop.join(10)
        assert not self.loop.is_alive(), "a produce to the cut-off leader never ended"
        return self.answers

    def finish(self):
        """Waits for the answer to the request left waiting."""
        self.waiting.join(PENDING_MS / 1000 + 10)
        assert not self.waiting.is_alive(), "the produce left waiting never ended"
        return self.pending


def replica_log(node):
    """[(base offset, last offset, crc)] of every batch in the node's copy
    of partition 0, from its data directory (ringbroker-logdump)."""
    directory = node.data_dir / f"{TOPIC}-0"
    out = subprocess.run([str(LOGDUMP), str(directory)], capture_output=True, text=True, timeout=15)
    assert out.returncode == 0, f"ringbroker-logdump {directory}: {out.stderr}"
    batches = []
    for line in out.stdout.splitlines():
        if line.startswith("baseOffset:"):
            m = re.search(r"baseOffset: (\d+) lastOffset: (\d+) .* crc: (0x[0-9a-f]+) (\w+)", line)
            assert m and m.group(4) == "valid", f"node {node.id}: {line}"
            batches.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return batches


def read_back(bootstrap, end, timeout_s=20):
    """{offset: value} of partition 0 from its leader, offsets 0..end-1."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "netns-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    log = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(log) < end and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if not m.error():
                    log[m.offset()] = m.value()
    finally:
        consumer.close()
    return log


def test_a_cut_off_leader_acknowledges_nothing_and_truncates_after_healing(net, cluster):
    assert LOGDUMP.exists(), f"{LOGDUMP} is not built"
    began = time.monotonic()
    nodes = cluster.brokers()
    admin = cluster.admin(1)
    admin.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(30)

    def in_sync():
        seen = {n.id: partition(n) for n in nodes}
        if (len({(p.leader, p.epoch) for p in seen.values()}) != 1
                or any(p.leader < 0 or sorted(p.isr) != [1, 2, 3] for p in seen.values())):
            return Not(f"partition 0 by node: {seen}")
        return seen[nodes[0].id]
    cluster.wait_until(in_sync, 30, "one leader of partition 0 and all 3 replicas in sync")
    acked = produce_acked(cluster.bootstrap, [b"before-%d" % i for i in range(20)])
    assert sorted(acked) == list(range(20))
    before = cluster.wait_until(in_sync, 10, "one leader of partition 0 and all 3 replicas in sync")
    old = cluster.node(before.leader)
    rest = [n for n in nodes if n.id != old.id]

    net.cut(old.id, [n.id for n in rest])
    cut_at = time.monotonic()
    prober = Prober(old).start()

    def elected():
        seen = {n.id: partition(n) for n in rest}
        views = {(p.leader, p.epoch) for p in seen.values()}
        leader, epoch = next(iter(views))
        if len(views) != 1 or leader not in seen or epoch <= before.epoch:
            return Not(f"partition 0 by node: {seen}")
        return cluster.node(leader)
    new = cluster.wait_until(elected, ELECTION_S, f"nodes {[n.id for n in rest]} to elect a new leader")
    elected_s = time.monotonic() - cut_at
    after = produce_acked(",".join(n.bootstrap for n in rest), [b"after-%d" % i for i in range(20)])
    assert not set(after) & set(acked), f"offsets acknowledged twice: {sorted(set(after) & set(acked))}"
    acked.update(after)
    acks_1 = produce_direct(old, b"isolated-acks-1", 1, 2000)

    answers = prober.stop()
    acknowledged = [(v, r) for v, r in answers if r[0] == NONE]
    assert not acknowledged, f"the cut-off leader acknowledged acks=all writes: {acknowledged}\n{cluster.logs()}"
    # The test host reached the cut-off leader: it answered, with errors.
    assert any(isinstance(r[0], int) for _, r in answers), f"no answer from node {old.id}: {answers}"
    pending_before_heal = prober.pending
    cut_off_log = replica_log(old)  # what there is to truncate

    net.heal(old.id)
    healed_at = time.monotonic()

    def rejoined():
        p, seen_by_old = partition(new), partition(old)
        if old.id not in p.isr or (seen_by_old.leader, seen_by_old.epoch) != (new.id, p.epoch):
            return Not(f"leader's view {p}; the old leader's {seen_by_old}")
        return p
    cluster.wait_until(rejoined, REJOIN_S, f"node {old.id} back in the ISR, following node {new.id}")
    error, end = list_offsets(new.address, TOPIC, 0)
    assert error == NONE, f"ListOffsets from the new leader: error {error}"

    def same_logs():
        logs = {n.id: replica_log(n) for n in nodes}
        leader_log = logs[new.id]
        if not leader_log or leader_log[-1][1] + 1 != end or any(log != leader_log for log in logs.values()):
            return Not(f"end offset {end}; batches by node: {logs}")
        return logs
    cluster.wait_until(same_logs, REJOIN_S, "every replica's log to be the new leader's")
    rejoined_s = time.monotonic() - healed_at
    pending = prober.finish()

    final = read_back(cluster.bootstrap, end)
    print(f"leader {old.id} (epoch {before.epoch}) cut off; node {new.id} leads (epoch "
          f"{partition(new).epoch}) after {elected_s:.1f} s; rejoined {rejoined_s:.1f} s after the heal; "
          f"acks=all sent to the cut-off leader got (error code: count) "
          f"{dict(collections.Counter(r[0] for _, r in answers))}, the one left waiting {pending[1]} "
          f"{'before' if pending_before_heal else 'after'} the heal; acks=1 got {acks_1}; its log ended at "
          f"{cut_off_log[-1][1] + 1 if cut_off_log else 0} before the heal, {end} after; "
          f"{time.monotonic() - began:.1f} s in all")
    problems = []
    if pending[1][0] == NONE:
        problems.append(f"the cut-off leader acknowledged acks=all {pending[0]!r} at offset {pending[1][1]} "
                        f"({'before' if pending_before_heal else 'after'} the heal)")
    if sorted(final) != list(range(end)):
        problems.append(f"read {len(final)} records of offsets 0..{end - 1}")
    problems += [f"acknowledged {v!r} at offset {o}; the log has {final.get(o)!r}"
                 for o, v in sorted(acked.items()) if final.get(o) != v]
    if len(set(final.values())) != len(final):
        problems.append("a record is in the log twice")
    problems += [f"{v!r}, written to the cut-off leader, survived at offset {o}"
                 for o, v in sorted(final.items()) if v.startswith(b"isolated")]
    if end != len(acked):
        problems.append(f"log end {end}, {len(acked)} records acknowledged")
    assert not problems, "\n".join(problems) + f"\n{cluster.logs()}"
