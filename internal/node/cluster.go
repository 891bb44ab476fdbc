package node

import (
	"context"
	"net"
	"slices"
	"sort"
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
	if plan == nil {
		return false
	}
	alive := map[string]bool{}
	for _, p := range rt.members.Peers() {
		alive[p.ID] = p.Alive
	}
	for _, n := range plan.Nodes {
		if !alive[n.NodeID] {
			return true
		}
	}
	return false
}

func (rt *Node) webAddr() string {
	if rt.web == nil {
		return ""
	}
	return rt.advertised(rt.web.Addr())
}

// onMembership reacts to gossip. When a node dies, one survivor — the alive
// node with the lowest id, so exactly one acts — removes the dead node's
// static member from the consumer group, which starts the rebalance now
// instead of after the session timeout (DESIGN decision 9, issue 3).
func (rt *Node) onMembership(ev cluster.Event) {
	switch ev.Kind {
	case cluster.NodeDead:
		rt.markDead(ev.Node.Actor)
	case cluster.NodeJoined, cluster.NodeUpdated:
		rt.markAlive(ev.Node.Actor)
		return
	default:
		return
	}
	go func() {
		for _, m := range rt.members.Peers() {
			if m.Alive && m.ID != ev.Node.ID && m.ID < rt.cfg.NodeID {
				return // a lower-id survivor evicts it
			}
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

// onPlan records the plan this node received (before Setup).
func (rt *Node) onPlan(p *cluster.Plan) {
	rt.mu.Lock()
	rt.plan = p
	rt.mu.Unlock()
	rt.metrics.generation.Set(float64(p.Generation))
}

// placeStandbys runs in Setup, before any grain starts: stop the standbys
// of partitions that became active here (their shards are promoted: the
// grain replays only the tail), start the standbys the plan gives this
// node, and delete shards of partitions that are neither.
func (rt *Node) placeStandbys(active map[int32]bool) {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	if plan == nil || len(rt.tables) == 0 {
		return
	}
	mine := map[int32]bool{}
	for _, pp := range plan.Partitions {
		if slices.Contains(pp.Standbys, rt.cfg.NodeID) && !active[pp.Partition] {
			mine[pp.Partition] = true
		}
	}
	rt.mu.Lock()
	var stopping []*standby
	for p, s := range rt.standbys {
		if !mine[p] {
			stopping = append(stopping, s)
			delete(rt.standbys, p)
			if active[p] {
				rt.promoted[p] = true
			}
		}
	}
	rt.mu.Unlock()
	for _, s := range stopping {
		s.stop()
	}
	for p := range mine {
		rt.mu.Lock()
		running := rt.standbys[p] != nil
		rt.mu.Unlock()
		if !running {
			s := rt.startStandby(p)
			rt.mu.Lock()
			rt.standbys[p] = s
			rt.mu.Unlock()
		}
	}
	n, err := rt.partitionCount(rt.tables[0].Changelog)
	if err != nil {
		return
	}
	for p := int32(0); p < n; p++ {
		if active[p] || mine[p] {
			continue
		}
		for _, d := range rt.tables {
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

// clusterNode is a node in GET /cluster.
type clusterNode struct {
	ID    string `json:"id"`
	Web   string `json:"web"`
	Actor string `json:"actor"`
	Alive bool   `json:"alive"`
}

// clusterPartition is a partition in GET /cluster.
type clusterPartition struct {
	Group     string   `json:"group"`
	Partition int32    `json:"partition"`
	Active    string   `json:"active"`
	Standbys  []string `json:"standbys"`
	Lag       int64    `json:"lag"` // records of the agents' topics not yet committed by the group
}

// clusterView is the body of GET /cluster.
type clusterView struct {
	Generation int32              `json:"generation"`
	Nodes      []clusterNode      `json:"nodes"`
	Partitions []clusterPartition `json:"partitions"`
}

// Cluster returns this node's view of the cluster.
func (rt *Node) Cluster() any {
	rt.mu.Lock()
	plan := rt.plan
	rt.mu.Unlock()
	v := clusterView{Nodes: []clusterNode{}, Partitions: []clusterPartition{}}
	if plan == nil {
		return v
	}
	v.Generation = plan.Generation
	alive := map[string]bool{}
	gossip := rt.members != nil
	if gossip {
		for _, m := range rt.members.Peers() {
			alive[m.ID] = m.Alive
		}
		alive[rt.cfg.NodeID] = true
	}
	for _, n := range plan.Nodes {
		a := true // without gossip, a node in the group's plan counts as alive
		if gossip {
			a = alive[n.NodeID]
		}
		v.Nodes = append(v.Nodes, clusterNode{ID: n.NodeID, Web: n.Web, Actor: n.Actor, Alive: a})
	}
	lags := rt.groupLag()
	parts := plan.Partitions
	if sources := rt.sourceTopics(); len(parts) == 0 && len(sources) > 0 { // no tables: show who consumes what
		n, _ := rt.partitionCount(sources[0])
		for p := int32(0); p < n; p++ {
			if owner, ok := plan.Owner(sources[0], p); ok {
				parts = append(parts, cluster.PartitionPlan{Partition: p, Active: owner.NodeID})
			}
		}
	}
	for _, pp := range parts {
		v.Partitions = append(v.Partitions, clusterPartition{
			Group: rt.spec.App, Partition: pp.Partition, Active: pp.Active,
			Standbys: append([]string{}, pp.Standbys...), Lag: lags[pp.Partition],
		})
	}
	sort.Slice(v.Partitions, func(i, j int) bool { return v.Partitions[i].Partition < v.Partitions[j].Partition })
	return v
}

// groupLag returns, per partition index, the records of the agents' topics
// beyond the group's committed offsets.
func (rt *Node) groupLag() map[int32]int64 {
	lags := map[int32]int64{}
	committed := map[string][]int32{}
	for _, t := range rt.sourceTopics() {
		n, err := rt.partitionCount(t)
		if err != nil {
			continue
		}
		for p := int32(0); p < n; p++ {
			committed[t] = append(committed[t], p)
		}
	}
	resp, err := rt.admin.ListConsumerGroupOffsets(rt.spec.App, committed)
	if err != nil {
		return lags
	}
	for t, ps := range committed {
		for _, p := range ps {
			_, hwm, err := kafka.Bounds(rt.client, t, p)
			if err != nil {
				continue
			}
			off := int64(0)
			if b := resp.GetBlock(t, p); b != nil && b.Offset >= 0 {
				off = b.Offset
			}
			lags[p] += max(0, hwm-off)
		}
	}
	return lags
}

// routeOf says where key's partition p of a table is served: here, by
// another node (its web address), or nowhere right now.
func (rt *Node) routeOf(p int32) (local bool, remote string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if gs, ok := rt.grains[p]; ok && gs.loaded {
		return true, ""
	}
	if rt.plan == nil {
		return false, ""
	}
	for _, pp := range rt.plan.Partitions {
		if pp.Partition != p || pp.Active == rt.cfg.NodeID {
			continue
		}
		// Trust the assignment, not gossip: a node cut off from gossip may
		// still own and process the partition. If it is really gone, the
		// proxy's failure answers 503 with Retry-After.
		for _, n := range rt.plan.Nodes {
			if n.NodeID == pp.Active {
				return false, n.Web
			}
		}
	}
	return false, ""
}

// isStandby reports whether this node keeps a standby copy of partition p.
func (rt *Node) isStandby(p int32) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.standbys[p] != nil
}

// sourceTopics returns the topics the node subscribes to (SpawnAgent may
// replace the list).
func (rt *Node) sourceTopics() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.sources
}
