package mephisto

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/asynkron/protoactor-go/actor"
	"github.com/mephistohq/mephisto/kafka"
)

// Channel is an in-memory stream of key/value pairs inside one node
// (Faust's app.channel): an agent's input for pipelines that need no
// Kafka. Nothing sent to a channel survives a restart of the node.
type Channel[K, V any] struct {
	app  *App
	name string

	mu    sync.Mutex // guards agent
	agent *channelAgent
}

// NewChannel declares a channel.
func NewChannel[K, V any](app *App, name string) *Channel[K, V] {
	return &Channel[K, V]{app: app, name: name}
}

// Name returns the channel's name.
func (c *Channel[K, V]) Name() string { return c.name }

// ErrNoConsumer is returned by Channel.Send when no agent consumes the
// channel on this node (not declared, or the worker is not running).
var ErrNoConsumer = errors.New("mephisto: no agent consumes the channel")

// Send delivers key/value to the channel's agent (into its mailbox; it does
// not wait for the handler).
func (c *Channel[K, V]) Send(_ context.Context, key K, value V) error {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil || a.pid == nil {
		return fmt.Errorf("channel %s: %w", c.name, ErrNoConsumer)
	}
	a.rt.system.Root.Send(a.pid, channelMsg{key: key, value: value})
	return nil
}

type channelMsg struct{ key, value any }

// channelAgent is a running channel-backed agent: an actor of its own.
type channelAgent struct {
	rt  *runtime
	def *agentDef
	run func(ctx *eventCtx, key, value any) error
	pid *actor.PID
}

// ChannelAgent is a declared channel-backed agent.
type ChannelAgent[K, V any] struct {
	app *App
	ch  *Channel[K, V]
	def *agentDef
}

// PID returns the agent's actor, once the worker runs.
func (a *ChannelAgent[K, V]) PID() *actor.PID {
	a.ch.mu.Lock()
	defer a.ch.mu.Unlock()
	if a.ch.agent == nil {
		return nil
	}
	return a.ch.agent.pid
}

type chanDecl struct {
	def   *agentDef
	start func(rt *runtime) error
}

// NewChannelAgent declares an agent on a channel. It runs as one
// supervised actor (with a PID) on every worker; a handler error or panic
// restarts it with backoff and retries the message up to the app's
// MaxAttempts, then the message is logged and dropped. Channel agents have
// no partition, so they use no tables; they may send to topics and
// channels.
func NewChannelAgent[K, V any](app *App, name string, ch *Channel[K, V], h Handler[K, V], opts ...AgentOption) *ChannelAgent[K, V] {
	d := &agentDef{name: name, topic: &topicDef{name: "channel:" + ch.name}, policy: Skip}
	for _, o := range opts {
		o(d)
	}
	a := &ChannelAgent[K, V]{app: app, ch: ch, def: d}
	start := func(rt *runtime) error {
		ca := &channelAgent{rt: rt, def: d, run: func(ec *eventCtx, k, v any) error { return h(ec, k.(K), v.(V)) }}
		if err := ca.spawn(); err != nil {
			return err
		}
		ch.mu.Lock()
		ch.agent = ca
		ch.mu.Unlock()
		return nil
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if _, dup := app.agents[name]; dup {
		app.errs = append(app.errs, fmt.Errorf("agent %s declared twice", name))
	}
	app.chanAgents = append(app.chanAgents, chanDecl{def: d, start: start})
	if rt := app.rt; rt != nil { // spawned on a running node: start at once
		app.mu.Unlock()
		err := start(rt)
		app.mu.Lock()
		if err != nil {
			rt.log.Error("spawn channel agent", "agent", name, "err", err)
		}
	}
	return a
}

// SpawnChannelAgent starts a channel agent on the running node now (the
// same as NewChannelAgent, which also starts it when called on a running
// node) and returns it once its actor runs.
func SpawnChannelAgent[K, V any](app *App, name string, ch *Channel[K, V], h Handler[K, V], opts ...AgentOption) (*ChannelAgent[K, V], error) {
	if app.runtime() == nil {
		return nil, ErrNotRunning
	}
	a := NewChannelAgent(app, name, ch, h, opts...)
	if a.PID() == nil {
		return nil, fmt.Errorf("channel agent %s did not start", name)
	}
	return a, nil
}

func (ca *channelAgent) spawn() error {
	rt := ca.rt
	log := rt.log.With("agent", ca.def.name)
	attempts := map[*channelMsg]int{}
	var current *channelMsg
	props := actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			if current == nil {
				return
			}
			// The previous incarnation failed on this message: retry it.
			msg := current
			attempts[msg]++
			if attempts[msg] >= rt.cfg.MaxAttempts {
				log.Warn("channel message dropped after failing every attempt", "attempts", attempts[msg])
				delete(attempts, msg)
				current = nil
				return
			}
			ca.handle(c, msg, &current, attempts)
		case channelMsg:
			ca.handle(c, &m, &current, attempts)
		}
	})
	pid, err := rt.sup.Spawn("channel/"+ca.def.name, props)
	if err != nil {
		return err
	}
	ca.pid = pid
	return nil
}

func (ca *channelAgent) handle(c actor.Context, m *channelMsg, current **channelMsg, attempts map[*channelMsg]int) {
	rt := ca.rt
	ec := &eventCtx{Context: rt.ctx, agent: ca.def, rt: rt,
		msg: &sarama.ConsumerMessage{Topic: ca.def.topic.name, Offset: -1, Timestamp: time.Now()}}
	*current = m
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
			}
		}()
		return ca.run(ec, m.key, m.value)
	}()
	if err != nil {
		if sup, ok := c.(interface{ EscalateFailure(reason, message any) }); ok {
			sup.EscalateFailure(fmt.Errorf("channel agent %s: %w", ca.def.name, err), c.Message())
		}
		return
	}
	*current = nil
	delete(attempts, m)
	// A channel has no offsets to hold back: its sends go out now, and a
	// failure to produce them is logged.
	t := kafka.NewTracker()
	for _, pm := range ec.staged {
		rt.producer.Send(t, pm)
	}
	if len(ec.staged) > 0 {
		go func() {
			if _, err := t.Wait(rt.ctx); err != nil {
				rt.log.Warn("channel agent's send failed", "agent", ca.def.name, "err", err)
			}
		}()
	}
}

// startChannelAgents starts the channel agents declared before Run.
func (rt *runtime) startChannelAgents() error {
	rt.app.mu.Lock()
	decls := append([]chanDecl(nil), rt.app.chanAgents...)
	rt.app.mu.Unlock()
	for _, d := range decls {
		if err := d.start(rt); err != nil {
			return fmt.Errorf("channel agent %s: %w", d.def.name, err)
		}
	}
	return nil
}
