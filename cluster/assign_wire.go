package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The assignor's two wire formats are JSON objects with a format version
// "v". Version 1:
//
// Member user data (subscription, member → leader), kept small: the topics
// travel in Kafka's own subscription metadata, and empty fields are left
// out.
//
//	{"v":1,"node":"n1","standbys":1,"tables":4,"active":[0,1],"standby":[2],
//	 "owned":{"counts":[0,1],"words":[0,1]},"offsets":{"2":1500},
//	 "web":"10.0.0.1:6066","actor":"10.0.0.1:8090"}
//
// Plan (assignment user data, leader → every member): the whole routing
// table. Nodes are listed once, sorted by id, and referred to by index;
// topics with identical owners share one entry; owner -1 means unassigned.
// "tables" describes the table co-partition group, index = partition.
//
//	{"v":1,"gen":7,
//	 "nodes":[{"id":"n1","member":"n1-3f2a","web":"...","actor":"..."}, ...],
//	 "topics":[{"names":["counts","words"],"owners":[0,1,2,0]}],
//	 "tables":{"active":[0,1,2,0],"standbys":[[1],[2],[0],[1]]}}
//
// Evolution: a reader accepts any version ≥ 1 and reads the fields it
// knows, so a later version may add fields. A change that an older reader
// would misread needs a new strategy name instead, so that Kafka only
// picks it once every member supports it.

// wireVersion is the format version this build writes.
const wireVersion = 1

// errWireFormat marks user data this build cannot read.
var errWireFormat = errors.New("cluster: unreadable assignor user data")

type memberWire struct {
	V        int                `json:"v"`
	Node     string             `json:"node"`
	Standbys int                `json:"standbys"`
	Tables   int32              `json:"tables,omitempty"`
	Active   []int32            `json:"active,omitempty"`
	Standby  []int32            `json:"standby,omitempty"`
	Owned    map[string][]int32 `json:"owned,omitempty"`
	Offsets  map[int32]int64    `json:"offsets,omitempty"`
	Web      string             `json:"web,omitempty"`
	Actor    string             `json:"actor,omitempty"`
}

type planWire struct {
	V      int         `json:"v"`
	Gen    int32       `json:"gen"`
	Nodes  []nodeWire  `json:"nodes"`
	Topics []topicWire `json:"topics,omitempty"`
	Tables *tablesWire `json:"tables,omitempty"`
}

type nodeWire struct {
	ID     string `json:"id"`
	Member string `json:"member"`
	Web    string `json:"web,omitempty"`
	Actor  string `json:"actor,omitempty"`
}

type topicWire struct {
	Names  []string `json:"names"`
	Owners []int    `json:"owners"`
}

type tablesWire struct {
	Active   []int   `json:"active"`
	Standbys [][]int `json:"standbys"`
}

// encodeMember encodes m's report (all but MemberID and Topics, which
// Kafka carries itself).
func encodeMember(m Member) ([]byte, error) {
	w := memberWire{
		V:        wireVersion,
		Node:     m.NodeID,
		Standbys: m.Standbys,
		Tables:   m.TablePartitions,
		Active:   m.Active,
		Standby:  m.Standby,
		Owned:    m.Owned,
		Offsets:  m.Offsets,
		Web:      m.Web,
		Actor:    m.Actor,
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("cluster: encoding member user data: %w", err)
	}
	return b, nil
}

// decodeMember returns the Member that memberID (subscribed to topics)
// reported in data. It never fails the caller: data that is empty or not a
// version-1+ member report (for instance a plan leaked by an older client)
// yields a fresh member with no history, no opinion on standbys and node
// id = member id, together with the reason.
func decodeMember(memberID string, topics []string, data []byte) (Member, error) {
	fresh := Member{MemberID: memberID, Topics: topics, Standbys: -1}
	if len(data) == 0 {
		return fresh, fmt.Errorf("%w: member %s sent no user data", errWireFormat, memberID)
	}
	var w memberWire
	if err := json.Unmarshal(data, &w); err != nil {
		return fresh, fmt.Errorf("%w: member %s: %w", errWireFormat, memberID, err)
	}
	if w.V < 1 || w.Node == "" {
		return fresh, fmt.Errorf("%w: member %s: not a member report (version %d, node %q)", errWireFormat, memberID, w.V, w.Node)
	}
	return Member{
		MemberID:        memberID,
		NodeID:          w.Node,
		Topics:          topics,
		Standbys:        w.Standbys,
		Active:          w.Active,
		Standby:         w.Standby,
		Owned:           w.Owned,
		Offsets:         w.Offsets,
		TablePartitions: w.Tables,
		Web:             w.Web,
		Actor:           w.Actor,
	}, nil
}

