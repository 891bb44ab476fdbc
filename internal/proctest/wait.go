package proctest

import (
	"context"
	"fmt"
	"time"
)

// PollEvery is how often WaitForT checks its condition.
const PollEvery = 25 * time.Millisecond

// Poll checks cond every interval until it holds and returns how long that
// took. It gives up with an error naming what and cond's last reason once
// timeout has passed, with ctx's error when ctx ends, and with cond's
// error as soon as cond returns one (a process it needs has exited, say).
func Poll(ctx context.Context, every, timeout time.Duration, what string, cond func() (ok bool, why string, err error)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		ok, why, err := cond()
		switch {
		case err != nil:
			return time.Since(start), fmt.Errorf("waiting for %s: %w", what, err)
		case ok:
			return time.Since(start), nil
		case time.Now().After(deadline):
			return time.Since(start), fmt.Errorf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitForT polls cond every PollEvery until it holds and returns how long
// that took; it fails the test with cond's last reason once timeout has
// passed. cond may fail the test itself (t.Fatalf) to stop waiting.
func WaitForT(t TB, timeout time.Duration, what string, cond func() (ok bool, why string)) time.Duration {
	t.Helper()
	d, err := Poll(context.Background(), PollEvery, timeout, what, func() (bool, string, error) {
		ok, why := cond()
		return ok, why, nil
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s: after %v", what, d.Round(time.Millisecond))
	return d
}
