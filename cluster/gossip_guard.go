package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// DropReason says why a gossip message was dropped.
type DropReason string

// Why gossip is dropped. Anyone who can reach the gossip port can send to it
// (unless a gossip key is set, only the key keeps them out); what does not
// decode, or names a member nobody could reach, is dropped and counted here.
const (
	// DropMalformed: the message does not decode (garbled, truncated, an
	// unknown type, a wrong checksum), or it is a kind Mephisto never sends.
	DropMalformed DropReason = "malformed"
	// DropUnauthenticated: the message is not encrypted with this node's
	// gossip key, or carries the wrong label.
	DropUnauthenticated DropReason = "unauthenticated"
	// DropUnaddressable: an alive message (sent, or merged from a peer's
	// state) names a member that has no valid IP address and port, claims
	// this node's own address, or whose metadata does not decode. Such a
	// member is never admitted, so the node never probes or gossips with it.
	DropUnaddressable DropReason = "unaddressable"
)

// DropReasons lists every DropReason, for metrics that want each label
// present from the start.
var DropReasons = []DropReason{DropMalformed, DropUnauthenticated, DropUnaddressable}

// droppedLines are the lines memberlist logs when it drops an incoming
// message it cannot use (memberlist v0.7.0, net.go and state.go); it has
// no other hook for them. TestMembershipJunkGossip fails if an upgrade
// rewords one the tests send. count is false for a line that reports a
// drop counted elsewhere.
var droppedLines = []struct {
	substr string
	reason DropReason
	count  bool
}{
	{"ignoring alive message for '", DropUnaddressable, false}, // our admit said no: counted there
	{"Failed to decode ", DropMalformed, true},
	{"Failed to decompress payload", DropMalformed, true},
	{"msg type (", DropMalformed, true},
	{"Message type (", DropMalformed, true},
	{"Received invalid msgType", DropMalformed, true},
	{"missing message type byte", DropMalformed, true},
	{"Got invalid checksum for UDP packet", DropMalformed, true},
	{"Compound request had ", DropMalformed, true},
	{"Failed to read remote state", DropMalformed, true},
	{"Failed to receive user message", DropMalformed, true},
	{"Ignoring an alive message for '", DropMalformed, true}, // protocol versions make no sense
	{"because Vsn is not present", DropMalformed, true},
	{"cannot decode label", DropMalformed, true},
	{"label header cannot be empty", DropMalformed, true},
	{"Decrypt packet failed", DropUnauthenticated, true},
	{"unacceptable label", DropUnauthenticated, true},
	{"double packet label header", DropUnauthenticated, true},
	{"double stream label header", DropUnauthenticated, true},
	{"encryption is not configured", DropUnauthenticated, true},
	{"remote state is not encrypted", DropUnauthenticated, true},
	{"no installed keys could decrypt", DropUnauthenticated, true},
	{"failed to receive: ", DropMalformed, true}, // a stream that does not decode or decrypt
}

// droppedLine reports whether a memberlist log line says an incoming
// message was dropped, and why.
func droppedLine(line string) (reason DropReason, count, ok bool) {
	for _, d := range droppedLines {
		if strings.Contains(line, d.substr) {
			return d.reason, d.count, true
		}
	}
	return "", false, false
}

// dropWarnEvery is how often, at most, a node warns about dropped gossip;
// each drop is logged at debug level and counted.
const dropWarnEvery = time.Minute

// drops counts dropped gossip and warns about it now and then.
type drops struct {
	m *Membership

	mu       sync.Mutex // guards the fields below
	lastWarn time.Time
	since    int // dropped since the last warning
}

func (d *drops) drop(reason DropReason, detail string) {
	if d.m.cfg.OnDropped != nil {
		d.m.cfg.OnDropped(reason)
	}
	now := d.m.now()
	d.mu.Lock()
	d.since++
	n := d.since
	warn := d.lastWarn.IsZero() || now.Sub(d.lastWarn) >= dropWarnEvery
	if warn {
		d.lastWarn, d.since = now, 0
	}
	d.mu.Unlock()
	d.m.cfg.Log.Debug("gossip: dropped a message", "reason", string(reason), "detail", detail)
	if warn {
		d.m.cfg.Log.Warn("gossip: dropping messages that are not valid gossip from this cluster: is something else sending to the gossip port? (warned at most once a minute)",
			"reason", string(reason), "detail", detail, "dropped", n, "gossip", d.m.cfg.Bind)
	}
}

// admit decides whether memberlist may take n in as a member (its
// AliveDelegate): only a node with a valid IP address and port, that is
// not this node's address under another name, and whose metadata decodes
// and names it.
func (m *Membership) admit(n *memberlist.Node) error {
	ip := net.IP(n.Addr)
	switch {
	case len(n.Addr) != net.IPv4len && len(n.Addr) != net.IPv6len:
		return fmt.Errorf("no valid IP address (%d bytes)", len(n.Addr))
	case ip.IsUnspecified() || ip.IsMulticast():
		return fmt.Errorf("address %s cannot be dialled", ip)
	case n.Port == 0:
		return errors.New("port 0")
	}
	if n.Name != m.cfg.Meta.ID {
		if self := m.self.Load(); self != nil && self.Port == n.Port && self.Addr.Equal(ip) {
			return fmt.Errorf("claims this node's own address %s", n.Address())
		}
	}
	var meta NodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		return fmt.Errorf("metadata does not decode: %w", err)
	}
	if meta.ID != n.Name {
		return fmt.Errorf("metadata names node %q", meta.ID)
	}
	return nil
}

// selfAddr is where this node gossips (set once memberlist has started).
type selfAddr struct {
	Addr net.IP
	Port uint16
}

type aliveFilter struct{ m *Membership }

func (f aliveFilter) NotifyAlive(n *memberlist.Node) error {
	err := f.m.admit(n)
	if err != nil {
		f.m.drops.drop(DropUnaddressable, fmt.Sprintf("alive message for %q at %s: %v", n.Name, n.Address(), err))
	}
	return err
}

// isLoopback reports whether host (of a bind address) is a loopback
// address: gossip bound to anything else can be reached from the network.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
