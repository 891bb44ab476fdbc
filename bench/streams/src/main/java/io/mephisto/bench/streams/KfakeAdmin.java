package io.mephisto.bench.streams;

import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsResult;
import org.apache.kafka.clients.admin.ForwardingAdmin;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.internals.KafkaFutureImpl;
import org.apache.kafka.streams.processor.internals.DefaultKafkaClientSupplier;

/**
 * KfakeAdmin lets Kafka Streams' admin calls work on the dev broker
 * (`mephisto broker`, franz-go's kfake), which answers two requests in ways
 * the Java admin client rejects: DescribeTopicPartitions (its partitions'
 * eligible-leader-replicas arrays are null, a NullPointerException in the
 * client) and CreateTopics v5+ (its config entries carry source -1, an
 * IllegalArgumentException). Describing topics by name is done here through
 * their ids instead (a Metadata request); topics are not created by Streams
 * at all on kfake: the harness creates the internal topics first. Nothing
 * on the data path changes, and on Apache Kafka none of this is used.
 */
final class KfakeAdmin extends ForwardingAdmin {
    KfakeAdmin(Map<String, Object> config) {
        super(config);
    }

    /** Supplier hands Streams a KfakeAdmin and the default clients otherwise. */
    static final class Supplier extends DefaultKafkaClientSupplier {
        @Override
        public Admin getAdmin(Map<String, Object> config) {
            return new KfakeAdmin(config);
        }
    }

    // ForwardingAdmin refuses these; Streams only reports client metrics with them.
    @Override
    public void registerMetricForSubscription(org.apache.kafka.common.metrics.KafkaMetric metric) {}

    @Override
    public void unregisterMetricFromSubscription(org.apache.kafka.common.metrics.KafkaMetric metric) {}

    @Override
    public DescribeTopicsResult describeTopics(TopicCollection topics, DescribeTopicsOptions options) {
        if (!(topics instanceof TopicCollection.TopicNameCollection names)) {
            return super.describeTopics(topics, options);
        }
        Collection<String> wanted = names.topicNames();
        Map<String, KafkaFutureImpl<TopicDescription>> out = new HashMap<>();
        for (String t : wanted) {
            out.put(t, new KafkaFutureImpl<>());
        }
        super.listTopics(new ListTopicsOptions().listInternal(true)).listings().whenComplete((listings, err) -> {
            if (err != null) {
                out.values().forEach(f -> f.completeExceptionally(err));
                return;
            }
            Map<Uuid, String> ids = new HashMap<>();
            for (TopicListing l : listings) {
                if (out.containsKey(l.name())) {
                    ids.put(l.topicId(), l.name());
                }
            }
            for (String t : wanted) {
                if (!ids.containsValue(t)) {
                    out.get(t).completeExceptionally(new UnknownTopicOrPartitionException("topic " + t + " does not exist"));
                }
            }
            if (ids.isEmpty()) {
                return;
            }
            super.describeTopics(TopicCollection.ofTopicIds(ids.keySet()), options).topicIdValues()
                    .forEach((id, f) -> f.whenComplete((d, e) -> {
                        KafkaFutureImpl<TopicDescription> g = out.get(ids.get(id));
                        if (e != null) {
                            g.completeExceptionally(e);
                        } else {
                            g.complete(d);
                        }
                    }));
        });
        return new Named(new HashMap<String, KafkaFuture<TopicDescription>>(out));
    }

    /** Named is a DescribeTopicsResult by topic name. */
    static final class Named extends DescribeTopicsResult {
        Named(Map<String, KafkaFuture<TopicDescription>> byName) {
            super(null, byName);
        }
    }
}
