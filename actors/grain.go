package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"google.golang.org/protobuf/proto"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
)

// Errors of the grain: those of the partition it drives.
var (
	ErrPoison           = partition.ErrPoison
	ErrPartitionStopped = partition.ErrPartitionStopped
	ErrDeferred         = partition.ErrDeferred
)

// Task is one record to be handled by one of the agents subscribed to its
// topic.
type Task struct {
	Rec   *partition.Record
	Agent int
}

// Core is the partition's processing logic; the grain drives it. All calls
// come from the grain's actor, one at a time.
type Core interface {
	// Fanout returns the agents that handle records of topic.
	Fanout(topic string) []int
	// Load drops any uncommitted state and loads the partition from durable
	// storage. first is true on the grain's first start, when the core
	// recovers its tables from their changelogs.
	Load(ctx context.Context, first bool) error
	// Process handles one task. An error (or panic) fails the grain, which
	// the supervisor restarts; errors wrapping ErrPoison skip the retries.
	Process(ctx context.Context, t Task) error
	// GiveUp applies the agent's error policy to a task that failed too
	// often. Returning ErrPartitionStopped stops the partition.
	GiveUp(ctx context.Context, t Task, cause error) error
	// Commit makes everything processed so far durable.
	Commit(ctx context.Context) error
	// StartCommit begins making everything processed so far durable and
	// may return before it is: processing goes on while the commit waits
	// for Kafka. acked is then called, from any goroutine, when
	// FinishCommit will not block. It returns false when it committed
	// nothing (or everything at once): no FinishCommit is due.
	StartCommit(ctx context.Context, acked func()) (bool, error)
	// FinishCommit completes the commit StartCommit began, waiting for it
	// if needed.
	FinishCommit(ctx context.Context) error
	// Direct handles a message sent to the grain's PID and returns the
	// reply. It must not panic.
	Direct(ctx context.Context, env *envelopepb.Envelope) *envelopepb.Envelope
	// Concurrency returns how many worker actors run the agent's tasks
	// (≤ 1: the grain runs them itself, through Process).
	Concurrency(agent int) int
	// ProcessReadOnly runs a task of a concurrent agent; it may be called
	// from several workers at once. release is called by the grain, in
	// offset order, once every task of the run has succeeded.
	ProcessReadOnly(ctx context.Context, t Task) (release func(), err error)
	// FlushAll hands every partly filled batch to its handler, before a
	// commit that must happen (revoke, shutdown).
	FlushAll(ctx context.Context) error
}

// job is a task handed to a worker actor of a concurrent agent.
type job struct {
	t    Task
	done chan jobResult
}

type jobResult struct {
	release func()
	err     error
}

// worker runs jobs of a concurrent agent, one at a time.
func worker(core Core) actor.ReceiveFunc {
	return func(c actor.Context) {
		j, ok := c.Message().(job)
		if !ok {
			return
		}
		var r jobResult
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
				}
			}()
			r.release, r.err = core.ProcessReadOnly(context.Background(), j.t)
		}()
		j.done <- r
	}
}

// GrainConfig configures a grain.
type GrainConfig struct {
	Core Core
	// MaxAttempts is how often a task is tried before the error policy
	// applies. Default 3.
	MaxAttempts int
	// CommitInterval is how often the grain commits while it is behind
	// its input. Default 500ms. A grain that has caught up (it processed
	// a batch ending at the high watermark) commits at once, but not
	// sooner than a tenth of CommitInterval (at most 50ms) after its last
	// commit began: tables then reflect an event within milliseconds at
	// moderate load, and commits stay few, and large, under saturation.
	CommitInterval time.Duration
	// MaxUncommitted forces a commit once this many records are
	// uncommitted. Default 20,000: a grain keeps its uncommitted records
	// (and the fetch buffers they point into) in memory, and each commit
	// produces a changelog record per key written since the last one, so
	// this trades memory for changelog traffic.
	MaxUncommitted int
	Log            *slog.Logger
	// OnLoaded is called after every successful Load.
	OnLoaded func(first bool)
	// OnStopped is called when the error policy stops the partition.
	OnStopped func(err error)
	// OnFailed is called when the grain fails and is handed to its
	// supervisor for a restart; OnLoaded follows once it has recovered.
	OnFailed func(err error)
}

// Deliver hands a batch of records, in offset order, to a grain. Done
// receives nil once every record is processed, or ErrPartitionStopped.
type Deliver struct {
	Records []*partition.Record
	Done    chan error
	// CaughtUp says the batch ends at the partition's high watermark: the
	// grain commits as soon as it may (see GrainConfig.CommitInterval)
	// rather than at the next tick.
	CaughtUp bool
}

