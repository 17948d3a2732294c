import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Kafka transactions with Apache Kafka's Java client; lines on stdout are
 * what tests/e2e/test_transactions.py parses.
 *
 * <pre>
 * ctp BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID PARTITIONS PAUSE_MS DEADLINE_S
 *     consume-transform-produce: reads INPUT (PARTITIONS partitions) in GROUP
 *     (read_committed, no auto commit, static member), writes "out-VALUE" to
 *     OUTPUT per record, one transaction per poll (max.poll.records 100)
 *     with the consumed offsets sent to it. Half-way through each
 *     transaction it flushes, prints "OPEN commits records-flushed" and
 *     sleeps PAUSE_MS (an open transaction with records in the log: where
 *     the test kills the JVM). After each commit "COMMIT commits consumed";
 *     "DONE consumed" once its positions reach INPUT's end offsets (exit 0);
 *     "TIMEOUT" past DEADLINE_S (exit 2); "ERROR ..." on any failure (exit 3).
 * transactions BOOTSTRAP TRANSACTIONAL_ID
 *     Admin.listTransactions: "LISTED id state producerId" per transaction,
 *     then Admin.describeTransactions of the id:
 *     "DESCRIBED id state timeoutMs coordinatorId topic-partition,..." (sorted).
 * </pre>
 */
public class TxnCheck {
    static final long ADMIN_TIMEOUT_S = 30;
    static final int RECORDS_PER_TRANSACTION = 100;

    public static void main(String[] args) throws Exception {
        try {
            switch (args[0]) {
                case "ctp": ctp(args); break;
                case "transactions": transactions(args[1], args[2]); break;
                default: throw new IllegalArgumentException(args[0]);
            }
        } catch (Exception e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            System.out.println("ERROR " + cause.getClass().getSimpleName() + ": "
                    + String.valueOf(cause.getMessage()).replace('\n', ' '));
            System.out.flush();
            System.exit(3);
        }
    }

    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static void ctp(String[] a) throws Exception {
        String bootstrap = a[1], input = a[2], output = a[3], group = a[4], transactionalId = a[5];
        int partitions = Integer.parseInt(a[6]);
        long pauseMs = Long.parseLong(a[7]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(a[8]));

        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("transactional.id", transactionalId);
        pp.put("enable.idempotence", "true");
        pp.put("acks", "all");
        pp.put("linger.ms", "5");
        pp.put("max.block.ms", "30000");
        pp.put("delivery.timeout.ms", "60000");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());

        Properties cp = new Properties();
        cp.put("bootstrap.servers", bootstrap);
        cp.put("group.id", group);
        // Static membership: a restarted JVM takes over its killed
        // predecessor's member at once instead of waiting out the session.
        cp.put("group.instance.id", transactionalId + "-member");
        cp.put("session.timeout.ms", "10000");
        cp.put("isolation.level", "read_committed");
        cp.put("enable.auto.commit", "false");
        cp.put("auto.offset.reset", "earliest");
        cp.put("max.poll.records", String.valueOf(RECORDS_PER_TRANSACTION));
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", StringDeserializer.class.getName());

        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp);
             KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            // Fences any earlier instance and aborts its open transaction.
            producer.initTransactions();
            say("INIT");
            consumer.subscribe(List.of(input));
            long consumed = 0;
            int commits = 0;
            while (true) {
                if (System.nanoTime() > deadline) {
                    say("TIMEOUT consumed " + consumed);
                    System.exit(2);
                }
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    Set<TopicPartition> assigned = consumer.assignment();
                    if (assigned.size() == partitions && reachedEnd(consumer, assigned)) {
                        say("DONE " + consumed);
                        return;
                    }
                    continue;
                }
                producer.beginTransaction();
                int half = records.count() / 2, sent = 0;
                for (ConsumerRecord<String, String> r : records) {
                    producer.send(new ProducerRecord<>(output, r.key(), "out-" + r.value()));
                    sent++;
                    if (sent == half) {
                        producer.flush();
                        say("OPEN " + commits + " " + sent);
                        Thread.sleep(pauseMs);
                    }
                }
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (TopicPartition tp : records.partitions()) {
                    List<ConsumerRecord<String, String>> list = records.records(tp);
                    offsets.put(tp, new OffsetAndMetadata(list.get(list.size() - 1).offset() + 1));
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                producer.commitTransaction();
                consumed += records.count();
                commits++;
                say("COMMIT " + commits + " " + consumed);
            }
        }
    }

    /** Every assigned partition's position is at its (read_committed) end. */
    static boolean reachedEnd(KafkaConsumer<String, String> consumer, Collection<TopicPartition> assigned) {
        Map<TopicPartition, Long> ends = consumer.endOffsets(assigned, Duration.ofSeconds(ADMIN_TIMEOUT_S));
        for (TopicPartition tp : assigned) {
            if (consumer.position(tp, Duration.ofSeconds(ADMIN_TIMEOUT_S)) < ends.get(tp)) {
                return false;
            }
        }
        return true;
    }

    static void transactions(String bootstrap, String transactionalId) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("request.timeout.ms", "15000");
        props.put("default.api.timeout.ms", "30000");
        try (Admin admin = Admin.create(props)) {
            Collection<TransactionListing> listed =
                    admin.listTransactions().all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            for (TransactionListing l : listed) {
                say("LISTED " + l.transactionalId() + " " + l.state() + " " + l.producerId());
            }
            TransactionDescription d = admin.describeTransactions(List.of(transactionalId))
                    .description(transactionalId).get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            List<String> parts = new ArrayList<>();
            for (TopicPartition tp : d.topicPartitions()) {
                parts.add(tp.topic() + "-" + tp.partition());
            }
            parts.sort(null);
            say("DESCRIBED " + transactionalId + " " + d.state() + " " + d.transactionTimeoutMs() + " "
                    + d.coordinatorId() + " " + (parts.isEmpty() ? "-" : String.join(",", parts)));
        }
    }
}
