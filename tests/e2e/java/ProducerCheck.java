import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/** Produces N keyed records with the Java client's default settings (idempotence on, acks=all). */
public class ProducerCheck {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int count = Integer.parseInt(args[2]);
        String compression = args.length > 3 ? args[3] : "none";
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        props.put("compression.type", compression);
        props.put("delivery.timeout.ms", "60000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < count; i++) {
                RecordMetadata md = producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)).get();
                System.out.println("ACK " + md.partition() + " " + md.offset() + " value-" + i);
            }
            producer.flush();
        }
    }
}
