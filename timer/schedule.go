package timer

import (
	"context"
	"time"
)

// Schedule says when a timer fires next.
type Schedule interface {
	// Next returns the first firing strictly after t (zero: never).
	Next(t time.Time) time.Time
}

// Every fires every d, counted from the start.
type Every time.Duration

// Next returns t + d.
func (e Every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// Run calls fire at every time sched gives, by clock, until ctx is done.
// fire must not block for long: it only hands the tick to whoever runs the
// timer's function (an actor).
func Run(ctx context.Context, clock Clock, sched Schedule, fire func(at time.Time)) {
	now := clock.Now()
	for {
		next := sched.Next(now)
		if next.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-clock.After(next.Sub(now)):
		}
		if ctx.Err() != nil {
			return
		}
		fire(next)
		now = next
	}
}
