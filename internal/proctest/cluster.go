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
