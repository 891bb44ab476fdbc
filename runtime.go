package mephisto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/internal/bridge"
	"github.com/mephistohq/mephisto/internal/node"
)

// runtime is what the declarations use of a running app outside its
// handlers: a worker node (*node.Node), or the test driver of package
// mephistotest.
type runtime interface {
	Ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error)
	SendSync(ctx context.Context, topic string, key, value []byte, keyed bool, headers ...partition.Header) (int64, error)
	ReadGlobal(index int, key []byte) (value []byte, found bool, err error)
	ScanGlobal(ctx context.Context, index int, prefix []byte, fn func(key, value []byte) bool) error
	TableGet(ctx context.Context, idx int, key []byte, stale bool) ([]byte, bool, error)
	TableRange(ctx context.Context, idx int, prefix []byte, stale bool, fn func(key, value []byte) bool) error
	TableOwner(idx int, key []byte) (local bool, web string, err error)
	WindowRows(ctx context.Context, idx int, key []byte, stale bool) ([]node.WindowRow, error)
	WebAddr() string
	Logger() *slog.Logger
	Ready() (bool, string)
	PIDOf(topic string, key []byte) (*actor.PID, error)
	SendPID(pid *actor.PID, env *envelopepb.Envelope) error
	Request(ctx context.Context, pid *actor.PID, env *envelopepb.Envelope) (*envelopepb.Envelope, error)
	ActorSystem() *actor.ActorSystem
	AddAgent(d *partition.Agent) error
	StartChannelAgent(ca *node.ChannelAgent) error
}

var _ runtime = (*node.Node)(nil)

func init() {
	bridge.Attach = func(app, rt any) (node.Spec, node.Config, func(), error) {
		a, ok := app.(*App)
		if !ok {
			return node.Spec{}, node.Config{}, nil, fmt.Errorf("mephistotest: %T is not a *mephisto.App", app)
		}
		r, ok := rt.(runtime)
		if !ok {
			return node.Spec{}, node.Config{}, nil, fmt.Errorf("mephistotest: %T is not a runtime", rt)
		}
		return a.attach(r)
	}
}

// attach validates the app and makes rt its runtime, as Run does with a
// node.
func (a *App) attach(rt runtime) (node.Spec, node.Config, func(), error) {
	if err := a.Validate(); err != nil {
		return node.Spec{}, node.Config{}, nil, fmt.Errorf("app %s: %w", a.name, err)
	}
	cfg := a.Config()
	spec := a.spec()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.node != nil {
		return node.Spec{}, node.Config{}, nil, errors.New("mephisto: the app is already running")
	}
	a.node = rt
	detach := func() {
		a.mu.Lock()
		a.node = nil
		a.mu.Unlock()
	}
	return spec, cfg.node(a.name), detach, nil
}
