package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is the pure core of Mephisto's partition assignor: Assign turns
// what the members of the consumer group report into a Plan. It does no I/O
// and is deterministic: members, topics and partitions are sorted before
// anything is decided, every tie is broken by NodeID (then MemberID), and
// the same input in any order yields the same Plan. The sarama adapter
// around it is in assign_strategy.go, the wire format in assign_wire.go.

// Member is what one group member reports in its subscription user data
// (plus the member id and subscribed topics Kafka itself carries).
type Member struct {
	// MemberID is the Kafka member id (the key of sarama's member map).
	MemberID string
	// NodeID is the stable node id, which is also the member's
	// group.instance.id. Ties are broken by NodeID, then MemberID. Empty
	// means a member that reported nothing (its user data was empty or
	// unreadable); Assign then uses MemberID as its node id.
	NodeID string
	// Topics are the topics the member subscribes to.
	Topics []string
	// Standbys is the node's configured standby count (--standbys). The
	// plan uses the smallest value among the members of the table group. A
	// negative value means "no opinion" (a member that reported nothing)
	// and is ignored; if every member has no opinion there are no standbys.
	Standbys int
	// Active lists the partition indexes p the member was active for in
	// the previous generation: the grains it ran, whose table shards it
	// holds (warm state). Unless Owned says otherwise, an index is taken
	// to mean partition p of every topic the member subscribes to.
	Active []int32
	// Owned optionally lists, topic → partitions, what the member was
	// assigned in the previous generation. When not nil it, rather than
	// Active, decides which partitions the member keeps: exact also when
	// co-partition groups of different sizes, or topics with different
	// subscribers, make indexes ambiguous. Strategy fills it in from the
	// last plan it received when local() leaves it nil.
	Owned map[string][]int32
	// Standby lists the partition indexes the member held standby copies
	// of (table shards whose changelogs it tails).
	Standby []int32
	// Offsets holds, per partition p, the sum over the tables of the
	// changelog offsets the member's local store holds for shard p: higher
	// means more caught up. It may be empty.
	Offsets map[int32]int64
	// TablePartitions is the partition count of the tables' changelogs; 0
	// means the app has no tables, hence no standbys. The plan uses the
	// largest value reported.
	TablePartitions int32
	// Web and Actor are the addresses other nodes use to reach this one
	// (HTTP and actor system); they are carried into the routing table.
	Web, Actor string
}

// NodeInfo is one entry of the routing table: a node and how to reach it.
type NodeInfo struct {
	NodeID   string
	MemberID string
	Web      string
	Actor    string
}

// PartitionPlan says who owns partition (table shard) Partition of the
// table co-partition group: the node that is active for it, and the nodes
// that keep standby copies of it.
type PartitionPlan struct {
	Partition int32
	// Active is the NodeID of the node processing the partition.
	Active string
	// Standbys are the NodeIDs of the nodes tailing the partition's
	// changelogs, sorted; never Active, never repeated.
	Standbys []string
}

// Plan is a whole assignment. Every member is told its own active
// partitions by Kafka; the routing table (Nodes, Partitions, Assignments)
// is shared with all members.
type Plan struct {
	// Generation is the consumer group generation the plan belongs to, the
	// fencing token of everything done under it. Assign leaves it 0; the
	// Strategy fills it in.
	Generation int32
	// Nodes lists every member, sorted by NodeID.
	Nodes []NodeInfo
	// Partitions describes the table co-partition group (the topics whose
	// partition count equals the tables' changelog partition count), one
	// entry per partition, sorted by Partition. It is empty when the app
	// has no tables or no subscribed topic has that partition count.
	Partitions []PartitionPlan
	// Assignments maps MemberID → topic → sorted partitions. Every member
	// has an entry, possibly empty.
	Assignments map[string]map[string][]int32
}

// ErrAssignInput is returned (wrapped; test with errors.Is) by Assign and
// by Strategy.Plan when the members or topics cannot be assigned: no
// members, a member without a member id, two members with the same member
// id or node id, or a negative partition count.
var ErrAssignInput = errors.New("cluster: invalid assignor input")

