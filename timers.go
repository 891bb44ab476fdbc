package mephisto

import (
	"context"
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/timer"
)

// TimerOption configures a timer.
type TimerOption func(*timerDef)

// OnLeader makes a timer run on one node of the cluster only: the leader,
// the node active for partition 0 of the app's topics in the current
// assignment. Leadership follows the assignment, so when the leader dies the
// timer moves with the failover.
func OnLeader() TimerOption { return func(t *timerDef) { t.onLeader = true } }

// InZone sets the time zone of a crontab (default UTC).
func InZone(loc *time.Location) TimerOption { return func(t *timerDef) { t.loc = loc } }

type timerDef struct {
	name     string
	sched    timer.Schedule
	spec     string // crontab text, for errors
	fn       func(ctx context.Context) error
	onLeader bool
	loc      *time.Location
}

// WithClock sets the clock timers run on (default: the wall clock). Tests
// pass a *timer.Fake to move time by hand.
func WithClock(c timer.Clock) Option { return func(cfg *Config) { cfg.clock = c } }

// Timer declares a function run every interval on every worker (Faust's
// @app.timer), or only on the leader with OnLeader. Runs of one timer never
// overlap; an error is logged and the timer goes on.
func (a *App) Timer(name string, every time.Duration, fn func(ctx context.Context) error, opts ...TimerOption) {
	if every <= 0 {
		a.declErr(fmt.Errorf("timer %s: interval must be positive, got %v", name, every))
		return
	}
	a.addTimer(&timerDef{name: name, sched: timer.Every(every), fn: fn}, opts)
}

// Crontab declares a function run at the times a five-field crontab spec
// gives ("minute hour day-of-month month day-of-week"; Faust's
// @app.crontab), in UTC or the zone given with InZone.
func (a *App) Crontab(name, spec string, fn func(ctx context.Context) error, opts ...TimerOption) {
	a.addTimer(&timerDef{name: name, spec: spec, fn: fn}, opts)
}

func (a *App) addTimer(t *timerDef, opts []TimerOption) {
	for _, o := range opts {
		o(t)
	}
	if t.spec != "" {
		s, err := timer.ParseCron(t.spec, t.loc)
		if err != nil {
			a.declErr(fmt.Errorf("crontab %s: %w", t.name, err))
			return
		}
		t.sched = s
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, old := range a.timers {
		if old.name == t.name {
			a.errs = append(a.errs, fmt.Errorf("timer %s declared twice", t.name))
		}
	}
	a.timers = append(a.timers, t)
}
