package mephisto

import (
	"context"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
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

// handlerCtx is the Context of a handler: the partition's event context
// (one pointer, so making a Context of it does not allocate).
type handlerCtx struct{ *event }

// event names the embedded field of handlerCtx apart from its Event method.
type event = partition.Event

// Event returns the record being handled.
func (c handlerCtx) Event() Event {
	r := c.Record()
	ev := Event{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		ev.Headers = append(ev.Headers, Header(h))
	}
	return ev
}
