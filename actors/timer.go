package actors

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type timerFire struct{ at time.Time }

// StartTimer spawns, under sup, the actor of the timer name: each call of
// the returned fire runs run(at) in it, so that runs are sequential and a
// panic is logged to log and contained.
func StartTimer(system *actor.ActorSystem, sup *Supervisor, name string, log *slog.Logger, run func(at time.Time)) (fire func(at time.Time), err error) {
	props := actor.PropsFromFunc(func(c actor.Context) {
		f, ok := c.Message().(timerFire)
		if !ok {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				log.Error("timer panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		run(f.at)
	})
	pid, err := sup.Spawn("timer/"+name, props)
	if err != nil {
		return nil, err
	}
	return func(at time.Time) { system.Root.Send(pid, timerFire{at: at}) }, nil
}
