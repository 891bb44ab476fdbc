package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/mephistotest"
)

// TestDriver runs the app's topology in the test driver: views stamped
// at chosen seconds, through the group-by hop, into the minute windows;
// the closes a later view causes; a late view dropped and counted; a
// crash replaying the last view; and expiry an hour on.
func TestDriver(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) mephistotest.RecordOption { return mephistotest.At(t0.Add(d)) }
	pv := newApp()
	d := mephistotest.New(t, pv.app, mephistotest.StartAt(t0))
	view := func(id string, d2 time.Duration) {
		mephistotest.Pipe(d, pv.views, id, PageView{ID: id, User: "ann"}, at(d2))
	}
	windows := func(id string) string {
		t.Helper()
		ws, err := pv.counts.Windows(d.Context(), id, t0.Add(-time.Hour), t0.Add(3*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, w := range ws {
			s = append(s, fmt.Sprintf("%v=%d", w.Window.Start.Sub(t0), w.Value))
		}
		return strings.Join(s, " ")
	}
	closes := func() string {
		var s []string
		for _, r := range mephistotest.Records(d, pv.closed) {
			c := r.Value
			if r.Key != c.ID || c.End-c.Start != time.Minute.Milliseconds() {
				t.Errorf("close %+v keyed %q", c, r.Key)
			}
			s = append(s, fmt.Sprintf("%s@%v=%d", c.ID, time.UnixMilli(c.Start).Sub(t0), c.Count))
		}
		return strings.Join(s, " ")
	}
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}

	// The group-by keys the views by page (Faust: group_by(PageView.id)); the
	// hop keeps each view's time.
	view("home", 5*time.Second)
	view("home", 59*time.Second)
	view("docs", 30*time.Second)
	view("home", 61*time.Second)
	check("home", windows("home"), "0s=2 1m0s=1")
	check("closes before any minute is due", closes(), "")

	// Each page is on one partition of the by-id topic, with its own
	// stream time: minute 0 closes on home's partition at 1m10s of its
	// stream time, on docs' once docs sees it.
	view("home", 70*time.Second)
	view("docs", 2*time.Minute+10*time.Second)
	check("closes at 1m10s and 2m10s", closes(), "home@0s=2 docs@0s=1")
	if p := d.Metric("mephisto_window_late_events_total", "table", "page_views"); p != 0 {
		t.Errorf("%v late views, want 0", p)
	}

	// A view of minute 0 at stream time 2m10s is late for docs.
	view("docs", 40*time.Second)
	check("docs after a late view", windows("docs"), "0s=1 2m0s=1")
	if p := d.Metric("mephisto_window_late_events_total", "table", "page_views"); p != 1 {
		t.Errorf("%v late views, want 1", p)
	}

	// A crash after the view that closes home's minute 1 replays it, at
	// least once: the group-by forwards the view again, so minute 2
	// counts it twice, and the close is sent again. (Exactly once aborts
	// the first forward and the first close with the crashed
	// transaction.)
	d.HoldCommits(true)
	view("home", 2*time.Minute+15*time.Second)
	for p := range int32(8) {
		d.Crash(p)
	}
	d.HoldCommits(false)
	check("home after the crash", windows("home"), "0s=2 1m0s=2 2m0s=2")
	check("closes after the crash", closes(), "home@0s=2 docs@0s=1 home@1m0s=2 home@1m0s=2")

	// An hour after minute 1 ended (by home's stream time) its windows
	// are gone; docs' partition has not moved, so its stay.
	view("home", time.Hour+2*time.Minute)
	check("home an hour on", windows("home"), "2m0s=2 1h2m0s=1")
	check("docs an hour on", windows("docs"), "0s=1 2m0s=1")
	check("closes an hour on", closes(), "home@0s=2 docs@0s=1 home@1m0s=2 home@1m0s=2 home@2m0s=2")
}
