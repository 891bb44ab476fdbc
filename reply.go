package mephisto

import (
	"context"
	"fmt"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
)

// ReplyAgent is an agent whose handler returns a result: Faust's agent that
// yields, used with Ask, Map and Join (through Kafka) or Request (straight
// to the owning grain's PID). Its results also go to its sinks.
type ReplyAgent[K, V, R any] struct {
	*Agent[K, V]
	rc codec.Codec[R]
}

// ReplyHandler handles one event and returns the reply.
type ReplyHandler[K, V, R any] func(ctx Context, key K, value V) (R, error)

// NewReplyAgent declares an agent that replies to each event. Replies are
// encoded with JSON (codec.JSON[R]).
func NewReplyAgent[K, V, R any](app *App, name string, topic *Topic[K, V], h ReplyHandler[K, V, R], opts ...AgentOption) *ReplyAgent[K, V, R] {
	rc := codec.JSON[R]()
	a := newAgent(app, name, topic, false, nil, func(ev *partition.Event, k K, v V) error {
		r, err := h(handlerCtx{ev}, k, v)
		if err != nil {
			return err
		}
		b, err := rc.Encode(r)
		if err != nil {
			return fmt.Errorf("agent %s: encode reply: %w", name, err)
		}
		ev.SetReply(b)
		return nil
	}, opts)
	a.def.spec.Replies = true
	return &ReplyAgent[K, V, R]{Agent: a, rc: rc}
}

func (a *ReplyAgent[K, V, R]) decode(b []byte, err error) (R, error) {
	var zero R
	if err != nil {
		return zero, err
	}
	r, err := a.rc.Decode(b)
	if err != nil {
		return zero, fmt.Errorf("agent %s: decode reply: %w", a.def.spec.Name, err)
	}
	return r, nil
}

// Ask sends key/value to the agent's topic and waits for its reply (Faust's
// agent.ask): durable — the request survives a crash of the node that
// handles it — and answered by whichever node owns the key's partition.
// ctx bounds the wait (ErrTimeout when it expires).
func (a *ReplyAgent[K, V, R]) Ask(ctx context.Context, key K, value V) (R, error) {
	kb, vb, err := a.encode(key, value)
	if err != nil {
		var zero R
		return zero, err
	}
	return a.decode(a.app.ask(ctx, a.topic.def.name, kb, vb, true, 0))
}

// Cast sends key/value to the agent's topic without waiting for a reply
// (Faust's agent.cast).
func (a *Agent[K, V]) Cast(ctx context.Context, key K, value V) error {
	return a.topic.Send(ctx, key, value)
}

// KV is a key and a value, for KVMap and KVJoin.
type KV[K, V any] struct {
	Key   K
	Value V
}

// Result is one reply of Map or KVMap: the index of the request it answers,
// the reply, or the error.
type Result[R any] struct {
	Index int
	Value R
	Err   error
}

// KVMap asks for every pair at once and delivers the replies as they
// arrive; the channel closes after the last (Faust's agent.kvmap).
func (a *ReplyAgent[K, V, R]) KVMap(ctx context.Context, kvs ...KV[K, V]) <-chan Result[R] {
	out := make(chan Result[R], len(kvs))
	done := make(chan struct{})
	for i, kv := range kvs {
		go func() {
			defer func() { done <- struct{}{} }()
			r, err := a.Ask(ctx, kv.Key, kv.Value)
			out <- Result[R]{Index: i, Value: r, Err: err}
		}()
	}
	go func() {
		for range kvs {
			<-done
		}
		close(out)
	}()
	return out
}

// Map asks for every value (without a key: spread over the partitions)
// and delivers the replies as they arrive (Faust's agent.map).
func (a *ReplyAgent[K, V, R]) Map(ctx context.Context, values ...V) <-chan Result[R] {
	out := make(chan Result[R], len(values))
	done := make(chan struct{})
	for i, v := range values {
		go func() {
			defer func() { done <- struct{}{} }()
			vb, err := a.topic.vc.Encode(v)
			var r R
			if err == nil {
				r, err = a.decode(a.app.ask(ctx, a.topic.def.name, nil, vb, false, int32(i)))
			}
			out <- Result[R]{Index: i, Value: r, Err: err}
		}()
	}
	go func() {
		for range values {
			<-done
		}
		close(out)
	}()
	return out
}

// KVJoin asks for every pair at once and returns the replies in input
// order, or the first error (Faust's agent.kvjoin).
func (a *ReplyAgent[K, V, R]) KVJoin(ctx context.Context, kvs ...KV[K, V]) ([]R, error) {
	return join(a.KVMap(ctx, kvs...), len(kvs))
}

// Join asks for every value at once and returns the replies in input
// order, or the first error (Faust's agent.join).
func (a *ReplyAgent[K, V, R]) Join(ctx context.Context, values ...V) ([]R, error) {
	return join(a.Map(ctx, values...), len(values))
}

func join[R any](results <-chan Result[R], n int) ([]R, error) {
	out := make([]R, n)
	var first error
	for r := range results {
		if r.Err != nil && first == nil {
			first = fmt.Errorf("request %d: %w", r.Index, r.Err)
		}
		out[r.Index] = r.Value
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

func (a *Agent[K, V]) encode(key K, value V) ([]byte, []byte, error) {
	kb, err := a.topic.kc.Encode(key)
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: encode key: %w", a.def.spec.Name, err)
	}
	vb, err := a.topic.vc.Encode(value)
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: encode value: %w", a.def.spec.Name, err)
	}
	return kb, vb, nil
}

// SendReplyTo sends key/value to the agent's topic with replies going to
// another topic (Faust's send(reply_to=…)): the handler's result is
// produced to replyTo, keyed like the request, as JSON. Pass another
// agent's topic name to chain agents.
func (a *ReplyAgent[K, V, R]) SendReplyTo(ctx context.Context, key K, value V, replyTo string) error {
	kb, vb, err := a.encode(key, value)
	if err != nil {
		return err
	}
	n := a.app.running()
	if n == nil {
		return ErrNotRunning
	}
	_, err = n.SendSync(ctx, a.topic.def.name, kb, vb, true, partition.Header{Key: partition.HeaderReplyTo, Value: []byte(replyTo)})
	return err
}

// ask routes a request of the running app.
func (a *App) ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	n := a.running()
	if n == nil {
		return nil, fmt.Errorf("ask on %s: %w", topic, ErrNotRunning)
	}
	return n.Ask(ctx, topic, key, value, keyed, idx)
}
