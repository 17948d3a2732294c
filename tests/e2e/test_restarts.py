"""Graceful restarts under load: an idempotent producer writes flat out
while the broker is stopped with SIGTERM and started again, several times,
with one core kept busy. Every acknowledged record must be at its offset
afterwards, none twice, and the producer must never see
OUT_OF_ORDER_SEQUENCE_NUMBER or stall."""

import pytest

import restart_check

CYCLES = 8
ACKS_PER_CYCLE = 5000


def start_broker(broker_factory, write_mode, sync_scope):
    try:
        return broker_factory(extra_args=["--override", f"ringbroker.log.write.mode={write_mode}",
                                          "--override", f"ringbroker.log.sync.scope={sync_scope}"])
    except RuntimeError as e:
        # The broker refuses direct mode at start on a filesystem without
        # O_DIRECT (its start-up probe); that refusal is tested elsewhere.
        if write_mode == "direct" and "does not take O_DIRECT writes" in str(e):
            pytest.skip("the test directory's filesystem has no O_DIRECT")
        raise


@pytest.mark.parametrize("write_mode,sync_scope",
                         [("buffered", "partition"), ("direct", "partition"), ("buffered", "filesystem")])
def test_sigterm_restarts_keep_every_acknowledged_record(broker_factory, write_mode, sync_scope):
    broker = start_broker(broker_factory, write_mode, sync_scope)
    with restart_check.BusyCore():
        report = restart_check.run(broker, "restarts", cycles=CYCLES, acks_per_cycle=ACKS_PER_CYCLE)
    assert report.clean(), report.summary()
    assert report.cycles == CYCLES and report.acked >= CYCLES * ACKS_PER_CYCLE


def test_kill9_restarts_keep_every_acknowledged_record(broker_factory):
    broker = start_broker(broker_factory, "buffered", "partition")
    with restart_check.BusyCore():
        report = restart_check.run(broker, "restarts", cycles=3, acks_per_cycle=ACKS_PER_CYCLE,
                                   kill=True)
    assert report.clean(), report.summary()
