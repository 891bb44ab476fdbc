package node

import (
	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
)

// ChannelAgent is a channel-backed agent (see actors.ChannelAgent).
type ChannelAgent = actors.ChannelAgent

// StartChannelAgent starts a channel agent on the running node.
func (rt *Node) StartChannelAgent(ca *ChannelAgent) error {
	return actors.StartChannelAgent(rt.system, rt.sup, ca, actors.ChannelConfig{
		MaxAttempts: rt.cfg.MaxAttempts,
		Log:         rt.log.With("agent", ca.Name),
		Ctx:         rt.ctx,
		Route:       rt.route,
		Emit: func(staged []partition.Output) {
			// The sends go out now, and a failure to produce them is logged.
			t := kafka.NewTracker()
			for _, o := range staged {
				rt.producer.Send(t, kafka.Message(o))
			}
			go func() {
				if _, err := t.Wait(rt.ctx); err != nil {
					rt.log.Warn("channel agent's send failed", "agent", ca.Name, "err", err)
				}
			}()
		},
	})
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
