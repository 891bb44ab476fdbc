package mephistotest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// Join asks from a goroutine per request; the driver takes them in turn
// (run under -race).
func TestJoinConcurrentAsks(t *testing.T) {
	app := mephisto.New("double")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.Int64())
	double := mephisto.NewReplyAgent(app, "double", in, func(_ mephisto.Context, _ string, n int64) (int64, error) { return 2 * n, nil })
	d := mephistotest.New(t, app)
	got, err := double.Join(d.Context(), 1, 2, 3, 4, 5, 6, 7, 8)
	if err != nil || len(got) != 8 || got[0] != 2 || got[7] != 16 {
		t.Fatalf("Join = %v, %v; want 2..16", got, err)
	}
}

// A windowed table's reads outside handlers use the driver's clock.
func TestWindowReadsOnTheDriverClock(t *testing.T) {
	app := mephisto.New("now")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	counts := mephisto.NewWindowedTable(app, "counts", codec.String(), codec.Int64(), mephisto.Tumbling(time.Minute), mephisto.TimeFromClock())
	mephisto.NewAgent(app, "count", in, func(ctx mephisto.Context, k, _ string) error {
		return counts.Update(ctx, k, func(n int64) int64 { return n + 1 })
	})
	d := mephistotest.New(t, app)
	mephistotest.Pipe(d, in, "k", "")
	if n, err := counts.Now(d.Context(), "k"); n != 1 || err != nil {
		t.Fatalf("Now = %d, %v; want 1 (the driver's minute)", n, err)
	}
	d.Advance(time.Minute)
	if n, err := counts.Now(d.Context(), "k"); n != 0 || err != nil {
		t.Fatalf("Now a minute on = %d, %v; want 0", n, err)
	}
	if n, err := counts.Delta(d.Context(), "k", time.Minute); n != 1 || err != nil {
		t.Fatalf("Delta(1m) = %d, %v; want 1", n, err)
	}
}

// SpawnChannelAgent starts the agent in the driver.
func TestSpawnChannelAgent(t *testing.T) {
	app := mephisto.New("spawn")
	ch := mephisto.NewChannel[string, string](app, "ch")
	out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
	mephisto.NewAgent(app, "declared", out, func(mephisto.Context, string, string) error { return nil })
	d := mephistotest.New(t, app)
	if _, err := mephisto.SpawnChannelAgent(app, "sp", ch, func(ctx mephisto.Context, k, v string) error {
		return out.Send(ctx, k, strings.ToUpper(v))
	}); err != nil {
		t.Fatalf("SpawnChannelAgent: %v", err)
	}
	if err := ch.Send(d.Context(), "k", "hi"); err != nil {
		t.Fatal(err)
	}
	if got := mephistotest.Records(d, out); len(got) != 1 || got[0].Value != "HI" {
		t.Fatalf("out = %+v", got)
	}
}

// A record over the producer's limit fails as it does on a worker.
func TestTooLarge(t *testing.T) {
	app := mephisto.New("big")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
	var sendErr error
	mephisto.NewAgent(app, "grow", in, func(ctx mephisto.Context, k, v string) error {
		sendErr = out.Send(ctx, k, strings.Repeat(v, 2_000_000))
		return nil
	})
	d := mephistotest.New(t, app)
	mephistotest.Pipe(d, in, "k", "x")
	if !errors.Is(sendErr, mephisto.ErrTooLarge) {
		t.Fatalf("send of 2 MB: %v, want ErrTooLarge", sendErr)
	}
}

