package cluster

import (
	"slices"
	"sort"
)

// Routing and placement decisions over a Plan, as one node takes them.
// They only read the plan and their arguments.

// ActiveFor returns the routing entry of the node active for partition
// (of the table co-partition group), if the plan names one that is in it.
// Like ServedBy it trusts the assignment, not gossip.
func (p *Plan) ActiveFor(partition int32) (NodeInfo, bool) {
	i, ok := slices.BinarySearchFunc(p.Partitions, partition, func(pp PartitionPlan, t int32) int {
		return int(pp.Partition) - int(t)
	})
	if !ok {
		return NodeInfo{}, false
	}
	return p.Node(p.Partitions[i].Active)
}

// ServedBy returns the web address of the node active for partition (of
// the table co-partition group), or "" when self is, or nobody is. It
// trusts the assignment, not gossip: a node cut off from gossip may still
// own and process the partition.
func (p *Plan) ServedBy(partition int32, self string) string {
	if n, ok := p.ActiveFor(partition); ok && n.NodeID != self {
		return n.Web
	}
	return ""
}

// Unseen reports whether the plan names nodes that peers (gossip's view)
// does not show alive.
func (p *Plan) Unseen(peers []Peer) bool {
	alive := map[string]bool{}
	for _, m := range peers {
		alive[m.ID] = m.Alive
	}
	for _, n := range p.Nodes {
		if !alive[n.NodeID] {
			return true
		}
	}
	return false
}

// Evicts reports whether self is the survivor that removes the dead node
// from the consumer group: the alive node with the lowest id, so that
// exactly one acts.
func Evicts(self, dead string, peers []Peer) bool {
	for _, m := range peers {
		if m.Alive && m.ID != dead && m.ID < self {
			return false
		}
	}
	return true
}

// Placement is what a node does with its standby shards when a session
// starts, before any grain does: every list is sorted.
type Placement struct {
	// Start lists the standbys the plan gives the node and it does not run.
	Start []int32
	// Stop lists the running standbys the plan no longer gives the node.
	Stop []int32
	// Promoted lists those of Stop that became active here: their shards
	// are kept, and the grain replays only the changelog's tail.
	Promoted []int32
	// Drop lists the partitions, of the n the tables have, that are
	// neither active nor standby here: their shards go.
	Drop []int32
}

// PlaceStandbys decides, from the plan, what node self does with its
// standby shards given the partitions active here, the standbys running and
// the tables' partition count n.
func PlaceStandbys(plan *Plan, self string, active, running map[int32]bool, n int32) Placement {
	var pl Placement
	mine := map[int32]bool{}
	for _, p := range plan.StandbyPartitions(self) {
		if !active[p] {
			mine[p] = true
			if !running[p] {
				pl.Start = append(pl.Start, p)
			}
		}
	}
	for p := range running {
		if !mine[p] {
			pl.Stop = append(pl.Stop, p)
			if active[p] {
				pl.Promoted = append(pl.Promoted, p)
			}
		}
	}
	slices.Sort(pl.Start)
	slices.Sort(pl.Stop)
	slices.Sort(pl.Promoted)
	for p := int32(0); p < n; p++ {
		if !active[p] && !mine[p] {
			pl.Drop = append(pl.Drop, p)
		}
	}
	return pl
}

// View is one node's view of the cluster, the body of GET /cluster.
type View struct {
	Generation int32           `json:"generation"`
	Nodes      []ViewNode      `json:"nodes"`
	Partitions []ViewPartition `json:"partitions"`
}

// ViewNode is a node in a View.
type ViewNode struct {
	ID    string `json:"id"`
	Web   string `json:"web"`
	Actor string `json:"actor"`
	Alive bool   `json:"alive"`
}

// ViewPartition is a partition in a View.
type ViewPartition struct {
	Group     string   `json:"group"`
	Partition int32    `json:"partition"`
	Active    string   `json:"active"`
	Standbys  []string `json:"standbys"`
	Lag       int64    `json:"lag"` // records of the agents' topics not yet committed by the group
}

// NewView renders plan (nil: none received yet) for group. alive says
// which nodes gossip sees alive (nil without gossip: every node in the plan
// counts as alive); lags are the group's lags by partition. Without table
// partitions, it shows who consumes each of the n partitions of topic.
func NewView(plan *Plan, group string, alive func(id string) bool, lags map[int32]int64, topic string, n int32) View {
	v := View{Nodes: []ViewNode{}, Partitions: []ViewPartition{}}
	if plan == nil {
		return v
	}
	v.Generation = plan.Generation
	for _, nd := range plan.Nodes {
		a := alive == nil || alive(nd.NodeID)
		v.Nodes = append(v.Nodes, ViewNode{ID: nd.NodeID, Web: nd.Web, Actor: nd.Actor, Alive: a})
	}
	parts := plan.Partitions
	if len(parts) == 0 && topic != "" { // no tables: show who consumes what
		for p := int32(0); p < n; p++ {
			if owner, ok := plan.Owner(topic, p); ok {
				parts = append(parts, PartitionPlan{Partition: p, Active: owner.NodeID})
			}
		}
	}
	for _, pp := range parts {
		v.Partitions = append(v.Partitions, ViewPartition{
			Group: group, Partition: pp.Partition, Active: pp.Active,
			Standbys: append([]string{}, pp.Standbys...), Lag: lags[pp.Partition],
		})
	}
	sort.Slice(v.Partitions, func(i, j int) bool { return v.Partitions[i].Partition < v.Partitions[j].Partition })
	return v
}
