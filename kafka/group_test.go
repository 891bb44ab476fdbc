package kafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// memberHandler records what a GroupMember hands it and, like a node,
// marks each batch's next offset and asks for a commit once it is
// processed.
type memberHandler struct {
	mu       sync.Mutex // guards the fields below
	assigned map[int32][]string
	records  []partition.Record
	lags     map[int32]int64
	released int
}

func (h *memberHandler) Assigned(s *Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.assigned = s.Partitions()
	return nil
}

func (h *memberHandler) Claimed(s *Session, topic string, p int32) Claim {
	return &memberClaim{h: h, s: s, topic: topic, p: p}
}

func (h *memberHandler) Released(*Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released++
}

type memberClaim struct {
	h     *memberHandler
	s     *Session
	topic string
	p     int32
}

func (c *memberClaim) Deliver(b *Batch) {
	c.h.mu.Lock()
	for i := range b.Records.Len() {
		var r partition.Record
		b.Records.Read(i, &r)
		c.h.records = append(c.h.records, r)
	}
	c.h.mu.Unlock()
	c.s.Mark(c.topic, c.p, b.Records[len(b.Records)-1].Offset+1)
	c.s.Commit()
	b.Done <- nil
}

func (c *memberClaim) Processed(lag int64) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.h.lags[c.p] = lag
}

// waitUntil polls cond until it holds or waitTimeout passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestGroupMember joins a group, receives every record as batches of
// partition.Records, and commits the offsets the handler marks.
func TestGroupMember(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	adm := newAdmin(t, b.Addr())
	if err := adm.CreateTopic("t", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	hm := msg("t", 0, "k0", "v0")
	hm.Headers = []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("x")}}
	produce(t, b.Addr(), hm, msg("t", 0, "k1", "v1"), msg("t", 0, "k2", "v2"), msg("t", 1, "", "w0"), msg("t", 1, "k4", "w1"))

	cfg := GroupConfig("member-test", "m1", 2*time.Second, sarama.NewBalanceStrategyRange())
	client, err := sarama.NewClient([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	log, _ := testLogger(t)
	h := &memberHandler{lags: map[int32]int64{}}
	m, err := NewGroupMember(GroupMemberConfig{Group: "g", Client: client, Handler: h, Log: log,
		Backoff: func(int) time.Duration { return 50 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(stop, func() []string { return []string{"t"} })
	}()

	waitUntil(t, "the group's committed offsets", func() bool {
		resp, err := adm.ListConsumerGroupOffsets("g", map[string][]int32{"t": {0, 1}})
		if err != nil {
			return false
		}
		b0, b1 := resp.GetBlock("t", 0), resp.GetBlock("t", 1)
		return b0 != nil && b0.Offset == 3 && b1 != nil && b1.Offset == 2
	})
	h.mu.Lock()
	if len(h.assigned) != 2 || len(h.assigned[0]) != 1 || h.assigned[0][0] != "t" {
		t.Errorf("assigned %v, want partitions 0 and 1 of t", h.assigned)
	}
	got := map[int32][]string{}
	for _, r := range h.records {
		got[r.Partition] = append(got[r.Partition], string(r.Key)+"="+string(r.Value))
		if r.Topic != "t" {
			t.Errorf("record of topic %q", r.Topic)
		}
		if r.Partition == 0 && r.Offset == 0 && (len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "x") {
			t.Errorf("headers of the first record: %+v, want h=x", r.Headers)
		}
		if r.Partition == 1 && r.Offset == 0 && r.Key != nil {
			t.Errorf("a record without a key has key %q, want nil", r.Key)
		}
	}
	if want := []string{"k0=v0", "k1=v1", "k2=v2"}; len(got[0]) != 3 || got[0][0] != want[0] || got[0][2] != want[2] {
		t.Errorf("partition 0 delivered %v, want %v", got[0], want)
	}
	if len(got[1]) != 2 || got[1][1] != "k4=w1" {
		t.Errorf("partition 1 delivered %v, want [=w0 k4=w1]", got[1])
	}
	h.mu.Unlock()
	waitUntil(t, "the lag of every partition", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		l0, ok0 := h.lags[0]
		l1, ok1 := h.lags[1]
		return ok0 && ok1 && l0 == 0 && l1 == 0
	})

	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after stop")
	}
	h.mu.Lock()
	if h.released != 1 {
		t.Errorf("Released %d times, want 1", h.released)
	}
	h.mu.Unlock()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
