package node

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/mephistohq/mephisto/cluster"
	"github.com/mephistohq/mephisto/kafka"
)

// advertised returns addr with its host replaced by --advertise, if set, so
// that other nodes can dial it.
func (rt *Node) advertised(addr string) string {
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if rt.cfg.Advertise != "" {
		host = rt.cfg.Advertise
	} else if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// startGossip joins memberlist when --gossip is set. Seeds that are not up
// yet are retried in the background: nodes of a cluster may start in any
// order.
func (rt *Node) startGossip(stop context.Context) error {
	if rt.cfg.Gossip == "" {
		return nil
	}
	cfg := cluster.MembershipConfig{
		Meta:     cluster.NodeMeta{ID: rt.cfg.NodeID, Web: rt.webAddr(), Actor: rt.actorAddr()},
		Bind:     rt.cfg.Gossip,
		Key:      []byte(rt.cfg.GossipKey),
		Log:      rt.log,
		OnChange: rt.onMembership,
		OnDropped: func(r cluster.DropReason) {
			rt.metrics.gossipDropped.WithLabelValues(string(r)).Inc()
		},
	}
	if rt.cfg.Advertise != "" {
		cfg.Advertise = rt.advertised(rt.cfg.Gossip)
	}
	m, err := cluster.Join(cfg)
	if err != nil {
		return err
	}
	rt.members = m
	self := m.Addr()
	var seeds []string
	for _, s := range rt.cfg.Join {
		if s != self && s != rt.cfg.Gossip {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		rt.log.Info("gossip started", "gossip", self)
		return nil
	}
	// Join, and keep joining while the assignment names nodes gossip does
	// not see alive: memberlist never contacts a node that left again, so
	// a seed that restarted would otherwise stay apart.
	go func() {
		joined := false
		for attempt := 1; stop.Err() == nil; attempt++ {
			wait := kafkaBackoff(attempt)
			if !joined || rt.gossipMissesPlanNodes() {
				if err := m.JoinSeeds(seeds); err == nil {
					if !joined {
						rt.log.Info("gossip joined", "gossip", self, "seeds", seeds)
					}
					joined, attempt = true, 0
				} else if attempt == 1 || attempt%10 == 0 {
					rt.log.Warn("cannot reach gossip seeds yet; retrying", "seeds", seeds, "err", err)
				}
			}
			if joined {
				wait = 2 * time.Second
			}
			select {
			case <-stop.Done():
			case <-time.After(wait):
			}
		}
	}()
	return nil
}

// gossipMissesPlanNodes reports whether the current assignment has nodes
// that gossip does not see alive.
func (rt *Node) gossipMissesPlanNodes() bool {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	return plan != nil && plan.Unseen(rt.members.Peers())
}

func (rt *Node) webAddr() string {
	if rt.web == nil {
		return ""
	}
	return rt.advertised(rt.web.Addr())
}

// onMembership reacts to gossip. When a node dies, one survivor (see
// cluster.Evicts) removes the dead node's static member from the consumer
// group, which starts the rebalance now instead of after the session
// timeout (DESIGN decision 9, issue 3).
func (rt *Node) onMembership(ev cluster.Event) {
	switch ev.Kind {
	case cluster.NodeDead:
		rt.remote.MarkDead(ev.Node.Actor)
	case cluster.NodeJoined, cluster.NodeUpdated:
		rt.remote.MarkAlive(ev.Node.Actor)
		return
	default:
		return
	}
	go func() {
		if !cluster.Evicts(rt.cfg.NodeID, ev.Node.ID, rt.members.Peers()) {
			return // a lower-id survivor evicts it
		}
		start := time.Now()
		if _, err := rt.admin.RemoveMemberFromConsumerGroup(rt.spec.App, []string{ev.Node.ID}); err != nil {
			rt.log.Warn("could not remove the dead node from the consumer group; Kafka will after the session timeout",
				"dead_node", ev.Node.ID, "err", err, "session_timeout", rt.cfg.SessionTimeout)
			return
		}
		rt.metrics.evictions.Inc()
		rt.log.Warn("removed a dead node from the consumer group: its partitions move now",
			"dead_node", ev.Node.ID, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// localMember is what this node reports to the group leader before each
// join: its previous actives and standbys and how caught up its shards are.
func (rt *Node) localMember() cluster.Member {
	rt.mu.Lock()
	m := cluster.Member{
		NodeID:   rt.cfg.NodeID,
		Standbys: rt.cfg.Standbys,
		Active:   slices.Clone(rt.lastActive),
		Web:      rt.webAddr(),
		Actor:    rt.actorAddr(),
		Offsets:  map[int32]int64{},
	}
	for p := range rt.standbys {
		m.Standby = append(m.Standby, p)
	}
	rt.mu.Unlock()
	slices.Sort(m.Standby)
	if len(rt.tables) > 0 {
		n, err := rt.partitionCount(rt.tables[0].Changelog)
		if err == nil {
			m.TablePartitions = n
			for p := int32(0); p < n; p++ {
				var sum int64
				var any bool
				for _, d := range rt.tables {
					if off, ok, err := rt.store.ChangelogOffset(rt.ids[d.Index], p); err == nil && ok {
						sum += off + 1
						any = true
					}
				}
				if any {
					m.Offsets[p] = sum
				}
			}
		}
	}
	return m
}

// onPlan records the plan this node received (before Assigned).
func (rt *Node) onPlan(p *cluster.Plan) {
	rt.mu.Lock()
	rt.plan = p
	rt.mu.Unlock()
	rt.metrics.generation.Set(float64(p.Generation))
}

// placeStandbys runs in Assigned, before any grain starts: stop the
// standbys of partitions that became active here (their shards are
// promoted: the grain replays only the tail), start the standbys the plan
// gives this node, and delete shards of partitions that are neither.
func (rt *Node) placeStandbys(active map[int32]bool) {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	if plan == nil || len(rt.tables) == 0 {
		return
	}
	n, err := rt.partitionCount(rt.tables[0].Changelog)
	if err != nil {
		n = 0 // keep every shard
	}
	rt.mu.Lock()
	running := map[int32]bool{}
	for p := range rt.standbys {
		running[p] = true
	}
	pl := cluster.PlaceStandbys(plan, rt.cfg.NodeID, active, running, n)
	stopping := make([]*standby, 0, len(pl.Stop))
	for _, p := range pl.Stop {
		stopping = append(stopping, rt.standbys[p])
		delete(rt.standbys, p)
	}
	for _, p := range pl.Promoted {
		rt.promoted[p] = true
	}
	rt.mu.Unlock()
	for _, s := range stopping {
		s.stop()
	}
	for _, p := range pl.Start {
		s := rt.startStandby(p)
		rt.mu.Lock()
		rt.standbys[p] = s
		rt.mu.Unlock()
	}
	for _, p := range pl.Drop {
		for _, d := range rt.partitioned() { // a global table's copy stays
			if _, held, err := rt.store.ChangelogOffset(rt.ids[d.Index], p); err == nil && held {
				rt.log.Info("partition moved away and is no standby here: deleting its shard", "partition", p, "table", d.Name)
				if err := rt.store.WipeShard(rt.ids[d.Index], p); err != nil {
					rt.log.Warn("delete shard", "partition", p, "table", d.Name, "err", err)
				}
			}
		}
	}
}

func (rt *Node) stopStandbys() {
	rt.mu.Lock()
	all := rt.standbys
	rt.standbys = map[int32]*standby{}
	rt.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
}

// clusterView is GET /cluster's answer: the cluster's view, and how far
// behind this node's copies of the global tables are.
type clusterView struct {
	cluster.View
	GlobalTables map[string]GlobalCopy `json:"global_tables,omitempty"`
}

// Cluster returns this node's view of the cluster (a cluster.View, with
// the global tables' copies).
func (rt *Node) Cluster() any {
	return clusterView{View: rt.clusterView(), GlobalTables: rt.globalCopies()}
}

func (rt *Node) clusterView() cluster.View {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	if plan == nil {
		return cluster.NewView(nil, rt.spec.App, nil, nil, "", 0)
	}
	var alive func(string) bool // without gossip, a node in the group's plan counts as alive
	if rt.members != nil {
		seen := map[string]bool{}
		for _, m := range rt.members.Peers() {
			seen[m.ID] = m.Alive
		}
		seen[rt.cfg.NodeID] = true
		alive = func(id string) bool { return seen[id] }
	}
	lags := rt.groupLag()
	var topic string
	var n int32
	if sources := rt.sourceTopics(); len(plan.Partitions) == 0 && len(sources) > 0 {
		topic = sources[0]
		n, _ = rt.partitionCount(topic)
	}
	return cluster.NewView(plan, rt.spec.App, alive, lags, topic, n)
}

// groupLag returns, per partition index, the records of the agents' topics
// beyond the group's committed offsets.
func (rt *Node) groupLag() map[int32]int64 {
	topics := map[string]int32{}
	for _, t := range rt.sourceTopics() {
		if n, err := rt.partitionCount(t); err == nil {
			topics[t] = n
		}
	}
	return kafka.GroupLag(rt.admin, rt.client, rt.spec.App, topics)
}

// sourceTopics returns the topics the node subscribes to (SpawnAgent may
// replace the list).
func (rt *Node) sourceTopics() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.sources
}