// Assign computes the plan for members and topics (topic → partition
// count), following DESIGN.md decision 1:
//
//   - Topics with the same partition count form a co-partition group;
//     within a group, partition p of every topic with the same subscribers
//     goes to the same member. Topics of one group with different
//     subscriber sets are assigned separately among their own subscribers.
//     Groups are processed in order of (count, first topic name).
//   - Within a group each of its M subscribers gets ⌊P/M⌋ or ⌈P/M⌉
//     partitions.
//   - A member keeps the partitions it had (Owned, else Active) while that
//     stays within balance; members keeping the most get the ⌈P/M⌉ slots
//     (ties: the most caught-up standby of more partitions that must move).
//     A member over its quota keeps those it is most caught up on.
//   - A partition that must move (its owner left, or was over quota) goes
//     to the most caught-up member that reported a standby copy of it and
//     has room, else to the member with the fewest partitions.
//   - Each partition of the table group gets S = min(Standbys, M-1)
//     standbys, never on its active node, preferring warm members (held it
//     before, as standby or active), then higher offsets, then members that
//     stand by for fewer partitions of the same active node (so that a dead
//     node's partitions have standbys on many nodes), then less work
//     (actives + standbys), then NodeID; no member gets more than ⌈P·S/M⌉
//     standbys when that is possible.
//
// Assign does no I/O and is deterministic: the same members in any order
// give the same Plan. It takes about 60 ms for 200 members and 10,000
// partitions with 2 standbys (BenchmarkAssign200x10000).
func Assign(members []Member, topics map[string]int32) (*Plan, error) {
	ms, err := prepareMembers(members)
	if err != nil {
		return nil, err
	}
	units, err := buildUnits(ms, topics)
	if err != nil {
		return nil, err
	}

	st := newAssignState(ms, units)
	owners := make([][]int, len(units))
	for i, u := range units {
		owners[i] = st.assignActives(u)
	}

	plan := &Plan{
		Nodes:       make([]NodeInfo, len(ms)),
		Assignments: make(map[string]map[string][]int32, len(ms)),
	}
	for i, m := range ms {
		plan.Nodes[i] = NodeInfo{NodeID: m.NodeID, MemberID: m.MemberID, Web: m.Web, Actor: m.Actor}
		plan.Assignments[m.MemberID] = map[string][]int32{}
	}
	for ui, u := range units {
		perMember := make([][]int32, len(ms))
		for p, o := range owners[ui] {
			perMember[o] = append(perMember[o], int32(p))
		}
		for i, parts := range perMember {
			if len(parts) == 0 {
				continue
			}
			for _, t := range u.topics {
				plan.Assignments[ms[i].MemberID][t] = slices.Clone(parts)
			}
		}
	}

	if ti := tableUnit(ms, units); ti >= 0 {
		u := units[ti]
		sbs := st.assignStandbys(u, owners[ti])
		plan.Partitions = make([]PartitionPlan, u.count)
		for p := range plan.Partitions {
			pp := PartitionPlan{Partition: int32(p), Active: ms[owners[ti][p]].NodeID}
			if len(sbs[p]) > 0 {
				slices.Sort(sbs[p]) // member index order is NodeID order
				pp.Standbys = make([]string, len(sbs[p]))
				for k, i := range sbs[p] {
					pp.Standbys[k] = ms[i].NodeID
				}
			}
			plan.Partitions[p] = pp
		}
	}
	return plan, nil
}

// member is a normalized Member: sets instead of lists.
type member struct {
	Member
	topics map[string]bool
}

// prepareMembers validates and normalizes members and sorts them by
// (NodeID, MemberID). From here on a member is named by its index.
func prepareMembers(members []Member) ([]*member, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrAssignInput)
	}
	ms := make([]*member, len(members))
	for i, m := range members {
		if m.MemberID == "" {
			return nil, fmt.Errorf("%w: member %d (node %q) has no member id", ErrAssignInput, i, m.NodeID)
		}
		if m.NodeID == "" {
			m.NodeID = m.MemberID
		}
		nm := &member{Member: m, topics: make(map[string]bool, len(m.Topics))}
		for _, t := range m.Topics {
			nm.topics[t] = true
		}
		ms[i] = nm
	}
	slices.SortFunc(ms, func(a, b *member) int {
		return cmp.Or(strings.Compare(a.NodeID, b.NodeID), strings.Compare(a.MemberID, b.MemberID))
	})
	seen := make(map[string]string, len(ms)) // member id → node id
	for i, m := range ms {
		if node, dup := seen[m.MemberID]; dup {
			return nil, fmt.Errorf("%w: member id %q reported twice (nodes %q and %q)", ErrAssignInput, m.MemberID, node, m.NodeID)
		}
		seen[m.MemberID] = m.NodeID
		if i > 0 && ms[i-1].NodeID == m.NodeID {
			return nil, fmt.Errorf("%w: node id %q reported by two members (%q and %q): two processes run with the same node id",
				ErrAssignInput, m.NodeID, ms[i-1].MemberID, m.MemberID)
		}
	}
	return ms, nil
}

