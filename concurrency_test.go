package mephisto_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// TestConcurrentAgentReadsButCannotWriteTables: an agent with
// Concurrency(4) runs on worker actors; it reads tables, its writes are
// refused with ErrReadOnly, and every record's send arrives.
func TestConcurrentAgentReadsButCannotWriteTables(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("conc", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
	seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
	var refused, inFlight, maxInFlight atomic.Int64
	mephisto.NewAgent(app, "fanout", in, func(ctx mephisto.Context, k, v string) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		if _, err := seen.Get(ctx, k); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if err := seen.Set(ctx, k, 1); errors.Is(err, mephisto.ErrReadOnly) {
			refused.Add(1)
		} else {
			return fmt.Errorf("write from a concurrent handler: %v", err)
		}
		time.Sleep(2 * time.Millisecond) // a call to another service
		return out.Send(ctx, k, v)
	}, mephisto.Concurrency(4))
	mephisto.NewAgent(app, "count", out, func(ctx mephisto.Context, k, _ string) error {
		return seen.Update(ctx, k, func(n int64) int64 { return n + 1 })
	})
	runApp(t, app)
	var recs [][2]string
	truth := map[string]int64{}
	for i := 0; i < 200; i++ {
		k := "k" + strconv.Itoa(i%20)
		recs = append(recs, [2]string{k, "v"})
		truth[k]++
	}
	produce(t, b.Addr(), "in", recs)
	waitFor(t, 30*time.Second, "every record forwarded once", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", truth)
	})
	if refused.Load() != 200 {
		t.Errorf("%d writes refused, want 200", refused.Load())
	}
	if maxInFlight.Load() < 2 {
		t.Errorf("handlers never ran concurrently (max in flight %d)", maxInFlight.Load())
	}
}

// TestChannelPipeline: channel → agent with a sink → channel → agent that
// sends to a topic → table; plus a channel agent spawned at run time, with
// a PID.
func TestChannelPipeline(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("chans", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	raw := mephisto.NewChannel[string, string](app, "raw")
	clean := mephisto.NewChannel[string, string](app, "clean")
	events := mephisto.NewTopic(app, "events", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewChannelAgent(app, "normalize", raw, func(ctx mephisto.Context, k, v string) error {
		if v == "" {
			return nil // filtered out
		}
		if err := counts.Set(ctx, k, 1); !errors.Is(err, mephisto.ErrNotInAgent) {
			return fmt.Errorf("a channel agent wrote a partitioned table: %v", err)
		}
		return clean.Send(ctx, k, v+"!")
	})
	mephisto.NewChannelAgent(app, "publish", clean, func(ctx mephisto.Context, k, v string) error {
		return events.Send(ctx, k, v)
	})
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, k, _ string) error {
		return counts.Update(ctx, k, func(n int64) int64 { return n + 1 })
	})
	runApp(t, app)
	for _, v := range []string{"a", "", "b", "c"} {
		if err := raw.Send(context.Background(), "x", v); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "three non-empty values counted", func() (bool, string) {
		return tableEquals(app.WebAddr(), "counts", map[string]int64{"x": 3})
	})

	late := mephisto.NewChannel[string, int](app, "late")
	got := make(chan int, 1)
	agent, err := mephisto.SpawnChannelAgent(app, "late-agent", late, func(_ mephisto.Context, _ string, v int) error {
		got <- v
		return nil
	})
	if err != nil || agent.PID() == nil {
		t.Fatalf("spawn: %v %v", agent, err)
	}
	if err := late.Send(context.Background(), "k", 42); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != 42 {
			t.Fatalf("got %d", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spawned channel agent never ran")
	}
	if err := mephisto.NewChannel[string, int](app, "nobody").Send(context.Background(), "k", 1); !errors.Is(err, mephisto.ErrNoConsumer) {
		t.Errorf("send to a channel nobody consumes: %v", err)
	}
}
