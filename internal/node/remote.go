package node

import (
	"context"
	"fmt"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/kafka"
)

// actorAddr returns the address other nodes use to reach this node's
// actors ("" when they cannot).
func (rt *Node) actorAddr() string {
	if rt.remote == nil {
		return ""
	}
	return rt.remote.Addr()
}

// grainID is the actor id of the grain of partition p.
func (rt *Node) grainID(p int32) string {
	return "partitions/partition/" + rt.spec.App + "/" + strconv.Itoa(int(p))
}

// pidFor returns the PID of the grain processing partition p of topic,
// wherever it runs.
func (rt *Node) pidFor(topic string, p int32) (*actor.PID, error) {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	if plan == nil {
		return nil, ErrNoOwner
	}
	owner, ok := plan.Owner(topic, p)
	if !ok {
		return nil, fmt.Errorf("%w: %s/%d", ErrNoOwner, topic, p)
	}
	if owner.Actor == "" {
		if owner.NodeID == rt.cfg.NodeID { // no remote, but the grain is here
			return actor.NewPID(rt.system.Address(), rt.grainID(p)), nil
		}
		return nil, fmt.Errorf("%w: node %s owns %s/%d", ErrNoRemote, owner.NodeID, topic, p)
	}
	if rt.members != nil && !rt.members.Alive(owner.NodeID) {
		return nil, fmt.Errorf("%w: %s (owner of %s/%d)", ErrNodeDead, owner.NodeID, topic, p)
	}
	return actor.NewPID(owner.Actor, rt.grainID(p)), nil
}

// PIDOf returns the PID of the grain that processes the key (encoded)
// of topic, wherever in the cluster it runs (from the current assignment).
func (rt *Node) PIDOf(topic string, key []byte) (*actor.PID, error) {
	n, err := rt.partitionCount(topic)
	if err != nil {
		return nil, err
	}
	return rt.pidFor(topic, kafka.Partition(key, n))
}

// SendPID delivers env to the grain at pid without waiting.
func (rt *Node) SendPID(pid *actor.PID, env *envelopepb.Envelope) error {
	return rt.remote.Send(pid, env)
}

// Request sends env to the grain at pid and waits for the reply, failing
// fast if the node dies meanwhile.
func (rt *Node) Request(ctx context.Context, pid *actor.PID, env *envelopepb.Envelope) (*envelopepb.Envelope, error) {
	return rt.remote.Request(ctx, pid, env)
}

// ActorSystem returns the node's actor system.
func (rt *Node) ActorSystem() *actor.ActorSystem { return rt.system }
