package mephisto

import (
	"fmt"
	"maps"
	"slices"

	"github.com/mephistohq/mephisto/kafka"
)

// SpawnAgent declares an agent on a running node and starts it without a
// restart: the node creates the topic if needed, adds it to its consumer
// group subscription and rejoins the group, and the agent's partitions are
// assigned among the nodes that have spawned it (call SpawnAgent on every
// node that should share the work). On an app that is not running it is
// the same as NewAgent.
func SpawnAgent[K, V any](app *App, name string, topic *Topic[K, V], h Handler[K, V], opts ...AgentOption) (*Agent[K, V], error) {
	a := NewAgent(app, name, topic, h, opts...)
	rt := app.runtime()
	if rt == nil {
		return a, nil
	}
	if err := app.Validate(); err != nil {
		return nil, err
	}
	return a, rt.addAgent(a.def)
}

// addAgent makes a running node consume a new agent's topic.
func (rt *runtime) addAgent(d *agentDef) error {
	specs := []kafka.TopicSpec{{Name: d.topic.name, Partitions: rt.cfg.Partitions, ReplicationFactor: rt.cfg.ReplicationFactor}}
	if d.policy == DeadLetter {
		specs = append(specs, kafka.TopicSpec{Name: d.deadLetterTopic, Partitions: rt.cfg.Partitions, ReplicationFactor: rt.cfg.ReplicationFactor})
	}
	counts, err := kafka.EnsureTopics(rt.admin, specs)
	if err != nil {
		return fmt.Errorf("spawn agent %s: %w", d.name, err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for t, n := range counts {
		rt.counts[t] = n
	}
	if len(rt.tables) > 0 && counts[d.topic.name] != rt.counts[rt.tables[0].changelog] {
		return fmt.Errorf("spawn agent %s: topic %s has %d partitions but the tables have %d: not co-partitioned",
			d.name, d.topic.name, counts[d.topic.name], rt.counts[rt.tables[0].changelog])
	}
	// New copies: running grains keep reading the old ones until the
	// rejoin gives them new cores.
	fanout := maps.Clone(rt.fanout)
	for t, idx := range fanout {
		fanout[t] = slices.Clone(idx)
	}
	sources := slices.Clone(rt.sources)
	if _, ok := fanout[d.topic.name]; !ok {
		sources = append(sources, d.topic.name)
		slices.Sort(sources)
	}
	fanout[d.topic.name] = append(fanout[d.topic.name], len(rt.agents))
	rt.agents = append(slices.Clip(rt.agents), d)
	rt.fanout, rt.sources = fanout, sources
	rt.log.Info("agent spawned: rejoining the consumer group with its topic", "agent", d.name, "topic", d.topic.name)
	if rt.endSession != nil {
		rt.endSession()
	}
	return nil
}