// Drain asks the grain to commit; the reply is the commit's error (nil on
// success). Used on revoke and shutdown.
type Drain struct{}

type commitTick struct{}

// commitSoon tells a caught-up grain that it may commit again.
type commitSoon struct{}

// commitAcked tells the grain that commit seq can finish without waiting.
type commitAcked struct{ seq uint64 }

type attemptKey struct {
	topic  string
	offset int64
	agent  int
}

// Slot is the part of a grain that outlives restarts: the records received
// since the last commit (replayed after a restart), how often each task
// failed, and the batches waiting for their Done.
type Slot struct {
	cfg      GrainConfig
	log      []Task
	next     int  // index in log of the next task to process
	current  int  // index of the task being processed, -1 if none
	loaded   bool // the first Load succeeded
	attempts map[attemptKey]int
	lastErr  map[attemptKey]error
	inflight []*Deliver
	stopped  error
	ticker   scheduler.CancelFunc
	failed   error // set when the grain escalated and awaits restart
	// committing is set while a commit started by StartCommit is in
	// flight; it covers log[:upto]. seq numbers commits, so that an
	// acknowledgement meant for a commit a restart dropped is ignored.
	committing bool
	upto       int
	seq        uint64
	began      time.Time            // when the last commit began
	eager      bool                 // the last batch was caught up: commit when allowed
	soon       bool                 // a commitSoon is scheduled
	workers    map[int][]*actor.PID // per concurrent agent, its worker actors (children of the current incarnation)
}

// NewGrainProps returns the props of a grain driving cfg.Core. The returned
// Slot keeps the grain's state across restarts.
func NewGrainProps(cfg GrainConfig) *actor.Props {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	if cfg.MaxUncommitted <= 0 {
		cfg.MaxUncommitted = 20_000
	}
	s := &Slot{cfg: cfg, current: -1, attempts: map[attemptKey]int{}, lastErr: map[attemptKey]error{}, workers: map[int][]*actor.PID{}}
	return actor.PropsFromProducer(func() actor.Actor { return &grain{s: s} })
}

// grain is one incarnation of a partition's actor.
type grain struct{ s *Slot }

func (g *grain) Receive(c actor.Context) {
	s := g.s
	switch m := c.Message().(type) {
	case *actor.Started:
		g.start(c)
	case *Deliver:
		if s.stopped != nil {
			m.Done <- s.stopped
			return
		}
		var topic string
		var agents []int
		for _, r := range m.Records {
			if r.Topic != topic || agents == nil {
				topic, agents = r.Topic, s.cfg.Core.Fanout(r.Topic)
			}
			for _, a := range agents {
				s.log = append(s.log, Task{Rec: r, Agent: a})
			}
		}
		s.inflight = append(s.inflight, m)
		s.eager = m.CaughtUp
		if !g.run(c) {
			return
		}
		if !s.committing && len(s.log) >= s.cfg.MaxUncommitted {
			g.startCommit(c)
		} else {
			g.commitEarly(c)
		}
	case commitTick:
		if s.next > 0 || len(s.log) == 0 {
			g.startCommit(c)
		}
	case commitSoon:
		s.soon = false
		g.commitEarly(c)
	case commitAcked:
		if s.committing && m.seq == s.seq && s.failed == nil {
			if g.settle(c) == nil {
				g.commitEarly(c)
			}
		}
	case *Drain:
		if s.failed == nil && s.stopped == nil {
			if err := s.cfg.Core.FlushAll(context.Background()); err != nil {
				g.fail(c, fmt.Errorf("flush batches: %w", err))
				c.Respond(err)
				return
			}
		}
		c.Respond(g.commit(c))
	case *envelopepb.Envelope:
		reply := s.cfg.Core.Direct(context.Background(), m)
		if c.Sender() != nil {
			c.Respond(reply)
		}
	case *actor.Stopping:
		if s.ticker != nil {
			s.ticker()
		}
	case proto.Message:
		// A protobuf message of a type grains do not know (from another
		// program, or a newer version): refuse it, never crash.
		if c.Sender() != nil {
			c.Respond(&envelopepb.Envelope{Error: fmt.Sprintf("grain %s does not accept %T: send a mephisto envelope", c.Self().Id, m)})
		}
	}
}

