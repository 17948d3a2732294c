"""A rolling restart of a 3-node cluster under an idempotent acks=all load
(rolling.py): every broker in turn is stopped with SIGTERM, restarted and
waited for until it is back in every ISR; nothing acknowledged is lost or
duplicated, the producer sees no error, and the partitions stay
available (the longest pause between acknowledgements is printed and only
bounded loosely)."""

import pytest

import rolling
from cluster import Cluster

pytestmark = pytest.mark.timeout(180)

# A sanity bound, not a performance target: a controlled shutdown moves
# leaderships at once, so a partition pauses for a leader change, not for a
# session timeout.
GAP_S_MAX = 20.0


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", n=3, extra={"replica.lag.time.max.ms": "3000",
                                                   "leader.imbalance.check.interval.seconds": "1"})
    print(f"cluster logs: {c.root}")
    c.start()
    yield c
    c.close()


def test_rolling_restart_loses_and_duplicates_nothing(cluster):
    result = rolling.run(cluster, partitions=6, rate=5000, acks_between=2000, timeout=60)
    print(result.summary())
    assert result.problems == []
    assert len(result.restarts) == 3
    assert result.acked > 0 and result.acked <= result.stored
    assert result.gap_s < GAP_S_MAX, result.summary()
    # auto.leader.rebalance.enable: once the last broker is back in sync,
    # every partition is led by its first replica again.
    cluster.wait_until(lambda: all(p.leader == p.replicas[0]
                                   for p in cluster.metadata(1).topics["rolling"].partitions.values()),
                       timeout=30, what="every partition led by its preferred replica")
