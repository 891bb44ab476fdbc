package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/bench/benchapp"
)

// The windowed count's modes (BENCH_MODE=count-tumbling or count-hopping,
// bench/harness/windowed.go runs them): count with a windowed table,
// configured by
//
//	BENCH_WINDOW_SIZE     the windows' size (a Go duration)
//	BENCH_WINDOW_STEP     count-hopping: how often a window starts
//	BENCH_WINDOW_GRACE    the grace period
//	BENCH_WINDOW_EXPIRES  how long after its end a window stays readable
//
// The table's close callback adds each closed window's final count to an
// in-memory tally of its key (closes, sum), which GET /bench/windows
// answers as JSON ({"keys": {key: [closes, sum]}, "closes": n}). The
// windows that expired are gone from the table and its changelog by the
// end of a run; the tally is how the harness checks that they counted
// every event. It is not durable: a grain restart would close windows
// again, so the harness fails a run with one.
const (
	envWindowSize    = "BENCH_WINDOW_SIZE"
	envWindowStep    = "BENCH_WINDOW_STEP"
	envWindowGrace   = "BENCH_WINDOW_GRACE"
	envWindowExpires = "BENCH_WINDOW_EXPIRES"
)

// windowReport is GET /bench/windows's answer (bench/harness/windowed.go
// mirrors it).
type windowReport struct {
	// Keys holds, per key, how many of its windows closed and the sum of
	// their final counts.
	Keys   map[string][2]int64 `json:"keys"`
	Closes int64               `json:"closes"`
}

// tally is what the close callback saw.
type tally struct {
	mu     sync.Mutex // guards the fields below
	keys   map[string]*[2]int64
	closes int64
}

// windowSpec reads the windowed modes' table spec from the environment.
func windowSpec(mode string) (benchapp.Window, error) {
	w := benchapp.Window{Hopping: mode == "count-hopping"}
	for _, f := range []struct {
		env  string
		d    *time.Duration
		need bool
	}{{envWindowSize, &w.Size, true}, {envWindowStep, &w.Step, w.Hopping}, {envWindowGrace, &w.Grace, false}, {envWindowExpires, &w.Expires, false}} {
		s := os.Getenv(f.env)
		if s == "" {
			if f.need {
				return w, fmt.Errorf("%s: %s is not set", mode, f.env)
			}
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return w, fmt.Errorf("%s=%q: %w", f.env, s, err)
		}
		*f.d = d
	}
	return w, nil
}

// newWindowed declares the windowed count with its close tally and page.
func newWindowed(mode, name, in string) (*mephisto.App, error) {
	spec, err := windowSpec(mode)
	if err != nil {
		return nil, err
	}
	app, counts := benchapp.NewWindowed(name, in, spec)
	t := &tally{keys: map[string]*[2]int64{}}
	counts.OnClose(func(_ mephisto.Context, key string, _ mephisto.Window, n int64) error {
		t.mu.Lock()
		c := t.keys[key]
		if c == nil {
			c = new([2]int64)
			t.keys[key] = c
		}
		c[0]++
		c[1] += n
		t.closes++
		t.mu.Unlock()
		return nil
	})
	app.PageFunc("GET /bench/windows", func(w http.ResponseWriter, _ *http.Request) {
		t.mu.Lock()
		rep := windowReport{Keys: make(map[string][2]int64, len(t.keys)), Closes: t.closes}
		for k, c := range t.keys {
			rep.Keys[k] = *c
		}
		t.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	return app, nil
}
