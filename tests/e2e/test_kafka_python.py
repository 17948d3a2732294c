"""kafka-python: the README sample, unchanged apart from the address."""

import json
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


def test_readme_sample(broker):
    address = broker.bootstrap
    producer = KafkaProducer(bootstrap_servers=address, value_serializer=lambda v: json.dumps(v).encode('utf-8'))
    for i in range(10):
        data = {'id': i, 'name': 'user' + str(i), 'age': 18}
        producer.send('topic1', key=str(i).encode(), value=data)
        producer.flush()
    consumer = KafkaConsumer('topic1', bootstrap_servers=address, auto_offset_reset='earliest', value_deserializer=lambda x: json.loads(x.decode('utf-8')))
    # Read back with a deadline (the sample itself stops at construction).
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 10 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((m.key, m.value) for m in records)
    consumer.close()
    producer.close()
    assert got == [(str(i).encode(), {'id': i, 'name': 'user' + str(i), 'age': 18}) for i in range(10)]


def test_admin_and_gzip(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("kp", num_partitions=3, replication_factor=1)])
    assert "kp" in admin.list_topics()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip", acks="all")
    for i in range(300):
        producer.send("kp", key=b"k%d" % (i % 7), value=b"v%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=20000)
    consumer.assign([TopicPartition("kp", p) for p in range(3)])
    consumer.seek_to_beginning()
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 300 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert sorted(values) == sorted(b"v%d" % i for i in range(300))
    admin.delete_topics(["kp"])
    deadline = time.monotonic() + 10
    while "kp" in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "kp" not in admin.list_topics()
    admin.close()
