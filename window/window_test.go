package window

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAssign(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		t    int64
		want []Range
	}{
		{Spec{Kind: Tumbling, Size: time.Minute}, 0, []Range{{0, 60000}}},
		{Spec{Kind: Tumbling, Size: time.Minute}, 59999, []Range{{0, 60000}}},
		{Spec{Kind: Tumbling, Size: time.Minute}, 60000, []Range{{60000, 120000}}},
		{Spec{Kind: Tumbling, Size: time.Minute}, -1, []Range{{-60000, 0}}},
		{Spec{Kind: Hopping, Size: 4 * time.Second, Step: time.Second}, 5500,
			[]Range{{2000, 6000}, {3000, 7000}, {4000, 8000}, {5000, 9000}}},
		{Spec{Kind: Hopping, Size: 4 * time.Second, Step: time.Second}, 5000,
			[]Range{{2000, 6000}, {3000, 7000}, {4000, 8000}, {5000, 9000}}},
		{Spec{Kind: Hopping, Size: 4 * time.Second, Step: time.Second}, 4999,
			[]Range{{1000, 5000}, {2000, 6000}, {3000, 7000}, {4000, 8000}}},
		{Spec{Kind: Hopping, Size: 10 * time.Second, Step: 3 * time.Second}, 10,
			[]Range{{-9000, 1000}, {-6000, 4000}, {-3000, 7000}, {0, 10000}}},
		{Spec{Kind: Hopping, Size: 3 * time.Second, Step: 3 * time.Second}, 3001, []Range{{3000, 6000}}},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.spec.Kind, tc.t), func(t *testing.T) {
			got := tc.spec.Assign(tc.t)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Assign(%d) = %v, want %v", tc.t, got, tc.want)
			}
			for _, r := range got {
				if !r.Contains(tc.t) {
					t.Errorf("%v does not contain %d", r, tc.t)
				}
			}
			if cur := tc.spec.Current(tc.t); cur != tc.want[len(tc.want)-1] {
				t.Errorf("Current(%d) = %v, want %v", tc.t, cur, tc.want[len(tc.want)-1])
			}
		})
	}
}

// Every event belongs to size/step hopping windows, each holding it.
func TestHoppingCoversEveryInstant(t *testing.T) {
	s := Spec{Kind: Hopping, Size: 60 * time.Millisecond, Step: 15 * time.Millisecond}
	for ts := int64(-200); ts < 200; ts++ {
		ws := s.Assign(ts)
		if len(ws) != 4 {
			t.Fatalf("Assign(%d) = %v: want 4 windows", ts, ws)
		}
		for i, r := range ws {
			if !r.Contains(ts) || r.End-r.Start != 60 || r.Start%15 != 0 || i > 0 && r.Start != ws[i-1].Start+15 {
				t.Fatalf("Assign(%d) = %v", ts, ws)
			}
		}
	}
}

func TestCloseAndExpire(t *testing.T) {
	s := Spec{Kind: Tumbling, Size: time.Minute, Grace: 10 * time.Second, Expires: time.Hour}
	r := Range{0, 60000}
	if got := s.CloseAt(r); got != 70000 {
		t.Errorf("CloseAt = %d, want 70000", got)
	}
	if got := s.ExpireAt(r); got != 60000+3600000 {
		t.Errorf("ExpireAt = %d", got)
	}
	if s.Late(r, 69999) || !s.Late(r, 70000) {
		t.Errorf("late: the window closes at 70000 exactly")
	}
	noExpiry := Spec{Kind: Tumbling, Size: time.Minute, Grace: 10 * time.Second}
	if got := noExpiry.ExpireAt(r); got != 70000 {
		t.Errorf("ExpireAt without Expires = %d, want the close (70000)", got)
	}
}

