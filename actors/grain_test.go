package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/state/shard"
)

// memIO is a grain's IO in memory: a table whose rows and source offsets
// become durable only at Write (as Pebble's do), records acknowledged at
// once, and every dead letter sent.
type memIO struct {
	mu      sync.Mutex
	rows    map[string][]byte // table 0's committed rows
	sources map[string]int64
	loads   int
	dead    []int64 // offsets of the dead letters sent
}

func (m *memIO) Load(bool) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	stored := map[string]int64{}
	for t, off := range m.sources {
		stored[t] = off
	}
	return stored, nil
}

func (m *memIO) Send(outs []partition.Output) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range outs {
		if o.Topic != "dead" {
			continue
		}
		for _, h := range o.Headers {
			if h.Key == partition.HeaderOffset {
				off, _ := strconv.ParseInt(string(h.Value), 10, 64)
				m.dead = append(m.dead, off)
			}
		}
	}
}

func (m *memIO) Seal(map[string]int64) (<-chan struct{}, func() (map[string]int64, error)) {
	idle := make(chan struct{})
	close(idle)
	return idle, func() (map[string]int64, error) { return map[string]int64{}, nil }
}

func (m *memIO) Write(w *partition.Write) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range w.Rows[0] {
		m.rows[r.Key] = r.Raw
	}
	for t, off := range w.Sources {
		m.sources[t] = off
	}
	return nil
}

func (m *memIO) Mark(map[string]int64) {}
func (m *memIO) Close()                {}

func (m *memIO) read(key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.rows[string(key)]
	return v, ok, nil
}

// script says what the agent's handler does per offset.
type script struct {
	fail   map[int64]int  // offset → how many times to fail before succeeding (-1: always)
	panics map[int64]bool // offset → panic instead of returning an error, once
	poison map[int64]bool // offset → ErrPoison
	policy partition.Policy
}

// agent counts each offset it handles in table 0 (so a replay that applied
// an uncommitted write twice would count 2), following its script.
func (sc script) agent() *partition.Agent {
	var mu sync.Mutex
	calls := map[int64]int{}
	return &partition.Agent{Name: "a", Topic: "t", Policy: sc.policy, DeadLetterTopic: "dead", Run: func(ev *partition.Event) error {
		off := ev.Record().Offset
		mu.Lock()
		calls[off]++
		n := calls[off]
		mu.Unlock()
		switch f := sc.fail[off]; {
		case sc.panics[off] && n == 1:
			panic(fmt.Sprintf("boom at %d", off))
		case sc.poison[off]:
			return fmt.Errorf("%w: undecodable", ErrPoison)
		case f < 0 || n <= f:
			return fmt.Errorf("attempt %d failed", n)
		}
		sh := ev.Shard(0)
		key := []byte(strconv.FormatInt(off, 10))
		count := 0
		if e, ok := sh.Cached(key, false); ok && !e.Absent {
			count, _ = strconv.Atoi(string(e.Raw))
		} else if raw, ok, _ := sh.Get(key); ok {
			count, _ = strconv.Atoi(string(raw))
		}
		sh.Put(key, nil, nil, []byte(strconv.Itoa(count+1)), false)
		return nil
	}}
}

func msgs(from, to int64) partition.Records {
	var out partition.Records
	for o := from; o < to; o++ {
		out = append(out, partition.Record{Topic: "t", Partition: 0, Offset: o})
	}
	return out
}

// TestGrainSupervision drives a real partition machine through a grain
// under a supervisor: failures restart the grain with backoff, the records
// since the last commit are replayed over the committed state only, and
// the error policy applies once per record.
func TestGrainSupervision(t *testing.T) {
	cases := []struct {
		name        string
		script      script
		wantCommit  []int64 // offsets whose count is committed, each exactly 1
		wantDead    []int64
		wantStopped string // in the stop error, if stopped
	}{
		{name: "all succeed", wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "transient error is retried after a restart",
			script:     script{fail: map[int64]int{2: 1}},
			wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "panic is restarted like an error",
			script:     script{panics: map[int64]bool{1: true}},
			wantCommit: []int64{0, 1, 2, 3, 4}},
		{name: "record failing every attempt goes to the policy once",
			script:     script{fail: map[int64]int{3: -1}},
			wantCommit: []int64{0, 1, 2, 4}, wantDead: []int64{3}},
		{name: "poison skips the retries",
			script:     script{poison: map[int64]bool{0: true}},
			wantCommit: []int64{1, 2, 3, 4}, wantDead: []int64{0}},
		{name: "a later failure does not repeat an earlier give-up",
			script:     script{poison: map[int64]bool{1: true}, fail: map[int64]int{3: 1}},
			wantCommit: []int64{0, 2, 3, 4}, wantDead: []int64{1}},
		{name: "stop policy parks the partition after committing what came before",
			script:     script{fail: map[int64]int{2: -1}, policy: partition.Stop},
			wantCommit: []int64{0, 1}, wantStopped: "t/0@2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			io := &memIO{rows: map[string][]byte{}, sources: map[string]int64{}}
			m := partition.New(partition.Config{
				Agents: []*partition.Agent{tc.script.agent()}, Tables: []*partition.Table{{Name: "counts", Changelog: "counts-changelog"}},
				Readers: []shard.Reader{io.read}, CacheKeys: 100, MaxAttempts: 3, CommitInterval: time.Hour,
				Route: func(string, []byte, bool, int32) (int32, error) { return 0, nil },
			})
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
			pid, err := sup.Spawn("g", NewGrainProps(GrainConfig{Machine: m, IO: io, CommitInterval: time.Hour}))
			if err != nil {
				t.Fatal(err)
			}
			d := &Deliver{Records: msgs(0, 5), Done: make(chan error, 1)}
			system.Root.Send(pid, d)
			select {
			case err := <-d.Done:
				stopped := errors.Is(err, ErrPartitionStopped)
				if stopped != (tc.wantStopped != "") || stopped && !strings.Contains(err.Error(), tc.wantStopped) {
					t.Fatalf("Done = %v, want stopped at %q", err, tc.wantStopped)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("batch never done")
			}
			res, err := system.Root.RequestFuture(pid, &Drain{}, 10*time.Second).Result()
			if err != nil || res != nil {
				t.Fatalf("drain: %v %v", res, err)
			}
			io.mu.Lock()
			defer io.mu.Unlock()
			var committed []int64
			for k, v := range io.rows {
				off, _ := strconv.ParseInt(k, 10, 64)
				committed = append(committed, off)
				if string(v) != "1" {
					t.Errorf("offset %s counted %s times in the committed table, want once", k, v)
				}
			}
			sort.Slice(committed, func(i, j int) bool { return committed[i] < committed[j] })
			if !slices.Equal(committed, tc.wantCommit) {
				t.Errorf("committed %v, want %v", committed, tc.wantCommit)
			}
			if !slices.Equal(io.dead, tc.wantDead) {
				t.Errorf("dead letters for %v, want %v", io.dead, tc.wantDead)
			}
			mu.Lock()
			defer mu.Unlock()
			if restarts != io.loads-1 {
				t.Errorf("%d supervisor restarts but %d reloads", restarts, io.loads-1)
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
