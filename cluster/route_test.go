package cluster

import (
	"reflect"
	"testing"
)

// routePlan: n1 is active for table partitions 0 and 2, n2 for 1 and 3;
// n3 keeps standbys of 0 and 1, n1 of 1, n2 of 2.
func routePlan() *Plan {
	return &Plan{
		Generation: 4,
		Nodes: []NodeInfo{
			{NodeID: "n1", MemberID: "m1", Web: "h1:80", Actor: "h1:90"},
			{NodeID: "n2", MemberID: "m2", Web: "h2:80", Actor: "h2:90"},
			{NodeID: "n3", MemberID: "m3", Web: "h3:80"},
		},
		Partitions: []PartitionPlan{
			{Partition: 0, Active: "n1", Standbys: []string{"n3"}},
			{Partition: 1, Active: "n2", Standbys: []string{"n1", "n3"}},
			{Partition: 2, Active: "n1", Standbys: []string{"n2"}},
			{Partition: 3, Active: "n2"},
		},
		Assignments: map[string]map[string][]int32{
			"m1": {"t": {0, 2}},
			"m2": {"t": {1, 3}},
			"m3": {},
		},
	}
}

func TestServedBy(t *testing.T) {
	plan := routePlan()
	for _, tc := range []struct {
		partition int32
		self      string
		want      string
	}{
		{0, "n1", ""},      // here
		{0, "n2", "h1:80"}, // elsewhere
		{1, "n1", "h2:80"},
		{3, "n3", "h2:80"},
		{7, "n1", ""}, // not in the plan
	} {
		if got := plan.ServedBy(tc.partition, tc.self); got != tc.want {
			t.Errorf("ServedBy(%d, %s) = %q, want %q", tc.partition, tc.self, got, tc.want)
		}
	}
	orphan := routePlan()
	orphan.Partitions[0].Active = "gone"
	if got := orphan.ServedBy(0, "n2"); got != "" {
		t.Errorf("ServedBy of a partition whose active node is not in the plan = %q, want \"\"", got)
	}
}

func TestActiveFor(t *testing.T) {
	plan := routePlan()
	for _, tc := range []struct {
		partition int32
		want      string // node id, "" for none
	}{
		{0, "n1"}, {1, "n2"}, {2, "n1"}, {3, "n2"}, {4, ""}, {-1, ""},
	} {
		n, ok := plan.ActiveFor(tc.partition)
		if ok != (tc.want != "") || n.NodeID != tc.want {
			t.Errorf("ActiveFor(%d) = %+v, %v; want %q", tc.partition, n, ok, tc.want)
		}
	}
	if n, _ := plan.ActiveFor(1); n.Actor != "h2:90" || n.Web != "h2:80" {
		t.Errorf("ActiveFor(1) = %+v, want n2's addresses", n)
	}
	orphan := routePlan()
	orphan.Partitions[2].Active = "gone"
	if n, ok := orphan.ActiveFor(2); ok {
		t.Errorf("ActiveFor of a partition whose active node is not in the plan = %+v", n)
	}
}

func peers(alive ...string) []Peer {
	var ps []Peer
	for _, id := range alive {
		ps = append(ps, Peer{NodeMeta: NodeMeta{ID: id}, Alive: true})
	}
	return ps
}

