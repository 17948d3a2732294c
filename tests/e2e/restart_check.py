"""Restart checker: an idempotent producer writes numbered values flat out
to one partition while the broker is stopped (SIGTERM, or kill -9) and
started again on the same data directory; afterwards the partition is read
back from offset 0 and compared with every delivery report the producer got.

Used by tests/e2e/test_restarts.py (a few cycles) and by
scripts/restart-soak.sh (many cycles)."""

import collections
import os
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING


def value_of(i):
    return b"v%010d" % i


def index_of(value):
    return int(value[1:])


def stop_producing(stopping, thread, producer, flush_timeout):
    """Stops a producing thread and waits (bounded) for the outstanding
    deliveries; returns how many messages were still queued (purged)."""
    stopping.set()
    thread.join(30)
    if thread.is_alive():
        raise AssertionError("the producer thread did not stop")
    producer.flush(flush_timeout)
    left = len(producer)
    if left:
        producer.purge()
        producer.flush(5)
    return left


class BusyCore:
    """Keeps one core busy with an unrelated spin loop (a loaded CI machine)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(10)


class FlatOutProducer:
    """An idempotent (acks=all) confluent-kafka producer writing numbered
    values as fast as it can from its own thread."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            # Many small requests: more appends in flight around each stop.
            "linger.ms": 1,
            "batch.num.messages": 1000,
            # Long enough to ride out every restart of a run.
            "message.timeout.ms": 120000,
            "queue.buffering.max.messages": 200000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 200,
            # Connection-refused noise while the broker restarts; fatal
            # errors still print.
            "log_level": 0,
        })
        # Written by delivery callbacks, which run in whichever thread polls;
        # dict stores and list appends are atomic under the GIL, so no lock
        # (with a lock, flush() once hung on it forever).
        self.acked = {}  # value index -> offset
        self.error_names = []
        self.fatal = None
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, err, msg):
        if err is None:
            self.acked[index_of(msg.value())] = msg.offset()
        else:
            self.error_names.append(err.name())

    @property
    def errors(self):
        return collections.Counter(self.error_names)

    def _run(self):
        deadline = time.monotonic() + 900
        i = 0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                try:
                    self.producer.produce(self.topic, value=value_of(i), partition=0,
                                          on_delivery=self._report)
                    i += 1
                    self.sent = i
                except BufferError:
                    self.producer.poll(0.02)
                self.producer.poll(0)
            except KafkaException as e:  # a fatal idempotence error
                self.fatal = str(e)
                break

    def start(self):
        self.thread.start()
        return self

    def acked_count(self):
        return len(self.acked)

    def stop(self, flush_timeout=60):
        """Stops producing and waits (bounded) for outstanding deliveries.
        Returns how many messages were still queued (purged)."""
        left = stop_producing(self.stopping, self.thread, self.producer, flush_timeout)
        try:
            fatal = self.producer.fatal_error()
        except AttributeError:  # older clients
            fatal = None
        if fatal is not None and self.fatal is None:
            self.fatal = str(fatal)
        return left


