package proctest

import "fmt"

// ClusterView is a node's answer to GET /cluster.
type ClusterView struct {
	Generation int32 `json:"generation"`
	Nodes      []struct {
		ID    string `json:"id"`
		Web   string `json:"web"`
		Actor string `json:"actor"`
		Alive bool   `json:"alive"`
	} `json:"nodes"`
	Partitions []struct {
		Group     string   `json:"group"`
		Partition int32    `json:"partition"`
		Active    string   `json:"active"`
		Standbys  []string `json:"standbys"`
		Lag       int64    `json:"lag"`
	} `json:"partitions"`
}

// Check says what is wrong with v for a cluster of exactly the nodes ids
// ("" if nothing): every node named and alive, partitions partitions each
// with exactly one active among ids.
func (v ClusterView) Check(ids []string, partitions int) string {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	seen := map[string]bool{}
	for _, n := range v.Nodes {
		if !want[n.ID] {
			return fmt.Sprintf("node %s in the plan, want only %v", n.ID, ids)
		}
		if !n.Alive {
			return fmt.Sprintf("node %s not alive", n.ID)
		}
		seen[n.ID] = true
	}
	if len(seen) != len(ids) || len(v.Nodes) != len(ids) {
		return fmt.Sprintf("nodes %+v, want %v", v.Nodes, ids)
	}
	if why := v.OnePerPartition(partitions); why != "" {
		return why
	}
	for _, p := range v.Partitions {
		if !want[p.Active] {
			return fmt.Sprintf("partition %d active on %q", p.Partition, p.Active)
		}
	}
	return ""
}

// OnePerPartition says what is wrong ("" if nothing) with v's partitions:
// each of 0..partitions-1 must be listed exactly once, with an active.
func (v ClusterView) OnePerPartition(partitions int) string {
	if len(v.Partitions) != partitions {
		return fmt.Sprintf("%d partitions listed, want %d", len(v.Partitions), partitions)
	}
	seen := map[int32]int{}
	for _, p := range v.Partitions {
		seen[p.Partition]++
		if p.Active == "" {
			return fmt.Sprintf("partition %d has no active", p.Partition)
		}
	}
	for p := range int32(partitions) {
		if seen[p] != 1 {
			return fmt.Sprintf("partition %d listed %d times", p, seen[p])
		}
	}
	return ""
}

// Actives returns, per partition, the active node.
func (v ClusterView) Actives() map[int32]string {
	out := map[int32]string{}
	for _, p := range v.Partitions {
		out[p.Partition] = p.Active
	}
	return out
}

// Node names a node for Formed: its id and its web address.
type Node struct{ ID, Web string }

// Formed says why nodes are not (yet) exactly one cluster of their ids
// ("" if they are): each is ready, each one's /cluster passes Check for
// partitions, and all are in one generation. With alive false, whether
// the views see every node alive is not checked (gossip may lag). It
// returns the last view read.
func Formed(nodes []Node, partitions int, alive bool) (ClusterView, string) {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	var last ClusterView
	gen := int32(-1)
	for _, n := range nodes {
		if ok, why := Ready(n.Web); !ok {
			return last, n.ID + ": " + why
		}
		v, err := Cluster(n.Web)
		if err != nil {
			return last, n.ID + ": " + err.Error()
		}
		check := v
		if !alive {
			check.Nodes = append(check.Nodes[:0:0], v.Nodes...)
			for i := range check.Nodes {
				check.Nodes[i].Alive = true
			}
		}
		if why := check.Check(ids, partitions); why != "" {
			return last, n.ID + "'s /cluster: " + why
		}
		if gen >= 0 && v.Generation != gen {
			return last, fmt.Sprintf("generations differ: %d and %d", gen, v.Generation)
		}
		gen, last = v.Generation, v
	}
	return last, ""
}