// unit is the assignment unit: the topics of one co-partition group that
// have exactly the same subscribers. Partition p of every topic of a unit
// goes to the same member.
type unit struct {
	count   int32
	topics  []string // sorted
	members []int    // subscribers, ascending member index
}

// buildUnits groups the subscribed topics into units, sorted by (count,
// first topic name). Topics nobody subscribes to, and empty topics, are
// left out.
func buildUnits(ms []*member, topics map[string]int32) ([]*unit, error) {
	names := make([]string, 0, len(topics))
	for t, n := range topics {
		if n < 0 {
			return nil, fmt.Errorf("%w: topic %q has %d partitions", ErrAssignInput, t, n)
		}
		if n > 0 {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	byKey := make(map[string]*unit)
	var units []*unit
	var key strings.Builder
	for _, t := range names {
		var subs []int
		for i, m := range ms {
			if m.topics[t] {
				subs = append(subs, i)
			}
		}
		if len(subs) == 0 {
			continue
		}
		key.Reset()
		key.WriteString(strconv.Itoa(int(topics[t])))
		for _, i := range subs {
			key.WriteByte(',')
			key.WriteString(strconv.Itoa(i))
		}
		u, ok := byKey[key.String()]
		if !ok {
			u = &unit{count: topics[t], members: subs}
			byKey[key.String()] = u
			units = append(units, u)
		}
		u.topics = append(u.topics, t) // names are sorted, so topics stay sorted
	}
	slices.SortFunc(units, func(a, b *unit) int {
		return cmp.Or(cmp.Compare(a.count, b.count), strings.Compare(a.topics[0], b.topics[0]))
	})
	return units, nil
}

// tableUnit returns the index of the unit whose partitions are the table
// shards: among the units whose count is the largest TablePartitions any
// member reports, the one with the most subscribers (ties: the first in
// unit order). It returns -1 if there is none.
func tableUnit(ms []*member, units []*unit) int {
	var tp int32
	for _, m := range ms {
		tp = max(tp, m.TablePartitions)
	}
	best := -1
	for i, u := range units {
		if u.count == tp && (best < 0 || len(u.members) > len(units[best].members)) {
			best = i
		}
	}
	return best
}

// assignState is what Assign's passes share: who reported what, indexed by
// partition, and the number of actives each member got so far.
type assignState struct {
	ms []*member
	// activeHolders[p] and standbyHolders[p] list, in ascending order, the
	// members that reported p as Active / Standby.
	activeHolders  [][]int
	standbyHolders [][]int
	// reported[p] lists the members that reported an offset for p, with
	// the offset, in ascending member order.
	reported [][]reportedOffset
	// load[i] is the number of partition indexes member i got in the units
	// assigned so far; it spreads the extra partitions of several units.
	load []int
}

type reportedOffset struct {
	member int
	offset int64
}

func newAssignState(ms []*member, units []*unit) *assignState {
	var maxCount int32
	for _, u := range units {
		maxCount = max(maxCount, u.count)
	}
	st := &assignState{
		ms:             ms,
		activeHolders:  make([][]int, maxCount),
		standbyHolders: make([][]int, maxCount),
		reported:       make([][]reportedOffset, maxCount),
		load:           make([]int, len(ms)),
	}
	add := func(holders [][]int, i int, parts []int32) {
		for _, p := range parts {
			if p < 0 || p >= maxCount {
				continue
			}
			// Members are visited in ascending order, so a duplicate
			// report of p by member i is the last entry.
			if h := holders[p]; len(h) > 0 && h[len(h)-1] == i {
				continue
			}
			holders[p] = append(holders[p], i)
		}
	}
	for i, m := range ms {
		add(st.activeHolders, i, m.Active)
		add(st.standbyHolders, i, m.Standby)
		for p, off := range m.Offsets {
			if p >= 0 && p < maxCount && off != 0 {
				st.reported[p] = append(st.reported[p], reportedOffset{i, off})
			}
		}
	}
	return st
}

// claims returns the partitions of unit u member i says it had, possibly
// unsorted and repeated: the union of Owned over u's topics if the member
// reported Owned, else Active.
func (st *assignState) claims(i int, u *unit) []int32 {
	m := st.ms[i]
	if m.Owned == nil {
		return m.Active
	}
	if len(u.topics) == 1 {
		return m.Owned[u.topics[0]]
	}
	var out []int32
	for _, t := range u.topics {
		out = append(out, m.Owned[t]...)
	}
	return out
}

// offset returns what member i reported for partition p.
func (st *assignState) offset(i int, p int) int64 {
	return st.ms[i].Offsets[int32(p)]
}

// assignActives assigns the partitions of u and returns the owning member
// index of every partition.
func (st *assignState) assignActives(u *unit) []int {
	numP, numM := int(u.count), len(u.members)
	n := len(st.ms)
	inUnit := make([]bool, n)
	for _, i := range u.members {
		inUnit[i] = true
	}

	// 1. Claims: each partition stays with the subscriber that had it
	// (Owned, else Active); if several did (stale reports), with the most
	// caught up.
	owner := make([]int, numP)
	for p := range owner {
		owner[p] = -1
	}
	count := make([]int, n)
	for _, i := range u.members {
		for _, p := range st.claims(i, u) {
			if p < 0 || int(p) >= numP {
				continue
			}
			if o := owner[p]; o < 0 || st.offset(i, int(p)) > st.offset(o, int(p)) {
				owner[p] = i
			}
		}
	}
	for _, o := range owner {
		if o >= 0 {
			count[o]++
		}
	}

	// 2. Quotas: ⌊P/M⌋ each, plus one for the P mod M members that keep the
	// most; among those that keep as many, first those that are the most
	// caught-up standby of more unclaimed partitions, then those that are
	// a standby of more, then those with the fewest actives in earlier
	// units.
	bestFor, warm := make([]int, n), make([]int, n)
	for p, o := range owner {
		if o >= 0 {
			continue
		}
		best := -1
		for _, i := range st.standbyHolders[p] {
			if !inUnit[i] {
				continue
			}
			warm[i]++
			if best < 0 || st.offset(i, p) > st.offset(best, p) {
				best = i
			}
		}
		if best >= 0 {
			bestFor[best]++
		}
	}
	order := slices.Clone(u.members)
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(count[b], count[a]), cmp.Compare(bestFor[b], bestFor[a]),
			cmp.Compare(warm[b], warm[a]), cmp.Compare(st.load[a], st.load[b]), cmp.Compare(a, b))
	})
	quota := make([]int, n)
	base, extra := numP/numM, numP%numM
	for r, i := range order {
		quota[i] = base
		if r < extra {
			quota[i]++
		}
	}

	// 3. Trim: a member over its quota keeps the partitions it is most
	// caught up on (then the lowest) and releases the rest.
	var over []int
	for _, i := range u.members {
		if count[i] > quota[i] {
			over = append(over, i)
		}
	}
	if len(over) > 0 {
		held := make(map[int][]int, len(over))
		for _, i := range over {
			held[i] = nil
		}
		for p, o := range owner {
			if _, ok := held[o]; ok {
				held[o] = append(held[o], p)
			}
		}
		for _, i := range over {
			ps := held[i]
			slices.SortFunc(ps, func(a, b int) int {
				return cmp.Or(cmp.Compare(st.offset(i, b), st.offset(i, a)), cmp.Compare(a, b))
			})
			for _, p := range ps[quota[i]:] {
				owner[p] = -1
			}
			count[i] = quota[i]
		}
	}

	// 4. Promote standbys: an orphan goes to its most caught-up standby
	// that has room. Orphans with fewer standbys go first, so that a member
	// that is standby for several is not used up by one that has
	// alternatives.
	type orphan struct{ p, holders int }
	var warmOrphans []orphan
	var cold []int
	for p, o := range owner {
		if o >= 0 {
			continue
		}
		h := 0
		for _, i := range st.standbyHolders[p] {
			if inUnit[i] {
				h++
			}
		}
		if h > 0 {
			warmOrphans = append(warmOrphans, orphan{p, h})
		} else {
			cold = append(cold, p)
		}
	}
	slices.SortFunc(warmOrphans, func(a, b orphan) int {
		return cmp.Or(cmp.Compare(a.holders, b.holders), cmp.Compare(a.p, b.p))
	})
	for _, o := range warmOrphans {
		best := -1
		for _, i := range st.standbyHolders[o.p] {
			if inUnit[i] && count[i] < quota[i] && (best < 0 || st.offset(i, o.p) > st.offset(best, o.p)) {
				best = i
			}
		}
		if best < 0 {
			cold = append(cold, o.p)
			continue
		}
		owner[o.p] = best
		count[best]++
	}

	// 5. The rest go, in partition order, to the member with room that has
	// the fewest (in this unit, then overall, then by NodeID).
	slices.Sort(cold)
	for _, p := range cold {
		best := -1
		for _, i := range u.members {
			if count[i] >= quota[i] {
				continue
			}
			if best < 0 || count[i] < count[best] || (count[i] == count[best] && st.load[i] < st.load[best]) {
				best = i
			}
		}
		// sum(quota) == P, so an orphan always finds room.
		owner[p] = best
		count[best]++
	}

	for _, i := range u.members {
		st.load[i] += count[i]
	}
	return owner
}

