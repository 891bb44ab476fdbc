package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Property tests of Assign over seeded random scenarios. A failure names
// the scenario's seed; re-run just that scenario by calling
// genScenario(rand.New(rand.NewPCG(seed, 0))) in a scratch test.

const propertyScenarios = 3000

// scenario is one random input of Assign.
type scenario struct {
	seed    uint64
	members []Member
	topics  map[string]int32
}

func (s scenario) String() string {
	return fmt.Sprintf("seed %d: %d members, topics %v", s.seed, len(s.members), s.topics)
}

// genScenario draws 1..20 members and 1..3 co-partitioned topics of 1..64
// partitions (sometimes one more topic with another count, sometimes uneven
// subscriptions, sometimes no tables), with random previous actives (also
// conflicting ones), standbys and offsets.
func genScenario(seed uint64) scenario {
	r := rand.New(rand.NewPCG(seed, 0))
	numM := 1 + r.IntN(20)
	numP := int32(1 + r.IntN(64))
	topics := map[string]int32{}
	for i := range 1 + r.IntN(3) {
		topics[fmt.Sprintf("t%d", i)] = numP
	}
	if r.IntN(3) == 0 {
		topics["x"] = int32(1 + r.IntN(64))
	}
	tables := numP
	if r.IntN(5) == 0 {
		tables = 0
	}
	uneven := r.IntN(4) == 0
	standbys := r.IntN(4)
	maxP := numP
	if topics["x"] > maxP {
		maxP = topics["x"]
	}

	// Previous owners: mostly one per partition, some unowned, some
	// claimed twice (stale reports).
	prevOwner := make([][]int, maxP)
	for p := range prevOwner {
		switch k := r.IntN(10); {
		case k == 0: // nobody
		case k == 1:
			prevOwner[p] = []int{r.IntN(numM + 3), r.IntN(numM + 3)} // may name departed members
		default:
			prevOwner[p] = []int{r.IntN(numM + 3)}
		}
	}
	members := make([]Member, numM)
	for i := range members {
		m := Member{
			MemberID:        fmt.Sprintf("n%02d-%d", i, r.IntN(100)),
			NodeID:          fmt.Sprintf("n%02d", i),
			Standbys:        standbys,
			TablePartitions: tables,
			Offsets:         map[int32]int64{},
		}
		if r.IntN(10) == 0 {
			m.Standbys = r.IntN(4)
		}
		if r.IntN(30) == 0 {
			m.Standbys = -1 // reported nothing
		}
		for t := range topics {
			if !uneven || r.IntN(3) != 0 {
				m.Topics = append(m.Topics, t)
			}
		}
		slices.Sort(m.Topics)
		for p := range maxP {
			if slices.Contains(prevOwner[p], i) {
				m.Active = append(m.Active, p)
			} else if r.IntN(4) == 0 {
				m.Standby = append(m.Standby, p)
			}
			if r.IntN(2) == 0 {
				m.Offsets[p] = int64(r.IntN(1000))
			}
		}
		if r.IntN(3) == 0 {
			// Owned per topic: mostly the partitions of Active, with
			// some noise.
			m.Owned = map[string][]int32{}
			for _, t := range m.Topics {
				for _, p := range m.Active {
					if p < topics[t] && r.IntN(8) != 0 {
						m.Owned[t] = append(m.Owned[t], p)
					}
				}
				if r.IntN(4) == 0 {
					m.Owned[t] = append(m.Owned[t], int32(r.IntN(int(topics[t]))))
				}
			}
		}
		members[i] = m
	}
	return scenario{seed: seed, members: members, topics: topics}
}

