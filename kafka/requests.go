package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// RepliesTopic is app's shared reply topic: every requester (node or CLI
// client) reads one partition of it, chosen by its id.
func RepliesTopic(app string) string { return app + "-replies" }

// A Requester sends requests through Kafka and waits for their replies on
// its partition of the app's reply topic. A request is a record with a
// reply-to header naming that partition and a correlation id; the agent
// that handles it produces the reply there with the same correlation id
// (and the handler's error, if it failed, in another header).
type Requester struct {
	producer  *Producer
	topic     string
	partition int32
	n         func(topic string) (int32, error)
	pc        sarama.PartitionConsumer

	mu      sync.Mutex // guards waiting
	waiting map[string]chan reply
}

type reply struct {
	value []byte
	err   error
}

// A ReplyError is the error a request's handler failed with, as its reply
// carried it.
type ReplyError struct{ Text string }

func (e *ReplyError) Error() string { return e.Text }

// RequesterConfig configures a Requester.
type RequesterConfig struct {
	// Consumer reads the replies.
	Consumer sarama.Consumer
	// Producer sends the requests.
	Producer *Producer
	// App names the reply topic (RepliesTopic).
	App string
	// ID chooses the requester's partition of the reply topic; empty: a
	// random one (a client that comes and goes).
	ID string
	// Partitions returns the partition count of a topic.
	Partitions func(topic string) (int32, error)
}

// NewRequester starts listening on the reply partition of cfg.ID, from its
// current end: replies to requests sent from now on are seen.
func NewRequester(cfg RequesterConfig) (*Requester, error) {
	topic := RepliesTopic(cfg.App)
	parts, err := cfg.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("reply topic %s: %w (a worker creates it when it starts)", topic, err)
	}
	id := cfg.ID
	if id == "" {
		id = newID()
	}
	r := &Requester{producer: cfg.Producer, topic: topic, partition: Partition([]byte(id), parts), n: cfg.Partitions, waiting: map[string]chan reply{}}
	// A topic just created may show a leader in the metadata a moment
	// before that broker serves the partition (Apache Kafka answers
	// NOT_LEADER_OR_FOLLOWER then): wait for it, a while.
	deadline := time.Now().Add(replyLeaderWait)
	for {
		r.pc, err = cfg.Consumer.ConsumePartition(topic, r.partition, sarama.OffsetNewest)
		if err == nil || !leaderPending(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("listen for replies on %s/%d: %w", topic, r.partition, err)
	}
	go r.listen()
	return r, nil
}

// replyLeaderWait bounds NewRequester's wait for its reply partition to be
// served by its leader.
const replyLeaderWait = 30 * time.Second

// leaderPending reports whether err says a partition has no serving leader
// yet, as a topic just created may for a moment.
func leaderPending(err error) bool {
	return errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrUnknownTopicOrPartition)
}

func (r *Requester) listen() {
	for {
		select {
		case m, ok := <-r.pc.Messages():
			if !ok {
				return
			}
			corr := headerValue(m.Headers, partition.HeaderCorrelationID)
			r.mu.Lock()
			ch := r.waiting[corr]
			delete(r.waiting, corr)
			r.mu.Unlock()
			if ch == nil {
				continue // another requester's reply on the same partition, or one we gave up on
			}
			rep := reply{value: m.Value}
			if e := headerValue(m.Headers, partition.HeaderError); e != "" {
				rep.err = &ReplyError{Text: e}
			}
			ch <- rep
		case _, ok := <-r.pc.Errors():
			if !ok {
				return
			}
		}
	}
}

// Close stops listening for replies.
func (r *Requester) Close() { r.pc.AsyncClose() }

// Ask produces a request to topic and waits for its reply. Without a key
// (or keyed false), the request goes to partition idx, modulo the topic's
// count. A reply carrying the handler's error fails with a *ReplyError;
// when ctx ends first, the error wraps ctx.Err().
func (r *Requester) Ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	n, err := r.n(topic)
	if err != nil {
		return nil, err
	}
	p := idx % n
	if keyed && key != nil {
		p = Partition(key, n)
	}
	corr := newID()
	ch := make(chan reply, 1)
	r.mu.Lock()
	r.waiting[corr] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, corr)
		r.mu.Unlock()
	}()
	msg := Message(partition.Output{Topic: topic, Partition: p, Key: key, Value: value, Headers: []partition.Header{
		{Key: partition.HeaderReplyTo, Value: []byte(r.topic + ":" + strconv.Itoa(int(r.partition)))},
		{Key: partition.HeaderCorrelationID, Value: []byte(corr)},
	}})
	if _, err := r.producer.SendSync(ctx, msg); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	select {
	case rep := <-ch:
		return rep.value, rep.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the reply on %s: %w", topic, ctx.Err())
	}
}

func headerValue(hs []*sarama.RecordHeader, key string) string {
	for _, h := range hs {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
