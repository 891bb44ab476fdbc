package actors

import (
	"fmt"
	"log/slog"
	"sync"
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
)

// IO is what a grain does outside its partition's state machine: the
// node implements it against Kafka and Pebble. All calls come from the
// grain's actor, one at a time.
type IO interface {
	// Load reads the partition's durable state when the grain starts or
	// restarts: the last input offset per source topic the store reflects.
	// first is true on the grain's first start, when the table shards are
	// recovered from their changelogs first.
	Load(first bool) (stored map[string]int64, err error)
	// Send produces records as part of the current epoch.
	Send(outs []partition.Output)
	// Seal ends the current epoch, which commits the input offsets
	// sources (the last processed per source topic): idle is closed once
	// every record sent in it is acknowledged (and, transactional, the
	// epoch's transaction is committed), and wait then returns the last
	// offset acknowledged per topic on this partition, or the first
	// error.
	Seal(sources map[string]int64) (idle <-chan struct{}, wait func() (map[string]int64, error))
	// Write stores a commit's write, synced.
	Write(w *partition.Write) error
	// Mark marks the next offsets of the source topics for the consumer
	// group and has them committed.
	Mark(next map[string]int64)
	// Close releases what the partition holds outside its machine once the
	// grain stops for good (not between restarts).
	Close()
}

// GrainConfig configures a grain.
type GrainConfig struct {
	// Machine is the partition the grain drives.
	Machine *partition.Machine
	IO      IO
	// CommitInterval is how often the grain ticks its machine (commits
	// while it is behind its input). Default 500ms.
	CommitInterval time.Duration
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
	// Records are read once, by the grain's machine, when the grain takes
	// the batch.
	Records partition.Input
	Done    chan error
	// CaughtUp says the batch ends at the partition's high watermark: the
	// grain commits as soon as it may (see partition.Config.CommitInterval)
	// rather than at the next tick.
	CaughtUp bool
}

// Drain asks the grain to commit; the reply is the commit's error (nil on
// success). Used on revoke and shutdown.
type Drain struct{}

type commitTick struct{}

// commitWake is the Wake a partition asked for.
type commitWake struct{}

// commitAcked says that every record of commit seq's epoch is
// acknowledged; wait returns the offsets (or the error) at once.
type commitAcked struct {
	seq  uint64
	wait func() (map[string]int64, error)
}

// slot is the part of a grain that outlives restarts: the machine (which
// keeps the records to replay), the deliveries and drains waiting for an
// answer.
type slot struct {
	cfg      GrainConfig
	loaded   bool // the first Load succeeded
	inflight []*Deliver
	drains   []*actor.PID
	stopped  error
	failed   error // set when the grain escalated and awaits restart
	ticker   scheduler.CancelFunc
	done     chan struct{} // closed when the grain stops for good
}

// NewGrainProps returns the props of a grain driving cfg.Machine.
func NewGrainProps(cfg GrainConfig) *actor.Props {
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	s := &slot{cfg: cfg, done: make(chan struct{})}
	return actor.PropsFromProducer(func() actor.Actor { return &grain{s: s} })
}

// grain is one incarnation of a partition's actor: it feeds its machine
// what happens and carries out the machine's Ready.
type grain struct{ s *slot }