// checkPlan verifies the invariants every plan must satisfy, from the
// inputs alone (it re-derives groups and subscribers the slow way).
func checkPlan(members []Member, topics map[string]int32, plan *Plan) error {
	byMember := map[string]Member{}
	nodeOf := map[string]string{}
	for _, m := range members {
		if m.NodeID == "" {
			m.NodeID = m.MemberID
		}
		byMember[m.MemberID] = m
		nodeOf[m.MemberID] = m.NodeID
	}
	// Nodes: one per member, sorted.
	if len(plan.Nodes) != len(members) {
		return fmt.Errorf("%d nodes for %d members", len(plan.Nodes), len(members))
	}
	for i, n := range plan.Nodes {
		m, ok := byMember[n.MemberID]
		if !ok || m.NodeID != n.NodeID || m.Web != n.Web || m.Actor != n.Actor {
			return fmt.Errorf("node entry %+v does not match a member", n)
		}
		if i > 0 && plan.Nodes[i-1].NodeID >= n.NodeID {
			return fmt.Errorf("nodes not sorted: %q before %q", plan.Nodes[i-1].NodeID, n.NodeID)
		}
		if _, ok := plan.Assignments[n.MemberID]; !ok {
			return fmt.Errorf("member %s has no assignment entry", n.MemberID)
		}
	}
	if len(plan.Assignments) != len(members) {
		return fmt.Errorf("%d assignment entries for %d members", len(plan.Assignments), len(members))
	}

	subscribers := func(t string) []string {
		var out []string
		for _, m := range members {
			if slices.Contains(m.Topics, t) {
				out = append(out, m.MemberID)
			}
		}
		slices.Sort(out)
		return out
	}
	// owners[t][p] = member id.
	owners := map[string][]string{}
	for t, n := range topics {
		subs := subscribers(t)
		o := make([]string, n)
		for id, a := range plan.Assignments {
			parts := a[t]
			if !slices.IsSorted(parts) {
				return fmt.Errorf("member %s: %s partitions not sorted: %v", id, t, parts)
			}
			for _, p := range parts {
				if p < 0 || p >= n {
					return fmt.Errorf("member %s got %s/%d, topic has %d partitions", id, t, p, n)
				}
				if o[p] != "" {
					return fmt.Errorf("%s/%d assigned twice (%s, %s)", t, p, o[p], id)
				}
				if !slices.Contains(subs, id) {
					return fmt.Errorf("%s/%d assigned to %s, which does not subscribe to %s", t, p, id, t)
				}
				o[p] = id
			}
		}
		for p := range o {
			if len(subs) > 0 && o[p] == "" {
				return fmt.Errorf("%s/%d not assigned", t, p)
			}
		}
		owners[t] = o
		// Balance among the topic's subscribers.
		lo, hi := int(n), 0
		for _, id := range subs {
			c := len(plan.Assignments[id][t])
			lo, hi = min(lo, c), max(hi, c)
		}
		if len(subs) > 0 && hi-lo > 1 {
			return fmt.Errorf("%s unbalanced: %d..%d partitions per member", t, lo, hi)
		}
	}
	// Alignment: same count and same subscribers → same owners.
	for t1 := range topics {
		for t2 := range topics {
			if t1 < t2 && topics[t1] == topics[t2] && slices.Equal(subscribers(t1), subscribers(t2)) &&
				!slices.Equal(owners[t1], owners[t2]) {
				return fmt.Errorf("co-partitioned %s and %s not aligned: %v vs %v", t1, t2, owners[t1], owners[t2])
			}
		}
	}

	// Standbys.
	var tp int32
	for _, m := range members {
		tp = max(tp, m.TablePartitions)
	}
	var tableTopic string
	for t, n := range topics {
		if n != tp || len(subscribers(t)) == 0 {
			continue
		}
		if tableTopic == "" || len(subscribers(t)) > len(subscribers(tableTopic)) ||
			(len(subscribers(t)) == len(subscribers(tableTopic)) && t < tableTopic) {
			tableTopic = t
		}
	}
	if tableTopic == "" {
		if len(plan.Partitions) != 0 {
			return fmt.Errorf("%d table partitions without a table group", len(plan.Partitions))
		}
		return nil
	}
	if len(plan.Partitions) != int(tp) {
		return fmt.Errorf("%d table partitions, want %d", len(plan.Partitions), tp)
	}
	subs := subscribers(tableTopic)
	s := -1
	for _, id := range subs {
		if sb := byMember[id].Standbys; sb >= 0 && (s < 0 || sb < s) {
			s = sb
		}
	}
	s = min(max(s, 0), len(subs)-1)
	// Work (actives + standbys of the table group) per node stays within
	// ⌈P·(S+1)/M⌉: members with fewer actives carry more standbys.
	work := (int(tp)*(s+1) + len(subs) - 1) / len(subs)
	sbLoad := map[string]int{}
	actLoad := map[string]int{}
	subNodes := map[string]bool{}
	for _, id := range subs {
		subNodes[nodeOf[id]] = true
	}
	for p, pp := range plan.Partitions {
		if pp.Partition != int32(p) {
			return fmt.Errorf("table partition entry %d is for %d", p, pp.Partition)
		}
		if want := nodeOf[owners[tableTopic][p]]; pp.Active != want {
			return fmt.Errorf("table partition %d active on %s, but %s/%d is on %s", p, pp.Active, tableTopic, p, want)
		}
		actLoad[pp.Active]++
		if len(pp.Standbys) != s {
			return fmt.Errorf("table partition %d has %d standbys, want %d", p, len(pp.Standbys), s)
		}
		if !slices.IsSorted(pp.Standbys) || len(slices.Compact(slices.Clone(pp.Standbys))) != len(pp.Standbys) {
			return fmt.Errorf("table partition %d standbys not sorted and distinct: %v", p, pp.Standbys)
		}
		for _, sb := range pp.Standbys {
			if sb == pp.Active {
				return fmt.Errorf("table partition %d: standby on its active node %s", p, sb)
			}
			if !subNodes[sb] {
				return fmt.Errorf("table partition %d: standby on %s, which is not in the table group", p, sb)
			}
			sbLoad[sb]++
		}
	}
	for n, l := range sbLoad {
		if l+actLoad[n] > work {
			return fmt.Errorf("node %s has %d actives and %d standbys, limit ⌈P·(S+1)/M⌉ = %d", n, actLoad[n], l, work)
		}
	}
	return nil
}

