package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/bench/benchapp"
)

// The global mode's instruments (BENCH_MODE=global, bench/harness/global.go
// reads them):
//
//   - On every node, the global table's change hook records each change of
//     key benchapp.ProbeKey this node's copy applies, as (wall clock in
//     ns when the hook ran, the value).
//   - On the node started with BENCH_GLOBAL_PROBE_EVERY (a duration), a
//     task waits for the file BENCH_GLOBAL_GO to exist, then every
//     interval takes the wall clock in ns and Sets ProbeKey to it (a
//     task's Set is produced and acknowledged before it returns), and
//     records the values whose Set succeeded, until the file
//     BENCH_GLOBAL_STOP exists.
//   - GET /bench/global answers this node's copy of benchapp.GlobalKey
//     (globalReport without the probes); GET /bench/global?probes=1 adds
//     what the hook saw and, on the writer, what it wrote.
//
// One machine, one clock: a value's age when a node's hook sees it (or a
// later value) is how long that write took to become visible there.
const (
	envGlobalEvery = "BENCH_GLOBAL_PROBE_EVERY"
	envGlobalGo    = "BENCH_GLOBAL_GO"
	envGlobalStop  = "BENCH_GLOBAL_STOP"
)

// globalReport is GET /bench/global's answer (bench/harness/global.go
// mirrors it).
type globalReport struct {
	Node string `json:"node"`
	// Value is this node's copy of GlobalKey, Found whether it has one.
	Value int64 `json:"value"`
	Found bool  `json:"found"`
	// Written are the probe values (wall clock, ns) whose Set succeeded,
	// in order (the writer only).
	Written []int64 `json:"written,omitempty"`
	// Seen are the changes of ProbeKey this node's copy applied: [wall
	// clock ns when the hook ran, value].
	Seen [][2]int64 `json:"seen,omitempty"`
	// ProbeErr is the first failed Set of the probe, if any.
	ProbeErr string `json:"probe_err,omitempty"`
}

// probes holds what the hook and the probe task recorded.
type probes struct {
	mu       sync.Mutex // guards the fields below
	written  []int64
	seen     [][2]int64
	probeErr string
}

// setupGlobal adds the global mode's hook, page and (on the writer) probe
// task to app.
func setupGlobal(app *mephisto.App, g *mephisto.GlobalTable[string, int64]) error {
	p := &probes{}
	g.OnChange(func(key string, v int64, deleted bool) {
		if key != benchapp.ProbeKey || deleted {
			return
		}
		now := time.Now().UnixNano()
		p.mu.Lock()
		p.seen = append(p.seen, [2]int64{now, v})
		p.mu.Unlock()
	})
	app.PageFunc("GET /bench/global", func(w http.ResponseWriter, r *http.Request) {
		v, found, err := g.Lookup(r.Context(), benchapp.GlobalKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		rep := globalReport{Node: app.Config().NodeID, Value: v, Found: found}
		if r.URL.Query().Get("probes") != "" {
			p.mu.Lock()
			rep.Written, rep.Seen, rep.ProbeErr = append([]int64(nil), p.written...), append([][2]int64(nil), p.seen...), p.probeErr
			p.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	s := os.Getenv(envGlobalEvery)
	if s == "" {
		return nil
	}
	every, err := time.ParseDuration(s)
	if err != nil || every <= 0 {
		return fmt.Errorf("%s=%q: want a positive duration", envGlobalEvery, s)
	}
	goFile, stopFile := os.Getenv(envGlobalGo), os.Getenv(envGlobalStop)
	if goFile == "" || stopFile == "" {
		return fmt.Errorf("%s needs %s and %s", envGlobalEvery, envGlobalGo, envGlobalStop)
	}
	app.Task("global-probe", func(ctx context.Context) error {
		return probe(ctx, g, every, goFile, stopFile, p)
	})
	return nil
}

// probe is the writer's task: once goFile exists, Set ProbeKey to the wall
// clock every interval until stopFile exists. A failed Set is recorded
// (the harness fails the run on it) and the probe goes on.
func probe(ctx context.Context, g *mephisto.GlobalTable[string, int64], every time.Duration, goFile, stopFile string, p *probes) error {
	for !exists(goFile) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Millisecond):
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !exists(stopFile) {
		ts := time.Now().UnixNano()
		err := g.Set(ctx, benchapp.ProbeKey, ts)
		if ctx.Err() != nil {
			return nil
		}
		p.mu.Lock()
		if err == nil {
			p.written = append(p.written, ts)
		} else if p.probeErr == "" {
			p.probeErr = err.Error()
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
