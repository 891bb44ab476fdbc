package cluster

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	// memberlist needs the port free for both TCP and UDP.
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) saw(kind EventKind, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && e.Node.ID == id {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMembershipJoinDeathAndLeave(t *testing.T) {
	key := []byte("0123456789abcdef")
	rec := &recorder{}
	var nodes []*Membership
	var seeds []string
	for _, id := range []string{"n1", "n2", "n3"} {
		cfg := MembershipConfig{Meta: NodeMeta{ID: id, Web: id + ":6066"}, Bind: freeAddr(t), Seeds: seeds, Key: key}
		if id == "n1" {
			cfg.OnChange = rec.on
		}
		m, err := Join(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Shutdown()
		nodes = append(nodes, m)
		seeds = []string{nodes[0].Addr()}
	}
	waitUntil(t, 5*time.Second, "all three alive everywhere", func() bool {
		for _, n := range nodes {
			ms := n.Peers()
			if len(ms) != 3 || !ms[0].Alive || !ms[1].Alive || !ms[2].Alive {
				return false
			}
		}
		return true
	})
	if got := nodes[2].Peers()[1]; got.ID != "n2" || got.Web != "n2:6066" {
		t.Errorf("metadata not gossiped: %+v", got)
	}

	// n3 stops answering: declared dead (not left).
	_ = nodes[2].Shutdown()
	start := time.Now()
	waitUntil(t, 10*time.Second, "n3 declared dead", func() bool { return rec.saw(NodeDead, "n3") })
	t.Logf("n3 declared dead %v after it stopped", time.Since(start).Round(time.Millisecond))
	if nodes[0].Alive("n3") {
		t.Error("n3 still alive after its death event")
	}
	// n2 leaves gracefully: left, not dead.
	if err := nodes[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "n2 left", func() bool { return rec.saw(NodeLeft, "n2") || rec.saw(NodeDead, "n2") })
	if rec.saw(NodeDead, "n2") {
		t.Error("a graceful leave was reported as a death")
	}
}

func TestMembershipWrongKeyCannotJoin(t *testing.T) {
	a, err := Join(MembershipConfig{Meta: NodeMeta{ID: "a"}, Bind: freeAddr(t), Key: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	_, err = Join(MembershipConfig{Meta: NodeMeta{ID: "b"}, Bind: freeAddr(t), Key: []byte("fedcba9876543210"), Seeds: []string{a.Addr()}})
	if err == nil {
		t.Fatal("a node with another gossip key joined")
	}
}

func TestMembershipMetaLimit(t *testing.T) {
	_, err := Join(MembershipConfig{Meta: NodeMeta{ID: strings.Repeat("x", 600)}, Bind: freeAddr(t)})
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversized metadata: %v", err)
	}
}
