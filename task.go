package mephisto

import (
	"context"
	"fmt"
)

type taskDef struct {
	name string
	fn   func(ctx context.Context) error
}

// Task declares a background function that every worker runs while it runs
// (Faust's @app.task): a generator, a poller, a reporter. ctx is cancelled
// when the worker stops. Inside, topics can be sent to (Send waits for the
// acknowledgement); tables are the agents' alone. An error is logged and
// ends the task; it is not restarted.
func (a *App) Task(name string, fn func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tasks {
		if t.name == name {
			a.errs = append(a.errs, fmt.Errorf("task %s declared twice", name))
		}
	}
	a.tasks = append(a.tasks, taskDef{name: name, fn: fn})
}

// startTasks runs the declared tasks until stop is done.
func (rt *runtime) startTasks(stop context.Context) {
	rt.app.mu.Lock()
	tasks := append([]taskDef(nil), rt.app.tasks...)
	rt.app.mu.Unlock()
	for _, t := range tasks {
		rt.tasks.Add(1)
		go func() {
			defer rt.tasks.Done()
			if err := t.fn(stop); err != nil && stop.Err() == nil {
				rt.log.Error("task failed", "task", t.name, "err", err)
			}
		}()
	}
}
