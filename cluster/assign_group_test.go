package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/kafka"
)

// groupNode is one node of TestStrategyKafkaGroup: a real sarama consumer
// group member using its own Strategy, static membership (instance id =
// node id), against the embedded broker.
type groupNode struct {
	id       string
	strategy *Strategy
	group    sarama.ConsumerGroup
	cancel   context.CancelFunc
	done     chan struct{}

	mu sync.Mutex
	// plans and claims by generation: what onPlan received, and what
	// sarama handed to Setup. Guarded by mu.
	plans  map[int32]*Plan
	claims map[int32]map[string][]int32
	last   int32 // highest generation with both. Guarded by mu.
}

// local is the node's report: what its last plan gave it, with offsets
// as a real node's store would report them.
func (n *groupNode) local() Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := Member{NodeID: n.id, Standbys: 1, TablePartitions: 6, Web: n.id + ":6066", Actor: n.id + ":8090"}
	if p := n.plans[n.last]; p != nil {
		m.Active = p.ActivePartitions(n.id)
		m.Standby = p.StandbyPartitions(n.id)
		m.Offsets = map[int32]int64{}
		for _, part := range m.Active {
			m.Offsets[part] = 1000
		}
		for _, part := range m.Standby {
			m.Offsets[part] = 990
		}
	}
	return m
}

func (n *groupNode) onPlan(p *Plan) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.plans[p.Generation] = p
}

// Setup implements sarama.ConsumerGroupHandler.
func (n *groupNode) Setup(s sarama.ConsumerGroupSession) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.claims[s.GenerationID()] = s.Claims()
	if n.plans[s.GenerationID()] == nil {
		return fmt.Errorf("%s: Setup of generation %d before its plan", n.id, s.GenerationID())
	}
	n.last = max(n.last, s.GenerationID())
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler.
func (n *groupNode) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim implements sarama.ConsumerGroupHandler; the topics are
// empty, it just holds the claim until the session ends.
func (n *groupNode) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case _, ok := <-c.Messages():
			if !ok {
				return nil
			}
		}
	}
}

// state returns the node's latest generation, its plan and its claims.
func (n *groupNode) state() (int32, *Plan, map[string][]int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last, n.plans[n.last], n.claims[n.last]
}

// at returns the node's plan and claims of generation gen.
func (n *groupNode) at(gen int32) (*Plan, map[string][]int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.plans[gen], n.claims[gen]
}

func startGroupNode(t *testing.T, addr, id string, topics []string) *groupNode {
	t.Helper()
	n := &groupNode{id: id, done: make(chan struct{}), plans: map[int32]*Plan{}, claims: map[int32]map[string][]int32{}}
	n.strategy = NewStrategy(n.local, n.onPlan)
	cfg := kafka.ClientConfig(id)
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{n.strategy}
	cfg.Consumer.Group.InstanceId = id
	cfg.Consumer.Group.Session.Timeout = time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 5 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond
	group, err := sarama.NewConsumerGroup([]string{addr}, "assign-test", cfg)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	n.group = group
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		for ctx.Err() == nil {
			err := group.Consume(ctx, topics, n)
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return
			}
			if err != nil && ctx.Err() == nil {
				t.Logf("%s: consume: %v", id, err)
			}
		}
	}()
	return n
}

// stop closes the member: with static membership it does not leave the
// group, the broker drops it when its session times out.
func (n *groupNode) stop(t *testing.T) {
	n.cancel()
	if err := n.group.Close(); err != nil {
		t.Errorf("%s: close: %v", n.id, err)
	}
	<-n.done
}

// waitStable waits until every node in nodes has set up the same latest
// generation, newer than after, with a plan of exactly these nodes, and
// returns that generation's plan.
func waitStable(t *testing.T, nodes []*groupNode, after int32) *Plan {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		gen, plan, _ := nodes[0].state()
		stable := gen > after && plan != nil && len(plan.Nodes) == len(nodes)
		for _, n := range nodes[1:] {
			g, _, _ := n.state()
			stable = stable && g == gen
		}
		if stable {
			return plan
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				g, p, c := n.state()
				t.Logf("%s: generation %d, plan %v, claims %v", n.id, g, p, c)
			}
			t.Fatalf("group of %d did not settle on a generation after %d within 30s", len(nodes), after)
		}
		<-tick.C
	}
}

