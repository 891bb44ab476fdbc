// Package benchapp declares the Mephisto apps the benchmarks run: the
// worker binary bench/app and the in-process profiling benchmark
// bench/inproc share these topologies.
//
//	count  topic in (string key, bytes value) ──▶ agent count ──▶ table counts (string → int64, +1 per event)
//	pass   topic in (string key, bytes value) ──▶ agent pass  ──▶ topic out (same key, value upper-cased)
//	ask    topic in (string key, bytes value) ──▶ reply agent ask ──▶ the value, as the reply (JSON), to whoever asked
//	global topic in (string key, bytes value) ──▶ agent global ──▶ global table global, Merge(GlobalKey, 1) per event
package benchapp

import (
	"fmt"

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
