package node

import "context"

// startTasks runs the declared tasks until stop is done.
func (rt *Node) startTasks(stop context.Context) {
	for _, t := range rt.spec.Tasks {
		rt.tasks.Add(1)
		go func() {
			defer rt.tasks.Done()
			if err := t.Run(stop); err != nil && stop.Err() == nil {
				rt.log.Error("task failed", "task", t.Name, "err", err)
			}
		}()
	}
}
