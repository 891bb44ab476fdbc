package cluster

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Lookups on a Plan. A Plan is immutable once made: these only read it, so
// any number of goroutines may call them at once.

// Node returns the routing entry of nodeID.
func (p *Plan) Node(nodeID string) (NodeInfo, bool) {
	i := sort.Search(len(p.Nodes), func(i int) bool { return p.Nodes[i].NodeID >= nodeID })
	if i < len(p.Nodes) && p.Nodes[i].NodeID == nodeID {
		return p.Nodes[i], true
	}
	return NodeInfo{}, false
}

// Actives returns the partitions assigned to nodeID, topic → sorted
// partitions (nil if the node is not in the plan). The returned map is the
// plan's own: do not modify it.
func (p *Plan) Actives(nodeID string) map[string][]int32 {
	n, ok := p.Node(nodeID)
	if !ok {
		return nil
	}
	return p.Assignments[n.MemberID]
}

// ActivePartitions returns the sorted partition indexes nodeID is active
// for, over all its topics: what the node reports as Member.Active in the
// next generation.
func (p *Plan) ActivePartitions(nodeID string) []int32 {
	var out []int32
	for _, parts := range p.Actives(nodeID) {
		out = append(out, parts...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// StandbyPartitions returns the sorted table partitions nodeID keeps
// standby copies of: what it reports as Member.Standby in the next
// generation.
func (p *Plan) StandbyPartitions(nodeID string) []int32 {
	var out []int32
	for _, pp := range p.Partitions {
		if slices.Contains(pp.Standbys, nodeID) {
			out = append(out, pp.Partition)
		}
	}
	return out
}

// Owner returns the node active for partition of topic, if the plan
// assigns it. It scans the plan: a caller routing many requests should
// build its own index (see Owners).
func (p *Plan) Owner(topic string, partition int32) (NodeInfo, bool) {
	for _, n := range p.Nodes {
		if _, ok := slices.BinarySearch(p.Assignments[n.MemberID][topic], partition); ok {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// Owners returns, for every topic in the plan, the NodeID active for each
// partition index ("" for a partition nobody got): the routing table in the
// shape a router wants it.
func (p *Plan) Owners() map[string][]string {
	out := make(map[string][]string)
	for _, n := range p.Nodes {
		for topic, parts := range p.Assignments[n.MemberID] {
			if len(parts) == 0 {
				continue
			}
			owners := out[topic]
			if need := int(parts[len(parts)-1]) + 1; need > len(owners) {
				owners = append(owners, make([]string, need-len(owners))...)
			}
			for _, part := range parts {
				owners[part] = n.NodeID
			}
			out[topic] = owners
		}
	}
	return out
}

// String renders the plan one node per line, for logs and test failures:
//
//	gen 7: n1 active counts,words=[0 3] standby=[1]; n2 ...
func (p *Plan) String() string {
	var b strings.Builder
	b.WriteString("gen ")
	b.WriteString(strconv.FormatInt(int64(p.Generation), 10))
	b.WriteString(":")
	for i, n := range p.Nodes {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" ")
		b.WriteString(n.NodeID)
		b.WriteString(" ")
		b.WriteString(formatActives(p.Assignments[n.MemberID]))
		if len(p.Partitions) > 0 {
			b.WriteString(" standby=")
			b.WriteString(formatParts(p.StandbyPartitions(n.NodeID)))
		}
	}
	return b.String()
}

// formatActives renders topic → partitions with the topics that have the
// same partitions joined: "counts,words=[0 3] clicks=[1]", or "none".
func formatActives(m map[string][]int32) string {
	topics := make([]string, 0, len(m))
	for t, parts := range m {
		if len(parts) > 0 {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return "none"
	}
	slices.Sort(topics)
	var groups [][]string
	for _, t := range topics {
		found := false
		for gi, g := range groups {
			if slices.Equal(m[g[0]], m[t]) {
				groups[gi] = append(g, t)
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, []string{t})
		}
	}
	var b strings.Builder
	for gi, g := range groups {
		if gi > 0 {
			b.WriteString(" ")
		}
		b.WriteString(strings.Join(g, ","))
		b.WriteString("=")
		b.WriteString(formatParts(m[g[0]]))
	}
	return b.String()
}

// formatParts renders partitions as "[0 1 2]".
func formatParts(parts []int32) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range parts {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(strconv.FormatInt(int64(p), 10))
	}
	b.WriteString("]")
	return b.String()
}
