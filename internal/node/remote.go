package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/kafka"
)

// startRemote makes the node's actors reachable from other nodes, if
// configured. protoactor panics when it cannot listen, so the address is
// checked first.
func (rt *Node) startRemote() error {
	addr := rt.cfg.ActorAddr
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("actor address %s: %w (choose another with --actor)", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close()
	p, _ := strconv.Atoi(port)
	var opts []remote.ConfigOption
	if adv := rt.advertised(net.JoinHostPort(host, port)); adv != net.JoinHostPort(host, port) {
		opts = append(opts, remote.WithAdvertisedHost(adv))
	}
	rt.remote = remote.NewRemote(rt.system, remote.Configure(host, p, opts...))
	rt.remote.Start()
	rt.log.Info("actor system reachable", "actor", rt.system.Address())
	return nil
}

// actorAddr returns the address other nodes use to reach this node's
// actors.
func (rt *Node) actorAddr() string {
	if rt.remote == nil {
		return ""
	}
	return rt.system.Address()
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

// deathOf returns a channel closed when the node at actor address addr is
// declared dead.
func (rt *Node) deathOf(addr string) <-chan struct{} {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	ch, ok := rt.deaths[addr]
	if !ok {
		ch = make(chan struct{})
		rt.deaths[addr] = ch
	}
	return ch
}

// markDead records that the node at actor address addr died: requests to it
// fail at once, and protoactor drops its connection to it.
func (rt *Node) markDead(addr string) {
	if addr == "" {
		return
	}
	rt.mu.Lock()
	ch, ok := rt.deaths[addr]
	if !ok {
		ch = make(chan struct{})
		rt.deaths[addr] = ch
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
	rt.mu.Unlock()
	if rt.remote != nil {
		rt.system.EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addr})
	}
}

// markAlive forgets a death (the node came back).
func (rt *Node) markAlive(addr string) {
	rt.mu.Lock()
	if ch, ok := rt.deaths[addr]; ok {
		select {
		case <-ch:
			delete(rt.deaths, addr)
		default:
		}
	}
	rt.mu.Unlock()
}

func (rt *Node) isDead(addr string) bool {
	select {
	case <-rt.deathOf(addr):
		return true
	default:
		return false
	}
}

// request sends env to pid and waits for the reply, failing fast if the
// node dies meanwhile.
func (rt *Node) request(ctx context.Context, pid *actor.PID, env *envelopepb.Envelope) (*envelopepb.Envelope, error) {
	if rt.isDead(pid.Address) {
		return nil, fmt.Errorf("%w: %s", ErrNodeDead, pid.Address)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, ErrTimeout
	}
	f := rt.system.Root.RequestFuture(pid, env, timeout)
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f.Result()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if errors.Is(r.err, actor.ErrDeadLetter) {
			return nil, fmt.Errorf("%w: no grain at %s (the partition moved: look the PID up again)", ErrNoOwner, pid)
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, pid, r.err)
		}
		reply, ok := r.v.(*envelopepb.Envelope)
		if !ok {
			return nil, fmt.Errorf("%w: unexpected reply %T", ErrRemote, r.v)
		}
		if reply.Error != "" {
			return reply, fmt.Errorf("%w: %s", ErrRemote, reply.Error)
		}
		return reply, nil
	case <-rt.deathOf(pid.Address):
		return nil, fmt.Errorf("%w: %s died during the request", ErrNodeDead, pid.Address)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
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
	if rt.isDead(pid.Address) {
		return fmt.Errorf("%w: %s", ErrNodeDead, pid.Address)
	}
	if env.CorrelationId == "" {
		env.CorrelationId = newID()
	}
	rt.system.Root.Send(pid, env)
	return nil
}

// Request sends env to the grain at pid and waits for the reply, failing
// fast if the node dies meanwhile.
func (rt *Node) Request(ctx context.Context, pid *actor.PID, env *envelopepb.Envelope) (*envelopepb.Envelope, error) {
	if env.CorrelationId == "" {
		env.CorrelationId = newID()
	}
	return rt.request(ctx, pid, env)
}

// ActorSystem returns the node's actor system.
func (rt *Node) ActorSystem() *actor.ActorSystem { return rt.system }
