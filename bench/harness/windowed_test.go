package harness

import (
	"testing"
	"time"

	"github.com/mephistohq/mephisto/window"
)

// TestWindowModel: the windowed workloads' model puts every event in
// exactly one tumbling window or windowHops hopping ones, each holding
// the event's time, and reads window keys as the table writes them.
func TestWindowModel(t *testing.T) {
	for _, hopping := range []bool{false, true} {
		n, keys := 10_000, 300
		m := newWindowModel(hopping, n, keys, 20, time.Now())
		if m.ts(n-1)-m.ts(0) < 19*windowSize.Milliseconds() {
			t.Fatalf("hopping %v: event times span %d ms, want about 20 windows", hopping, m.ts(n-1)-m.ts(0))
		}
		for i := 0; i < n; i += 997 {
			ts := m.ts(i)
			lo, hi := m.windowsOf(ts)
			if got := hi - lo + 1; got != m.perEvent() {
				t.Fatalf("hopping %v: event at %d in %d windows, want %d", hopping, ts, got, m.perEvent())
			}
			for k := lo; k <= hi; k++ {
				if s, e := m.window(k); ts < s || ts >= e {
					t.Fatalf("hopping %v: window [%d, %d) does not hold %d", hopping, s, e, ts)
				}
			}
		}
		var closed, expired int
		for j := range keys {
			var sum int64
			for k := m.kBase; k < m.kBase+int64(m.nw); k++ {
				c, cl, ex := m.state(j, k)
				sum += c
				if ex && !cl {
					t.Fatalf("window %d of key %d expired before it closed", k, j)
				}
				if c > 0 && cl {
					closed++
				}
				if c > 0 && ex {
					expired++
				}
			}
			if want := expectedCount(j, n, keys) * m.perEvent(); sum != want {
				t.Fatalf("hopping %v: key %d's windows sum to %d, want %d", hopping, j, sum, want)
			}
		}
		if created, _, _ := m.totals(); expired == 0 || closed <= expired || expired >= created {
			t.Errorf("hopping %v: %d windows, %d closed, %d expired: want most expired, some open", hopping, created, closed, expired)
		}
	}
	for _, start := range []int64{-90_000, 0, 1_700_000_040_000} {
		k, s, err := windowKey(window.Key([]byte("k000000000000042"), start))
		if err != nil || k != "k000000000000042" || s != start {
			t.Errorf("windowKey(window.Key(.., %d)) = %q, %d, %v", start, k, s, err)
		}
	}
}
