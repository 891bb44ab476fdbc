package window

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// slideModel is what a key's sliding windows must hold after events:
// a window ending at each event, and one starting just after each event
// that later events fall in, each counting the events it holds.
func slideModel(d int64, events []int64) map[int64][2]int64 {
	want := map[int64][2]int64{} // start → count, max
	add := func(start int64) {
		if _, ok := want[start]; ok {
			return
		}
		var n, mx int64
		for _, e := range events {
			if start <= e && e <= start+d {
				n++
				mx = max(mx, e)
			}
		}
		if n > 0 {
			want[start] = [2]int64{n, mx}
		}
	}
	for _, e := range events {
		add(e - d)
		add(e + 1)
	}
	return want
}

// Slide, applied event by event with a count, makes exactly the model's
// windows, in order or not.
func TestSlideMatchesModel(t *testing.T) {
	for _, d := range []int64{1, 3, 10} {
		s := Spec{Kind: Sliding, Size: time.Duration(d) * time.Millisecond}
		for seed := range 300 {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(d)))
			n := 1 + rng.IntN(12)
			events := make([]int64, n)
			for i := range events {
				events[i] = 100 + rng.Int64N(4*d+3)
			}
			if seed%3 == 0 {
				slices.Sort(events) // in order
			}
			got := map[int64][2]int64{} // start → count, max
			for i, e := range events {
				var existing []Slot
				var vals []int64
				for start, v := range got {
					if start >= e-2*d && start <= e+1 {
						existing = append(existing, Slot{Range: s.Of(start), Max: v[1]})
					}
				}
				slices.SortFunc(existing, func(a, b Slot) int { return int(a.Start - b.Start) })
				for _, w := range existing {
					vals = append(vals, got[w.Start][0])
				}
				plan := s.Slide(existing, e, -1<<62)
				for _, u := range plan.Update {
					w := existing[u]
					got[w.Start] = [2]int64{got[w.Start][0] + 1, max(got[w.Start][1], e)}
				}
				for _, nw := range plan.Create {
					if _, dup := got[nw.Range.Start]; dup {
						t.Fatalf("d=%d events %v: event %d makes window %v twice", d, events[:i+1], e, nw.Range)
					}
					var v int64
					if nw.From >= 0 {
						v = vals[nw.From]
					}
					if nw.Apply {
						v++
					}
					got[nw.Range.Start] = [2]int64{v, nw.Max}
				}
			}
			if want := slideModel(d, events); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("d=%d events %v:\n got %v\nwant %v", d, events, got, want)
			}
		}
	}
}

// Closed windows are neither updated nor made.
func TestSlideSkipsClosed(t *testing.T) {
	s := Spec{Kind: Sliding, Size: 10 * time.Millisecond}
	existing := []Slot{{Range: s.Of(90), Max: 100}} // [90,100]
	plan := s.Slide(existing, 95, 101)              // [90,100] closed at 101; [85,95] too
	if len(plan.Update) != 0 {
		t.Fatalf("updated a closed window: %+v", plan)
	}
	for _, nw := range plan.Create {
		if s.Late(nw.Range, 101) {
			t.Fatalf("made a closed window: %+v", plan)
		}
	}
	if got := s.Latest(95); got != (Range{95, 106}) {
		t.Fatalf("Latest(95) = %v", got)
	}
}

func TestStamp(t *testing.T) {
	raw := Stamp(-5, []byte("v"))
	ts, v, err := Unstamp(raw)
	if err != nil || ts != -5 || string(v) != "v" {
		t.Fatalf("Unstamp = %d %q %v", ts, v, err)
	}
	if _, _, err := Unstamp([]byte("short")); err == nil {
		t.Fatal("Unstamp of 5 bytes: no error")
	}
}

func TestSpecString(t *testing.T) {
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Kind: Tumbling, Size: time.Minute, Grace: 10 * time.Second, Expires: time.Hour}, "tumbling 1m0s grace 10s expires 1h0m0s"},
		{Spec{Kind: Hopping, Size: time.Minute, Step: 15 * time.Second}, "hopping 1m0s every 15s grace 0s expires 0s"},
		{Spec{Kind: Session, Gap: time.Minute, Grace: time.Second}, "session gap 1m0s grace 1s expires 1s"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	s := Spec{Kind: Session, Gap: 5 * time.Millisecond, Grace: 2 * time.Millisecond, Expires: 10 * time.Millisecond}
	if got := s.CloseAt(Range{0, 3}); got != 10 {
		t.Errorf("session CloseAt = %d, want end 3 + gap 5 + grace 2", got)
	}
	if got := s.ExpireAt(Range{0, 3}); got != 18 {
		t.Errorf("session ExpireAt = %d, want end 3 + gap 5 + expires 10", got)
	}
}