def read_partition(bootstrap, topic, partition=0, timeout=120):
    """Every (offset, value) of a partition up to its end, in order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "restart-check",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "check.crcs": True, "fetch.max.bytes": 52428800})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + timeout
    done = False
    try:
        while not done and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        done = True
                        continue
                    raise KafkaException(m.error())
                out.append((m.offset(), m.value()))
    finally:
        consumer.close()
    if not done:
        raise AssertionError(f"did not reach the end of {topic}-{partition} in {timeout}s")
    return out


class Report:
    """What a run found."""

    def __init__(self):
        self.cycles = 0
        self.acked = 0
        self.stored = 0
        self.lost = []  # (value index, acknowledged offset)
        self.misplaced = []  # (offset, expected value index, found value)
        self.duplicated = 0
        self.gaps = 0
        self.errors = collections.Counter()
        self.fatal = None
        self.purged = 0
        self.stalled = False
        self.exit_codes = []

    def clean(self):
        return not (self.lost or self.misplaced or self.duplicated or self.gaps or self.errors
                    or self.fatal or self.purged or self.stalled
                    or any(c not in (0, None, -9) for c in self.exit_codes))

    def summary(self):
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return (f"cycles={self.cycles} acked={self.acked} stored={self.stored} "
                f"lost={len(self.lost)} misplaced={len(self.misplaced)} "
                f"duplicated={self.duplicated} gaps={self.gaps} producer_errors={errors} "
                f"fatal={self.fatal or 'none'} purged={self.purged} stalled={self.stalled} "
                f"exit_codes={sorted(set(self.exit_codes))}")


def wait_for_acks(producer, target, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if producer.acked_count() >= target or producer.fatal:
            return producer.acked_count() >= target
        time.sleep(0.01)
    return False


def run(broker, topic, cycles, acks_per_cycle, kill=False, log=None):
    """Produces flat out while restarting `broker` `cycles` times (SIGTERM,
    or kill -9 with `kill`), each restart after `acks_per_cycle` more
    acknowledgements; then checks the partition. Returns a Report."""
    report = Report()
    producer = FlatOutProducer(broker.bootstrap, topic).start()
    try:
        if not wait_for_acks(producer, acks_per_cycle, 60):
            report.stalled = True
        for cycle in range(cycles):
            if report.stalled:
                break
            if kill:
                broker.kill9()
                report.exit_codes.append(-9)
            else:
                report.exit_codes.append(broker.stop())
            broker.start()
            report.cycles = cycle + 1
            target = producer.acked_count() + acks_per_cycle
            if not wait_for_acks(producer, target, 60):
                # The producer makes no progress against the new instance.
                report.stalled = True
            if log:
                log(f"cycle {cycle + 1}: {producer.acked_count()} acknowledged")
    finally:
        report.purged = producer.stop()
    report.errors = producer.errors
    report.fatal = producer.fatal
    report.acked = len(producer.acked)
    stored = read_partition(broker.bootstrap, topic)
    report.stored = len(stored)
    by_offset = dict(stored)
    for expected, (offset, _) in enumerate(stored):
        if offset != expected:
            report.gaps += 1
    seen = collections.Counter(index_of(v) for _, v in stored)
    report.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    for i, offset in producer.acked.items():
        found = by_offset.get(offset)
        if found is None:
            report.lost.append((i, offset))
        elif found != value_of(i):
            report.misplaced.append((offset, i, found))
    return report


def main():
    """scripts/restart-soak.sh: many cycles against a broker it starts."""
    import argparse
    import faulthandler
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import Broker

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--acks-per-cycle", type=int, default=20000)
    parser.add_argument("--kill", action="store_true", help="kill -9 instead of SIGTERM")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--busy-core", action="store_true", help="keep one core busy")
    parser.add_argument("--override", action="append", default=[],
                        help="broker property key=value (repeatable)")
    args = parser.parse_args()
    # Every step is bounded; this only reports where a run got stuck.
    faulthandler.dump_traceback_later(600 + 120 * args.cycles, exit=True)
    extra = []
    for o in args.override:
        extra += ["--override", o]
    with tempfile.TemporaryDirectory(prefix="ringbroker-soak-") as tmp:
        broker = Broker(os.path.join(tmp, "data"), shards=args.shards, extra_args=extra)
        broker.start()
        busy = BusyCore() if args.busy_core else None
        if busy:
            busy.__enter__()
        try:
            report = run(broker, "soak", args.cycles, args.acks_per_cycle, kill=args.kill,
                         log=lambda line: print(line, flush=True))
        finally:
            if busy:
                busy.__exit__(None, None, None)
            try:
                broker.stop()
            except RuntimeError:
                broker.kill9()
        mode = "kill -9" if args.kill else "SIGTERM"
        print(f"{mode}: {report.summary()}")
        for i, offset in report.lost[:10]:
            print(f"  lost: value {i} acknowledged at offset {offset}")
        return 0 if report.clean() else 1


if __name__ == "__main__":
    sys.exit(main())
