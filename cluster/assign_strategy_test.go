package cluster

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// fakeNode is one group member driven by hand, the way sarama's consumer
// group drives it, with every message through sarama's own encoders.
type fakeNode struct {
	id       string
	memberID string
	topics   []string
	s        *Strategy
	plans    []*Plan
	// report is what local() returns; rest of the Member is filled by the
	// test.
	report Member
}

func newFakeNode(id, memberID string, topics []string) *fakeNode {
	n := &fakeNode{id: id, memberID: memberID, topics: topics}
	n.report = Member{NodeID: id, Standbys: 1, TablePartitions: 6, Web: id + ":6066", Actor: id + ":8090"}
	n.s = NewStrategy(func() Member { return n.report }, func(p *Plan) { n.plans = append(n.plans, p) })
	return n
}

// partitionList returns topic → [0..n-1], as sarama passes topics to Plan.
func partitionList(counts map[string]int32) map[string][]int32 {
	out := map[string][]int32{}
	for t, n := range counts {
		for p := range n {
			out[t] = append(out[t], p)
		}
	}
	return out
}

// fakeRebalance runs one generation: JoinGroup (every node's subscription
// user data), Plan and AssignmentData on the leader, SyncGroup, and
// OnAssignment on every node. userData, if set, replaces a member's
// subscription user data. It returns each member's claims.
func fakeRebalance(t *testing.T, nodes []*fakeNode, leader *fakeNode, topics map[string][]int32, gen int32,
	userData map[string][]byte) map[string]map[string][]int32 {
	t.Helper()
	join := &sarama.JoinGroupResponse{GenerationId: gen, LeaderId: leader.memberID}
	for _, n := range nodes {
		data, err := n.s.SubscriptionUserData(slices.Clone(n.topics))
		if err != nil {
			t.Fatalf("%s: SubscriptionUserData: %v", n.id, err)
		}
		if d, ok := userData[n.memberID]; ok {
			data = d
		}
		req := &sarama.JoinGroupRequest{}
		if err := req.AddGroupProtocolMetadata(StrategyName, &sarama.ConsumerGroupMemberMetadata{
			Version: 2, Topics: n.topics, UserData: data,
		}); err != nil {
			t.Fatal(err)
		}
		join.Members = append(join.Members, sarama.GroupMember{MemberId: n.memberID, Metadata: req.OrderedGroupProtocols[0].Metadata})
	}

	members, err := join.GetMembers()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := leader.s.Plan(members, topics)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	// As sarama's syncGroupRequest: members in the plan get their share
	// and AssignmentData, the others an empty assignment.
	sync := &sarama.SyncGroupRequest{GenerationId: gen}
	for id, share := range plan {
		data, err := leader.s.AssignmentData(id, share, gen)
		if err != nil {
			t.Fatalf("AssignmentData(%s): %v", id, err)
		}
		if err := sync.AddGroupAssignmentMember(id, &sarama.ConsumerGroupMemberAssignment{Topics: share, UserData: data}); err != nil {
			t.Fatal(err)
		}
		delete(members, id)
	}
	for id := range members {
		t.Errorf("member %s is missing from the plan: it would get no routing table", id)
	}

	claims := map[string]map[string][]int32{}
	for _, n := range nodes {
		i := slices.IndexFunc(sync.GroupAssignments, func(a sarama.SyncGroupRequestAssignment) bool { return a.MemberId == n.memberID })
		if i < 0 {
			t.Fatalf("no assignment for %s", n.memberID)
		}
		resp := &sarama.SyncGroupResponse{MemberAssignment: sync.GroupAssignments[i].Assignment}
		a, err := resp.GetMemberAssignment()
		if err != nil {
			t.Fatal(err)
		}
		n.s.OnAssignment(a, gen)
		claims[n.memberID] = a.Topics
	}
	return claims
}

