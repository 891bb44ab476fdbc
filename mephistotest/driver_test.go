package mephistotest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

type wordCount struct {
	app    *mephisto.App
	lines  *mephisto.Topic[string, string]
	words  *mephisto.Topic[string, string]
	counts *mephisto.Table[string, int64]
	totals *mephisto.Topic[string, int64]
}

// newWordCount is the README's word count: lines are split into words,
// repartitioned by word, and counted; every count goes to totals.
func newWordCount(opts ...mephisto.Option) wordCount {
	app := mephisto.New("wc", opts...)
	w := wordCount{app: app, lines: mephisto.NewTopic(app, "lines", codec.String(), codec.String()),
		counts: mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64()),
		totals: mephisto.NewTopic(app, "totals", codec.String(), codec.Int64())}
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	w.words = words
	mephisto.NewAgent(app, "split", w.lines, func(ctx mephisto.Context, _ string, line string) error {
		for _, word := range strings.Fields(strings.ToLower(line)) {
			if err := words.Send(ctx, word, word); err != nil {
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		n, err := w.counts.Get(ctx, word)
		if err != nil {
			return err
		}
		if err := w.counts.Set(ctx, word, n+1); err != nil {
			return err
		}
		return w.totals.Send(ctx, word, n+1)
	})
	return w
}

func TestWordCount(t *testing.T) {
	w := newWordCount()
	d := mephistotest.New(t, w.app)
	mephistotest.Pipe(d, w.lines, "", "the fox and the dog")
	mephistotest.Pipe(d, w.lines, "", "The end")
	for word, want := range map[string]int64{"the": 3, "fox": 1, "end": 1, "cat": 0} {
		if n, err := w.counts.Get(d.Context(), word); err != nil || n != want {
			t.Errorf("count of %q = %d, %v; want %d", word, n, err, want)
		}
	}
	var the []int64
	for _, r := range mephistotest.Records(d, w.totals) {
		if r.Key == "the" {
			the = append(the, r.Value)
		}
	}
	if fmt.Sprint(the) != "[1 2 3]" {
		t.Errorf("totals of the = %v", the)
	}
	if n := d.Metric("mephisto_events_in_total", "topic", "words"); n != 7 {
		t.Errorf("events in from words = %v, want 7", n)
	}
}

// Faults: a handler that fails fewer times than the app's attempts is
// retried (its effects applied once); one that keeps failing goes to the
// agent's error policy, with the record's coordinates in the dead letter.
func TestFaults(t *testing.T) {
	w := newWordCount(mephisto.WithMaxAttempts(3))
	d := mephistotest.New(t, w.app)
	d.Fail("count", 2, nil)
	mephistotest.Pipe(d, w.lines, "", "fox")
	if n, _ := w.counts.Get(d.Context(), "fox"); n != 1 {
		t.Errorf("fox = %d after two failures, want 1", n)
	}
	if r := d.Metric("mephisto_grain_restarts_total", "grain", "partition/wc/"+fmt.Sprint(partitionOf(d, w, "fox"))); r != 2 {
		t.Errorf("restarts = %v, want 2", r)
	}
	d.Panic("count", 3)
	mephistotest.Pipe(d, w.lines, "", "dog")
	dl := d.DeadLetters("count")
	if len(dl) != 1 || string(dl[0].Value) != "dog" || dl[0].Topic != "words" || !strings.Contains(dl[0].Error, "panic") {
		t.Fatalf("dead letters = %+v", dl)
	}
	if n, _ := w.counts.Get(d.Context(), "dog"); n != 0 {
		t.Errorf("dog = %d, want 0: its record went to the dead letters", n)
	}
	if n := d.Metric("mephisto_dead_letters_total", "agent", "count"); n != 1 {
		t.Errorf("dead letters metric = %v", n)
	}
	mephistotest.Pipe(d, w.lines, "", "dog")
	if n, _ := w.counts.Get(d.Context(), "dog"); n != 1 {
		t.Errorf("dog = %d after the faults, want 1", n)
	}
}

func partitionOf(d *mephistotest.Driver, w wordCount, word string) int32 {
	for _, r := range mephistotest.Records(d, w.totals) {
		if r.Key == word {
			return r.Partition
		}
	}
	return -1
}

// Crash: what was processed but not committed is lost from the tables and
// processed again; what it sent is sent again (at-least-once).
func TestCrash(t *testing.T) {
	w := newWordCount()
	d := mephistotest.New(t, w.app, mephistotest.Partitions(1))
	mephistotest.Pipe(d, w.words, "fox", "fox")
	d.HoldCommits(true)
	mephistotest.Pipe(d, w.words, "fox", "fox")
	replayed := d.Crash(0)
	d.HoldCommits(false)
	if n, _ := w.counts.Get(d.Context(), "fox"); n != 2 {
		t.Errorf("fox = %d after the crash, want 2", n)
	}
	var totals []string
	for _, r := range replayed {
		if r.Topic == "totals" {
			totals = append(totals, string(r.Key))
		}
	}
	if fmt.Sprint(totals) != "[fox]" {
		t.Errorf("the replay sent %v to totals, want the uncommitted count again", totals)
	}
}

// Windows, timers and replies on the driver's clock.
func TestClockWindowsTimersAsk(t *testing.T) {
	app := mephisto.New("clock")
	views := mephisto.NewTopic(app, "views", codec.String(), codec.String())
	closed := mephisto.NewTopic(app, "closed", codec.String(), codec.Int64())
	ticks := mephisto.NewTopic(app, "ticks", codec.String(), codec.String())
	counts := mephisto.NewWindowedTable(app, "views", codec.String(), codec.Int64(),
		mephisto.Tumbling(time.Minute), mephisto.Grace(10*time.Second), mephisto.Expires(time.Hour), mephisto.CloseOnClock())
	counts.OnClose(func(ctx mephisto.Context, id string, _ mephisto.Window, n int64) error {
		return closed.Send(ctx, id, n)
	})
	mephisto.NewAgent(app, "count", views, func(ctx mephisto.Context, id, _ string) error {
		return counts.Update(ctx, id, func(n int64) int64 { return n + 1 })
	})
	app.Timer("tick", 10*time.Second, func(ctx context.Context) error { return ticks.Send(ctx, "t", "tick") })
	questions := mephisto.NewTopic(app, "questions", codec.String(), codec.String())
	oracle := mephisto.NewReplyAgent(app, "oracle", questions, func(ctx mephisto.Context, id, _ string) (int64, error) {
		if id == "bad" {
			return 0, errors.New("no such page")
		}
		return counts.Get(ctx, id)
	})

	d := mephistotest.New(t, app)
	start := d.Now()
	mephistotest.Pipe(d, views, "home", "u1", mephistotest.At(start.Add(time.Second)))
	mephistotest.Pipe(d, views, "home", "u2", mephistotest.At(start.Add(2*time.Second)))
	if n, err := oracle.Ask(d.Context(), "home", ""); err != nil || n != 2 {
		t.Errorf("Ask(home) = %d, %v; want 2", n, err)
	}
	if _, err := oracle.Ask(d.Context(), "bad", ""); !errors.Is(err, mephisto.ErrRemote) {
		t.Errorf("Ask(bad): %v, want ErrRemote", err)
	}
	if got := mephistotest.Records(d, closed); len(got) != 0 {
		t.Fatalf("closed before the clock passed end+grace: %+v", got)
	}
	d.Advance(75 * time.Second)
	got := mephistotest.Records(d, closed)
	if len(got) != 1 || got[0].Key != "home" || got[0].Value != 2 {
		t.Errorf("closed = %+v, want home=2 once", got)
	}
	if n := len(mephistotest.Records(d, ticks)); n != 7 {
		t.Errorf("%d ticks in 75 s of a 10 s timer, want 7", n)
	}
	mephistotest.Pipe(d, views, "home", "u3", mephistotest.At(start.Add(3*time.Second)))
	if n := d.Metric("mephisto_window_late_events_total", "table", "views"); n != 1 {
		t.Errorf("late events = %v, want 1", n)
	}
	ws, err := counts.Windows(d.Context(), "home", start, start.Add(time.Hour))
	if err != nil || len(ws) != 1 || ws[0].Value != 2 {
		t.Errorf("Windows = %+v, %v", ws, err)
	}
}

// Global tables: Merges from every partition all count.
func TestGlobalTable(t *testing.T) {
	app := mephisto.New("glob")
	hits := mephisto.NewTopic(app, "hits", codec.String(), codec.String())
	total := mephisto.NewGlobalTable(app, "total", codec.String(), codec.Int64(), mephisto.MergeWith(mephisto.Sum[int64]))
	mephisto.NewAgent(app, "hit", hits, func(ctx mephisto.Context, _, site string) error {
		return total.Merge(ctx, site, 1)
	})
	d := mephistotest.New(t, app)
	for i := range 20 {
		mephistotest.Pipe(d, hits, fmt.Sprint("user", i), "example.com")
	}
	if n, err := total.Get(d.Context(), "example.com"); err != nil || n != 20 {
		t.Errorf("total = %d, %v; want 20", n, err)
	}
}

// Batch agents take their batches on the driver's clock.
func TestBatch(t *testing.T) {
	app := mephisto.New("batch")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "out", codec.String(), codec.Int64())
	mephisto.NewBatchAgent(app, "sizes", in, 3, time.Second, func(ctx mephisto.Context, batch []mephisto.KV[string, string]) error {
		return out.Send(ctx, "n", int64(len(batch)))
	})
	d := mephistotest.New(t, app, mephistotest.Partitions(1))
	for _, v := range []string{"a", "b", "c", "d"} {
		mephistotest.Pipe(d, in, v, v)
	}
	if got := mephistotest.Records(d, out); len(got) != 1 || got[0].Value != 3 {
		t.Fatalf("before the batch window: %+v", got)
	}
	d.Advance(time.Second)
	if got := mephistotest.Records(d, out); len(got) != 2 || got[1].Value != 1 {
		t.Fatalf("after the batch window: %+v", got)
	}
}

