package timer

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCronNext(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tz database on this machine: %v", err)
	}
	base := time.Date(2026, 3, 7, 10, 17, 30, 0, time.UTC) // a Saturday
	cases := []struct {
		spec string
		loc  *time.Location
		want time.Time
	}{
		{"* * * * *", nil, time.Date(2026, 3, 7, 10, 18, 0, 0, time.UTC)},
		{"*/15 * * * *", nil, time.Date(2026, 3, 7, 10, 30, 0, 0, time.UTC)},
		{"0 9 * * 1-5", nil, time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)}, // next weekday 9:00 is Monday
		{"30 2 1 * *", nil, time.Date(2026, 4, 1, 2, 30, 0, 0, time.UTC)},
		{"0 0 * * 0", nil, time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)},   // Sunday
		{"0 0 * * 7", nil, time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)},   // 7 is Sunday too
		{"0 0 13 * 5", nil, time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC)}, // Friday or the 13th (both: either matches)
		{"0 8 * * *", ny, time.Date(2026, 3, 7, 8, 0, 0, 0, ny)},          // 08:00 New York is 13:00 UTC that day
		{"5,10 4-5 * 3 *", nil, time.Date(2026, 3, 8, 4, 5, 0, 0, time.UTC)},
		{"0 0 30 2 *", nil, time.Time{}}, // never
	}
	// Across the DST change (2026-03-08 in New York): still 08:00 local.
	dst, _ := ParseCron("0 8 * * *", ny)
	if got, want := dst.Next(time.Date(2026, 3, 7, 14, 0, 0, 0, time.UTC)), time.Date(2026, 3, 8, 8, 0, 0, 0, ny); !got.Equal(want) || got.UTC().Hour() != 12 {
		t.Errorf("across DST: %v, want %v (12:00 UTC)", got, want)
	}
	for _, c := range cases {
		s, err := ParseCron(c.spec, c.loc)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		if got := s.Next(base); !got.Equal(c.want) {
			t.Errorf("%q in %v: Next = %v, want %v", c.spec, c.loc, got, c.want)
		}
	}
}

func TestCronRejectsBadSpecs(t *testing.T) {
	for _, spec := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"} {
		if _, err := ParseCron(spec, nil); !errors.Is(err, ErrBadSpec) {
			t.Errorf("%q: %v", spec, err)
		}
	}
}

// TestRunWithFakeClock: ticks come exactly when the fake clock says,
// without sleeping.
func TestRunWithFakeClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := NewFake(start)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan time.Time, 10)
	go Run(ctx, clock, Every(time.Minute), func(at time.Time) { ticks <- at })
	for i := 1; i <= 3; i++ {
		waitWaiters(t, clock)
		select {
		case at := <-ticks:
			t.Fatalf("tick %v before the clock moved", at)
		default:
		}
		clock.Advance(time.Minute)
		if at := <-ticks; !at.Equal(start.Add(time.Duration(i) * time.Minute)) {
			t.Fatalf("tick %d at %v", i, at)
		}
	}
}

func waitWaiters(t *testing.T, c *Fake) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("timer never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}
