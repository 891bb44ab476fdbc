package kafka

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
)

// TopicSpec describes a topic Mephisto needs.
type TopicSpec struct {
	Name       string
	Partitions int32
	// ReplicationFactor of a created topic; -1 leaves it to the broker's
	// default.replication.factor.
	ReplicationFactor int16
	// Compact sets cleanup.policy=compact (changelogs).
	Compact bool
}

// EnsureTopics creates the topics in specs that do not exist yet and
// returns the partition count of every topic in specs as the brokers report
// it, so that the caller can check co-partitioning. A topic created
// concurrently by another node counts as existing.
func EnsureTopics(admin sarama.ClusterAdmin, specs []TopicSpec) (map[string]int32, error) {
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	counts, err := partitionCounts(admin, names)
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		if _, ok := counts[s.Name]; ok {
			continue
		}
		detail := &sarama.TopicDetail{NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		if s.Compact {
			policy := "compact"
			detail.ConfigEntries = map[string]*string{"cleanup.policy": &policy}
		}
		err := admin.CreateTopic(s.Name, detail, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return nil, fmt.Errorf("create topic %s (%d partitions): %w", s.Name, s.Partitions, err)
		}
	}
	// A broker answers CreateTopics once the controller has the topic, but
	// the brokers' metadata catches up a moment later: Apache Kafka
	// describes a topic just created with no partitions, or none with a
	// leader yet. Counting then would call the topics not co-partitioned.
	deadline := time.Now().Add(topicsSettle)
	for {
		counts, pending, err := settledCounts(admin, names)
		if err != nil || pending == "" {
			return counts, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("topics created, but after %v the brokers still report %s: is the cluster healthy?", topicsSettle, pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topicsSettle bounds the wait for created topics to show in the brokers'
// metadata with a leader for every partition.
const topicsSettle = 30 * time.Second

// settledCounts is partitionCounts, with pending describing a topic whose
// metadata has not settled ("" once all have partitions and leaders).
func settledCounts(admin sarama.ClusterAdmin, names []string) (counts map[string]int32, pending string, err error) {
	metas, err := admin.DescribeTopics(names)
	if err != nil {
		return nil, "", fmt.Errorf("describe topics: %w", err)
	}
	counts = make(map[string]int32, len(metas))
	for _, m := range metas {
		switch {
		case errors.Is(m.Err, sarama.ErrNoError):
			counts[m.Name] = int32(len(m.Partitions))
			if len(m.Partitions) == 0 {
				pending = fmt.Sprintf("topic %s with no partitions", m.Name)
			}
			for _, p := range m.Partitions {
				if p.Leader < 0 || !errors.Is(p.Err, sarama.ErrNoError) {
					pending = fmt.Sprintf("partition %s/%d without a leader", m.Name, p.ID)
				}
			}
		case errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition), errors.Is(m.Err, sarama.ErrLeaderNotAvailable):
			pending = fmt.Sprintf("topic %s unknown", m.Name)
		default:
			return nil, "", fmt.Errorf("describe topic %s: %w", m.Name, m.Err)
		}
	}
	return counts, pending, nil
}

func partitionCounts(admin sarama.ClusterAdmin, names []string) (map[string]int32, error) {
	metas, err := admin.DescribeTopics(names)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	counts := make(map[string]int32, len(metas))
	for _, m := range metas {
		switch {
		case errors.Is(m.Err, sarama.ErrNoError):
			counts[m.Name] = int32(len(m.Partitions))
		case errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("describe topic %s: %w", m.Name, m.Err)
		}
	}
	return counts, nil
}

// ClusterID returns the id of the Kafka cluster client is connected to.
func ClusterID(client sarama.Client) (string, error) {
	if err := client.RefreshMetadata(); err != nil {
		return "", fmt.Errorf("read cluster metadata: %w", err)
	}
	var lastErr error
	for _, b := range client.Brokers() {
		if err := b.Open(client.Config()); err != nil && !errors.Is(err, sarama.ErrAlreadyConnected) {
			lastErr = err
			continue
		}
		resp, err := b.GetMetadata(&sarama.MetadataRequest{Version: 7, Topics: []string{}})
		if err != nil {
			lastErr = err
			continue
		}
		if resp.ClusterID == nil || *resp.ClusterID == "" {
			return "", errors.New("the brokers report no cluster id (Kafka before 0.10.1?)")
		}
		return *resp.ClusterID, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no broker known")
	}
	return "", fmt.Errorf("read cluster id: %w", lastErr)
}