func TestStrategyRoundTrip(t *testing.T) {
	topics := []string{"counts", "words"}
	counts := map[string]int32{"words": 6, "counts": 6}
	nodes := []*fakeNode{
		newFakeNode("n1", "n1-a1", topics),
		newFakeNode("n2", "n2-b2", topics),
		newFakeNode("n3", "n3-c3", topics),
	}
	leader := nodes[1]
	claims := fakeRebalance(t, nodes, leader, partitionList(counts), 7, nil)

	ref := nodes[0].s.Current()
	if ref == nil || ref.Generation != 7 {
		t.Fatalf("plan after generation 7: %v", ref)
	}
	for _, n := range nodes {
		if len(n.plans) != 1 || n.plans[0] != n.s.Current() {
			t.Fatalf("%s: onPlan called with %v, Current %v", n.id, n.plans, n.s.Current())
		}
		p := n.s.Current()
		if !reflect.DeepEqual(p, ref) {
			t.Errorf("%s got another plan than n1:\n%v\n%v", n.id, p, ref)
		}
		if got := p.Actives(n.id); !reflect.DeepEqual(got, claims[n.memberID]) {
			t.Errorf("%s: plan says %v, Kafka assignment says %v", n.id, got, claims[n.memberID])
		}
		if len(claims[n.memberID]["words"]) != 2 || !slices.Equal(claims[n.memberID]["words"], claims[n.memberID]["counts"]) {
			t.Errorf("%s: claims %v: want 2 partitions, the same of words and counts", n.id, claims[n.memberID])
		}
		info, ok := p.Node(n.id)
		if !ok || info != (NodeInfo{NodeID: n.id, MemberID: n.memberID, Web: n.id + ":6066", Actor: n.id + ":8090"}) {
			t.Errorf("%s: routing entry %+v", n.id, info)
		}
	}
	if err := checkPlan(membersOf(nodes), counts, ref); err != nil {
		t.Error(err)
	}
	if len(ref.Partitions) != 6 {
		t.Fatalf("table partitions: %v", ref.Partitions)
	}
	t.Logf("plan: %v", ref)

	// Next generation: the nodes report what they got (local() knows
	// nothing: Owned comes from the Strategy's last plan). Same members,
	// another leader: same plan.
	for _, n := range nodes {
		n.report.Active = ref.ActivePartitions(n.id)
		n.report.Standby = ref.StandbyPartitions(n.id)
	}
	fakeRebalance(t, nodes, nodes[2], partitionList(counts), 8, nil)
	if r := nodes[0].s.Report(); !reflect.DeepEqual(r.Owned, ref.Actives("n1")) || !slices.Equal(r.Topics, topics) {
		t.Errorf("n1 reported %+v, want Owned = its actives %v", r, ref.Actives("n1"))
	}
	next := nodes[0].s.Current()
	if next.Generation != 8 {
		t.Errorf("generation %d, want 8", next.Generation)
	}
	if !reflect.DeepEqual(next.Assignments, ref.Assignments) || !reflect.DeepEqual(next.Partitions, ref.Partitions) {
		t.Errorf("plan changed without a membership change:\n%v\n%v", ref, next)
	}
}

func membersOf(nodes []*fakeNode) []Member {
	var out []Member
	for _, n := range nodes {
		m := n.report
		m.MemberID, m.Topics = n.memberID, n.topics
		out = append(out, m)
	}
	return out
}

