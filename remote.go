package mephisto

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/envelopepb"
)

// WithActorAddr makes the node's actors reachable from other nodes at addr
// (host:port; port 0 picks a free one), which PIDs across nodes need. The
// worker command does this by default (--actor 127.0.0.1:0); a program
// calling App.Run directly opts in with this option. (protoactor's remote
// sets gRPC's process-wide logger when it starts, so a process should run
// one remote node: run cluster nodes as separate processes.)
func WithActorAddr(addr string) Option { return func(c *Config) { c.ActorAddr = addr } }

// WithActorTLS makes the links between nodes' actor systems mutual TLS
// (default: plaintext; flags --actor-tls-cert, --actor-tls-key,
// --actor-tls-ca): certFile and keyFile are this node's certificate and
// key, valid for the host other nodes dial (its --actor or --advertise
// host) unless WithActorTLSServerName names another; caFile is the CA that
// signs every node's certificate, and only its certificates are accepted,
// dialing or dialed. PEM files.
func WithActorTLS(certFile, keyFile, caFile string) Option {
	return func(c *Config) { c.ActorTLSCert, c.ActorTLSKey, c.ActorTLSCA = certFile, keyFile, caFile }
}

// WithActorTLSServerName sets the name nodes verify each other's
// certificates against instead of the host dialed (default "": the host;
// flag --actor-tls-server-name), for clusters whose addresses change.
func WithActorTLSServerName(name string) Option {
	return func(c *Config) { c.ActorTLSServerName = name }
}

// actorTLS returns the actor links' TLS settings.
func (c Config) actorTLS() actors.RemoteTLS {
	return actors.RemoteTLS{Cert: c.ActorTLSCert, Key: c.ActorTLSKey, CA: c.ActorTLSCA, ServerName: c.ActorTLSServerName}
}

// PID returns the PID of the grain that processes key for this agent,
// wherever in the cluster it runs (from the current assignment).
func (a *Agent[K, V]) PID(key K) (*actor.PID, error) {
	n := a.app.running()
	if n == nil {
		return nil, ErrNotRunning
	}
	kb, err := a.topic.kc.Encode(key)
	if err != nil {
		return nil, fmt.Errorf("agent %s: encode key: %w", a.def.spec.Name, err)
	}
	return n.PIDOf(a.topic.def.name, kb)
}

func (a *Agent[K, V]) envelope(key K, value V) (*envelopepb.Envelope, error) {
	kb, vb, err := a.encode(key, value)
	if err != nil {
		return nil, err
	}
	return &envelopepb.Envelope{Agent: a.def.spec.Name, Codec: a.topic.def.keyCodec + "/" + a.topic.def.valueCodec,
		Key: kb, Value: vb}, nil
}

// SendPID delivers key/value straight to the grain at pid (another node's
// too) without waiting: the direct path. Unlike Send through the topic it
// is not durable; use it for low-latency commands a caller can repeat.
func (a *Agent[K, V]) SendPID(pid *actor.PID, key K, value V) error {
	n := a.app.running()
	if n == nil {
		return ErrNotRunning
	}
	env, err := a.envelope(key, value)
	if err != nil {
		return err
	}
	return n.SendPID(pid, env)
}

// Request sends key/value straight to the grain at pid and waits for the
// reply (the direct path: fast, not durable). It fails at once with
// ErrNodeDead if the node is, or becomes, dead; with ErrTimeout when ctx
// (or 5s) expires; with ErrRemote if the handler failed.
func (a *ReplyAgent[K, V, R]) Request(ctx context.Context, pid *actor.PID, key K, value V) (R, error) {
	var zero R
	n := a.app.running()
	if n == nil {
		return zero, ErrNotRunning
	}
	env, err := a.envelope(key, value)
	if err != nil {
		return zero, err
	}
	reply, err := n.Request(ctx, pid, env)
	if err != nil {
		return zero, err
	}
	return a.decode(reply.Value, nil)
}

// ActorSystem returns the running node's protoactor actor system, for
// spawning and messaging actors of your own (nil when not running).
func (a *App) ActorSystem() *actor.ActorSystem {
	n := a.running()
	if n == nil {
		return nil
	}
	return n.ActorSystem()
}
