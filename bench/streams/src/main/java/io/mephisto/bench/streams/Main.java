package io.mephisto.bench.streams;

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * The Kafka Streams peer of Mephisto's benchmark workloads. The harness
 * (bench/harness/streams.go) starts it as a separate JVM and reads the JSON
 * lines it prints on stdout, one per event:
 *
 * <pre>
 * {"event":"config",...}                       the effective settings, at start
 * {"event":"running","time_ns":T,"cpu_ns":C}   the first change to RUNNING
 * {"event":"restore_start","partition":P,...}  a changelog partition starts restoring
 * {"event":"restore_end","partition":P,"records":R,...}
 * {"event":"store","keys":K,"sum":S}           restore only: what the store holds once RUNNING
 * {"event":"error","message":M}                a stream thread died; the process exits 1
 * </pre>
 *
 * time_ns is the wall clock in nanoseconds since the Unix epoch, cpu_ns the
 * process's CPU time so far. The harness times the run from "running" to
 * the moment the group (the application id) has committed the input's high
 * watermarks, the same end as Mephisto's, and checks the result itself in
 * Kafka (the changelog or the output topic).
 *
 * <p>Modes (--mode):
 *
 * <pre>
 * count      in (String key, bytes value) → groupByKey → count → store "counts" (changelogged, cached)
 * pass       in (String key, bytes value) → mapValues(upper-case) → --out
 * wordcount  lines (String) → flatMap to (word, word), lower-cased, split on white space
 *            → groupByKey via the repartition topic "words" → count → store "word_counts"
 * restore    the count topology on an empty state dir over an existing
 *            changelog: reports the restore and then the store's contents
 * </pre>
 *
 * <p>Settings (flags): --threads (num.stream.threads), --commit-ms
 * (commit.interval.ms), --cache-bytes (statestore.cache.max.bytes);
 * processing.guarantee is at_least_once and the producer is idempotent
 * with acks=all, as Mephisto's.
 */
