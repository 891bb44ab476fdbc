package mephisto

import (
	"fmt"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
)

// Handler handles one event of an agent's topic. Returning an error (or
// panicking) fails the partition's grain: the supervisor restarts it with
// backoff and it resumes from its last commit; after the configured number
// of attempts the agent's ErrorPolicy decides.
type Handler[K, V any] func(ctx Context, key K, value V) error

// ErrorPolicy decides what happens to a record that cannot be decoded or
// whose handler keeps failing.
type ErrorPolicy int

// The policies have the values of partition.Policy's, which runs them.
const (
	// DeadLetter (the default) copies the record, original bytes and
	// headers, plus headers naming the error and the source topic,
	// partition and offset, to the topic <app>-<agent>-dead-letters, counts
	// it, and goes on with the next record.
	DeadLetter ErrorPolicy = iota
	// Skip counts the record, logs it, and goes on.
	Skip
	// Stop stops the partition: its grain processes nothing more, the node
	// reports not ready on /readyz, and the operator decides.
	Stop
)

// String returns the policy's name as used in flags and output.
func (p ErrorPolicy) String() string { return partition.Policy(p).String() }

// AgentOption configures an agent.
type AgentOption func(*agentDef)

// OnError sets the agent's error policy (default DeadLetter).
func OnError(p ErrorPolicy) AgentOption {
	return func(d *agentDef) { d.spec.Policy = partition.Policy(p) }
}

// Concurrency runs up to n of the agent's handlers at once per partition
// (default 1), for work that may finish out of order (calls to other services).
// Such handlers may read tables but not write them (ErrReadOnly): table
// state belongs to the partition's one grain. The partition still commits
// only what all of them have finished, and their sends are released in
// offset order.
func Concurrency(n int) AgentOption { return func(d *agentDef) { d.spec.Concurrency = n } }

// agentDef is a declared agent: what its partitions run (spec) and what
// listings show of it.
type agentDef struct {
	spec     *partition.Agent
	topic    *topicDef
	sinks    []string
	internal bool
}

func (d *agentDef) policy() ErrorPolicy { return ErrorPolicy(d.spec.Policy) }

// Agent is a declared agent: a handler per event of its topic, run inside
// the grain of the event's partition.
type Agent[K, V any] struct {
	app   *App
	def   *agentDef
	topic *Topic[K, V]
}

// Name returns the agent's name.
func (a *Agent[K, V]) Name() string { return a.def.spec.Name }

// Topic returns the agent's input topic.
func (a *Agent[K, V]) Topic() *Topic[K, V] { return a.topic }

// NewAgent declares an agent that runs h for every record of topic.
func NewAgent[K, V any](app *App, name string, topic *Topic[K, V], h Handler[K, V], opts ...AgentOption) *Agent[K, V] {
	return newAgent(app, name, topic, false, nil, func(ev *partition.Event, k K, v V) error { return h(handlerCtx{ev}, k, v) }, opts)
}

// Sink receives what an agent yields (Faust's sink=): a function, or a
// topic.
type Sink[R any] struct {
	name string
	fn   func(ctx Context, r R) error
}

// SinkFunc makes a sink of a function. Inside it, ctx is the event's
// context, so it may send to topics and use tables.
func SinkFunc[R any](name string, fn func(ctx Context, r R) error) Sink[R] {
	return Sink[R]{name: "func:" + name, fn: fn}
}

// SinkTopic makes a sink that sends each result, without a key, to t (on
// the partition the event came from).
func SinkTopic[K, R any](t *Topic[K, R]) Sink[R] {
	return Sink[R]{name: "topic:" + t.Name(), fn: func(ctx Context, r R) error { return t.SendValue(ctx, r) }}
}

// NewAgentWithSinks declares an agent whose handler yields results (any
// number per event, like a Faust agent's yield); each result goes to every
// sink, in order. Sends made by sinks are effects of the event like the
// handler's own.
func NewAgentWithSinks[K, V, R any](app *App, name string, topic *Topic[K, V],
	h func(ctx Context, key K, value V, yield func(R) error) error, sinks []Sink[R], opts ...AgentOption) *Agent[K, V] {
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.name
	}
	return newAgent(app, name, topic, false, names, func(ev *partition.Event, k K, v V) error {
		ctx := handlerCtx{ev}
		return h(ctx, k, v, func(r R) error {
			for _, s := range sinks {
				if err := s.fn(ctx, r); err != nil {
					return fmt.Errorf("sink %s: %w", s.name, err)
				}
			}
			return nil
		})
	}, opts)
}

func newAgent[K, V any](app *App, name string, topic *Topic[K, V], internal bool, sinks []string,
	h func(ev *partition.Event, k K, v V) error, opts []AgentOption) *Agent[K, V] {
	d := &agentDef{
		spec:  &partition.Agent{Name: name, Topic: topic.def.name, DeadLetterTopic: app.name + "-" + name + "-dead-letters"},
		topic: topic.def, internal: internal, sinks: sinks,
	}
	for _, o := range opts {
		o(d)
	}
	kc, vc := topic.kc, topic.vc
	d.spec.Run = func(ev *partition.Event) error {
		var k K
		r := ev.Record()
		if r.Key != nil {
			var err error
			if k, err = kc.Decode(r.Key); err != nil {
				return fmt.Errorf("%w: agent %s: key: %w", partition.ErrPoison, name, err)
			}
		}
		v, err := vc.Decode(r.Value)
		if err != nil {
			return fmt.Errorf("%w: agent %s: value: %w", partition.ErrPoison, name, err)
		}
		return h(ev, k, v)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if !nameRE.MatchString(name) {
		app.errs = append(app.errs, fmt.Errorf("agent name %q: use only letters, digits, '.', '_' and '-'", name))
	}
	if _, dup := app.agents[name]; dup {
		app.errs = append(app.errs, fmt.Errorf("agent %s declared twice", name))
	} else {
		app.order = append(app.order, name)
	}
	app.agents[name] = d
	return &Agent[K, V]{app: app, def: d, topic: topic}
}

// GroupBy repartitions a topic by a new key (Faust's stream.group_by): an
// internal agent named name forwards every record of src, keyed by key(k, v),
// to the internal topic <app>-<name>-repartition, which it returns. Agents
// consuming the returned topic see every record of one new key on one
// partition, so they can keep per-key state in tables.
func GroupBy[K, V, K2 any](src *Topic[K, V], name string, key func(K, V) K2, kc codec.Codec[K2]) *Topic[K2, V] {
	app := src.app
	out := newTopic(app, app.name+"-"+name+"-repartition", kc, src.vc, true)
	newAgent(app, name, src, true, nil, func(ev *partition.Event, k K, v V) error {
		return out.Send(ev, key(k, v), v)
	}, nil)
	return out
}
