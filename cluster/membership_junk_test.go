package cluster

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"maps"
	"math/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf is a slog destination that tests can read while memberlist's
// goroutines write to it.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Memberlist's message types (net.go), the ones the junk below imitates.
const (
	mlAliveMsg    = 4
	mlUserMsg     = 8
	mlCompoundMsg = 7
	mlHasCrcMsg   = 12
)

// msgpackAlive encodes memberlist's alive message by hand (a msgpack map
// of its six fields), so that the tests can forge one.
func msgpackAlive(name string, addr []byte, port uint16, meta []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(mlAliveMsg)
	b.WriteByte(0x86) // fixmap of 6
	str := func(s string) { b.WriteByte(0xd9); b.WriteByte(byte(len(s))); b.WriteString(s) }
	bin := func(p []byte) { b.WriteByte(0xc4); b.WriteByte(byte(len(p))); b.Write(p) }
	str("Incarnation")
	b.WriteByte(0xce)
	_ = binary.Write(&b, binary.BigEndian, uint32(1))
	str("Node")
	str(name)
	str("Addr")
	bin(addr)
	str("Port")
	b.WriteByte(0xcd)
	_ = binary.Write(&b, binary.BigEndian, port)
	str("Meta")
	bin(meta)
	str("Vsn")
	bin([]byte{1, 5, 2, 0, 0, 0})
	return b.Bytes()
}

