package node

import (
	"fmt"
	"maps"
	"slices"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
)

// AddAgent makes a running node consume a new agent's topic.
func (rt *Node) AddAgent(d *partition.Agent) error {
	specs := []kafka.TopicSpec{{Name: d.Topic, Partitions: rt.cfg.Partitions, ReplicationFactor: rt.cfg.ReplicationFactor}}
	if d.Policy == partition.DeadLetter {
		specs = append(specs, kafka.TopicSpec{Name: d.DeadLetterTopic, Partitions: rt.cfg.Partitions, ReplicationFactor: rt.cfg.ReplicationFactor})
	}
	counts, err := kafka.EnsureTopics(rt.admin, specs)
	if err != nil {
		return fmt.Errorf("spawn agent %s: %w", d.Name, err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for t, n := range counts {
		rt.counts[t] = n
	}
	if len(rt.tables) > 0 && counts[d.Topic] != rt.counts[rt.tables[0].Changelog] {
		return fmt.Errorf("spawn agent %s: topic %s has %d partitions but the tables have %d: not co-partitioned",
			d.Name, d.Topic, counts[d.Topic], rt.counts[rt.tables[0].Changelog])
	}
	// New copies: running grains keep reading the old ones until the
	// rejoin gives them new cores.
	fanout := maps.Clone(rt.fanout)
	for t, idx := range fanout {
		fanout[t] = slices.Clone(idx)
	}
	sources := slices.Clone(rt.sources)
	if _, ok := fanout[d.Topic]; !ok {
		sources = append(sources, d.Topic)
		slices.Sort(sources)
	}
	fanout[d.Topic] = append(fanout[d.Topic], len(rt.agents))
	rt.agents = append(slices.Clip(rt.agents), d)
	rt.fanout, rt.sources = fanout, sources
	rt.log.Info("agent spawned: rejoining the consumer group with its topic", "agent", d.Name, "topic", d.Topic)
	if rt.member != nil {
		rt.member.Rejoin()
	}
	return nil
}
