package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/state/shard"
)

// Event is the context a handler runs in: a context.Context (cancelled
// when the node stops) that carries the record being handled, the
// partition's table shards, and the event's effects — the records it
// sends and its reply — which are released only if the handler succeeds.
// Contexts derived from it (context.WithTimeout …) lead back to it
// through From.
type Event struct {
	context.Context
	rec      *Record
	agent    *Agent
	shards   []*shard.Shard // nil where the handler has no partition (channel agents)
	wins     []*Windows     // by table index; nil without windowed tables or a partition
	now      func() time.Time
	route    Router
	staged   []Output
	reply    []byte
	readOnly bool
	maxBytes int // the producer's record size limit; 0: none
	// batch adds an item to the agent's batch (batch agents).
	batch func(item any)
}

type eventKey struct{}

// NewEvent returns a handler context on ctx whose sends are routed by route
// and whose tables are shards (nil: none). Drivers reuse one per
// partition with Reset.
func NewEvent(ctx context.Context, route Router, shards []*shard.Shard) *Event {
	return &Event{Context: ctx, route: route, shards: shards}
}

// Value returns the Event itself for its own key, so that From finds it
// through derived contexts.
func (e *Event) Value(k any) any {
	if k == (eventKey{}) {
		return e
	}
	return e.Context.Value(k)
}

// From returns the Event ctx derives from, or nil outside a handler.
func From(ctx context.Context) *Event {
	if ctx == nil {
		return nil
	}
	e, _ := ctx.Value(eventKey{}).(*Event)
	return e
}

// Record returns the record being handled.
func (e *Event) Record() *Record { return e.rec }

// Agent returns the agent whose handler runs.
func (e *Event) Agent() *Agent { return e.agent }

// ReadOnly reports whether the handler may only read tables (it runs
// concurrently with others of its partition).
func (e *Event) ReadOnly() bool { return e.readOnly }

// Shard returns the shard of table index i in the event's partition, or
// nil where the handler has no partition.
func (e *Event) Shard(i int) *shard.Shard {
	if e.shards == nil {
		return nil
	}
	return e.shards[i]
}

// Windows returns the window state of windowed table index i in the
// event's partition, or nil (not windowed, or no partition).
func (e *Event) Windows(i int) *Windows {
	if e.wins == nil || e.shards == nil {
		return nil
	}
	return e.wins[i]
}

// Now reads the app's clock (windowed tables on wall-clock time).
func (e *Event) Now() time.Time {
	if e.now == nil {
		return time.Now()
	}
	return e.now()
}

// Send stages a record to topic as an effect of the event: produced only
// if the handler succeeds. Without a key (or with keyed false) it goes to
// the partition the event came from, modulo topic's count.
func (e *Event) Send(topic string, key, value []byte, keyed bool, headers ...Header) error {
	var from int32
	o := Output{Topic: topic, Key: key, Value: value, Headers: headers}
	if e.rec != nil {
		from, o.Timestamp = e.rec.Partition, e.rec.Timestamp
	}
	if err := e.fits(&o); err != nil {
		return err
	}
	p, err := e.route(topic, key, keyed, from)
	if err != nil {
		return err
	}
	o.Partition = p
	e.staged = append(e.staged, o)
	return nil
}

// CheckSize reports whether a record of key and value for topic fits the
// producer's size limit (a table write checks its changelog record). The
// error wraps ErrTooLarge.
func (e *Event) CheckSize(topic string, key, value []byte) error {
	if e.maxBytes <= 0 {
		return nil
	}
	// Output.Size of a record without headers, without building one: a
	// table write checks every time.
	return e.tooLarge(len(topic)+len(key)+len(value)+recordOverhead, topic)
}

func (e *Event) fits(o *Output) error {
	if e.maxBytes <= 0 {
		return nil
	}
	return e.tooLarge(o.Size(), o.Topic)
}

// tooLarge returns the error of a record of n bytes for topic over the
// producer's limit, or nil if it fits.
func (e *Event) tooLarge(n int, topic string) error {
	if n > e.maxBytes {
		return fmt.Errorf("%w: %d bytes for topic %s, the producer's limit is %d", ErrTooLarge, n, topic, e.maxBytes)
	}
	return nil
}

// SetReply sets the encoded result of a reply agent's handler.
func (e *Event) SetReply(b []byte) { e.reply = b }

// AddToBatch adds an item to the batch of the event's agent.
func (e *Event) AddToBatch(item any) error {
	if e.batch == nil {
		return fmt.Errorf("agent %s takes no batches", e.agent.Name)
	}
	e.batch(item)
	return nil
}

// The methods below are for the driver that runs handlers.

// Reset points the context at a new record and agent and drops the last
// event's effects.
func (e *Event) Reset(rec *Record, a *Agent) {
	e.rec, e.agent, e.staged, e.reply = rec, a, e.staged[:0], nil
}

// Staged returns the records the handler sent so far.
func (e *Event) Staged() []Output { return e.staged }

// Stage adds an output to the event's effects as is.
func (e *Event) Stage(o Output) { e.staged = append(e.staged, o) }

// Unstage drops the effects staged so far.
func (e *Event) Unstage() { e.staged = e.staged[:0] }
