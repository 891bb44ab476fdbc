package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/IBM/sarama"
)

// Producer is a node's one idempotent, acks=all producer. Callers group the
// records they send under a Tracker and wait for the tracker to drain: that
// is step (a) of the commit protocol, "every record produced since the last
// commit is acknowledged".
type Producer struct {
	ap   sarama.AsyncProducer
	done chan struct{}
	log  *slog.Logger
}

// NewProducer starts a producer on client. The client must be configured by
// ClientConfig (successes and errors are returned).
func NewProducer(client sarama.Client, log *slog.Logger) (*Producer, error) {
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start producer: %w", err)
	}
	p := &Producer{ap: ap, done: make(chan struct{}), log: log}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range ap.Successes() {
			t, _ := tracked(m.Metadata)
			t.ack(m.Topic, m.Partition, m.Offset, nil, nil)
		}
	}()
	go func() {
		defer wg.Done()
		for e := range ap.Errors() {
			t, origin := tracked(e.Msg.Metadata)
			t.ack(e.Msg.Topic, e.Msg.Partition, -1, e.Err, origin)
		}
	}()
	go func() { wg.Wait(); close(p.done) }()
	return p, nil
}

// Send queues msg under t. msg.Partition must be set.
func (p *Producer) Send(t *Tracker, msg *sarama.ProducerMessage) {
	t.add()
	msg.Metadata = t
	p.ap.Input() <- msg
}

// SendFrom queues msg under t like Send; if it cannot be produced, t's
// error is a *SendError carrying origin (what the caller needs to know
// which record it was).
func (p *Producer) SendFrom(t *Tracker, msg *sarama.ProducerMessage, origin any) {
	t.add()
	msg.Metadata = &sent{t: t, origin: origin}
	p.ap.Input() <- msg
}

// sent is the metadata of a record sent with an origin.
type sent struct {
	t      *Tracker
	origin any
}

func tracked(md any) (*Tracker, any) {
	if s, ok := md.(*sent); ok {
		return s.t, s.origin
	}
	return md.(*Tracker), nil
}

// SendError is a record the producer gave up on.
type SendError struct {
	Topic     string
	Partition int32
	Err       error
	// Origin is what SendFrom was given (nil for Send).
	Origin any
}

func (e *SendError) Error() string {
	return fmt.Sprintf("produce to %s/%d: %v", e.Topic, e.Partition, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Permanent reports whether a produce error can never go away by trying
// again: the record is too large or invalid for the broker.
func Permanent(err error) bool {
	for _, perm := range []error{sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge,
		sarama.ErrInvalidMessage, sarama.ErrInvalidMessageSize, sarama.ErrInvalidRecord, sarama.ErrInvalidTimestamp} {
		if errors.Is(err, perm) {
			return true
		}
	}
	var ce sarama.ConfigurationError
	return errors.As(err, &ce) // sarama refuses a record over Producer.MaxMessageBytes before sending it
}

// SendSync sends one record and waits for its acknowledgement, returning
// its offset.
func (p *Producer) SendSync(ctx context.Context, msg *sarama.ProducerMessage) (int64, error) {
	t := NewTracker()
	p.Send(t, msg)
	acked, err := t.Wait(ctx)
	if err != nil {
		return -1, err
	}
	return acked[TopicPartition{msg.Topic, msg.Partition}], nil
}

// Close flushes what is queued and stops the producer.
func (p *Producer) Close() error {
	p.ap.AsyncClose()
	<-p.done
	return nil
}

// TopicPartition names one partition of one topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Tracker counts a group of records in flight and remembers, per partition,
// the highest offset acknowledged. It is safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex // guards the fields below
	pending int
	idle    chan struct{} // closed while pending == 0
	err     error
	acked   map[TopicPartition]int64
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	idle := make(chan struct{})
	close(idle)
	return &Tracker{idle: idle, acked: map[TopicPartition]int64{}}
}

func (t *Tracker) add() {
	t.mu.Lock()
	if t.pending == 0 {
		t.idle = make(chan struct{})
	}
	t.pending++
	t.mu.Unlock()
}

func (t *Tracker) ack(topic string, partition int32, offset int64, err error, origin any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.err == nil {
			t.err = &SendError{Topic: topic, Partition: partition, Err: err, Origin: origin}
		}
	} else {
		tp := TopicPartition{topic, partition}
		if cur, ok := t.acked[tp]; !ok || offset > cur {
			t.acked[tp] = offset
		}
	}
	t.pending--
	if t.pending == 0 {
		close(t.idle)
	}
}

// Pending returns the number of records not yet acknowledged.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// Idle returns a channel closed once every record sent under t so far is
// acknowledged (records sent later are not waited for).
func (t *Tracker) Idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle
}

// Wait blocks until every record sent under t is acknowledged, then returns
// the highest offset acknowledged per partition since the previous Wait and
// the first error, if any, and resets both.
func (t *Tracker) Wait(ctx context.Context) (map[TopicPartition]int64, error) {
	t.mu.Lock()
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for produce acknowledgements: %w", ctx.Err())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	acked, err := t.acked, t.err
	t.acked, t.err = map[TopicPartition]int64{}, nil
	return acked, err
}