// TestStrategyUnreadableUserData: members whose user data is empty,
// garbage, or a whole plan (what sarama would resend without
// SubscriptionUserData) join as fresh members; the rebalance goes on.
func TestStrategyUnreadableUserData(t *testing.T) {
	topics := []string{"words"}
	counts := map[string]int32{"words": 4}
	nodes := []*fakeNode{
		newFakeNode("n1", "n1-a", topics),
		newFakeNode("n2", "n2-b", topics),
		newFakeNode("n3", "n3-c", topics),
		newFakeNode("n4", "n4-d", topics),
	}
	for _, n := range nodes {
		n.report.TablePartitions = 4
	}
	first := fakeRebalance(t, nodes[:1], nodes[0], partitionList(counts), 1, nil)
	if len(first["n1-a"]["words"]) != 4 {
		t.Fatalf("alone, n1 got %v", first)
	}
	leaked, err := nodes[0].s.AssignmentData("n1-a", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	claims := fakeRebalance(t, nodes, nodes[0], partitionList(counts), 2, map[string][]byte{
		"n2-b": nil,
		"n3-c": []byte("\x00\x01garbage"),
		"n4-d": leaked,
	})
	plan := nodes[0].s.Current()
	for _, id := range []string{"n2-b", "n3-c", "n4-d"} {
		// Fresh: named by member id, one partition each like everyone.
		if _, ok := plan.Node(id); !ok || len(claims[id]["words"]) != 1 {
			t.Errorf("member %s: node entry %v, claims %v; plan %v", id, ok, claims[id], plan)
		}
	}
	// Fresh members have no say about standbys, n1's 1 applies.
	if len(plan.Partitions) != 4 || len(plan.Partitions[0].Standbys) != 1 {
		t.Errorf("table partitions %v, want 4 with 1 standby", plan.Partitions)
	}
}

func TestStrategyEdgeCases(t *testing.T) {
	s := NewStrategy(nil, nil)
	if s.Name() != "mephisto-copartitioned" {
		t.Errorf("Name() = %q", s.Name())
	}
	if _, err := s.AssignmentData("m", nil, 1); err == nil || !strings.Contains(err.Error(), "before any plan") {
		t.Errorf("AssignmentData before Plan: %v", err)
	}
	data, err := s.SubscriptionUserData([]string{"words"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := decodeMember("m1", nil, data); err == nil || m.NodeID != "" || m.Standbys != -1 {
		t.Errorf("nil local: decoded %+v, %v; want a fresh member", m, err)
	}
	// An assignment without a readable plan still reaches onPlan, with
	// its generation.
	var got []*Plan
	s = NewStrategy(nil, func(p *Plan) { got = append(got, p) })
	s.OnAssignment(&sarama.ConsumerGroupMemberAssignment{Topics: map[string][]int32{"words": {0}}, UserData: []byte("nope")}, 5)
	if len(got) != 1 || got[0].Generation != 5 || len(got[0].Nodes) != 0 || s.Current() != got[0] {
		t.Errorf("onPlan got %v", got)
	}
	// Plan fails loudly on two processes with one node id.
	members := map[string]sarama.ConsumerGroupMemberMetadata{}
	for _, id := range []string{"a", "b"} {
		d, _ := encodeMember(Member{NodeID: "n1"})
		members[id] = sarama.ConsumerGroupMemberMetadata{Topics: []string{"words"}, UserData: d}
	}
	if _, err := s.Plan(members, map[string][]int32{"words": {0, 1}}); err == nil || !strings.Contains(err.Error(), "same node id") {
		t.Errorf("Plan with a duplicate node id: %v", err)
	}
}

func TestWireRoundTrip(t *testing.T) {
	for seed := range uint64(200) {
		sc := genScenario(seed)
		plan, err := Assign(sc.members, sc.topics)
		if err != nil {
			t.Fatal(err)
		}
		plan.Generation = int32(seed)
		data, err := encodePlan(plan)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePlan(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, plan) {
			t.Fatalf("%v: plan changed in encoding:\n got %v\nwant %v", sc, got, plan)
		}
		for _, m := range sc.members {
			data, err := encodeMember(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeMember(m.MemberID, m.Topics, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Offsets) == 0 {
				m.Offsets = nil // omitted when empty
			}
			if len(m.Owned) == 0 {
				m.Owned = nil
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("member changed in encoding:\n got %+v\nwant %+v", back, m)
			}
		}
	}
}
