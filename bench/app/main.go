// Command app is the Mephisto app the benchmark harness
// (bench/cmd/mephisto-bench) runs as a worker process. Its topology (see
// package benchapp) is chosen by the environment variable BENCH_MODE:
//
//	count  topic in (string key, bytes value) ──▶ agent count ──▶ table counts (string → int64, +1 per event)
//	pass   topic in (string key, bytes value) ──▶ agent pass  ──▶ topic out (same key, value upper-cased)
//	ask    topic in (string key, bytes value) ──▶ reply agent ask ──▶ the value, as the reply, to whoever asked
//	global topic in (string key, bytes value) ──▶ agent global ──▶ global table global, Merge("k", 1) per event
//	count-tumbling, count-hopping
//	       topic in (string key, bytes value) ──▶ agent count ──▶ windowed table counts (+1 per event in each of its windows)
//
// BENCH_APP sets the app name (default "bench"): the consumer group id and
// the prefix of the changelog topic <app>-counts-changelog. The harness gives
// each run its own name so that every run starts from an empty group and an
// empty table while reading the same preloaded input topic. BENCH_IN and
// BENCH_OUT rename the input and output topics (default "in" and "out").
//
// In ask mode, a node started with BENCH_ASK_OUT is the ask client: a task
// that times sequential Asks and Requests by PID to the other node's grains
// once the file BENCH_ASK_GO exists, for BENCH_ASK_DURATION each, with
// values of BENCH_ASK_VALUE_SIZE bytes (default 100), and writes what it
// measured as JSON to BENCH_ASK_OUT (see ask.go).
//
// In global mode every node serves GET /bench/global (its copy of the
// counter, and with ?probes=1 what its change hook saw of the probe key),
// and the node started with BENCH_GLOBAL_PROBE_EVERY writes the probe: the
// wall clock, by Set, at that interval, between the files BENCH_GLOBAL_GO
// and BENCH_GLOBAL_STOP appearing (see global.go).
//
// The windowed modes take their windows from BENCH_WINDOW_SIZE,
// BENCH_WINDOW_STEP (hopping), BENCH_WINDOW_GRACE and BENCH_WINDOW_EXPIRES,
// and serve GET /bench/windows: what their close callback tallied (see
// window.go).
//
// Everything else is the ordinary app binary (app.Main): worker, send,
// agents, tables, reset, with the usual flags and MEPHISTO_* variables.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/bench/benchapp"
)

func main() {
	mode, name, in := os.Getenv("BENCH_MODE"), envOr("BENCH_APP", "bench"), envOr("BENCH_IN", "in")
	var app *mephisto.App
	if mode == "ask" {
		var ask *mephisto.ReplyAgent[string, []byte, []byte]
		app, ask = benchapp.NewAsk(name, in)
		app.Task("ask-client", func(ctx context.Context) error { return askClient(ctx, app, ask) })
	} else if mode == "global" {
		var g *mephisto.GlobalTable[string, int64]
		app, g = benchapp.NewGlobal(name, in)
		if err := setupGlobal(app, g); err != nil {
			fmt.Fprintln(os.Stderr, "bench app:", err)
			os.Exit(2)
		}
	} else if mode == "count-tumbling" || mode == "count-hopping" {
		var err error
		if app, err = newWindowed(mode, name, in); err != nil {
			fmt.Fprintln(os.Stderr, "bench app:", err)
			os.Exit(2)
		}
	} else {
		var err error
		if app, err = benchapp.New(mode, name, in, envOr("BENCH_OUT", "out")); err != nil {
			fmt.Fprintln(os.Stderr, "bench app: BENCH_MODE:", err)
			os.Exit(2)
		}
	}
	app.Main()
}

// envOr returns the environment variable name, or def when it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
