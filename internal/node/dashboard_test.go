package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/web"
)

// TestErrorRing: the node's logger keeps its warnings and errors, with
// their attributes (groups flattened, the node's own app and id left
// out), in a ring of the last recentErrors, newest first; the handler
// behind it still gets what its level lets through, and nothing more.
func TestErrorRing(t *testing.T) {
	var out bytes.Buffer
	d := newDashboard()
	log := withErrorRing(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})).With("app", "a", "node", "n1"), d)
	log.Info("not kept")
	log.With("partition", 3).Warn("grain failed; restarting it from its last commit", "err", errors.New("boom"), "failures", 2)
	log.WithGroup("g").With("x", "y").Error("stopped", slog.Group("rec", "offset", 7), "agent", "count")
	got, total := d.recent()
	for i := range got {
		if got[i].Time == 0 {
			t.Errorf("record %d has no time", i)
		}
		got[i].Time = 0
	}
	want := []web.LogRecord{
		{Level: "ERROR", Msg: "stopped", Attrs: map[string]string{"g.x": "y", "g.rec.offset": "7", "g.agent": "count"}},
		{Level: "WARN", Msg: "grain failed; restarting it from its last commit", Attrs: map[string]string{"partition": "3", "err": "boom", "failures": "2"}},
	}
	if total != 2 || !reflect.DeepEqual(got, want) {
		t.Errorf("recent = %+v (%d in all), want %+v", got, total, want)
	}
	if s := out.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "msg=stopped") || !strings.Contains(s, "app=a node=n1") {
		t.Errorf("the node's own handler got %q, want the one error, with app and node", s)
	}
	for i := range recentErrors + 5 {
		log.Warn(fmt.Sprintf("w%d", i))
	}
	got, total = d.recent()
	if total != recentErrors+7 || len(got) != recentErrors || got[0].Msg != fmt.Sprintf("w%d", recentErrors+4) || got[recentErrors-1].Msg != "w5" {
		t.Errorf("after %d more: %d kept (%d in all), newest %q, oldest %q; want %d kept, w%d to w5",
			recentErrors+5, len(got), total, got[0].Msg, got[len(got)-1].Msg, recentErrors, recentErrors+4)
	}
}

// TestDashboardRates: a rate is the counter's growth per second since the
// oldest sample within rateWindow; 0 with no sample before.
func TestDashboardRates(t *testing.T) {
	d := newDashboard()
	t0 := time.Unix(1700000000, 0)
	at := func(sec float64, events, writes float64) (map[string]float64, map[string]float64) {
		return d.rates(sample{at: t0.Add(time.Duration(sec * float64(time.Second))),
			events: map[string]float64{"in": events}, writes: map[string]float64{"counts": writes}})
	}
	if e, w := at(0, 100, 50); e["in"] != 0 || w["counts"] != 0 {
		t.Errorf("first sample: rates %v %v, want 0", e, w)
	}
	if e, w := at(2, 120, 54); e["in"] != 10 || w["counts"] != 2 {
		t.Errorf("after 2s: rates %v %v, want 10 and 2", e, w)
	}
	if e, _ := at(2.1, 121, 54); e["in"] != 21/2.1 {
		t.Errorf("0.1s later (not sampled): %v, want %v", e["in"], 21/2.1)
	}
	// 11s after the first: the first is out of the window, the one at 2s
	// is the oldest.
	if e, _ := at(11, 210, 54); e["in"] != 10 {
		t.Errorf("after 11s: %v, want 10", e["in"])
	}
	// Nothing within the window: no rate.
	if e, _ := at(30, 300, 60); e["in"] != 0 {
		t.Errorf("after a long pause: %v, want 0", e["in"])
	}
}
