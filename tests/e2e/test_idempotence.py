"""Idempotent-producer rules on Produce, over raw requests: retries are
answered with the original offsets, gaps are refused, and the state
survives a restart (clean or kill -9)."""

import pytest
from confluent_kafka import Consumer, TopicPartition

from kafka_wire import (connect, init_producer_id_v0, init_producer_id_v0_result, produce_v3,
                        produce_v3_result, read_response, record_batch, request)


class Session:
    def __init__(self, broker):
        self.sock = connect(broker.port)
        self.corr = 0

    def call(self, api, version, body):
        self.corr += 1
        self.sock.sendall(request(api, version, self.corr, body))
        return read_response(self.sock)

    def produce(self, topic, batch):
        return produce_v3_result(self.call(0, 3, produce_v3(topic, 0, batch)))


def high_watermark(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


@pytest.mark.parametrize("restart", ["sigterm", "kill9"])
def test_duplicates_gaps_and_restart(broker, restart):
    s = Session(broker)
    error, pid, epoch = init_producer_id_v0_result(s.call(22, 0, init_producer_id_v0()))
    assert error == 0 and pid >= 0 and epoch == 0
    _, pid2, _ = init_producer_id_v0_result(s.call(22, 0, init_producer_id_v0()))
    assert pid2 != pid

    def batch(seq, n=3):
        return record_batch([b"v%d" % (seq + i) for i in range(n)], producer_id=pid, epoch=epoch, base_sequence=seq)

    assert s.produce("idem-raw", batch(0)) == (0, 0)
    assert s.produce("idem-raw", batch(3)) == (0, 3)
    # A retry of the last batch: success, original offset, nothing appended.
    assert s.produce("idem-raw", batch(3)) == (0, 3)
    # A retry of an older batch still in the window.
    assert s.produce("idem-raw", batch(0)) == (0, 0)
    assert high_watermark(broker, "idem-raw") == 6
    # A gap is refused.
    error, _ = s.produce("idem-raw", batch(10))
    assert error == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    # Without a producer id nothing is checked.
    assert s.produce("idem-raw", record_batch([b"plain"])) == (0, 6)

    if restart == "sigterm":
        assert broker.stop() == 0
    else:
        broker.kill9()
    broker.start()
    s = Session(broker)
    # The producer state was rebuilt: the retry is still recognised, the
    # next batch continues, a gap is still refused.
    assert s.produce("idem-raw", batch(3)) == (0, 3)
    assert s.produce("idem-raw", batch(6)) == (0, 7)
    assert s.produce("idem-raw", batch(20))[0] == 45
    assert high_watermark(broker, "idem-raw") == 10