func TestAssignProperties(t *testing.T) {
	for seed := range uint64(propertyScenarios) {
		sc := genScenario(seed)
		plan, err := Assign(sc.members, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		if err := checkPlan(sc.members, sc.topics, plan); err != nil {
			t.Fatalf("%v: %v\nplan: %v", sc, err, plan)
		}
	}
}

// TestAssignDeterministic: the same members in any order, with their lists
// in any order, give the identical plan.
func TestAssignDeterministic(t *testing.T) {
	for seed := range uint64(propertyScenarios / 3) {
		sc := genScenario(seed)
		want, err := Assign(sc.members, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		r := rand.New(rand.NewPCG(seed, 1))
		for range 3 {
			shuffled := make([]Member, len(sc.members))
			for i, m := range sc.members {
				m.Topics = slices.Clone(m.Topics)
				m.Active = slices.Clone(m.Active)
				m.Standby = slices.Clone(m.Standby)
				r.Shuffle(len(m.Topics), func(i, j int) { m.Topics[i], m.Topics[j] = m.Topics[j], m.Topics[i] })
				r.Shuffle(len(m.Active), func(i, j int) { m.Active[i], m.Active[j] = m.Active[j], m.Active[i] })
				r.Shuffle(len(m.Standby), func(i, j int) { m.Standby[i], m.Standby[j] = m.Standby[j], m.Standby[i] })
				if m.Owned != nil {
					owned := map[string][]int32{}
					for t, parts := range m.Owned {
						parts = slices.Clone(parts)
						r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
						owned[t] = parts
					}
					m.Owned = owned
				}
				shuffled[i] = m
			}
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			got, err := Assign(shuffled, sc.topics)
			if err != nil {
				t.Fatalf("%v: %v", sc, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v: plan depends on input order:\n got %v\nwant %v", sc, got, want)
			}
		}
	}
}

// reportsFrom returns the members' next reports after plan: each reports
// what plan gave it (about half of them also per topic, in Owned, as
// Strategy does); the active's offset of a shard is ahead of its standbys'
// (random lag).
func reportsFrom(r *rand.Rand, members []Member, plan *Plan) []Member {
	out := make([]Member, len(members))
	for i, m := range members {
		m.Active = plan.ActivePartitions(m.NodeID)
		m.Standby = plan.StandbyPartitions(m.NodeID)
		m.Owned = nil
		if r.IntN(2) == 0 {
			m.Owned = plan.Actives(m.NodeID)
		}
		m.Offsets = map[int32]int64{}
		for _, p := range m.Active {
			m.Offsets[p] = 10000
		}
		for _, p := range m.Standby {
			m.Offsets[p] = 10000 - int64(r.IntN(500))
		}
		out[i] = m
	}
	return out
}

// ownersOf returns the NodeID owning each partition of topic.
func ownersOf(plan *Plan, topic string) []string {
	return plan.Owners()[topic]
}

// balancedStart returns a scenario with one co-partition group that every
// member subscribes to, and the members' reports after a first plan.
// For odd seeds the first plan is made without history (a fresh cluster).
func balancedStart(t *testing.T, seed uint64) (scenario, *Plan, []Member) {
	t.Helper()
	sc := genScenario(seed)
	delete(sc.topics, "x")
	if seed%2 == 1 {
		for i := range sc.members {
			sc.members[i].Active, sc.members[i].Standby, sc.members[i].Offsets = nil, nil, nil
		}
	}
	var numP int32
	for _, n := range sc.topics {
		numP = n
	}
	for i := range sc.members {
		sc.members[i].Topics = nil
		for topic := range sc.topics {
			sc.members[i].Topics = append(sc.members[i].Topics, topic)
		}
		sc.members[i].TablePartitions = numP
		if sc.members[i].Standbys < 0 {
			sc.members[i].Standbys = 1
		}
	}
	first, err := Assign(sc.members, sc.topics)
	if err != nil {
		t.Fatalf("%v: %v", sc, err)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	return sc, first, reportsFrom(r, sc.members, first)
}

// TestAssignStickyLeave: from a balanced plan, one node leaving moves only
// its own partitions (≤ ⌈P/N⌉), and each of them goes to one of its
// standbys unless all of them are full with partitions they kept or held
// warm.
func TestAssignStickyLeave(t *testing.T) {
	var promoted, cold [2]int // by seed parity: with history, fresh
	for seed := range uint64(propertyScenarios / 3) {
		sc, before, reports := balancedStart(t, seed)
		if len(reports) < 2 {
			continue
		}
		r := rand.New(rand.NewPCG(seed, 3))
		gone := r.IntN(len(reports))
		departed := reports[gone]
		survivors := slices.Delete(slices.Clone(reports), gone, gone+1)
		after, err := Assign(survivors, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		if err := checkPlan(survivors, sc.topics, after); err != nil {
			t.Fatalf("%v: after leave: %v", sc, err)
		}
		old, cur := ownersOf(before, "t0"), ownersOf(after, "t0")
		numP, n := len(old), len(reports)
		moved := 0
		for p := range old {
			if old[p] == cur[p] {
				continue
			}
			moved++
			if old[p] != departed.NodeID {
				t.Fatalf("%v: %s left, yet partition %d moved from survivor %s to %s", sc, departed.NodeID, p, old[p], cur[p])
			}
		}
		if bound := (numP+n-1)/n + 1; moved > bound {
			t.Fatalf("%v: one leave moved %d partitions, bound ⌈P/N⌉+1 = %d", sc, moved, bound)
		}
		// Standby promotion.
		for _, p := range departed.Active {
			sbs := before.Partitions[p].Standbys
			if slices.Contains(sbs, cur[p]) {
				promoted[seed%2]++
				continue
			}
			if len(sbs) > 0 {
				cold[seed%2]++
			}
			for _, sb := range sbs {
				m := reports[slices.IndexFunc(reports, func(m Member) bool { return m.NodeID == sb })]
				for _, q := range after.ActivePartitions(sb) {
					if !slices.Contains(m.Active, q) && !slices.Contains(m.Standby, q) {
						t.Fatalf("%v: %s left; its partition %d went cold to %s although its standby %s took partition %d it held no copy of",
							sc, departed.NodeID, p, cur[p], sb, q)
					}
				}
			}
		}
	}
	t.Logf("partitions of a departed node, first plan from random history: %d promoted to a standby, %d moved cold as every standby was full",
		promoted[0], cold[0])
	t.Logf("partitions of a departed node, first plan fresh: %d promoted to a standby, %d moved cold as every standby was full",
		promoted[1], cold[1])
}

// TestAssignStickyJoin: from a balanced plan, one node joining moves at
// most ⌈P/N⌉+1 partitions, all of them to the new node.
func TestAssignStickyJoin(t *testing.T) {
	for seed := range uint64(propertyScenarios / 3) {
		sc, before, reports := balancedStart(t, seed)
		joined := Member{
			MemberID:        "zz-new",
			NodeID:          "n-new",
			Topics:          reports[0].Topics,
			Standbys:        reports[0].Standbys,
			TablePartitions: reports[0].TablePartitions,
		}
		if seed%2 == 0 {
			joined.NodeID = "a-new" // sorts first: wins ties
		}
		members := append(slices.Clone(reports), joined)
		after, err := Assign(members, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		if err := checkPlan(members, sc.topics, after); err != nil {
			t.Fatalf("%v: after join: %v", sc, err)
		}
		old, cur := ownersOf(before, "t0"), ownersOf(after, "t0")
		numP, n := len(old), len(reports)
		moved := 0
		for p := range old {
			if old[p] != cur[p] {
				moved++
				if cur[p] != joined.NodeID {
					t.Fatalf("%v: %s joined, yet partition %d moved from %s to %s", sc, joined.NodeID, p, old[p], cur[p])
				}
			}
		}
		if bound := (numP+n-1)/n + 1; moved > bound {
			t.Fatalf("%v: one join moved %d partitions, bound ⌈P/N⌉+1 = %d", sc, moved, bound)
		}
	}
}

// TestAssignStable: members reporting the plan they got get the same plan
// again (no churn without a membership change), also after restarting with
// new member ids (static membership).
func TestAssignStable(t *testing.T) {
	for seed := range uint64(propertyScenarios / 3) {
		sc, before, reports := balancedStart(t, seed)
		again, err := Assign(reports, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		if !reflect.DeepEqual(again.Assignments, before.Assignments) {
			t.Fatalf("%v: actives changed without a membership change:\nbefore %v\nafter  %v", sc, before, again)
		}
		// Standby placement weighs failover capacity as well as warmth, so
		// a reported plan may shift a few standbys (never an active); a
		// fixpoint would be better (see the issue notes).
		if moved, total := standbyMoves(before, again); moved > max(3, total/5) {
			t.Fatalf("%v: %d of %d standbys moved without a membership change:\nbefore %v\nafter  %v", sc, moved, total, before, again)
		}
		for i := range reports {
			reports[i].MemberID += "-restarted"
		}
		restarted, err := Assign(reports, sc.topics)
		if err != nil {
			t.Fatalf("%v: %v", sc, err)
		}
		if !reflect.DeepEqual(ownersOf(restarted, "t0"), ownersOf(before, "t0")) {
			t.Fatalf("%v: actives changed when members rejoined with new member ids", sc)
		}
		if moved, total := standbyMoves(before, restarted); moved > max(3, total/5) {
			t.Fatalf("%v: %d of %d standbys moved when members rejoined with new member ids", sc, moved, total)
		}
	}
}

// TestAssignPromotesMostCaughtUpStandby: of two standbys, the one with the
// higher offset takes over.
func TestAssignPromotesMostCaughtUpStandby(t *testing.T) {
	topics := map[string]int32{"words": 3}
	for _, tc := range []struct {
		n2, n3 int64
		want   string
	}{{100, 90, "n2"}, {90, 100, "n3"}, {100, 100, "n2"}} {
		members := []Member{
			{MemberID: "m2", NodeID: "n2", Topics: []string{"words"}, Active: []int32{1}, Standby: []int32{0}, Offsets: map[int32]int64{0: tc.n2}},
			{MemberID: "m3", NodeID: "n3", Topics: []string{"words"}, Active: []int32{2}, Standby: []int32{0}, Offsets: map[int32]int64{0: tc.n3}},
		}
		plan, err := Assign(members, topics)
		if err != nil {
			t.Fatal(err)
		}
		if got := ownersOf(plan, "words")[0]; got != tc.want {
			t.Errorf("offsets n2=%d n3=%d: partition 0 went to %s, want %s", tc.n2, tc.n3, got, tc.want)
		}
	}
}

func TestAssignErrors(t *testing.T) {
	w := []string{"words"}
	for name, tc := range map[string]struct {
		members []Member
		topics  map[string]int32
	}{
		"no members":        {nil, map[string]int32{"words": 1}},
		"no member id":      {[]Member{{NodeID: "n1", Topics: w}}, map[string]int32{"words": 1}},
		"duplicate member":  {[]Member{{MemberID: "m", NodeID: "n1"}, {MemberID: "m", NodeID: "n2"}}, map[string]int32{"words": 1}},
		"duplicate node":    {[]Member{{MemberID: "m1", NodeID: "n"}, {MemberID: "m2", NodeID: "n"}}, map[string]int32{"words": 1}},
		"negative count":    {[]Member{{MemberID: "m1", NodeID: "n1", Topics: w}}, map[string]int32{"words": -1}},
		"node id clash":     {[]Member{{MemberID: "m1"}, {MemberID: "m2", NodeID: "m1"}}, nil},
		"node id clash rev": {[]Member{{MemberID: "m2", NodeID: "m1"}, {MemberID: "m1"}}, nil},
	} {
		if _, err := Assign(tc.members, tc.topics); !errors.Is(err, ErrAssignInput) {
			t.Errorf("%s: got %v, want ErrAssignInput", name, err)
		}
	}
	// Edge cases that are fine: no topics, more members than partitions,
	// an unsubscribed topic, an empty topic.
	plan, err := Assign([]Member{{MemberID: "m1", Topics: w}, {MemberID: "m2", Topics: w}, {MemberID: "m3"}},
		map[string]int32{"words": 1, "other": 3, "empty": 0})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.String(); got != "gen 0: m1 words=[0]; m2 none; m3 none" {
		t.Errorf("plan = %s", got)
	}
}

// simulation returns 200 members of a cluster with 10,000 partitions in
// two co-partitioned topics and 2 standbys, and the topics.
func simulation() ([]Member, map[string]int32) {
	const nodes, parts = 200, 10000
	topics := map[string]int32{"events": parts, "events-repartition": parts}
	members := make([]Member, nodes)
	for i := range members {
		members[i] = Member{
			MemberID:        fmt.Sprintf("node-%03d-7f3a9c", i),
			NodeID:          fmt.Sprintf("node-%03d", i),
			Topics:          []string{"events", "events-repartition"},
			Standbys:        2,
			TablePartitions: parts,
			Web:             fmt.Sprintf("10.0.%d.%d:6066", i/250, i%250),
			Actor:           fmt.Sprintf("10.0.%d.%d:8090", i/250, i%250),
		}
	}
	return members, topics
}

// TestAssignSimulation200x10000 plans a 200-node cluster of 10,000
// partitions from scratch, again after the nodes report, and after one node
// leaves, logging how long each plan takes (see also
// BenchmarkAssign200x10000).
func TestAssignSimulation200x10000(t *testing.T) {
	members, topics := simulation()
	r := rand.New(rand.NewPCG(1, 1))
	timed := func(what string, ms []Member) *Plan {
		start := time.Now()
		plan, err := Assign(ms, topics)
		d := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := checkPlan(ms, topics, plan); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		data, err := encodePlan(plan)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-28s %v (plan encodes to %d KiB per member)", what+":", d, len(data)/1024)
		return plan
	}
	fresh := timed("fresh 200×10000", members)
	reports := reportsFrom(r, members, fresh)
	steady := timed("steady (reports of the plan)", reports)
	if !reflect.DeepEqual(steady, fresh) {
		t.Error("steady-state plan differs from the plan the members report")
	}
	gone := reports[17]
	left := timed("one node left", slices.Delete(slices.Clone(reports), 17, 18))
	moved := 0
	old, cur := ownersOf(fresh, "events"), ownersOf(left, "events")
	for p := range old {
		if old[p] != cur[p] {
			moved++
		}
	}
	t.Logf("%s left: %d partitions moved (it had %d)", gone.NodeID, moved, len(gone.Active))
}

func BenchmarkAssign200x10000(b *testing.B) {
	members, topics := simulation()
	fresh, err := Assign(members, topics)
	if err != nil {
		b.Fatal(err)
	}
	reports := reportsFrom(rand.New(rand.NewPCG(1, 1)), members, fresh)
	for _, bc := range []struct {
		name    string
		members []Member
	}{
		{"fresh", members},
		{"steady", reports},
		{"leave", slices.Delete(slices.Clone(reports), 17, 18)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Assign(bc.members, topics); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStandbysCoverAnySingleFailure: for every node of a fresh 3-node plan
// over 8 partitions, when that node leaves, each of its partitions goes to
// a member that held a standby copy (none goes cold).
func TestStandbysCoverAnySingleFailure(t *testing.T) {
	for _, numP := range []int32{4, 6, 8, 12} {
		fresh := []Member{
			{MemberID: "m1", NodeID: "n1", Topics: []string{"t"}, Standbys: 1, TablePartitions: numP},
			{MemberID: "m2", NodeID: "n2", Topics: []string{"t"}, Standbys: 1, TablePartitions: numP},
			{MemberID: "m3", NodeID: "n3", Topics: []string{"t"}, Standbys: 1, TablePartitions: numP},
		}
		plan, err := Assign(fresh, map[string]int32{"t": numP})
		if err != nil {
			t.Fatal(err)
		}
		for _, dead := range []string{"n1", "n2", "n3"} {
			var survivors []Member
			for _, m := range fresh {
				if m.NodeID == dead {
					continue
				}
				m.Active = plan.ActivePartitions(m.NodeID)
				m.Standby = plan.StandbyPartitions(m.NodeID)
				survivors = append(survivors, m)
			}
			after, err := Assign(survivors, map[string]int32{"t": numP})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range plan.ActivePartitions(dead) {
				owner, _ := after.Owner("t", p)
				var warm bool
				for _, m := range survivors {
					if m.NodeID == owner.NodeID && (slices.Contains(m.Standby, p) || slices.Contains(m.Active, p)) {
						warm = true
					}
				}
				if !warm {
					t.Errorf("P=%d, %s dies: partition %d goes cold to %s\nbefore: %v\nafter: %v", numP, dead, p, owner.NodeID, plan, after)
				}
			}
		}
	}
}

// standbyMoves counts standby placements of b not in a, and all of a's.
func standbyMoves(a, b *Plan) (moved, total int) {
	for i, pp := range a.Partitions {
		total += len(pp.Standbys)
		if i < len(b.Partitions) {
			for _, sb := range b.Partitions[i].Standbys {
				if !slices.Contains(pp.Standbys, sb) {
					moved++
				}
			}
		}
	}
	return moved, total
}
