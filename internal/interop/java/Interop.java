// Interop is the Java side of the interoperability tests (internal/interop):
// the real Apache Kafka client (kafka-clients) next to Mephisto. The tests
// run it in the JDK's source-file mode with the jars test/kafka/pom.xml
// resolves:
//
//   java -cp <kafka jars> Interop.java partitions <n,...>  keys (hex, one per line) on stdin: prints, for each, the
//                                                           partitions the Java producer's default partitioner picks
//                                                           among each count n
//   java -cp <kafka jars> Interop.java produce <bootstrap> <topic> <count>
//                                                           sends <count> JSON orders keyed by account with the
//                                                           default partitioner; prints "sent <key> <partition>"
//   java -cp <kafka jars> Interop.java consume <bootstrap> <topic> <count>
//                                                           reads <count> records from the beginning of every
//                                                           partition; prints "got <partition> <key> <value>"
import java.nio.charset.StandardCharsets;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Interop {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "partitions" -> partitions(args[1].split(","));
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]));
            case "consume" -> consume(args[1], args[2], Integer.parseInt(args[3]));
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    // The function KafkaProducer's default partitioner applies to a keyed
    // record (murmur2 of the key bytes, made positive, modulo the count).
    static void partitions(String[] counts) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        HexFormat hex = HexFormat.of();
        for (String line; (line = in.readLine()) != null; ) {
            byte[] key = hex.parseHex(line.trim());
            for (int i = 0; i < counts.length; i++) {
                out.append(i == 0 ? "" : " ").append(BuiltInPartitioner.partitionForKey(key, Integer.parseInt(counts[i])));
            }
            out.append('\n');
        }
        System.out.print(out);
    }

    static void produce(String bootstrap, String topic, int count) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        ObjectMapper json = new ObjectMapper();
        List<String> lines = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<java.util.concurrent.Future<RecordMetadata>> acks = new ArrayList<>();
            List<String> keys = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                String account = "acct-" + (i % 37);
                ObjectNode order = json.createObjectNode();
                order.put("id", i);
                order.put("account", account);
                order.put("amount", i % 10 + 1);
                acks.add(producer.send(new ProducerRecord<>(topic, account, json.writeValueAsString(order))));
                keys.add(account);
            }
            for (int i = 0; i < count; i++) {
                lines.add("sent " + keys.get(i) + " " + acks.get(i).get().partition());
            }
        }
        System.out.println(String.join("\n", lines));
    }

    static void consume(String bootstrap, String topic, int count) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            int got = 0;
            StringBuilder out = new StringBuilder();
            while (got < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    out.append("got ").append(r.partition()).append(' ').append(r.key()).append(' ').append(r.value()).append('\n');
                    got++;
                }
            }
            System.out.print(out);
            if (got < count) {
                System.err.println("read " + got + " of " + count + " records of " + topic + " within 90s");
                System.exit(2);
            }
        }
    }
}