func sendUDP(t *testing.T, to string, packets ...[]byte) {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range packets {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

func sendTCP(t *testing.T, to string, payload []byte) {
	t.Helper()
	c, err := net.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
}

// junk is what the tests send to a gossip port: garbage of every kind a
// stray client or a careless scanner produces, and forged alive messages
// naming members nobody can address.
func junk() (packets [][]byte, phantoms int) {
	r := rand.New(rand.NewSource(16))
	random := func(n int) []byte { p := make([]byte, n); r.Read(p); return p }
	good := msgpackAlive("forged", []byte{127, 0, 0, 1}, 7, []byte(`{"id":"forged"}`))
	packets = [][]byte{
		append([]byte{200}, random(40)...),               // unknown message type
		append([]byte{mlAliveMsg}, random(40)...),        // garbled alive message
		good[:len(good)/2],                               // truncated alive message
		{mlCompoundMsg, 200, 0, 1},                       // compound message of 200 parts, truncated
		append([]byte{mlHasCrcMsg, 1, 2, 3, 4}, good...), // wrong checksum
		append([]byte{mlUserMsg}, random(20)...),         // a user message: Mephisto sends none
	}
	forged := [][]byte{
		msgpackAlive("ghost-empty", nil, 7946, []byte(`{"id":"ghost-empty"}`)),              // empty address: "lookup <nil>"
		msgpackAlive("ghost-short", []byte{10, 0, 1}, 7946, []byte(`{"id":"ghost-short"}`)), // not an IP
		msgpackAlive("ghost-zero", []byte{0, 0, 0, 0}, 7946, []byte(`{"id":"ghost-zero"}`)), // unspecified
		msgpackAlive("ghost-port", []byte{127, 0, 0, 1}, 0, []byte(`{"id":"ghost-port"}`)),  // port 0
		msgpackAlive("ghost-meta", []byte{127, 0, 0, 1}, 7946, random(30)),                  // metadata does not decode
		msgpackAlive("ghost-name", []byte{127, 0, 0, 1}, 7946, []byte(`{"id":"other"}`)),    // metadata names another node
	}
	return append(packets, forged...), len(forged)
}

// Issue 16, defect 5: junk on the gossip port must not leave a member the
// node keeps probing ("Failed to send UDP ping: lookup <nil>: no such
// host" until restarted).
func TestMembershipJunkGossipLeavesNoPhantom(t *testing.T) {
	logs, dropped := &logBuf{}, &dropCounter{}
	a, err := Join(MembershipConfig{Meta: NodeMeta{ID: "a"}, Bind: freeAddr(t), Log: logs.logger(), OnDropped: dropped.on})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()

	packets, phantoms := junk()
	sendUDP(t, a.Addr(), packets...)
	sendTCP(t, a.Addr(), []byte{200, 1, 2, 3})
	sendTCP(t, a.Addr(), append([]byte{6}, bytes.Repeat([]byte{0xff}, 20)...)) // garbled push/pull

	// A real node joins after the junk: the cluster still forms, and the
	// probes that find it would find a phantom too.
	b, err := Join(MembershipConfig{Meta: NodeMeta{ID: "b"}, Bind: freeAddr(t), Seeds: []string{a.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	waitUntil(t, 5*time.Second, "b alive on a", func() bool { return a.Alive("b") })
	want := map[DropReason]int{DropMalformed: len(packets) - phantoms + 2, DropUnaddressable: phantoms}
	waitUntil(t, 5*time.Second, "every junk message dropped and counted", func() bool { return dropped.reached(want) })

	if n := a.ml.NumMembers(); n != 2 {
		t.Errorf("memberlist on a has %d live members, want 2 (a and b): a phantom was admitted", n)
	}
	if got := a.Peers(); len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Errorf("peers = %+v, want a and b", got)
	}
	out := logs.String()
	if strings.Contains(out, "Failed to send UDP ping") || strings.Contains(out, "no such host") || strings.Contains(out, "joined\" peer=ghost") {
		t.Errorf("a gossips with a member it cannot address:\n%s", out)
	}
	if got := dropped.get(); !maps.Equal(got, want) {
		t.Errorf("dropped = %v, want %v", got, want)
	}
	if n := strings.Count(out, "level=WARN msg=\"gossip: dropping messages"); n != 1 {
		t.Errorf("%d warnings about dropped gossip within a minute, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("junk gossip logged as an error (it is counted and warned about once):\n%s", out)
	}
}

// With a gossip key, nothing unencrypted gets in: not even a well-formed
// alive message naming a reachable node.
func TestMembershipJunkGossipWithKey(t *testing.T) {
	logs, dropped := &logBuf{}, &dropCounter{}
	a, err := Join(MembershipConfig{Meta: NodeMeta{ID: "a"}, Bind: freeAddr(t), Key: []byte("0123456789abcdef"), Log: logs.logger(), OnDropped: dropped.on})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	packets, _ := junk()
	sendUDP(t, a.Addr(), msgpackAlive("forged", []byte{127, 0, 0, 1}, 7, []byte(`{"id":"forged"}`)))
	sendUDP(t, a.Addr(), packets...)
	sendTCP(t, a.Addr(), []byte{200, 1, 2, 3})
	want := map[DropReason]int{DropUnauthenticated: len(packets) + 2}
	waitUntil(t, 5*time.Second, "every unencrypted message dropped and counted", func() bool { return dropped.reached(want) })
	if got := dropped.get(); !maps.Equal(got, want) {
		t.Errorf("dropped = %v, want %v", got, want)
	}
	if n := a.ml.NumMembers(); n != 1 {
		t.Errorf("memberlist has %d live members, want 1", n)
	}
}

// Gossip bound to a non-loopback address without a key is open to the
// network: the node says so at start (it still starts).
func TestMembershipWarnsOpenGossip(t *testing.T) {
	warning := "without a gossip key"
	for _, tc := range []struct {
		name string
		bind func(port string) string
		key  []byte
		warn bool
	}{
		{"loopback", func(p string) string { return "127.0.0.1:" + p }, nil, false},
		{"all interfaces", func(p string) string { return "0.0.0.0:" + p }, nil, true},
		{"empty host", func(p string) string { return ":" + p }, nil, true},
		{"all interfaces with a key", func(p string) string { return "0.0.0.0:" + p }, []byte("0123456789abcdef"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(freeAddr(t))
			logs := &logBuf{}
			m, err := Join(MembershipConfig{Meta: NodeMeta{ID: "a"}, Bind: tc.bind(port), Advertise: "127.0.0.1:" + port, Key: tc.key, Log: logs.logger()})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Shutdown()
			if got := strings.Contains(logs.String(), warning); got != tc.warn {
				t.Errorf("warned %v, want %v:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}

// dropCounter records OnDropped calls.
type dropCounter struct {
	mu sync.Mutex
	n  map[DropReason]int
}

func (c *dropCounter) on(r DropReason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[DropReason]int{}
	}
	c.n[r]++
}

func (c *dropCounter) get() map[DropReason]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// reached reports whether at least want were dropped, for each reason.
func (c *dropCounter) reached(want map[DropReason]int) bool {
	got := c.get()
	for r, n := range want {
		if got[r] < n {
			return false
		}
	}
	return true
}