// Under HoldCommits the clock still flushes batches and closes windows;
// a crash then replays them.
func TestHeldCommitsTick(t *testing.T) {
	app := mephisto.New("held")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "out", codec.String(), codec.Int64())
	counts := mephisto.NewWindowedTable(app, "counts", codec.String(), codec.Int64(), mephisto.Tumbling(time.Minute),
		mephisto.Expires(time.Hour), mephisto.CloseOnClock())
	counts.OnClose(func(ctx mephisto.Context, k string, _ mephisto.Window, n int64) error {
		return out.Send(ctx, "closed", n)
	})
	mephisto.NewAgent(app, "count", in, func(ctx mephisto.Context, k, _ string) error {
		return counts.Update(ctx, k, func(n int64) int64 { return n + 1 })
	})
	mephisto.NewBatchAgent(app, "batches", in, 3, time.Second, func(ctx mephisto.Context, b []mephisto.KV[string, string]) error {
		return out.Send(ctx, "batch", int64(len(b)))
	})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := mephistotest.New(t, app, mephistotest.Partitions(1), mephistotest.StartAt(t0))
	d.HoldCommits(true)
	mephistotest.Pipe(d, in, "k", "", mephistotest.At(t0))
	d.Advance(2 * time.Minute)
	describe := func(rs []mephistotest.Record[string, int64]) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.Key)
		}
		return strings.Join(s, " ")
	}
	if got := describe(mephistotest.Records(d, out)); got != "closed batch" {
		t.Fatalf("outputs under held commits: %q, want a batch and a close", got)
	}
	// The replayed record closes its window at once (the clock is past
	// it) and starts a new batch, due a second on.
	d.Crash(0)
	d.HoldCommits(false)
	d.Advance(time.Second)
	if got := describe(mephistotest.Records(d, out)); got != "closed batch closed batch" {
		t.Fatalf("outputs after a crash: %q, want the close and the batch again", got)
	}
	if n, _, err := counts.At(d.Context(), "k", t0); n != 1 || err != nil {
		t.Fatalf("the closed window after the crash: %d, %v; want 1", n, err)
	}
}

// An agent giving up on a record (its error policy) leaves the record to
// the other agents of its topic, before and after it.
func TestGiveUpLeavesTheOtherAgents(t *testing.T) {
	for _, policy := range []mephisto.ErrorPolicy{mephisto.DeadLetter, mephisto.Skip} {
		for _, failing := range []string{"first", "second"} {
			app := mephisto.New("two", mephisto.WithMaxAttempts(3))
			in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
			out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
			for _, name := range []string{"first", "second"} {
				mephisto.NewAgent(app, name, in, func(ctx mephisto.Context, k, v string) error {
					return out.Send(ctx, k, name+":"+v)
				}, mephisto.OnError(policy))
			}
			d := mephistotest.New(t, app)
			d.Fail(failing, 3, nil)
			mephistotest.Pipe(d, in, "k", "v1")
			mephistotest.Pipe(d, in, "k", "v2")
			var got []string
			for _, r := range mephistotest.Records(d, out) {
				got = append(got, r.Value)
			}
			other := map[string]string{"first": "second", "second": "first"}[failing]
			want := map[string]bool{other + ":v1": true, "first:v2": true, "second:v2": true}
			for _, g := range got {
				delete(want, g)
			}
			if len(want) > 0 {
				t.Errorf("%v, %s gives up on v1: outputs %q lack %v", policy, failing, got, want)
			}
		}
	}
}

// Fail and Panic apply to channel agents too: retried up to the app's
// attempts, then dropped and counted.
func TestFailChannelAgent(t *testing.T) {
	app := mephisto.New("chfail", mephisto.WithMaxAttempts(3))
	ch := mephisto.NewChannel[string, string](app, "ch")
	out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
	mephisto.NewChannelAgent(app, "a", ch, func(ctx mephisto.Context, k, v string) error { return out.Send(ctx, k, v) })
	d := mephistotest.New(t, app)
	d.Fail("a", 3, nil)
	_ = ch.Send(d.Context(), "k", "dropped")
	d.Panic("a", 2)
	_ = ch.Send(d.Context(), "k", "third time")
	if got := mephistotest.Records(d, out); len(got) != 1 || got[0].Value != "third time" {
		t.Errorf("out = %+v, want the message that succeeded on its third attempt", got)
	}
	if n := d.Metric("mephisto_skipped_total", "agent", "a"); n != 1 {
		t.Errorf("skipped = %v, want 1", n)
	}
}
