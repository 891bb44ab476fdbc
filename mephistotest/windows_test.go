package mephistotest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// TestWindowKinds traces each kind of window through the driver: events
// at given seconds (some late), then the key's live windows and the
// closes, then a crash of uncommitted work and the same again.
func TestWindowKinds(t *testing.T) {
	s := time.Second
	sum := func(a, b int64) int64 { return a + b }
	for _, tc := range []struct {
		name    string
		opts    []mephisto.WindowOption
		events  []int // seconds
		windows string
		closes  string
		resent  string // the closes the crash's replay sends again
		late    float64
	}{
		{"tumbling", []mephisto.WindowOption{mephisto.Tumbling(10 * s), mephisto.Grace(2 * s), mephisto.Expires(30 * s)},
			[]int{1, 2, 11, 9, 13, 5, 45},
			"[10s,20s)=2 [40s,50s)=1", "[0s,10s)=3 [10s,20s)=2", "[10s,20s)=2", 1},
		{"hopping", []mephisto.WindowOption{mephisto.Hopping(20*s, 10*s), mephisto.Expires(time.Minute)},
			[]int{5, 15, 25},
			"[-10s,10s)=1 [0s,20s)=2 [10s,30s)=2 [20s,40s)=1", "[-10s,10s)=1 [0s,20s)=2", "[0s,20s)=2", 0},
		{"sliding", []mephisto.WindowOption{mephisto.Sliding(10 * s), mephisto.Grace(time.Hour), mephisto.Expires(time.Hour)},
			[]int{0, 5, 8, 20},
			"[-10s,1ms)=1 [-5s,5.001s)=2 [-2s,8.001s)=3 [1ms,10.002s)=2 [5.001s,15.002s)=1 [10s,20.001s)=1", "", "", 0},
		{"session", []mephisto.WindowOption{mephisto.Session(5*s, sum), mephisto.Grace(10 * s), mephisto.Expires(time.Minute)},
			[]int{0, 3, 20, 12, 16, 40},
			"[0s,3.001s)=2 [12s,20.001s)=3 [40s,40.001s)=1", "[0s,3.001s)=2 [12s,20.001s)=3", "[12s,20.001s)=3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := mephisto.New("win")
			views := mephisto.NewTopic(app, "views", codec.String(), codec.String())
			closed := mephisto.NewTopic(app, "closed", codec.String(), codec.String())
			counts := mephisto.NewWindowedTable(app, "views", codec.String(), codec.Int64(), tc.opts...)
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			span := func(w mephisto.Window) string { return fmt.Sprintf("[%v,%v)", w.Start.Sub(t0), w.End.Sub(t0)) }
			counts.OnClose(func(ctx mephisto.Context, id string, w mephisto.Window, n int64) error {
				return closed.Send(ctx, id, fmt.Sprintf("%s=%d", span(w), n))
			})
			mephisto.NewAgent(app, "count", views, func(ctx mephisto.Context, id, _ string) error {
				return counts.Update(ctx, id, func(n int64) int64 { return n + 1 })
			})
			d := mephistotest.New(t, app, mephistotest.StartAt(t0), mephistotest.Partitions(1))
			// Windows outside a handler reads committed state, so the
			// windows are checked once the held commit has been made.
			check := func(when, closes string, committed bool) {
				t.Helper()
				var cs []string
				for _, r := range mephistotest.Records(d, closed) {
					cs = append(cs, r.Value)
				}
				if g := strings.Join(cs, " "); g != closes {
					t.Errorf("%s: closes %s, want %s", when, g, closes)
				}
				if !committed {
					return
				}
				ws, err := counts.Windows(d.Context(), "a", t0.Add(-time.Hour), t0.Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, w := range ws {
					got = append(got, fmt.Sprintf("%s=%d", span(w.Window), w.Value))
				}
				if g := strings.Join(got, " "); g != tc.windows {
					t.Errorf("%s: windows %s, want %s", when, g, tc.windows)
				}
				if n := d.Metric("mephisto_window_late_events_total", "table", "views"); n != tc.late {
					t.Errorf("%s: %v late events, want %v", when, n, tc.late)
				}
			}
			// The events before the last are committed; the last is
			// processed, then lost in a crash and processed again: the
			// state comes out the same, and the closes it caused are
			// sent again (at-least-once; exactly-once aborts the first).
			last := len(tc.events) - 1
			for _, sec := range tc.events[:last] {
				mephistotest.Pipe(d, views, "a", "", mephistotest.At(t0.Add(time.Duration(sec)*s)))
			}
			d.HoldCommits(true)
			mephistotest.Pipe(d, views, "a", "", mephistotest.At(t0.Add(time.Duration(tc.events[last])*s)))
			check("before the crash", tc.closes, false)
			var resent []string
			for _, r := range d.Crash(0) {
				if r.Topic == "closed" {
					resent = append(resent, string(r.Value))
				}
			}
			if g := strings.Join(resent, " "); g != tc.resent {
				t.Errorf("the replay sent %q again, want %q", g, tc.resent)
			}
			d.HoldCommits(false)
			check("after the crash", strings.TrimSpace(tc.closes+" "+tc.resent), true)
		})
	}
}
