package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestHarnessSmoke runs the harness end to end on 1,000 events: it builds
// the binaries, starts a broker, raw clients and workers as processes, and
// checks that every selected workload produced a row with a result. It
// asserts nothing about speed.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := Run(ctx, Options{
		Root:        "../..",
		N:           1000,
		Runs:        1,
		AskDuration: 300 * time.Millisecond,
		Workloads:   []string{"count", "count-eos", "count-tumbling", "count-hopping", "pass", "pass-eos", "wordcount", "recover-10k-keys", "ask", "global"},
		WorkDir:     t.TempDir(),
		Log:         &log,
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, log.String())
	}
	if len(rep.Rows) != 10 {
		t.Fatalf("%d rows, want 10", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		// ask: Mephisto and Raw are the p50 round trips of Ask and of the
		// raw request/reply; the cell adds the paths' percentiles.
		if r.Workload == "ask" && (!strings.Contains(r.Cell, "Ask p50") || !strings.Contains(r.Cell, "by PID p50") || !strings.Contains(r.RawCell, "p99")) {
			t.Errorf("ask row: cell %q, raw %q: want both paths' and raw's percentiles", r.Cell, r.RawCell)
		}
		// global: Raw is count's rate (the ratio's base); the cell adds
		// the probe's visibility percentiles.
		if r.Workload == "global" && (!strings.Contains(r.Cell, "visible in its own copy p50") || !strings.Contains(r.RawCell, "count ")) {
			t.Errorf("global row: cell %q, raw %q: want the visibility percentiles and count's rate", r.Cell, r.RawCell)
		}
		// count-eos, pass-eos: the cell adds the paired at_least_once
		// run and the ratio; pass-eos's raw cell the transactional pipe.
		if strings.HasSuffix(r.Workload, "-eos") && !strings.Contains(r.Cell, "eos ÷ alo") {
			t.Errorf("%s row: cell %q: want the at_least_once rates and the ratio", r.Workload, r.Cell)
		}
		// count-tumbling, count-hopping: Raw is the paired count's rate;
		// the cell adds the data dir's size.
		if strings.HasPrefix(r.Workload, "count-") && strings.HasSuffix(r.Workload, "ing") &&
			(!strings.Contains(r.Cell, "data dir peak") || !strings.Contains(r.RawCell, "count ") || len(r.RawPeakRSS) != 1) {
			t.Errorf("%s row: cell %q, raw %q: want the data dir and count's rate and RSS", r.Workload, r.Cell, r.RawCell)
		}
		if r.Workload == "pass-eos" && !strings.Contains(r.RawCell, "transactional") {
			t.Errorf("pass-eos row: raw %q: want the transactional pipe's rate", r.RawCell)
		}
		if len(r.Mephisto) != 1 || r.Mephisto[0] <= 0 || len(r.Raw) != 1 || r.Raw[0] <= 0 {
			t.Errorf("%s: Mephisto %v, raw %v: want one positive result each", r.Workload, r.Mephisto, r.Raw)
		}
		if len(r.PeakRSS) != 1 || r.PeakRSS[0] <= 0 {
			t.Errorf("%s: peak RSS %v", r.Workload, r.PeakRSS)
		}
	}
	var md bytes.Buffer
	rep.Markdown(&md)
	for _, want := range []string{"| count |", "| count-eos |", "| count-tumbling |", "| count-hopping |", "| pass |", "| pass-eos |", "| wordcount |", "| recover-10k-keys |", "| ask |", "| global |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
	t.Logf("\n%s", md.String())
}

// TestPlanSettled: the cluster-view check of failover (standbys required)
// and ask (none: the ask app has no tables).
func TestPlanSettled(t *testing.T) {
	var v clusterView
	if err := json.Unmarshal([]byte(`{"nodes":[{"id":"s1","alive":true},{"id":"c1","alive":true}],"partitions":[
		{"partition":0,"active":"s1"},{"partition":1,"active":"c1"},{"partition":2,"active":"s1"},{"partition":3,"active":"c1"},
		{"partition":4,"active":"s1"},{"partition":5,"active":"c1"},{"partition":6,"active":"s1"},{"partition":7,"active":"c1","standbys":["s1"]}]}`), &v); err != nil {
		t.Fatal(err)
	}
	if why := v.unsettled(2, false); why != "" {
		t.Errorf("two nodes, all partitions active, no standbys wanted: %s", why)
	}
	if why := v.unsettled(2, true); !strings.Contains(why, "partition 0") {
		t.Errorf("standbys wanted: %q, want partition 0 named", why)
	}
	if why := v.unsettled(3, false); why == "" {
		t.Error("three nodes wanted, two in the plan: settled")
	}
	v.Nodes[1].Alive = false
	if why := v.unsettled(2, false); !strings.Contains(why, "1 of 2 nodes alive") {
		t.Errorf("a dead node: %q", why)
	}
}

func TestStats(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd: %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even: %v", m)
	}
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	if p := pct(xs, 50); p != 50 {
		t.Errorf("p50: %v", p)
	}
	if p := pct(xs, 99); p != 99 {
		t.Errorf("p99: %v", p)
	}
	if p := pct(xs, 100); p != 100 {
		t.Errorf("max: %v", p)
	}
	if g := group("1234567"); g != "1,234,567" {
		t.Errorf("group: %v", g)
	}
}

func TestProbeKeys(t *testing.T) {
	for p := range partitions {
		k := probeKey(1, p)
		if len(k) != keySize {
			t.Errorf("probe key %q: %d bytes, want %d", k, len(k), keySize)
		}
	}
	if k := keyOf(12345, 10_000); string(k) != "k000000000002345" {
		t.Errorf("keyOf: %q", k)
	}
}
