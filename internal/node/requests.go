package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
)

// Errors of requests to agents; the root package exports them.
var (
	ErrTimeout  = errors.New("mephisto: request timed out")
	ErrNodeDead = errors.New("mephisto: the node owning the key is dead")
	ErrNoOwner  = errors.New("mephisto: no node owns the key's partition right now")
	ErrRemote   = errors.New("mephisto: the agent's handler failed")
	ErrNoRemote = errors.New("mephisto: the owning node has no actor address")
)

// The headers of requests and replies.
const (
	headerReplyTo       = partition.HeaderReplyTo
	headerCorrelationID = partition.HeaderCorrelationID
	headerError         = partition.HeaderError
)

// repliesTopic is the app's shared reply topic: every requester (node or
// CLI client) reads one partition of it, chosen by its id.
func repliesTopic(app string) string { return app + "-replies" }

// requester sends requests through Kafka and waits for their replies on its
// partition of the reply topic.
type requester struct {
	producer  *kafka.Producer
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

// newRequester starts listening on the reply partition of id, from its
// current end: replies to requests sent from now on are seen.
func newRequester(consumer sarama.Consumer, producer *kafka.Producer, app, id string, n func(string) (int32, error)) (*requester, error) {
	topic := repliesTopic(app)
	parts, err := n(topic)
	if err != nil {
		return nil, fmt.Errorf("reply topic %s: %w (a worker creates it when it starts)", topic, err)
	}
	r := &requester{producer: producer, topic: topic, partition: kafka.Partition([]byte(id), parts), n: n, waiting: map[string]chan reply{}}
	if r.pc, err = consumer.ConsumePartition(topic, r.partition, sarama.OffsetNewest); err != nil {
		return nil, fmt.Errorf("listen for replies on %s/%d: %w", topic, r.partition, err)
	}
	go r.listen()
	return r, nil
}

func (r *requester) listen() {
	for {
		select {
		case m, ok := <-r.pc.Messages():
			if !ok {
				return
			}
			corr := headerValue(m.Headers, headerCorrelationID)
			r.mu.Lock()
			ch := r.waiting[corr]
			delete(r.waiting, corr)
			r.mu.Unlock()
			if ch == nil {
				continue // another requester's reply on the same partition, or one we gave up on
			}
			rep := reply{value: m.Value}
			if e := headerValue(m.Headers, headerError); e != "" {
				rep.err = fmt.Errorf("%w: %s", ErrRemote, e)
			}
			ch <- rep
		case _, ok := <-r.pc.Errors():
			if !ok {
				return
			}
		}
	}
}

func (r *requester) close() { r.pc.AsyncClose() }

// ask produces a request to topic and waits for its reply. Without a key,
// the request goes to partition idx (modulo the count).
func (r *requester) ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	n, err := r.n(topic)
	if err != nil {
		return nil, err
	}
	p := idx % n
	if keyed && key != nil {
		p = kafka.Partition(key, n)
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
	msg := &sarama.ProducerMessage{Topic: topic, Partition: p, Key: bytesEncoder(key), Value: bytesEncoder(value),
		Headers: []sarama.RecordHeader{
			{Key: []byte(headerReplyTo), Value: []byte(r.topic + ":" + strconv.Itoa(int(r.partition)))},
			{Key: []byte(headerCorrelationID), Value: []byte(corr)},
		}}
	if _, err := r.producer.SendSync(ctx, msg); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		}
		return nil, err
	}
	select {
	case rep := <-ch:
		return rep.value, rep.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w waiting for the reply on %s: %w", ErrTimeout, topic, ctx.Err())
	}
}

// Ask produces a request to topic and waits for its reply on this node's
// partition of the reply topic. Without a key (or keyed false) the
// request goes to partition idx, modulo the topic's count.
func (rt *Node) Ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	if rt.requests == nil {
		return nil, fmt.Errorf("ask on %s: the node is still starting", topic)
	}
	return rt.requests.ask(ctx, topic, key, value, keyed, idx)
}

// replyTarget parses a reply-to header into a topic and partition (-1: by
// key).
func replyTarget(h string) (string, int32) {
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		if p, err := strconv.Atoi(h[i+1:]); err == nil {
			return h[:i], int32(p)
		}
	}
	return h, -1
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
