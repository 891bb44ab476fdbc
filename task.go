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
