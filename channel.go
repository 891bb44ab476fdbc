package mephisto

import (
	"context"
	"fmt"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/internal/node"
)

// Channel is an in-memory stream of key/value pairs inside one node
// (Faust's app.channel): an agent's input for pipelines that need no
// Kafka. Nothing sent to a channel survives a restart of the node.
type Channel[K, V any] struct {
	app  *App
	name string

	mu    sync.Mutex // guards agent
	agent *node.ChannelAgent
}

// NewChannel declares a channel.
func NewChannel[K, V any](app *App, name string) *Channel[K, V] {
	return &Channel[K, V]{app: app, name: name}
}

// Name returns the channel's name.
func (c *Channel[K, V]) Name() string { return c.name }

// Send delivers key/value to the channel's agent (into its mailbox; it does
// not wait for the handler).
func (c *Channel[K, V]) Send(_ context.Context, key K, value V) error {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil || !a.Send(key, value) {
		return fmt.Errorf("channel %s: %w", c.name, ErrNoConsumer)
	}
	return nil
}

// ChannelAgent is a declared channel-backed agent.
type ChannelAgent[K, V any] struct {
	app  *App
	ch   *Channel[K, V]
	spec *node.ChannelAgent
}

// PID returns the agent's actor, once the worker runs.
func (a *ChannelAgent[K, V]) PID() *actor.PID { return a.spec.PID() }

// chanDecl is a declared channel agent.
type chanDecl struct {
	spec *node.ChannelAgent
}

// NewChannelAgent declares an agent on a channel. It runs as one
// supervised actor (with a PID) on every worker; a handler error or panic
// restarts it with backoff and retries the message up to the app's
// MaxAttempts, then the message is logged and dropped. Channel agents have
// no partition, so they use no tables; they may send to topics and
// channels.
func NewChannelAgent[K, V any](app *App, name string, ch *Channel[K, V], h Handler[K, V], opts ...AgentOption) *ChannelAgent[K, V] {
	spec := &node.ChannelAgent{Name: name, Channel: ch.name, Run: func(ev *partition.Event, k, v any) error {
		return h(handlerCtx{ev}, k.(K), v.(V))
	}}
	ch.mu.Lock()
	ch.agent = spec
	ch.mu.Unlock()
	a := &ChannelAgent[K, V]{app: app, ch: ch, spec: spec}
	app.mu.Lock()
	defer app.mu.Unlock()
	if _, dup := app.agents[name]; dup {
		app.errs = append(app.errs, fmt.Errorf("agent %s declared twice", name))
	}
	app.chanAgents = append(app.chanAgents, chanDecl{spec: spec})
	if n := app.node; n != nil { // spawned on a running node: start at once
		app.mu.Unlock()
		err := n.StartChannelAgent(spec)
		app.mu.Lock()
		if err != nil {
			n.Logger().Error("spawn channel agent", "agent", name, "err", err)
		}
	}
	return a
}

// SpawnChannelAgent starts a channel agent on the running node now (the
// same as NewChannelAgent, which also starts it when called on a running
// node) and returns it once its actor runs.
func SpawnChannelAgent[K, V any](app *App, name string, ch *Channel[K, V], h Handler[K, V], opts ...AgentOption) (*ChannelAgent[K, V], error) {
	if app.running() == nil {
		return nil, ErrNotRunning
	}
	a := NewChannelAgent(app, name, ch, h, opts...)
	if !a.spec.Running() {
		return nil, fmt.Errorf("channel agent %s did not start", name)
	}
	return a, nil
}