// Channel agents, sinks and group-by repartitions run to completion too.
func TestChannelsSinksGroupBy(t *testing.T) {
	app := mephisto.New("mix")
	orders := mephisto.NewTopic(app, "orders", codec.String(), codec.JSON[order]())
	byAccount := mephisto.GroupBy(orders, "by-account", func(_ string, o order) string { return o.Account }, codec.String())
	spent := mephisto.NewTable(app, "spent", codec.String(), codec.Int64())
	alerts := mephisto.NewChannel[string, int64](app, "alerts")
	audit := mephisto.NewTopic(app, "audit", codec.String(), codec.Int64())
	var sunk []int64
	mephisto.NewAgentWithSinks(app, "spend", byAccount, func(ctx mephisto.Context, account string, o order, yield func(int64) error) error {
		n, err := spent.Get(ctx, account)
		if err != nil {
			return err
		}
		n += o.Cents
		if n > 1000 {
			if err := alerts.Send(ctx, account, n); err != nil {
				return err
			}
		}
		if err := spent.Set(ctx, account, n); err != nil {
			return err
		}
		return yield(n)
	}, []mephisto.Sink[int64]{mephisto.SinkFunc("collect", func(_ mephisto.Context, n int64) error { sunk = append(sunk, n); return nil })})
	mephisto.NewChannelAgent(app, "alert", alerts, func(ctx mephisto.Context, account string, n int64) error {
		return audit.Send(ctx, account, n)
	})
	d := mephistotest.New(t, app)
	for i, a := range []string{"ann", "bob", "ann", "ann"} {
		mephistotest.Pipe(d, orders, fmt.Sprint("order-", i), order{Account: a, Cents: 400})
	}
	if n, _ := spent.Get(d.Context(), "ann"); n != 1200 {
		t.Errorf("ann spent %d, want 1200", n)
	}
	if got := mephistotest.Records(d, audit); len(got) != 1 || got[0].Key != "ann" || got[0].Value != 1200 {
		t.Errorf("audit = %+v", got)
	}
	if len(sunk) != 4 || sunk[3] != 1200 {
		t.Errorf("sink got %v", sunk)
	}
}

type order struct {
	Account string `json:"account"`
	Cents   int64  `json:"cents"`
}