public final class Main {
    private Main() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parseArgs(argv);
        String mode = need(args, "mode");
        String appId = need(args, "app-id");
        String in = args.getOrDefault("in", "in");
        String out = args.getOrDefault("out", "out");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(args, "bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, need(args, "state-dir"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args.getOrDefault("threads", "2")));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args.getOrDefault("commit-ms", "500")));
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(args.getOrDefault("cache-bytes", "10485760")));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        p.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), "true");
        if (args.containsKey("instance-id")) {
            // A static member (Streams adds each thread's index): a new
            // process of the same id takes the last one's place at once.
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, args.get("instance-id"));
        }

        Topology topology = topology(mode, in, out);
        // On the dev broker (kfake) Streams' admin calls need a detour; see KfakeAdmin.
        boolean kfake = Boolean.parseBoolean(args.getOrDefault("kfake-compat", "false"));
        KafkaStreams streams = kfake ? new KafkaStreams(topology, p, new KfakeAdmin.Supplier()) : new KafkaStreams(topology, p);
        emit("config", "mode", mode, "app_id", appId,
                "threads", p.get(StreamsConfig.NUM_STREAM_THREADS_CONFIG),
                "commit_ms", p.get(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG),
                "cache_bytes", p.get(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG),
                "guarantee", StreamsConfig.AT_LEAST_ONCE, "kfake_compat", String.valueOf(kfake));

        CountDownLatch running = new CountDownLatch(1);
        AtomicBoolean seenRunning = new AtomicBoolean();
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && seenRunning.compareAndSet(false, true)) {
                emit("running");
                running.countDown();
            }
        });
        streams.setGlobalStateRestoreListener(new RestoreReporter());
        streams.setUncaughtExceptionHandler(e -> {
            emit("error", "message", String.valueOf(e));
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(30))));
        streams.start();

        if (mode.equals("restore")) {
            running.await();
            reportStore(streams);
        }
        // Run until the harness stops the process (SIGTERM runs the hook)
        // or a stream thread fails.
        while (true) {
            KafkaStreams.State s = streams.state();
            if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING) {
                emit("error", "message", "streams state " + s);
                System.exit(1);
            }
            Thread.sleep(100);
        }
    }

    /** The topology of mode. */
    static Topology topology(String mode, String in, String out) {
        StreamsBuilder b = new StreamsBuilder();
        switch (mode) {
            case "count", "restore" -> b.stream(in, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                    .groupByKey()
                    .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                            .withKeySerde(Serdes.String())
                            .withValueSerde(Serdes.Long()));
            case "pass" -> b.stream(in, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                    .mapValues(Main::upper)
                    .to(out, Produced.with(Serdes.String(), Serdes.ByteArray()));
            case "wordcount" -> b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
                    .flatMap((key, line) -> words(line))
                    .groupByKey(Grouped.with("words", Serdes.String(), Serdes.String()))
                    .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("word_counts")
                            .withKeySerde(Serdes.String())
                            .withValueSerde(Serdes.Long()));
            default -> throw new IllegalArgumentException("--mode " + mode + ": want count, pass, wordcount or restore");
        }
        return b.build();
    }

    /** upper upper-cases the ASCII letters of v in place (the deserializer's own copy). */
    static byte[] upper(byte[] v) {
        for (int i = 0; i < v.length; i++) {
            byte c = v[i];
            if (c >= 'a' && c <= 'z') {
                v[i] = (byte) (c - ('a' - 'A'));
            }
        }
        return v;
    }

    /** words splits a line on white space, lower-cased, each word keyed by itself. */
    static List<KeyValue<String, String>> words(String line) {
        String s = line.toLowerCase(Locale.ROOT);
        List<KeyValue<String, String>> out = new ArrayList<>();
        int start = -1;
        for (int i = 0; i <= s.length(); i++) {
            boolean space = i == s.length() || Character.isWhitespace(s.charAt(i));
            if (space && start >= 0) {
                String w = s.substring(start, i);
                out.add(KeyValue.pair(w, w));
                start = -1;
            } else if (!space && start < 0) {
                start = i;
            }
        }
        return out;
    }

    /** reportStore reads the whole "counts" store once the instance runs. */
    static void reportStore(KafkaStreams streams) throws InterruptedException {
        while (true) {
            try {
                ReadOnlyKeyValueStore<String, Long> store = streams.store(
                        StoreQueryParameters.fromNameAndType("counts", QueryableStoreTypes.keyValueStore()));
                long keys = 0, sum = 0;
                try (KeyValueIterator<String, Long> it = store.all()) {
                    while (it.hasNext()) {
                        keys++;
                        sum += it.next().value;
                    }
                }
                emit("store", "keys", keys, "sum", sum);
                return;
            } catch (org.apache.kafka.streams.errors.InvalidStateStoreException e) {
                Thread.sleep(50); // migrating or not yet open: ask again
            }
        }
    }

    /** RestoreReporter prints when each changelog partition starts and ends restoring. */
    static final class RestoreReporter implements StateRestoreListener {
        @Override
        public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
            emit("restore_start", "store", store, "partition", tp.partition(), "from", start, "to", end);
        }

        @Override
        public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

        @Override
        public void onRestoreEnd(TopicPartition tp, String store, long total) {
            emit("restore_end", "store", store, "partition", tp.partition(), "records", total);
        }
    }

    /**
     * emit prints one JSON line: the event, its time and the process's CPU
     * time, then the key/value pairs kv (numbers as numbers, anything else
     * as a string). Lines from several threads do not interleave.
     */
    static synchronized void emit(String event, Object... kv) {
        Instant now = Instant.now();
        StringBuilder b = new StringBuilder(128);
        b.append("{\"event\":\"").append(event).append('"');
        b.append(",\"time_ns\":").append(now.getEpochSecond() * 1_000_000_000L + now.getNano());
        b.append(",\"cpu_ns\":").append(cpuNanos());
        for (int i = 0; i + 1 < kv.length; i += 2) {
            b.append(",\"").append(kv[i]).append("\":");
            Object v = kv[i + 1];
            if (v instanceof Number) {
                b.append(v);
            } else {
                b.append('"').append(String.valueOf(v).replace("\\", "\\\\").replace("\"", "\\\"")
                        .replace("\n", " ")).append('"');
            }
        }
        b.append('}');
        System.out.println(b);
        System.out.flush();
    }

    /** cpuNanos is the CPU time this process has used (every thread, the JIT's and GC's included). */
    static long cpuNanos() {
        var os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
            return sun.getProcessCpuTime();
        }
        return -1;
    }

    static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (!a.startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("want --name value pairs, got " + a);
            }
            m.put(a.substring(2), argv[++i]);
        }
        return m;
    }

    static String need(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }
}
