package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mephistohq/mephisto/actors/envelopepb"
)

// Errors of requests to agents; the root package exports them.
var (
	ErrTimeout  = errors.New("mephisto: request timed out")
	ErrNodeDead = errors.New("mephisto: the node owning the key is dead")
	ErrNoOwner  = errors.New("mephisto: no node owns the key's partition right now")
	ErrRemote   = errors.New("mephisto: the agent's handler failed")
	ErrNoRemote = errors.New("mephisto: the owning node has no actor address")
)

// Remote sends a node's messages to grains wherever they run, and makes the
// node's own actors reachable from other nodes once it listens. It tracks
// which nodes were declared dead, so that messages to them fail at once
// and requests waiting on them fail as soon as they die.
type Remote struct {
	system *actor.ActorSystem
	remote *remote.Remote // set by Listen, read-only after

	mu     sync.Mutex               // guards deaths
	deaths map[string]chan struct{} // actor address → closed when that node is declared dead
}

// NewRemote returns the Remote of system's actors.
func NewRemote(system *actor.ActorSystem) *Remote {
	return &Remote{system: system, deaths: map[string]chan struct{}{}}
}

// Listen makes the actors reachable from other nodes at addr, advertised
// under advertise(addr). With sec (nil: plaintext) every link to and from
// other nodes is mutual TLS: peers without a certificate of sec's CA are
// refused, and log says so at most once a minute. Call it at most once,
// before other nodes are told the address. protoactor panics when it
// cannot listen, so the address is checked first.
func (r *Remote) Listen(addr string, advertise func(string) string, sec *RemoteTLS, log *slog.Logger) error {
	var opts []remote.ConfigOption
	if sec != nil {
		server, client, err := sec.Load()
		if err != nil {
			return err
		}
		opts = append(opts,
			remote.WithServerOptions(grpc.Creds(newRefusingCreds(server, log))),
			remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(client))))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("actor address %s: %w (choose another with --actor)", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close()
	p, _ := strconv.Atoi(port)
	if adv := advertise(net.JoinHostPort(host, port)); adv != net.JoinHostPort(host, port) {
		opts = append(opts, remote.WithAdvertisedHost(adv))
	}
	r.remote = remote.NewRemote(r.system, remote.Configure(host, p, opts...))
	r.remote.Start()
	return nil
}

// Addr returns the address other nodes reach this node's actors at, or ""
// when it does not listen.
func (r *Remote) Addr() string {
	if r.remote == nil {
		return ""
	}
	return r.system.Address()
}

// Shutdown stops listening.
func (r *Remote) Shutdown() {
	if r.remote != nil {
		r.remote.Shutdown(false)
	}
}

// deathOf returns a channel closed when the node at actor address addr is
// declared dead.
func (r *Remote) deathOf(addr string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deathLocked(addr)
}

func (r *Remote) deathLocked(addr string) chan struct{} {
	ch, ok := r.deaths[addr]
	if !ok {
		ch = make(chan struct{})
		r.deaths[addr] = ch
	}
	return ch
}

// MarkDead records that the node at actor address addr died: requests to
// it fail at once, and protoactor drops its connection to it.
func (r *Remote) MarkDead(addr string) {
	if addr == "" {
		return
	}
	r.mu.Lock()
	ch := r.deathLocked(addr)
	select {
	case <-ch:
	default:
		close(ch)
	}
	r.mu.Unlock()
	if r.remote != nil {
		r.system.EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addr})
	}
}

// MarkAlive forgets a death (the node came back).
func (r *Remote) MarkAlive(addr string) {
	r.mu.Lock()
	if ch, ok := r.deaths[addr]; ok {
		select {
		case <-ch:
			delete(r.deaths, addr)
		default:
		}
	}
	r.mu.Unlock()
}

func (r *Remote) isDead(addr string) bool {
	select {
	case <-r.deathOf(addr):
		return true
	default:
		return false
	}
}

// Send delivers env to the grain at pid without waiting.
func (r *Remote) Send(pid *actor.PID, env *envelopepb.Envelope) error {
	if r.isDead(pid.Address) {
		return fmt.Errorf("%w: %s", ErrNodeDead, pid.Address)
	}
	if env.CorrelationId == "" {
		env.CorrelationId = newID()
	}
	r.system.Root.Send(pid, env)
	return nil
}

// Request sends env to the grain at pid and waits for the reply, until
// ctx's deadline (5s without one), failing fast if the node dies
// meanwhile.
func (r *Remote) Request(ctx context.Context, pid *actor.PID, env *envelopepb.Envelope) (*envelopepb.Envelope, error) {
	if env.CorrelationId == "" {
		env.CorrelationId = newID()
	}
	if r.isDead(pid.Address) {
		return nil, fmt.Errorf("%w: %s", ErrNodeDead, pid.Address)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, ErrTimeout
	}
	f := r.system.Root.RequestFuture(pid, env, timeout)
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
	case res := <-done:
		if errors.Is(res.err, actor.ErrDeadLetter) {
			return nil, fmt.Errorf("%w: no grain at %s (the partition moved: look the PID up again)", ErrNoOwner, pid)
		}
		if res.err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, pid, res.err)
		}
		reply, ok := res.v.(*envelopepb.Envelope)
		if !ok {
			return nil, fmt.Errorf("%w: unexpected reply %T", ErrRemote, res.v)
		}
		if reply.Error != "" {
			return reply, fmt.Errorf("%w: %s", ErrRemote, reply.Error)
		}
		return reply, nil
	case <-r.deathOf(pid.Address):
		return nil, fmt.Errorf("%w: %s died during the request", ErrNodeDead, pid.Address)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
