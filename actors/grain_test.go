package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/mephistohq/mephisto/actors/partition"

	"github.com/mephistohq/mephisto/actors/envelopepb"
)

// scriptCore is a Core whose Process outcome per offset is scripted. It
// keeps "committed" state the way the real core keeps Pebble: processed
// offsets become durable only at Commit, and Load drops the rest.
type scriptCore struct {
	mu        sync.Mutex
	fail      map[int64]int  // offset → how many times to fail before succeeding (-1: always)
	panics    map[int64]bool // offset → panic instead of returning an error, once
	poison    map[int64]bool // offset → ErrPoison
	calls     map[int64]int  // attempts per offset
	pending   []int64        // processed since the last commit
	inflight  []int64        // in a started commit
	committed []int64        // processed and committed, in order
	gaveUp    []int64        // offsets handed to GiveUp, in order
	stopOn    map[int64]bool // GiveUp returns ErrPartitionStopped
	loads     int
}

func (c *scriptCore) Fanout(string) []int { return []int{0} }

func (c *scriptCore) Load(context.Context, bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loads++
	c.pending, c.inflight = nil, nil
	return nil
}

func (c *scriptCore) Process(_ context.Context, t Task) error {
	c.mu.Lock()
	off := t.Rec.Offset
	c.calls[off]++
	n := c.calls[off]
	doPanic := c.panics[off] && n == 1
	c.mu.Unlock()
	if doPanic {
		panic(fmt.Sprintf("boom at %d", off))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poison[off] {
		return fmt.Errorf("%w: undecodable", ErrPoison)
	}
	if f := c.fail[off]; f < 0 || n <= f {
		return fmt.Errorf("attempt %d failed", n)
	}
	c.pending = append(c.pending, off)
	return nil
}

func (c *scriptCore) GiveUp(_ context.Context, t Task, _ error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gaveUp = append(c.gaveUp, t.Rec.Offset)
	if c.stopOn[t.Rec.Offset] {
		return ErrPartitionStopped
	}
	return nil
}

func (c *scriptCore) Commit(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.committed = append(c.committed, c.inflight...)
	c.inflight = nil
	c.committed = append(c.committed, c.pending...)
	c.pending = nil
	return nil
}

// StartCommit moves what is pending in flight and acknowledges it at once
// from another goroutine, as the real core does once Kafka has acked.
func (c *scriptCore) StartCommit(_ context.Context, acked func()) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.committed = append(c.committed, c.inflight...)
	c.inflight, c.pending = c.pending, nil
	if len(c.inflight) == 0 {
		return false, nil
	}
	go acked()
	return true, nil
}

func (c *scriptCore) FinishCommit(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.committed = append(c.committed, c.inflight...)
	c.inflight = nil
	return nil
}

func (c *scriptCore) Direct(_ context.Context, env *envelopepb.Envelope) *envelopepb.Envelope {
	return &envelopepb.Envelope{Value: env.Value}
}

func (c *scriptCore) Concurrency(int) int { return 1 }

func (c *scriptCore) FlushAll(context.Context) error { return nil }

func (c *scriptCore) ProcessReadOnly(ctx context.Context, t Task) (func(), error) {
	return func() {}, c.Process(ctx, t)
}

func msgs(from, to int64) []*partition.Record {
	var out []*partition.Record
	for o := from; o < to; o++ {
		out = append(out, &partition.Record{Topic: "t", Partition: 0, Offset: o})
	}
	return out
}

func TestGrainSupervision(t *testing.T) {
	cases := []struct {
		name        string
		core        *scriptCore
		wantCommit  []int64 // offsets processed successfully, each exactly once
		wantGaveUp  []int64
		wantStopped bool
	}{
		{name: "all succeed", core: &scriptCore{}, wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "transient error is retried after a restart",
			core:       &scriptCore{fail: map[int64]int{2: 1}},
			wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "panic is restarted like an error",
			core:       &scriptCore{panics: map[int64]bool{1: true}},
			wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "record failing every attempt goes to the policy once",
			core:       &scriptCore{fail: map[int64]int{3: -1}},
			wantCommit: []int64{0, 1, 2, 4}, wantGaveUp: []int64{3}},
		{name: "poison skips the retries",
			core:       &scriptCore{poison: map[int64]bool{0: true}},
			wantCommit: []int64{1, 2, 3, 4}, wantGaveUp: []int64{0}},
		{name: "a later failure does not repeat an earlier give-up",
			core:       &scriptCore{poison: map[int64]bool{1: true}, fail: map[int64]int{3: 1}},
			wantCommit: []int64{0, 2, 3, 4}, wantGaveUp: []int64{1}},
		{name: "stop policy parks the partition after committing what came before",
			core:       &scriptCore{fail: map[int64]int{2: -1}, stopOn: map[int64]bool{2: true}},
			wantCommit: []int64{0, 1}, wantGaveUp: []int64{2}, wantStopped: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.core
			for _, m := range []*map[int64]int{&c.fail, &c.calls} {
				if *m == nil {
					*m = map[int64]int{}
				}
			}
			system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
				return slog.New(slog.DiscardHandler)
			}))
			defer system.Shutdown()
			restarts := 0
			var mu sync.Mutex
			sup, err := NewSupervisor(system, "sup", SupervisorConfig{
				Backoff: Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond, Window: time.Minute},
				Log:     slog.New(slog.DiscardHandler),
				OnRestart: func(*actor.PID, any) {
					mu.Lock()
					restarts++
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			pid, err := sup.Spawn("g", NewGrainProps(GrainConfig{Core: c, MaxAttempts: 3, CommitInterval: time.Hour}))
			if err != nil {
				t.Fatal(err)
			}
			d := &Deliver{Records: msgs(0, 5), Done: make(chan error, 1)}
			system.Root.Send(pid, d)
			select {
			case err := <-d.Done:
				if stopped := errors.Is(err, ErrPartitionStopped); stopped != tc.wantStopped {
					t.Fatalf("Done = %v, want stopped=%v", err, tc.wantStopped)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("batch never done")
			}
			res, err := system.Root.RequestFuture(pid, &Drain{}, 10*time.Second).Result()
			if err != nil || res != nil {
				t.Fatalf("drain: %v %v", res, err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if !slices.Equal(c.committed, tc.wantCommit) {
				t.Errorf("committed %v, want %v", c.committed, tc.wantCommit)
			}
			if !slices.Equal(c.gaveUp, tc.wantGaveUp) {
				t.Errorf("gave up on %v, want %v", c.gaveUp, tc.wantGaveUp)
			}
			mu.Lock()
			defer mu.Unlock()
			if restarts != c.loads-1 {
				t.Errorf("%d supervisor restarts but %d reloads", restarts, c.loads-1)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Delay(i + 1); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}
