// Package benchapp declares the Mephisto apps the benchmarks run: the
// worker binary bench/app and the in-process profiling benchmark
// bench/inproc share these topologies.
//
//	count  topic in (string key, bytes value) ──▶ agent count ──▶ table counts (string → int64, +1 per event)
//	pass   topic in (string key, bytes value) ──▶ agent pass  ──▶ topic out (same key, value upper-cased)
//	ask    topic in (string key, bytes value) ──▶ reply agent ask ──▶ the value, as the reply (JSON), to whoever asked
//	global topic in (string key, bytes value) ──▶ agent global ──▶ global table global, Merge(GlobalKey, 1) per event
//	count-tumbling, count-hopping
//	       topic in (string key, bytes value) ──▶ agent count ──▶ windowed table counts (string → int64, +1 per event in each of its windows)
//	wordcount (NewWordCount, bench/inproc only)
//	       topic lines ──▶ agent split ──▶ topic words (keyed by word) ──▶ agent count ──▶ table word_counts, and each new count to topic totals
package benchapp

import (
	"fmt"
	"strings"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// New declares the benchmark app for mode ("count", "pass", "ask" or
// "global") named name (its consumer group id and changelog prefix),
// reading topic in and, for pass, writing topic out.
func New(mode, name, in, out string, opts ...mephisto.Option) (*mephisto.App, error) {
	if mode == "ask" {
		app, _ := NewAsk(name, in, opts...)
		return app, nil
	}
	if mode == "global" {
		app, _ := NewGlobal(name, in, opts...)
		return app, nil
	}
	app := mephisto.New(name, opts...)
	input := mephisto.NewTopic(app, in, codec.String(), codec.Bytes())
	switch mode {
	case "count":
		counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
		mephisto.NewAgent(app, "count", input, func(ctx mephisto.Context, key string, _ []byte) error {
			return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
		})
	case "pass":
		output := mephisto.NewTopic(app, out, codec.String(), codec.Bytes())
		mephisto.NewAgent(app, "pass", input, func(ctx mephisto.Context, key string, value []byte) error {
			// The value is the codec's own copy: transform it in place.
			return output.Send(ctx, key, Upper(value))
		})
	default:
		return nil, fmt.Errorf("mode %q: want count, pass, ask or global", mode)
	}
	return app, nil
}

// NewAsk declares the ask topology: the reply agent ask on topic in, whose
// handler answers each request with its value (no table, no sends), so
// that a round trip measures the messaging path alone. It returns the app
// and the agent, which a client node asks (Ask through Kafka, Request by
// PID).
func NewAsk(name, in string, opts ...mephisto.Option) (*mephisto.App, *mephisto.ReplyAgent[string, []byte, []byte]) {
	app := mephisto.New(name, opts...)
	input := mephisto.NewTopic(app, in, codec.String(), codec.Bytes())
	ask := mephisto.NewReplyAgent(app, "ask", input, func(_ mephisto.Context, _ string, value []byte) ([]byte, error) {
		return value, nil
	})
	return app, ask
}

// The global topology's names: the global table, the key every event
// increments, and the key the bench app's probe writes its timestamps to
// (bench/app/global.go).
const (
	GlobalTable = "global"
	GlobalKey   = "k"
	ProbeKey    = "probe"
)

// NewGlobal declares the global topology: agent global on topic in adds 1
// to key GlobalKey of the global table GlobalTable (string → int64,
// merged by Sum) for every event, so that every partition, on every node,
// sends its increments to the one grain that owns the key. It returns the
// app and the table.
func NewGlobal(name, in string, opts ...mephisto.Option) (*mephisto.App, *mephisto.GlobalTable[string, int64]) {
	app := mephisto.New(name, opts...)
	input := mephisto.NewTopic(app, in, codec.String(), codec.Bytes())
	g := mephisto.NewGlobalTable(app, GlobalTable, codec.String(), codec.Int64(), mephisto.MergeWith(mephisto.Sum[int64]))
	mephisto.NewAgent(app, "global", input, func(ctx mephisto.Context, _ string, _ []byte) error {
		return g.Merge(ctx, GlobalKey, 1)
	})
	return app, g
}

// Window describes the windowed count's table (NewWindowed): tumbling
// windows of Size, or hopping windows of Size every Step, with a grace
// period and an expiry.
type Window struct {
	Hopping        bool
	Size, Step     time.Duration // Step: hopping only
	Grace, Expires time.Duration
}

// String names the spec as the tables command does.
func (w Window) String() string {
	if w.Hopping {
		return fmt.Sprintf("hopping %v every %v grace %v expires %v", w.Size, w.Step, w.Grace, w.Expires)
	}
	return fmt.Sprintf("tumbling %v grace %v expires %v", w.Size, w.Grace, w.Expires)
}

// WindowedTable is the windowed count's table name: the same as count's
// (its changelog is <app>-counts-changelog).
const WindowedTable = "counts"

// NewWindowed declares the windowed count (issue 13): agent count on
// topic in adds 1 to the event's key in every window of windowed table
// counts (string → int64) holding the event's time, which is the record's
// timestamp (TimeFromRecord, the default). It is count with the table
// windowed: one window per event for tumbling windows, Size/Step for
// hopping ones. It returns the app and the table (the bench app sets its
// close callback).
func NewWindowed(name, in string, w Window, opts ...mephisto.Option) (*mephisto.App, *mephisto.WindowedTable[string, int64]) {
	app := mephisto.New(name, opts...)
	input := mephisto.NewTopic(app, in, codec.String(), codec.Bytes())
	kind := mephisto.Tumbling(w.Size)
	if w.Hopping {
		kind = mephisto.Hopping(w.Size, w.Step)
	}
	counts := mephisto.NewWindowedTable(app, WindowedTable, codec.String(), codec.Int64(),
		kind, mephisto.Grace(w.Grace), mephisto.Expires(w.Expires))
	mephisto.NewAgent(app, "count", input, func(ctx mephisto.Context, key string, _ []byte) error {
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})
	return app, counts
}

// NewWordCount declares the word count of mephistotest's
// BenchmarkDriverWordCount (mephistotest/driver_test.go, newWordCount):
// agent split lower-cases each line of topic lines (string → string) and
// sends each of its words (strings.Fields), keyed by the word, to topic
// words; agent count reads the word's count in table word_counts (string
// → int64), sets it one higher and sends the new count to topic totals,
// keyed by the word. The topics are named by the arguments (the driver's
// are lines, words and totals), so that every run of a benchmark can have
// fresh ones. It returns the app and the table.
func NewWordCount(name, lines, words, totals string, opts ...mephisto.Option) (*mephisto.App, *mephisto.Table[string, int64]) {
	app := mephisto.New(name, opts...)
	in := mephisto.NewTopic(app, lines, codec.String(), codec.String())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())
	tot := mephisto.NewTopic(app, totals, codec.String(), codec.Int64())
	ws := mephisto.NewTopic(app, words, codec.String(), codec.String())
	mephisto.NewAgent(app, "split", in, func(ctx mephisto.Context, _ string, line string) error {
		for _, word := range strings.Fields(strings.ToLower(line)) {
			if err := ws.Send(ctx, word, word); err != nil {
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", ws, func(ctx mephisto.Context, word, _ string) error {
		n, err := counts.Get(ctx, word)
		if err != nil {
			return err
		}
		if err := counts.Set(ctx, word, n+1); err != nil {
			return err
		}
		return tot.Send(ctx, word, n+1)
	})
	return app, counts
}

// Upper upper-cases the ASCII letters of b in place and returns b: the
// pass-through's transformation, cheap but touching every byte. The raw
// baseline (bench/raw) does the same.
func Upper(b []byte) []byte {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return b
}
