package cluster

import (
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

// StrategyName is the name under which Strategy takes part in Kafka's
// group protocol negotiation.
const StrategyName = "mephisto-copartitioned"

// Strategy is Mephisto's sarama BalanceStrategy: it plugs Assign into a
// sarama consumer group. Every node has its own Strategy, set as the only
// entry of Config.Consumer.Group.Rebalance.GroupStrategies, with
// Config.Consumer.Group.InstanceId set to the node id.
//
// How sarama drives it, once per rebalance:
//
//  1. every member: SubscriptionUserData, before JoinGroup — encodes the
//     node's fresh report (local());
//  2. the leader only: Plan — decodes every member's report, runs Assign
//     and keeps the whole plan;
//  3. the leader only: AssignmentData, once per member — encodes the whole
//     plan (routing table and standbys), stamped with the generation, into
//     every member's assignment;
//  4. every member: OnAssignment, after SyncGroup — decodes the plan it
//     received and hands it to onPlan, before the session's Setup runs.
//
// Implementing SubscriptionUserData also keeps sarama from sending the
// previous assignment's user data (here: a whole plan) back as the next
// subscription.
//
// A Strategy is safe for concurrent use.
type Strategy struct {
	local  func() Member
	onPlan func(*Plan)

	mu sync.Mutex
	// report is the last report sent in SubscriptionUserData. Guarded by mu.
	report Member
	// led is the plan this node computed as leader, for AssignmentData;
	// ledData is its encoding for generation ledGen. Guarded by mu.
	led     *Plan
	ledData []byte
	ledGen  int32
	// current is the last plan received in OnAssignment. Guarded by mu.
	current *Plan
}

var (
	_ sarama.BalanceStrategy                     = (*Strategy)(nil)
	_ sarama.SubscriptionUserDataBalanceStrategy = (*Strategy)(nil)
	_ sarama.OnAssignmentBalanceStrategy         = (*Strategy)(nil)
)

// NewStrategy returns the Strategy of one node. local is called before
// each JoinGroup and returns the node's report (its MemberID and Topics are
// ignored: Kafka supplies them); its NodeID should be the consumer's
// Consumer.Group.InstanceId, and it should read fresh changelog offsets
// from the store. onPlan is called with every plan this member receives, on
// sarama's rebalance path before the session's Setup, so it must not block.
// Either may be nil: a nil local reports a node with no id and no history
// (the leader then names it by its member id), a nil onPlan drops plans
// (Current still returns the last one).
func NewStrategy(local func() Member, onPlan func(*Plan)) *Strategy {
	if local == nil {
		local = func() Member { return Member{Standbys: -1} }
	}
	if onPlan == nil {
		onPlan = func(*Plan) {}
	}
	return &Strategy{local: local, onPlan: onPlan}
}

// Name implements sarama.BalanceStrategy: "mephisto-copartitioned".
func (s *Strategy) Name() string { return StrategyName }

// SubscriptionUserData implements sarama.SubscriptionUserDataBalanceStrategy:
// it encodes the node's report, local(), as the member's user data, with
// Owned filled in from the last plan received if local() left it nil. It
// never returns an error (sarama would then resend the previous
// assignment's user data).
func (s *Strategy) SubscriptionUserData(topics []string) ([]byte, error) {
	m := s.local()
	m.Topics = topics
	s.mu.Lock()
	if m.Owned == nil && s.current != nil && m.NodeID != "" {
		// What this node was assigned, per topic, in the last generation.
		if a := s.current.Actives(m.NodeID); len(a) > 0 {
			m.Owned = make(map[string][]int32, len(a))
			for t, parts := range a {
				m.Owned[t] = append([]int32(nil), parts...)
			}
		}
	}
	s.report = m
	s.mu.Unlock()
	data, err := encodeMember(m)
	if err != nil {
		// Not reachable with the types involved; if it were, joining as
		// a member without history beats stalling the group.
		data = []byte(`{"v":1}`)
	}
	return data, nil
}

// Plan implements sarama.BalanceStrategy; sarama calls it on the group
// leader only. It decodes each member's report (a member whose user data
// is empty or unreadable joins as a fresh member with no history, it never
// fails the rebalance), runs Assign, keeps the whole plan for
// AssignmentData and returns every member's share. Every member is in the
// returned plan, even one with no partitions, so that it too receives the
// routing table.
func (s *Strategy) Plan(members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) (sarama.BalanceStrategyPlan, error) {
	ms := make([]Member, 0, len(members))
	for id, meta := range members {
		// A decode error only says why the member counts as fresh.
		m, _ := decodeMember(id, meta.Topics, meta.UserData)
		ms = append(ms, m)
	}
	counts := make(map[string]int32, len(topics))
	for t, parts := range topics {
		counts[t] = int32(len(parts))
	}
	plan, err := Assign(ms, counts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s plan: %w", StrategyName, err)
	}

	out := make(sarama.BalanceStrategyPlan, len(plan.Assignments))
	for id, a := range plan.Assignments {
		share := make(map[string][]int32, len(a))
		for t, parts := range a {
			share[t] = append([]int32(nil), parts...)
		}
		out[id] = share
	}

	s.mu.Lock()
	s.led, s.ledData = plan, nil
	s.mu.Unlock()
	return out, nil
}

// AssignmentData implements sarama.BalanceStrategy; sarama calls it on the
// leader for each member after Plan. It returns the whole plan, stamped
// with generationID, whichever member asks: every node needs the routing
// table and the standby placement.
func (s *Strategy) AssignmentData(memberID string, _ map[string][]int32, generationID int32) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.led == nil {
		return nil, fmt.Errorf("cluster: %s: assignment data for member %s requested before any plan", StrategyName, memberID)
	}
	if s.ledData == nil || s.ledGen != generationID {
		s.led.Generation = generationID
		data, err := encodePlan(s.led)
		if err != nil {
			return nil, fmt.Errorf("cluster: %s: assignment data for member %s: %w", StrategyName, memberID, err)
		}
		s.ledData, s.ledGen = data, generationID
	}
	return s.ledData, nil
}

// OnAssignment implements sarama.OnAssignmentBalanceStrategy; sarama calls
// it on every member after SyncGroup. It decodes the plan carried in the
// assignment's user data, stamps it with generationID and calls onPlan. If
// the user data holds no readable plan (a leader of an incompatible build),
// onPlan receives an empty plan with only Generation set: the node then
// has no routing table until the next rebalance, and the claims sarama
// hands to Setup stay authoritative for what it processes.
func (s *Strategy) OnAssignment(assignment *sarama.ConsumerGroupMemberAssignment, generationID int32) {
	var plan *Plan
	if assignment != nil {
		if p, err := decodePlan(assignment.UserData); err == nil {
			plan = p
		}
	}
	if plan == nil {
		plan = &Plan{Assignments: map[string]map[string][]int32{}}
	}
	plan.Generation = generationID

	s.mu.Lock()
	s.current = plan
	s.mu.Unlock()
	s.onPlan(plan)
}

// Current returns the last plan this member received, or nil before the
// first. The plan must not be modified.
func (s *Strategy) Current() *Plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Report returns the last report this node sent to the group (what
// local() returned, with the subscribed topics).
func (s *Strategy) Report() Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report
}