// checkGroup checks that in generation ref.Generation every node has the
// routing table ref, claims exactly its plan's actives, partition p of both
// topics is on one node, and the plan is balanced.
func checkGroup(t *testing.T, nodes []*groupNode, topics map[string]int32, ref *Plan) {
	t.Helper()
	members := make([]Member, 0, len(nodes))
	for _, n := range nodes {
		p, claims := n.at(ref.Generation)
		if p.Generation != ref.Generation || !reflect.DeepEqual(p.Nodes, ref.Nodes) ||
			!reflect.DeepEqual(p.Partitions, ref.Partitions) || !reflect.DeepEqual(p.Assignments, ref.Assignments) {
			t.Errorf("%s has another plan than %s:\n%v\n%v", n.id, nodes[0].id, p, ref)
		}
		if want := p.Actives(n.id); !maps.EqualFunc(claims, want, slices.Equal) {
			t.Errorf("%s: sarama claims %v, plan says %v", n.id, claims, want)
		}
		info, _ := p.Node(n.id)
		members = append(members, Member{MemberID: info.MemberID, NodeID: n.id, Topics: slices.Sorted(maps.Keys(topics)),
			Standbys: 1, TablePartitions: 6, Web: info.Web, Actor: info.Actor})
	}
	// Every partition once, aligned, balanced, standbys apart.
	if err := checkPlan(members, topics, ref); err != nil {
		t.Errorf("generation %d: %v\n%v", ref.Generation, err, ref)
	}
}

// TestStrategyKafkaGroup runs three real sarama consumer-group members,
// each with its own Strategy, against the embedded broker; then one leaves.
func TestStrategyKafkaGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and a consumer group")
	}
	broker, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := broker.Close(); err != nil {
			t.Error(err)
		}
	})
	admin, err := sarama.NewClusterAdmin([]string{broker.Addr()}, kafka.ClientConfig("assign-test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	topics := map[string]int32{"words": 6, "counts": 6}
	if _, err := kafka.EnsureTopics(admin, []kafka.TopicSpec{
		{Name: "words", Partitions: 6, ReplicationFactor: 1},
		{Name: "counts", Partitions: 6, ReplicationFactor: 1},
	}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var nodes []*groupNode
	for _, id := range []string{"n1", "n2", "n3"} {
		n := startGroupNode(t, broker.Addr(), id, []string{"words", "counts"})
		nodes = append(nodes, n)
	}
	stopped := map[*groupNode]bool{}
	t.Cleanup(func() {
		for _, n := range nodes {
			if !stopped[n] {
				n.stop(t)
			}
		}
	})

	before := waitStable(t, nodes, 0)
	checkGroup(t, nodes, topics, before)
	t.Logf("3 members settled in %v: %v", time.Since(start).Round(time.Millisecond), before)

	// n2 stops. Only its partitions move; the survivors take 3 each.
	gone := nodes[1]
	start = time.Now()
	gone.stop(t)
	stopped[gone] = true
	survivors := []*groupNode{nodes[0], nodes[2]}
	after := waitStable(t, survivors, before.Generation)
	checkGroup(t, survivors, topics, after)
	t.Logf("after %s stopped, 2 members settled in %v: %v", gone.id, time.Since(start).Round(time.Millisecond), after)

	old, cur := before.Owners(), after.Owners()
	for topic := range topics {
		for p := range old[topic] {
			if old[topic][p] != gone.id && cur[topic][p] != old[topic][p] {
				t.Errorf("%s/%d moved from %s to %s, though only %s left", topic, p, old[topic][p], cur[topic][p], gone.id)
			}
		}
	}
	// Each survivor has room for one more partition. If the standbys of
	// gone's two partitions are on different survivors, both are promoted;
	// if on the same one, one of them is.
	var standbys []string
	promoted := 0
	for _, pp := range before.Partitions {
		if pp.Active != gone.id {
			continue
		}
		now := cur["words"][pp.Partition]
		t.Logf("partition %d of %s: standbys %v, now active on %s", pp.Partition, gone.id, pp.Standbys, now)
		standbys = append(standbys, pp.Standbys...)
		if slices.Contains(pp.Standbys, now) {
			promoted++
		}
	}
	want := 2
	if len(standbys) == 2 && standbys[0] == standbys[1] {
		want = 1
	}
	if len(standbys) != 2 || promoted != want {
		t.Errorf("%s's partitions had standbys %v; %d promoted, want %d", gone.id, standbys, promoted, want)
	}
}
