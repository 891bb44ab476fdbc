package node

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
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
}

// PID returns the agent's actor, once it runs.
func (ca *ChannelAgent) PID() *actor.PID {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.pid
}

// Send delivers key/value to the agent's mailbox; it reports false when
// the agent is not running.
func (ca *ChannelAgent) Send(key, value any) bool {
	ca.mu.Lock()
	system, pid := ca.system, ca.pid
	ca.mu.Unlock()
	if pid == nil {
		return false
	}
	system.Root.Send(pid, channelMsg{key: key, value: value})
	return true
}

type channelMsg struct{ key, value any }

// StartChannelAgent starts a channel agent on the running node.
func (rt *Node) StartChannelAgent(ca *ChannelAgent) error {
	log := rt.log.With("agent", ca.Name)
	spec := &partition.Agent{Name: ca.Name, Topic: "channel:" + ca.Channel, Policy: partition.Skip}
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
			rt.handleChannel(c, ca, spec, msg, &current, attempts)
		case channelMsg:
			rt.handleChannel(c, ca, spec, &m, &current, attempts)
		}
	})
	pid, err := rt.sup.Spawn("channel/"+ca.Name, props)
	if err != nil {
		return fmt.Errorf("channel agent %s: %w", ca.Name, err)
	}
	ca.mu.Lock()
	ca.system, ca.pid = rt.system, pid
	ca.mu.Unlock()
	return nil
}

func (rt *Node) handleChannel(c actor.Context, ca *ChannelAgent, spec *partition.Agent, m *channelMsg, current **channelMsg, attempts map[*channelMsg]int) {
	ev := partition.NewEvent(rt.ctx, rt.route, nil)
	ev.Reset(&partition.Record{Topic: spec.Topic, Offset: -1, Timestamp: time.Now()}, spec)
	*current = m
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
			}
		}()
		return ca.Run(ev, m.key, m.value)
	}()
	if err != nil {
		if sup, ok := c.(interface{ EscalateFailure(reason, message any) }); ok {
			sup.EscalateFailure(fmt.Errorf("channel agent %s: %w", ca.Name, err), c.Message())
		}
		return
	}
	*current = nil
	delete(attempts, m)
	// A channel has no offsets to hold back: its sends go out now, and a
	// failure to produce them is logged.
	staged := ev.Staged()
	if len(staged) == 0 {
		return
	}
	t := kafka.NewTracker()
	for _, o := range staged {
		rt.producer.Send(t, producerMessage(o))
	}
	go func() {
		if _, err := t.Wait(rt.ctx); err != nil {
			rt.log.Warn("channel agent's send failed", "agent", ca.Name, "err", err)
		}
	}()
}

// startChannelAgents starts the channel agents declared before Run.
func (rt *Node) startChannelAgents() error {
	for _, ca := range rt.spec.Channels {
		if err := rt.StartChannelAgent(ca); err != nil {
			return err
		}
	}
	return nil
}