// assignStandbys chooses the standby members of every partition of the
// table unit u, whose owners are given. It returns the member indexes per
// partition, unsorted.
func (st *assignState) assignStandbys(u *unit, owner []int) [][]int {
	numP, numM := int(u.count), len(u.members)
	s := -1
	for _, i := range u.members {
		if sb := st.ms[i].Standbys; sb >= 0 && (s < 0 || sb < s) {
			s = sb
		}
	}
	s = min(max(s, 0), numM-1)
	sbs := make([][]int, numP)
	if s == 0 {
		return sbs
	}
	sbLoad := make([]int, len(st.ms))
	n := len(st.ms)
	pairs := newSpread(u, n)
	act := make([]int, n)
	for _, o := range owner {
		if o >= 0 {
			act[o]++
		}
	}
	// Balance work, not standbys alone: a member with fewer actives takes
	// more standbys, so that actives + standbys stay within ⌈P·(S+1)/M⌉
	// (and it has the room to take them over when a neighbour dies).
	work := (numP*(s+1) + numM - 1) / numM
	limitOf := func(i int) int { return max(work-act[i], 0) }

	// warmFor[i] == p+1 marks member i as having held p before (active or
	// standby): its copy of shard p only needs the tail. offFor[i] is its
	// offset for p if offFrom[i] == p+1, else 0. (Stamps instead of
	// clearing per partition.)
	warmFor, offFrom := make([]int, n), make([]int, n)
	offFor := make([]int64, n)
	offset := func(i, p int) int64 {
		if offFrom[i] == p+1 {
			return offFor[i]
		}
		return 0
	}
	// Failover capacity: when a partition's owner dies, its partitions
	// can be promoted only to standbys with room under the survivors'
	// quota ⌈P/(M-1)⌉. A member standing by for more of one owner's
	// partitions than it can take over would leave one to go cold.
	quotaAfter := numP
	if numM > 1 {
		quotaAfter = (numP + numM - 2) / (numM - 1)
	}
	overCapacity := func(p, i int) bool {
		return int(pairs.get(owner[p], i)) >= quotaAfter-act[i]
	}
	better := func(p, a, b int) bool {
		// Failover capacity first (a copy nobody can take over is of no
		// use), then warmth (a copy that only needs the tail).
		if oa, ob := overCapacity(p, a), overCapacity(p, b); oa != ob {
			return !oa
		}
		if wa, wb := warmFor[a] == p+1, warmFor[b] == p+1; wa != wb {
			return wa
		}
		if oa, ob := offset(a, p), offset(b, p); oa != ob {
			return oa > ob
		}
		if pa, pb := pairs.get(owner[p], a), pairs.get(owner[p], b); pa != pb {
			return pa < pb
		}
		if ta, tb := st.load[a]+sbLoad[a], st.load[b]+sbLoad[b]; ta != tb {
			return ta < tb
		}
		if sbLoad[a] != sbLoad[b] {
			return sbLoad[a] < sbLoad[b]
		}
		return a < b
	}
	for p := range numP {
		for _, i := range st.activeHolders[p] {
			warmFor[i] = p + 1
		}
		for _, i := range st.standbyHolders[p] {
			warmFor[i] = p + 1
		}
		for _, r := range st.reported[p] {
			offFrom[r.member], offFor[r.member] = p+1, r.offset
		}
		for range s {
			best := -1
			for _, i := range u.members {
				if i == owner[p] || slices.Contains(sbs[p], i) || sbLoad[i] >= limitOf(i) {
					continue
				}
				if best < 0 || better(p, i, best) {
					best = i
				}
			}
			if best < 0 {
				best = st.freeStandbySlot(u, owner, sbs, sbLoad, pairs, limitOf, p)
			}
			if best < 0 {
				// No way to stay within the limit: exceed it on the
				// best remaining member (there is one: S ≤ M-1).
				for _, i := range u.members {
					if i == owner[p] || slices.Contains(sbs[p], i) {
						continue
					}
					if best < 0 || better(p, i, best) {
						best = i
					}
				}
			}
			sbs[p] = append(sbs[p], best)
			sbLoad[best]++
			pairs.add(owner[p], best, 1)
		}
	}
	return sbs
}