func (g *grain) Receive(c actor.Context) {
	s := g.s
	m := s.cfg.Machine
	switch msg := c.Message().(type) {
	case *actor.Started:
		g.start(c)
	case *Deliver:
		if s.stopped != nil {
			msg.Done <- s.stopped
			return
		}
		s.inflight = append(s.inflight, msg)
		g.apply(c, m.Deliver(msg.Records, msg.CaughtUp))
	case commitTick:
		g.apply(c, m.Tick())
	case commitWake:
		g.apply(c, m.Wake())
	case commitAcked:
		if s.failed != nil || !m.Awaiting(msg.seq) {
			return // meant for a commit a restart dropped
		}
		offsets, err := msg.wait()
		if err != nil {
			g.apply(c, m.Failed(fmt.Errorf("commit: %w", err)))
			return
		}
		g.apply(c, m.Acked(msg.seq, offsets))
	case *Drain:
		if s.failed != nil {
			c.Respond(s.failed)
			return
		}
		if c.Sender() != nil {
			s.drains = append(s.drains, c.Sender())
		}
		g.apply(c, m.Drain())
	case *envelopepb.Envelope:
		var headers []partition.Header
		for _, h := range msg.Headers {
			headers = append(headers, partition.Header{Key: h.Key, Value: h.Value})
		}
		res, rd := m.Direct(msg.Agent, msg.Key, msg.Value, headers)
		g.apply(c, rd)
		if c.Sender() != nil {
			c.Respond(&envelopepb.Envelope{Agent: msg.Agent, CorrelationId: msg.CorrelationId, Value: res.Reply, Error: res.Err})
		}
	case *actor.Stopping:
		if s.ticker != nil {
			s.ticker()
		}
	case *actor.Stopped:
		select {
		case <-s.done:
		default:
			close(s.done)
			s.cfg.IO.Close()
		}
	case proto.Message:
		// A protobuf message of a type grains do not know (from another
		// program, or a newer version): refuse it, never crash.
		if c.Sender() != nil {
			c.Respond(&envelopepb.Envelope{Error: fmt.Sprintf("grain %s does not accept %T: send a mephisto envelope", c.Self().Id, msg)})
		}
	}
}

func (g *grain) start(c actor.Context) {
	s := g.s
	s.failed = nil
	first := !s.loaded
	stored, err := s.cfg.IO.Load(first)
	if err != nil {
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
	g.apply(c, s.cfg.Machine.Restart(stored))
}

// apply carries out a Ready, and the Readies that carrying it out yields.
func (g *grain) apply(c actor.Context, rd partition.Ready) {
	s := g.s
	m := s.cfg.Machine
	for {
		if len(rd.Outputs) > 0 {
			s.cfg.IO.Send(rd.Outputs)
		}
		if rd.Commit != nil {
			s.cfg.IO.Send(rd.Commit.Changelog)
			idle, wait := s.cfg.IO.Seal(rd.Commit.Sources)
			self, root, seq, done := c.Self(), c.ActorSystem().Root, rd.Commit.Seq, s.done
			go func() {
				select {
				case <-idle:
					root.Send(self, commitAcked{seq: seq, wait: wait})
				case <-done:
				}
			}()
		}
		if len(rd.Marks) > 0 {
			s.cfg.IO.Mark(rd.Marks)
		}
		if rd.Stopped != nil && s.stopped == nil {
			s.stopped = rd.Stopped
			for _, d := range s.inflight {
				d.Done <- rd.Stopped
			}
			s.inflight = nil
			if s.cfg.OnStopped != nil {
				s.cfg.OnStopped(rd.Stopped)
			}
		}
		if rd.Processed && s.stopped == nil {
			for _, d := range s.inflight {
				d.Done <- nil
			}
			s.inflight = s.inflight[:0]
		}
		if rd.WakeAfter > 0 {
			scheduler.NewTimerScheduler(c).SendOnce(rd.WakeAfter, c.Self(), commitWake{})
		}
		if rd.Drained {
			for _, pid := range s.drains {
				c.Send(pid, rd.DrainErr)
			}
			s.drains = nil
		}
		if rd.Fail != nil {
			g.fail(c, rd.Fail)
			return
		}
		if rd.Write == nil {
			return
		}
		seq := rd.Write.Seq
		if err := s.cfg.IO.Write(rd.Write); err != nil {
			rd = m.Failed(fmt.Errorf("commit: %w", err))
			continue
		}
		rd = m.Stored(seq)
	}
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

// Parallel runs jobs on up to n goroutines and returns their errors in
// order: the partition.Config.Parallel of grains.
func Parallel(n int, jobs []func() error) []error {
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, max(n, 1))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = j()
		}()
	}
	wg.Wait()
	return errs
}