func TestUnseen(t *testing.T) {
	plan := routePlan()
	for _, tc := range []struct {
		name  string
		peers []Peer
		want  bool
	}{
		{"all alive", peers("n1", "n2", "n3"), false},
		{"one missing", peers("n1", "n3"), true},
		{"one dead", append(peers("n1", "n2"), Peer{NodeMeta: NodeMeta{ID: "n3"}}), true},
		{"extra peers", peers("n0", "n1", "n2", "n3", "n4"), false},
		{"none", nil, true},
	} {
		if got := plan.Unseen(tc.peers); got != tc.want {
			t.Errorf("%s: Unseen = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEvicts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		self, dead string
		peers      []Peer
		want       bool
	}{
		{"lowest survivor", "n2", "n1", append(peers("n2", "n3"), Peer{NodeMeta: NodeMeta{ID: "n1"}}), true},
		{"a lower survivor exists", "n3", "n1", peers("n2", "n3"), false},
		{"the dead node is lower but not alive", "n2", "n1", peers("n2", "n3"), true},
		{"the dead node still shows alive", "n2", "n1", peers("n1", "n2", "n3"), true},
		{"a lower node is dead too", "n3", "n2", append(peers("n3"), Peer{NodeMeta: NodeMeta{ID: "n1"}}), true},
		{"alone", "n5", "n1", nil, true},
	} {
		if got := Evicts(tc.self, tc.dead, tc.peers); got != tc.want {
			t.Errorf("%s: Evicts(%s, %s) = %v, want %v", tc.name, tc.self, tc.dead, got, tc.want)
		}
	}
}

func set(ps ...int32) map[int32]bool {
	m := map[int32]bool{}
	for _, p := range ps {
		m[p] = true
	}
	return m
}

func TestPlaceStandbys(t *testing.T) {
	plan := routePlan()
	for _, tc := range []struct {
		name    string
		self    string
		active  map[int32]bool
		running map[int32]bool
		n       int32
		want    Placement
	}{
		{name: "fresh node", self: "n3", n: 4,
			want: Placement{Start: []int32{0, 1}, Drop: []int32{2, 3}}},
		{name: "already running", self: "n3", running: set(0, 1), n: 4,
			want: Placement{Drop: []int32{2, 3}}},
		{name: "promoted and moved", self: "n1", active: set(0, 2), running: set(0, 1, 3), n: 4,
			want: Placement{Stop: []int32{0, 3}, Promoted: []int32{0}, Drop: []int32{3}}},
		{name: "active wins over standby", self: "n1", active: set(0, 1, 2), n: 4,
			want: Placement{Drop: []int32{3}}},
		{name: "unknown partition count keeps shards", self: "n2", active: set(1, 3), n: 0,
			want: Placement{Start: []int32{2}}},
		{name: "not in the plan", self: "n9", running: set(2), n: 3,
			want: Placement{Stop: []int32{2}, Drop: []int32{0, 1, 2}}},
	} {
		got := PlaceStandbys(plan, tc.self, tc.active, tc.running, tc.n)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: PlaceStandbys = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestNewView(t *testing.T) {
	empty := NewView(nil, "app", nil, nil, "", 0)
	if empty.Generation != 0 || empty.Nodes == nil || len(empty.Nodes) != 0 || empty.Partitions == nil || len(empty.Partitions) != 0 {
		t.Errorf("view of no plan = %+v, want empty (non-nil) lists", empty)
	}

	plan := routePlan()
	lags := map[int32]int64{1: 5, 3: 2}
	v := NewView(plan, "app", func(id string) bool { return id != "n2" }, lags, "", 0)
	want := View{
		Generation: 4,
		Nodes: []ViewNode{
			{ID: "n1", Web: "h1:80", Actor: "h1:90", Alive: true},
			{ID: "n2", Web: "h2:80", Actor: "h2:90"},
			{ID: "n3", Web: "h3:80", Alive: true},
		},
		Partitions: []ViewPartition{
			{Group: "app", Partition: 0, Active: "n1", Standbys: []string{"n3"}},
			{Group: "app", Partition: 1, Active: "n2", Standbys: []string{"n1", "n3"}, Lag: 5},
			{Group: "app", Partition: 2, Active: "n1", Standbys: []string{"n2"}},
			{Group: "app", Partition: 3, Active: "n2", Standbys: []string{}, Lag: 2},
		},
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("view =\n%+v\nwant\n%+v", v, want)
	}

	// Without tables, the view shows who consumes each partition of the
	// topic, every node alive without gossip.
	plan.Partitions = nil
	v = NewView(plan, "app", nil, nil, "t", 5)
	for _, n := range v.Nodes {
		if !n.Alive {
			t.Errorf("without gossip, node %s is not alive in the view", n.ID)
		}
	}
	got := v.Partitions
	wantParts := []ViewPartition{
		{Group: "app", Partition: 0, Active: "n1", Standbys: []string{}},
		{Group: "app", Partition: 1, Active: "n2", Standbys: []string{}},
		{Group: "app", Partition: 2, Active: "n1", Standbys: []string{}},
		{Group: "app", Partition: 3, Active: "n2", Standbys: []string{}},
	}
	if !reflect.DeepEqual(got, wantParts) {
		t.Errorf("partitions without tables = %+v, want %+v", got, wantParts)
	}
}
