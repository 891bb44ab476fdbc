package node

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state/shard"
)

// spawnGrain starts the grain of partition p under the supervisor. Its
// commits mark each source partition's next offset with mark and then call
// commit, which commits the marks to the group; under exactly-once its
// transactions commit the offsets instead, naming group's membership.
func (rt *Node) spawnGrain(p int32, mark func(topic string, p int32, next int64), commit func(), group *sarama.ConsumerGroupMetadata) error {
	rt.mu.Lock()
	agents := rt.agents // replaced, never modified, when agents are spawned
	rt.mu.Unlock()
	gs := &grainState{}
	rt.mu.Lock()
	rt.grains[p] = gs
	rt.mu.Unlock()
	readers := make([]shard.Reader, len(rt.tables))
	scanners := make([]partition.Scanner, len(rt.tables))
	for i, d := range rt.tables {
		id := rt.ids[i]
		readers[i] = func(key []byte) ([]byte, bool, error) { return rt.store.Get(id, p, key) }
		if d.Window != nil {
			scanners[i] = func(fn func(key, value []byte) bool) error { return rt.store.Scan(id, p, fn) }
		}
	}
	m := partition.New(partition.Config{
		Partition: p, Agents: agents, Tables: rt.tables, Readers: readers, Scanners: scanners,
		CacheKeys: rt.cfg.TableCacheKeys, Route: rt.route,
		MaxRecordBytes: rt.net.ClientConfig(rt.cfg.NodeID).Producer.MaxMessageBytes,
		MaxAttempts:    rt.cfg.MaxAttempts, CommitInterval: rt.cfg.CommitInterval,
		Context: rt.ctx, Log: rt.log.With("partition", p), AppNow: rt.appNow(),
		Parallel: actors.Parallel, Observer: rt.observer(agents),
	})
	io := &partitionIO{rt: rt, p: p, log: rt.log.With("partition", p), topics: m.Topics(),
		mark: mark, commit: commit, tracker: kafka.NewTracker(), group: group}
	props := actors.NewGrainProps(actors.GrainConfig{
		Machine:        m,
		IO:             io,
		CommitInterval: rt.cfg.CommitInterval,
		Log:            rt.log.With("partition", p),
		OnLoaded: func(bool) {
			rt.mu.Lock()
			gs.loaded, gs.failing = true, nil
			rt.mu.Unlock()
		},
		OnFailed: func(err error) {
			rt.mu.Lock()
			gs.failing = err
			rt.mu.Unlock()
		},
		OnStopped: func(err error) {
			rt.mu.Lock()
			gs.stopped = err
			rt.mu.Unlock()
			rt.metrics.stopped.Inc()
		},
	})
	pid, err := rt.sup.Spawn(fmt.Sprintf("partition/%s/%d", rt.spec.App, p), props)
	if err != nil {
		return err
	}
	rt.mu.Lock()
	gs.pid = pid
	rt.mu.Unlock()
	return nil
}

// appNow is the app's clock, which batch windows are measured on.
func (rt *Node) appNow() func() time.Time {
	if rt.cfg.Clock != nil {
		return rt.cfg.Clock.Now
	}
	return time.Now
}

// observer feeds a partition's counts to the node's metrics; label
// lookups are resolved once per grain, since one per event costs.
func (rt *Node) observer(agents []*partition.Agent) partition.Observer {
	m := rt.metrics
	latency := make([]interface{ Observe(float64) }, len(agents))
	for i, a := range agents {
		latency[i] = m.latency.WithLabelValues(a.Name)
	}
	type counters struct{ writes, hits, misses interface{ Add(float64) } }
	tables := make([]counters, len(rt.tables))
	for i, d := range rt.tables {
		tables[i] = counters{m.tableWrites.WithLabelValues(d.Name), m.cacheHits.WithLabelValues(d.Name), m.cacheMisses.WithLabelValues(d.Name)}
	}
	late := make([]interface{ Inc() }, len(rt.tables))
	for i, d := range rt.tables {
		late[i] = m.windowLate.WithLabelValues(d.Name)
	}
	add := func(c interface{ Add(float64) }, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	return partition.Observer{
		Handled:    func(agent int, took time.Duration) { latency[agent].Observe(took.Seconds()) },
		DeadLetter: func(agent int) { m.deadLetters.WithLabelValues(agents[agent].Name).Inc() },
		Skipped:    func(agent int) { m.skipped.WithLabelValues(agents[agent].Name).Inc() },
		Tables: func(i, writes, hits, misses int) {
			add(tables[i].writes, writes)
			add(tables[i].hits, hits)
			add(tables[i].misses, misses)
		},
		Committed: func(took time.Duration) { m.commits.Inc(); m.commitSeconds.Observe(took.Seconds()) },
		Late:      func(i int) { late[i].Inc() },
	}
}
