package node

import (
	"context"
	"time"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/timer"
)

// isLeader reports whether this node is the cluster's leader: active for
// partition 0 of the app's topics in the current plan (a lone node with no
// plan yet is not; one without agents' topics always is).
func (rt *Node) isLeader() bool {
	sources := rt.sourceTopics()
	if len(sources) == 0 {
		return true
	}
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	if plan == nil {
		return false
	}
	owner, ok := plan.Owner(sources[0], 0)
	return ok && owner.NodeID == rt.cfg.NodeID
}

// startTimers runs each timer's schedule on the clock and its function in
// an actor of its own (actors.StartTimer), so that runs are sequential and
// a panic is contained.
func (rt *Node) startTimers(stop context.Context) error {
	clock := rt.cfg.Clock
	if clock == nil {
		clock = timer.Real{}
	}
	for _, t := range rt.spec.Timers {
		log := rt.log.With("timer", t.Name)
		fire, err := actors.StartTimer(rt.system, rt.sup, t.Name, log, func(at time.Time) {
			if t.OnLeader && !rt.isLeader() {
				return
			}
			rt.metrics.timerRuns.WithLabelValues(t.Name).Inc()
			if err := t.Run(stop); err != nil && stop.Err() == nil {
				log.Error("timer failed", "at", at, "err", err)
			}
		})
		if err != nil {
			return err
		}
		rt.tasks.Add(1)
		go func() {
			defer rt.tasks.Done()
			timer.Run(stop, clock, t.Schedule, fire)
		}()
	}
	return nil
}