func (g *grain) start(c actor.Context) {
	s := g.s
	if s.current >= 0 && s.current < len(s.log) {
		// The previous incarnation failed on this task.
		t := s.log[s.current]
		k := attemptKey{t.Rec.Topic, t.Rec.Offset, t.Agent}
		s.attempts[k]++
		if s.lastErr[k] == nil {
			s.lastErr[k] = s.failed
		}
	}
	s.current, s.failed = -1, nil
	s.committing, s.soon = false, false // Load drops the commit: its records are replayed
	first := !s.loaded
	if err := s.cfg.Core.Load(context.Background(), first); err != nil {
		g.fail(c, fmt.Errorf("load partition: %w", err))
		return
	}
	s.loaded = true
	if s.cfg.OnLoaded != nil {
		s.cfg.OnLoaded(first)
	}
	if s.ticker == nil {
		s.ticker = scheduler.NewTimerScheduler(c).SendRepeatedly(s.cfg.CommitInterval, s.cfg.CommitInterval, c.Self(), commitTick{})
	}
	s.workers = map[int][]*actor.PID{} // the previous incarnation's children stopped with it
	s.next = 0                         // the uncommitted state was dropped: replay everything since the last commit
	g.run(c)
}

// runConcurrent runs the tasks of one concurrent agent starting at next, up
// to the next task of another agent, on its n worker actors, waits for all,
// then releases their effects in order. It returns false if the grain
// failed or stopped.
func (g *grain) runConcurrent(c actor.Context, n int) bool {
	s := g.s
	agent := s.log[s.next].Agent
	ws := s.workers[agent]
	for len(ws) < n {
		ws = append(ws, c.Spawn(actor.PropsFromFunc(worker(s.cfg.Core))))
	}
	s.workers[agent] = ws
	end := s.next
	for end < len(s.log) && s.log[end].Agent == agent {
		k := attemptKey{s.log[end].Rec.Topic, s.log[end].Rec.Offset, agent}
		if s.attempts[k] >= s.cfg.MaxAttempts {
			break // the sequential path applies the error policy to it
		}
		end++
	}
	if end == s.next {
		return true
	}
	results := make([]chan jobResult, end-s.next)
	for i := range results {
		results[i] = make(chan jobResult, 1)
		c.Send(ws[i%n], job{t: s.log[s.next+i], done: results[i]})
	}
	rs := make([]jobResult, len(results))
	for i, ch := range results {
		rs[i] = <-ch
	}
	for _, r := range rs {
		t := s.log[s.next]
		if r.err != nil && errors.Is(r.err, ErrPoison) {
			if !g.giveUp(c, t, r.err) {
				return false
			}
			continue
		}
		if r.err != nil {
			k := attemptKey{t.Rec.Topic, t.Rec.Offset, t.Agent}
			s.lastErr[k] = r.err
			s.current = s.next
			g.fail(c, fmt.Errorf("%s/%d@%d: %w", t.Rec.Topic, t.Rec.Partition, t.Rec.Offset, r.err))
			return false
		}
		r.release()
		s.next++
	}
	return true
}

// run processes the log from next on. It returns false if the grain failed.
func (g *grain) run(c actor.Context) bool {
	s := g.s
	for s.next < len(s.log) && s.stopped == nil {
		t := s.log[s.next]
		k := attemptKey{t.Rec.Topic, t.Rec.Offset, t.Agent}
		tries := 0
		if len(s.attempts) > 0 { // the common case skips hashing the key
			tries = s.attempts[k]
		}
		if n := s.cfg.Core.Concurrency(t.Agent); n > 1 && tries < s.cfg.MaxAttempts {
			if !g.runConcurrent(c, n) {
				return false
			}
			continue
		}
		if n := tries; n >= s.cfg.MaxAttempts {
			if !g.giveUp(c, t, fmt.Errorf("failed %d times, last: %w", n, s.lastErr[k])) {
				return false
			}
			continue
		}
		s.current = s.next
		err := g.process(t)
		if err != nil && errors.Is(err, ErrPoison) {
			s.current = -1
			if !g.giveUp(c, t, err) {
				return false
			}
			continue
		}
		if err != nil {
			s.lastErr[k] = err
			g.fail(c, fmt.Errorf("%s/%d@%d: %w", t.Rec.Topic, t.Rec.Partition, t.Rec.Offset, err))
			return false
		}
		s.current = -1
		s.next++
	}
	if s.stopped == nil {
		for _, d := range s.inflight {
			d.Done <- nil
		}
		s.inflight = s.inflight[:0]
	}
	return true
}

// process runs one task, turning a panic into an error so that it takes the
// same path (escalation to the supervisor) as a returned error.
func (g *grain) process(t Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return g.s.cfg.Core.Process(context.Background(), t)
}