// freeStandbySlot is called when partition p needs one more standby but
// every eligible member is at the limit while some other member (p's owner
// or one of p's standbys) is below it. It looks for an earlier partition q
// whose standby y could serve p and which the under-loaded member z could
// serve instead, moves q's slot from y to z, and returns y (now with a free
// slot) — or -1 if there is no such swap.
func (st *assignState) freeStandbySlot(u *unit, owner []int, sbs [][]int, sbLoad []int, pairs *spread, limitOf func(int) int, p int) int {
	var under []int
	for _, z := range u.members {
		if sbLoad[z] < limitOf(z) {
			under = append(under, z)
		}
	}
	// First try to take the slot from a placement that is not warm
	// anyway, then from any.
	for _, anyWarm := range []bool{false, true} {
		for q := range p {
			for k, y := range sbs[q] {
				if y == owner[p] || slices.Contains(sbs[p], y) {
					continue
				}
				if !anyWarm && (slices.Contains(st.standbyHolders[q], y) || slices.Contains(st.activeHolders[q], y)) {
					continue
				}
				for _, z := range under {
					if z == owner[q] || slices.Contains(sbs[q], z) {
						continue
					}
					sbs[q][k] = z
					sbLoad[z]++
					sbLoad[y]--
					pairs.add(owner[q], z, 1)
					pairs.add(owner[q], y, -1)
					return y
				}
			}
		}
	}
	return -1
}

// maxSpreadMembers bounds the members for which assignStandbys spreads the
// standbys of each node's partitions over many nodes: it keeps an M×M
// table (16 MiB at the bound). Larger groups skip that preference.
const maxSpreadMembers = 2048

// spread counts, for pairs of members (a, b) of a unit, the partitions
// active on a that b stands by for.
type spread struct {
	pos    []int // member index → position in the unit
	m      int
	counts []int32 // nil: not tracked
}

func newSpread(u *unit, n int) *spread {
	sp := &spread{m: len(u.members)}
	if sp.m > maxSpreadMembers {
		return sp
	}
	sp.pos = make([]int, n)
	for k, i := range u.members {
		sp.pos[i] = k
	}
	sp.counts = make([]int32, sp.m*sp.m)
	return sp
}

func (sp *spread) get(a, b int) int32 {
	if sp.counts == nil {
		return 0
	}
	return sp.counts[sp.pos[a]*sp.m+sp.pos[b]]
}

func (sp *spread) add(a, b int, d int32) {
	if sp.counts != nil {
		sp.counts[sp.pos[a]*sp.m+sp.pos[b]] += d
	}
}