func TestSessionMerge(t *testing.T) {
	s := Spec{Kind: Session, Gap: 10 * time.Second}
	a, b := Range{0, 1}, Range{30000, 30001} // two sessions of one event each, 30 s apart
	for _, tc := range []struct {
		t          int64
		want       Range
		wantJoined []Range
	}{
		{5000, Range{0, 5001}, []Range{a}},                     // extends a
		{10000, Range{0, 10001}, []Range{a}},                   // exactly the gap after a's last event
		{10001, Range{10001, 10002}, nil},                      // a new session between them
		{20000, Range{20000, 30001}, []Range{b}},               // exactly the gap before b
		{15000, Range{15000, 15001}, nil},                      // 15 s from both
		{-10000, Range{-10000, 1}, []Range{a}},                 // before a
		{30000, Range{30000, 30001}, []Range{b}},               // inside b
		{45000, Range{45000, 45001}, nil},                      // after b's gap
		{40000, Range{30000, 40001}, []Range{b}},               // at b's gap
		{9999, Range{0, 10000}, []Range{a}},                    // not yet b
		{20001, Range{20001, 30001}, []Range{b}},               // not a
		{-10001, Range{-10001, -10000}, nil},                   // beyond a's gap
		{25000, Range{25000, 30001}, []Range{b}},               // close to b only
		{5001, Range{0, 5002}, []Range{a}},                     // close to a only
		{30000 - 10000, Range{20000, 30001}, []Range{b}},       // b's start minus the gap
		{0 + 10000 + 1, Range{10001, 10002}, nil},              // a's end plus the gap plus 1
		{30000 + 10000 + 1, Range{40001, 40002}, []Range(nil)}, // b's end plus the gap plus 1
	} {
		got, joined := s.Merge([]Range{a, b}, tc.t)
		if got != tc.want || fmt.Sprint(joined) != fmt.Sprint(tc.wantJoined) {
			t.Errorf("Merge(%d) = %v, %v; want %v, %v", tc.t, got, joined, tc.want, tc.wantJoined)
		}
	}
	// An event that bridges two sessions merges them.
	c, d := Range{0, 5001}, Range{20000, 25001}
	got, joined := s.Merge([]Range{c, d}, 12000)
	if got != (Range{0, 25001}) || len(joined) != 2 {
		t.Errorf("bridging event: %v, %v; want [0, 25001) from both", got, joined)
	}
}

func TestKeys(t *testing.T) {
	keys := [][]byte{nil, []byte("a"), []byte("ab"), []byte("b"), bytes.Repeat([]byte{0xff}, 300)}
	starts := []int64{-60000, -1, 0, 1, 60000, 1 << 40}
	for _, k := range keys {
		var prev []byte
		for _, s := range starts {
			wk := Key(k, s)
			if !bytes.HasPrefix(wk, Prefix(k)) {
				t.Errorf("Key(%q, %d) does not start with Prefix", k, s)
			}
			if prev != nil && bytes.Compare(prev, wk) >= 0 {
				t.Errorf("Key(%q, %d) sorts before the previous start", k, s)
			}
			prev = wk
			gk, gs, err := Split(wk)
			if err != nil || !bytes.Equal(gk, k) || gs != s {
				t.Errorf("Split(Key(%q, %d)) = %q, %d, %v", k, s, gk, gs, err)
			}
		}
	}
	// No key's prefix is the prefix of another's windows.
	if bytes.HasPrefix(Key([]byte("ab"), 0), Prefix([]byte("a"))) {
		t.Error(`"a"'s prefix matches "ab"'s windows`)
	}
	if _, _, err := Split([]byte("short")); !errors.Is(err, ErrKey) {
		t.Errorf("Split of a plain key: %v, want ErrKey", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		ok   bool
	}{
		{Spec{Kind: Tumbling, Size: time.Minute}, true},
		{Spec{Kind: Tumbling}, false},
		{Spec{Kind: Tumbling, Size: time.Microsecond}, false},
		{Spec{Kind: Hopping, Size: time.Minute, Step: 15 * time.Second}, true},
		{Spec{Kind: Hopping, Size: time.Minute, Step: 2 * time.Minute}, false},
		{Spec{Kind: Hopping, Size: time.Minute}, false},
		{Spec{Kind: Session, Gap: time.Minute}, true},
		{Spec{Kind: Session}, false},
		{Spec{Kind: Tumbling, Size: time.Minute, Grace: -time.Second}, false},
		{Spec{Kind: Tumbling, Size: time.Minute, Grace: time.Minute, Expires: time.Second}, false},
		{Spec{}, false},
	} {
		err := tc.spec.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.spec, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrSpec) {
			t.Errorf("%+v: error %v does not wrap ErrSpec", tc.spec, err)
		}
	}
}
