package mephisto

import (
	"context"
	"time"

	"github.com/IBM/sarama"
)

// Context is what an agent's handler gets: a context.Context (cancelled
// when the worker stops) that also carries the event being handled. Pass it
// to Table and Topic methods; derived contexts (context.WithTimeout …) work
// too.
type Context interface {
	context.Context
	// Event returns the record being handled.
	Event() Event
}

// Event is a record as it came from Kafka.
type Event struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte // raw key bytes (nil for a null key)
	Value     []byte // raw value bytes
	Headers   []Header
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

type eventKey struct{}

// eventCtx is the handler context of one task. The grain reuses one per
// partition; its staged effects are released only if the handler succeeds.
type eventCtx struct {
	context.Context
	core   *core    // nil for channel agents (no partition, no tables)
	rt     *runtime // the node, for channel agents
	msg    *sarama.ConsumerMessage
	agent  *agentDef
	staged []*sarama.ProducerMessage
	reply  []byte // the encoded result of a reply agent's handler
	// readOnly is set for handlers running with Concurrency > 1.
	readOnly bool
}

func (e *eventCtx) Value(k any) any {
	if k == (eventKey{}) {
		return e
	}
	return e.Context.Value(k)
}

func (e *eventCtx) Event() Event {
	m := e.msg
	ev := Event{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		ev.Headers = append(ev.Headers, Header{Key: string(h.Key), Value: h.Value})
	}
	return ev
}

func (e *eventCtx) stage(m *sarama.ProducerMessage) { e.staged = append(e.staged, m) }

// eventFrom returns the handler context ctx derives from, or nil.
func eventFrom(ctx context.Context) *eventCtx {
	if ctx == nil {
		return nil
	}
	e, _ := ctx.Value(eventKey{}).(*eventCtx)
	return e
}

// runtime returns the node the event is handled on.
func (e *eventCtx) runtime() *runtime {
	if e.core != nil {
		return e.core.rt
	}
	return e.rt
}
