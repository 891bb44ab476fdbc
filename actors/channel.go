package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/partition"
)

// ChannelAgent is a channel-backed agent: one supervised actor on the node,
// fed by Send.
type ChannelAgent struct {
	Name    string
	Channel string
	// Run calls the handler with a key and value sent to the channel.
	Run func(ev *partition.Event, key, value any) error

	mu     sync.Mutex // guards the fields below
	system *actor.ActorSystem
	pid    *actor.PID
	direct func(key, value any) // set by a test driver: Send calls it instead
}

// SetDirect makes Send call f (nil: the actor again): a test driver runs
// the handler on the sender's goroutine.
func (ca *ChannelAgent) SetDirect(f func(key, value any)) {
	ca.mu.Lock()
	ca.direct = f
	ca.mu.Unlock()
}

// PID returns the agent's actor, once it runs.
func (ca *ChannelAgent) PID() *actor.PID {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.pid
}

// Running reports whether Send reaches the handler: the actor runs, or a
// test driver runs the handler directly.
func (ca *ChannelAgent) Running() bool {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.pid != nil || ca.direct != nil
}

// Send delivers key/value to the agent's mailbox; it reports false when
// the agent is not running.
func (ca *ChannelAgent) Send(key, value any) bool {
	ca.mu.Lock()
	system, pid, direct := ca.system, ca.pid, ca.direct
	ca.mu.Unlock()
	if direct != nil {
		direct(key, value)
		return true
	}
	if pid == nil {
		return false
	}
	system.Root.Send(pid, channelMsg{key: key, value: value})
	return true
}

type channelMsg struct{ key, value any }

// ChannelConfig is what a channel agent's actor needs from its node.
type ChannelConfig struct {
	// MaxAttempts is how often a message is handled before it is dropped.
	MaxAttempts int
	// Log receives the agent's lines.
	Log *slog.Logger
	// Ctx and Route are those of the handler's events.
	Ctx   context.Context
	Route partition.Router
	// Emit sends what a handled message staged (a channel has no offsets to
	// hold its sends back for).
	Emit func(staged []partition.Output)
}

// StartChannelAgent spawns ca's actor under sup. A handler error or panic
// fails the actor, which the supervisor restarts; the restarted actor
// retries the message, up to cfg.MaxAttempts, then logs and drops it.
func StartChannelAgent(system *actor.ActorSystem, sup *Supervisor, ca *ChannelAgent, cfg ChannelConfig) error {
	h := &channelHandler{ca: ca, cfg: cfg, attempts: map[*channelMsg]int{},
		spec: &partition.Agent{Name: ca.Name, Topic: "channel:" + ca.Channel, Policy: partition.Skip}}
	props := actor.PropsFromFunc(h.receive)
	pid, err := sup.Spawn("channel/"+ca.Name, props)
	if err != nil {
		return fmt.Errorf("channel agent %s: %w", ca.Name, err)
	}
	ca.mu.Lock()
	ca.system, ca.pid = system, pid
	ca.mu.Unlock()
	return nil
}

// channelHandler is the state of a channel agent's actor; it outlives the
// actor's restarts.
type channelHandler struct {
	ca       *ChannelAgent
	cfg      ChannelConfig
	spec     *partition.Agent
	attempts map[*channelMsg]int
	current  *channelMsg // the message being handled
}

func (h *channelHandler) receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		if h.current == nil {
			return
		}
		// The previous incarnation failed on this message: retry it.
		msg := h.current
		h.attempts[msg]++
		if h.attempts[msg] >= h.cfg.MaxAttempts {
			h.cfg.Log.Warn("channel message dropped after failing every attempt", "attempts", h.attempts[msg])
			delete(h.attempts, msg)
			h.current = nil
			return
		}
		h.handle(c, msg)
	case channelMsg:
		h.handle(c, &m)
	}
}

func (h *channelHandler) handle(c actor.Context, m *channelMsg) {
	ev := partition.NewEvent(h.cfg.Ctx, h.cfg.Route, nil)
	ev.Reset(&partition.Record{Topic: h.spec.Topic, Offset: -1, Timestamp: time.Now()}, h.spec)
	h.current = m
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
			}
		}()
		return h.ca.Run(ev, m.key, m.value)
	}()
	if err != nil {
		if sup, ok := c.(interface{ EscalateFailure(reason, message any) }); ok {
			sup.EscalateFailure(fmt.Errorf("channel agent %s: %w", h.ca.Name, err), c.Message())
		}
		return
	}
	h.current = nil
	delete(h.attempts, m)
	if staged := ev.Staged(); len(staged) > 0 {
		h.cfg.Emit(staged)
	}
}
