package mephisto

// SpawnAgent declares an agent on a running node and starts it without a
// restart: the node creates the topic if needed, adds it to its consumer
// group subscription and rejoins the group, and the agent's partitions are
// assigned among the nodes that have spawned it (call SpawnAgent on every
// node that should share the work). On an app that is not running it is
// the same as NewAgent.
func SpawnAgent[K, V any](app *App, name string, topic *Topic[K, V], h Handler[K, V], opts ...AgentOption) (*Agent[K, V], error) {
	a := NewAgent(app, name, topic, h, opts...)
	n := app.running()
	if n == nil {
		return a, nil
	}
	if err := app.Validate(); err != nil {
		return nil, err
	}
	return a, n.AddAgent(a.def.spec)
}