// giveUp applies the error policy to the task at next and moves past it.
// It returns false if the grain failed or stopped.
func (g *grain) giveUp(c actor.Context, t Task, cause error) bool {
	s := g.s
	err := s.cfg.Core.GiveUp(context.Background(), t, cause)
	if errors.Is(err, ErrPartitionStopped) {
		s.stopped = err
		s.log = s.log[:s.next] // keep what was processed; commit it below
		g.commit(c)
		for _, d := range s.inflight {
			d.Done <- err
		}
		s.inflight = nil
		if s.cfg.OnStopped != nil {
			s.cfg.OnStopped(err)
		}
		return false
	}
	if err != nil {
		g.fail(c, err)
		return false
	}
	// Commit at once, so that a later failure's replay does not apply the
	// policy to this record again (a second dead letter).
	s.next++
	return g.commit(c) == nil
}

// commit commits everything processed so far and waits for it. Tasks
// received but not yet processed stay in the log.
func (g *grain) commit(c actor.Context) error {
	s := g.s
	if s.failed != nil {
		return s.failed
	}
	if err := g.settle(c); err != nil {
		return err
	}
	if err := s.cfg.Core.Commit(context.Background()); errors.Is(err, ErrDeferred) {
		return nil
	} else if err != nil {
		err = fmt.Errorf("commit: %w", err)
		g.fail(c, err)
		return err
	}
	g.trim(s.next)
	return nil
}

// startCommit begins a commit of everything processed so far, after
// finishing the one in flight; processing goes on while it waits for
// Kafka, and commitAcked finishes it.
func (g *grain) startCommit(c actor.Context) {
	s := g.s
	if s.failed != nil || g.settle(c) != nil {
		return
	}
	self, root, seq := c.Self(), c.ActorSystem().Root, s.seq+1
	started, err := s.cfg.Core.StartCommit(context.Background(), func() { root.Send(self, commitAcked{seq: seq}) })
	switch {
	case errors.Is(err, ErrDeferred):
	case err != nil:
		g.fail(c, fmt.Errorf("commit: %w", err))
	case started:
		s.committing, s.upto, s.seq, s.began = true, s.next, seq, time.Now()
	default:
		g.trim(s.next)
	}
}

// maxEagerSpacing bounds how long a caught-up grain waits after the start
// of its last commit before it commits again.
const maxEagerSpacing = 50 * time.Millisecond

// commitEarly starts a commit if the last batch was caught up, now or,
// if the last commit began too recently, once a tenth of the commit
// interval has passed since.
func (g *grain) commitEarly(c actor.Context) {
	s := g.s
	if !s.eager || s.next == 0 || s.committing || s.failed != nil || s.stopped != nil {
		return
	}
	wait := min(s.cfg.CommitInterval/10, maxEagerSpacing) - time.Since(s.began)
	if wait <= 0 {
		g.startCommit(c)
		return
	}
	if !s.soon {
		s.soon = true
		scheduler.NewTimerScheduler(c).SendOnce(wait, c.Self(), commitSoon{})
	}
}

// settle finishes the commit in flight, if any, and drops the tasks it
// covers from the log.
func (g *grain) settle(c actor.Context) error {
	s := g.s
	if !s.committing {
		return nil
	}
	s.committing = false
	if err := s.cfg.Core.FinishCommit(context.Background()); err != nil {
		err = fmt.Errorf("commit: %w", err)
		g.fail(c, err)
		return err
	}
	g.trim(s.upto)
	return nil
}

// trim drops the first n tasks of the log: a commit holds them.
func (g *grain) trim(n int) {
	s := g.s
	if len(s.attempts) > 0 || len(s.lastErr) > 0 {
		for _, t := range s.log[:n] {
			k := attemptKey{t.Rec.Topic, t.Rec.Offset, t.Agent}
			delete(s.attempts, k)
			delete(s.lastErr, k)
		}
	}
	copy(s.log, s.log[n:])
	clear(s.log[len(s.log)-n:]) // drop the references the shift left behind
	s.log = s.log[:len(s.log)-n]
	s.next -= n
}

// fail hands the grain to its supervisor, which restarts it with backoff.
// The mailbox is suspended until then, so nothing else is processed.
func (g *grain) fail(c actor.Context, err error) {
	g.s.failed = err
	if g.s.cfg.OnFailed != nil {
		g.s.cfg.OnFailed(err)
	}
	if sup, ok := c.(interface{ EscalateFailure(reason, message any) }); ok {
		sup.EscalateFailure(err, c.Message())
		return
	}
	panic(err) // not reached: every actor context is a supervisor
}
