package mephisto_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/timer"
)

// TestBatchAgent: batches of up to n, or what arrived within d of the first
// (on an injected clock); the partial batch's records are not committed
// before it is handled.
func TestBatchAgent(t *testing.T) {
	b := startBroker(t)
	clock := timer.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	app := mephisto.New("batch", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(20*time.Millisecond), mephisto.WithClock(clock))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	sizes := mephisto.NewTable(app, "sizes", codec.String(), codec.Int64())
	var mu sync.Mutex
	var batches [][]string
	mephisto.NewBatchAgent(app, "take", in, 3, time.Minute, func(ctx mephisto.Context, batch []mephisto.KV[string, string]) error {
		var vs []string
		for _, kv := range batch {
			vs = append(vs, kv.Value)
		}
		mu.Lock()
		batches = append(batches, vs)
		n := len(batches)
		mu.Unlock()
		return sizes.Set(ctx, fmt.Sprint("batch", n), int64(len(batch)))
	})
	runApp(t, app)
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(batches)
	}
	produce(t, b.Addr(), "in", [][2]string{{"", "a"}, {"", "b"}, {"", "c"}, {"", "d"}, {"", "e"}})
	waitFor(t, 30*time.Second, "a full batch of 3", func() (bool, string) { return got() == "[[a b c]]", got() })
	// d and e wait for more, or for a minute on the clock: nothing before.
	waitFor(t, 30*time.Second, "d and e consumed", func() (bool, string) {
		m := metric(t, app.WebAddr(), "mephisto_events_in_total")
		return len(m) > 0 && m[len(m)-2:] == " 5", m
	})
	if got() != "[[a b c]]" {
		t.Fatalf("partial batch handed over early: %s", got())
	}
	clock.Advance(time.Minute)
	waitFor(t, 30*time.Second, "the partial batch after d", func() (bool, string) { return got() == "[[a b c] [d e]]", got() })
	waitFor(t, 30*time.Second, "batch sizes committed", func() (bool, string) {
		return tableEquals(app.WebAddr(), "sizes", map[string]int64{"batch1": 3, "batch2": 2})
	})
}
