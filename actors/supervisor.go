// Package actors runs each partition of a Mephisto app as a supervised
// protoactor-go actor (a grain) and restarts failed grains with backoff.
package actors

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Backoff is a capped exponential backoff: Min, 2·Min, 4·Min … up to Max.
// Restarts within Window of each other count as consecutive failures.
type Backoff struct {
	Min, Max, Window time.Duration
}

// DefaultBackoff restarts after 100ms, doubling up to 10s.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second, Window: time.Minute}

// Delay returns the backoff before restart number n (1-based).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// strategy restarts a failed child after a backoff that grows with its
// consecutive failures. It never gives up: what to do with a record that
// keeps failing is the grain's error policy, not the supervisor's.
type strategy struct {
	backoff   Backoff
	log       *slog.Logger
	onRestart func(child *actor.PID, reason any)
	after     func(time.Duration, func()) // time.AfterFunc, injectable
}

func (s *strategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	if rs.NumberOfFailures(s.backoff.Window) == 0 {
		rs.Reset()
	}
	rs.Fail()
	delay := s.backoff.Delay(rs.FailureCount())
	s.log.Warn("grain failed; restarting it from its last commit",
		"grain", child.Id, "failures", rs.FailureCount(), "backoff", delay, "reason", fmt.Sprint(reason))
	if s.onRestart != nil {
		s.onRestart(child, reason)
	}
	s.after(delay, func() { sup.RestartChildren(child) })
}

// Supervisor is a node's parent actor for its partition grains.
type Supervisor struct {
	system *actor.ActorSystem
	pid    *actor.PID

	mu       sync.Mutex // guards children
	children map[string]*actor.PID
}

// SupervisorConfig configures NewSupervisor.
type SupervisorConfig struct {
	Backoff Backoff
	Log     *slog.Logger
	// OnRestart is called for each failure before the restart is scheduled.
	OnRestart func(child *actor.PID, reason any)
}

type spawnReq struct {
	name  string
	props *actor.Props
}

// NewSupervisor spawns the supervisor actor in system.
func NewSupervisor(system *actor.ActorSystem, name string, cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	s := &Supervisor{system: system, children: map[string]*actor.PID{}}
	strat := &strategy{backoff: cfg.Backoff, log: cfg.Log, onRestart: cfg.OnRestart,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
	props := actor.PropsFromFunc(func(c actor.Context) {
		if req, ok := c.Message().(*spawnReq); ok {
			pid, err := c.SpawnNamed(req.props, req.name)
			if err != nil {
				c.Respond(err)
				return
			}
			c.Respond(pid)
		}
	}, actor.WithSupervisor(strat))
	pid, err := system.Root.SpawnNamed(props, name)
	if err != nil {
		return nil, fmt.Errorf("spawn supervisor %s: %w", name, err)
	}
	s.pid = pid
	return s, nil
}

// Spawn starts a child actor named name under the supervisor.
func (s *Supervisor) Spawn(name string, props *actor.Props) (*actor.PID, error) {
	res, err := s.system.Root.RequestFuture(s.pid, &spawnReq{name: name, props: props}, 10*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	switch r := res.(type) {
	case *actor.PID:
		s.mu.Lock()
		s.children[name] = r
		s.mu.Unlock()
		return r, nil
	case error:
		return nil, fmt.Errorf("spawn %s: %w", name, r)
	default:
		return nil, fmt.Errorf("spawn %s: unexpected reply %T", name, res)
	}
}

// Stop stops the supervisor and every child.
func (s *Supervisor) Stop() {
	_ = s.system.Root.StopFuture(s.pid).Wait()
}