// encodePlan encodes the whole plan.
func encodePlan(p *Plan) ([]byte, error) {
	w := planWire{V: wireVersion, Gen: p.Generation, Nodes: make([]nodeWire, len(p.Nodes))}
	index := make(map[string]int, len(p.Nodes))
	for i, n := range p.Nodes {
		w.Nodes[i] = nodeWire{ID: n.NodeID, Member: n.MemberID, Web: n.Web, Actor: n.Actor}
		index[n.NodeID] = i
	}

	owners := make(map[string][]int)
	for i, n := range p.Nodes {
		for topic, parts := range p.Assignments[n.MemberID] {
			if len(parts) == 0 {
				continue
			}
			o := owners[topic]
			if need := int(parts[len(parts)-1]) + 1; need > len(o) {
				for range need - len(o) {
					o = append(o, -1)
				}
			}
			for _, part := range parts {
				if part < 0 {
					return nil, fmt.Errorf("cluster: encoding plan: negative partition %d of %s", part, topic)
				}
				o[part] = i
			}
			owners[topic] = o
		}
	}
	names := make([]string, 0, len(owners))
	for t := range owners {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		shared := false
		for k := range w.Topics {
			if slices.Equal(w.Topics[k].Owners, owners[t]) {
				w.Topics[k].Names = append(w.Topics[k].Names, t)
				shared = true
				break
			}
		}
		if !shared {
			w.Topics = append(w.Topics, topicWire{Names: []string{t}, Owners: owners[t]})
		}
	}

	if len(p.Partitions) > 0 {
		tw := &tablesWire{Active: make([]int, len(p.Partitions)), Standbys: make([][]int, len(p.Partitions))}
		for i, pp := range p.Partitions {
			if pp.Partition != int32(i) {
				return nil, fmt.Errorf("cluster: encoding plan: table partitions must be 0..%d in order, entry %d is %d", len(p.Partitions)-1, i, pp.Partition)
			}
			a, ok := index[pp.Active]
			if !ok {
				return nil, fmt.Errorf("cluster: encoding plan: partition %d is active on unknown node %q", i, pp.Active)
			}
			tw.Active[i] = a
			tw.Standbys[i] = make([]int, len(pp.Standbys))
			for k, s := range pp.Standbys {
				si, ok := index[s]
				if !ok {
					return nil, fmt.Errorf("cluster: encoding plan: partition %d has unknown standby node %q", i, s)
				}
				tw.Standbys[i][k] = si
			}
		}
		w.Tables = tw
	}

	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("cluster: encoding plan: %w", err)
	}
	return b, nil
}

// decodePlan decodes a plan written by encodePlan.
func decodePlan(data []byte) (*Plan, error) {
	var w planWire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: plan: %w", errWireFormat, err)
	}
	if w.V < 1 {
		return nil, fmt.Errorf("%w: plan has format version %d", errWireFormat, w.V)
	}
	p := &Plan{
		Generation:  w.Gen,
		Nodes:       make([]NodeInfo, len(w.Nodes)),
		Assignments: make(map[string]map[string][]int32, len(w.Nodes)),
	}
	for i, n := range w.Nodes {
		if i > 0 && w.Nodes[i-1].ID >= n.ID {
			return nil, fmt.Errorf("%w: plan nodes not sorted by id (%q before %q)", errWireFormat, w.Nodes[i-1].ID, n.ID)
		}
		p.Nodes[i] = NodeInfo{NodeID: n.ID, MemberID: n.Member, Web: n.Web, Actor: n.Actor}
		p.Assignments[n.Member] = map[string][]int32{}
	}
	node := func(i int) (NodeInfo, error) {
		if i < 0 || i >= len(p.Nodes) {
			return NodeInfo{}, fmt.Errorf("%w: plan refers to node %d of %d", errWireFormat, i, len(p.Nodes))
		}
		return p.Nodes[i], nil
	}
	for _, tw := range w.Topics {
		for part, o := range tw.Owners {
			if o == -1 {
				continue
			}
			n, err := node(o)
			if err != nil {
				return nil, err
			}
			for _, t := range tw.Names {
				a := p.Assignments[n.MemberID]
				a[t] = append(a[t], int32(part))
			}
		}
	}
	if w.Tables != nil {
		if len(w.Tables.Standbys) != len(w.Tables.Active) {
			return nil, fmt.Errorf("%w: plan has %d table actives but %d standby lists", errWireFormat, len(w.Tables.Active), len(w.Tables.Standbys))
		}
		p.Partitions = make([]PartitionPlan, len(w.Tables.Active))
		for i, a := range w.Tables.Active {
			n, err := node(a)
			if err != nil {
				return nil, err
			}
			pp := PartitionPlan{Partition: int32(i), Active: n.NodeID}
			for _, s := range w.Tables.Standbys[i] {
				sn, err := node(s)
				if err != nil {
					return nil, err
				}
				pp.Standbys = append(pp.Standbys, sn.NodeID)
			}
			p.Partitions[i] = pp
		}
	}
	return p, nil
}
