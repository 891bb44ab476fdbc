package kafka

import (
	"errors"
	"testing"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"
)

// failingConsumer fails its first fails calls to ConsumePartition with
// err, then hands them to the sarama.Consumer it wraps.
type failingConsumer struct {
	sarama.Consumer
	err   error
	fails int
	calls int
}

func (c *failingConsumer) ConsumePartition(topic string, p int32, offset int64) (sarama.PartitionConsumer, error) {
	c.calls++
	if c.calls <= c.fails {
		return nil, c.err
	}
	return c.Consumer.ConsumePartition(topic, p, offset)
}

// TestNewRequesterWaitsForTheReplyLeader: Apache Kafka may answer
// NOT_LEADER_OR_FOLLOWER for a reply partition just created (its metadata
// names the leader a moment before the leader serves it); the requester
// tries again instead of failing the worker's start. Any other error fails
// at once.
func TestNewRequesterWaitsForTheReplyLeader(t *testing.T) {
	parts := func(string) (int32, error) { return 4, nil }
	p := Partition([]byte("n1"), 4)

	mc := mocks.NewConsumer(t, nil)
	mc.ExpectConsumePartition(RepliesTopic("app"), p, sarama.OffsetNewest)
	c := &failingConsumer{Consumer: mc, err: sarama.ErrNotLeaderForPartition, fails: 2}
	r, err := NewRequester(RequesterConfig{Consumer: c, App: "app", ID: "n1", Partitions: parts})
	if err != nil {
		t.Fatalf("NewRequester after 2 NOT_LEADER_OR_FOLLOWER answers: %v", err)
	}
	r.Close()
	if c.calls != 3 {
		t.Errorf("ConsumePartition called %d times, want 3", c.calls)
	}

	c = &failingConsumer{Consumer: mocks.NewConsumer(t, nil), err: sarama.ErrTopicAuthorizationFailed, fails: 1}
	if _, err := NewRequester(RequesterConfig{Consumer: c, App: "app", ID: "n1", Partitions: parts}); !errors.Is(err, sarama.ErrTopicAuthorizationFailed) {
		t.Errorf("NewRequester with an authorization error: %v, want it", err)
	}
	if c.calls != 1 {
		t.Errorf("ConsumePartition called %d times on an error that is not about the leader, want 1", c.calls)
	}
}
