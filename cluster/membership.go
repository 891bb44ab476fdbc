// Package cluster holds what makes several Mephisto nodes one cluster: the
// partition assignor (who is active and standby for which partition),
// gossip membership (who is alive, and where to reach it), and the
// decisions a node takes from the plan (where a partition is served, who
// evicts a dead node, which standbys to run, the /cluster view).
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// NodeMeta is what every node gossips about itself. memberlist limits it to
// 512 bytes; bigger state travels in the assignment's user data.
type NodeMeta struct {
	ID    string `json:"id"`
	Actor string `json:"actor,omitempty"` // actor-system address
	Web   string `json:"web,omitempty"`   // HTTP address
	// Leaving is set just before a graceful Leave, so that peers tell a
	// departure from a death (memberlist's own node state does not reach
	// its event delegate).
	Leaving bool `json:"leaving,omitempty"`
}

// MetaLimit is memberlist's limit on node metadata.
const MetaLimit = memberlist.MetaMaxSize

// Timing tunes failure detection. A silent node is declared dead about
// ProbeInterval + ProbeTimeout + SuspicionMult·max(1, log10(N))·ProbeInterval
// after it stops answering.
type Timing struct {
	ProbeInterval  time.Duration // default 200ms (memberlist's LAN default: 1s)
	ProbeTimeout   time.Duration // default 100ms
	SuspicionMult  int           // default 3
	GossipInterval time.Duration // default 50ms
}

// FastTiming is the default: a dead node is declared dead in about a second
// on a LAN.
var FastTiming = Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, SuspicionMult: 3, GossipInterval: 50 * time.Millisecond}

// MembershipConfig configures Join.
type MembershipConfig struct {
	Meta      NodeMeta
	Bind      string   // host:port to listen on (UDP and TCP)
	Advertise string   // host:port others should use; "" means Bind
	Seeds     []string // host:port of nodes to join; empty starts a new cluster
	// Key encrypts gossip (AES; 16, 24 or 32 bytes). Every node needs the
	// same key.
	Key    []byte
	Timing Timing
	Log    *slog.Logger
	// OnChange is called (from memberlist's goroutine; it must not block)
	// whenever a node joins, leaves, dies or changes its metadata.
	OnChange func(Event)
	// OnDropped, if set, is called (from memberlist's goroutines; it must
	// not block) for every incoming gossip message dropped, with the
	// reason: see DropReason. Default: none (drops are still logged).
	OnDropped func(DropReason)
}

// EventKind says what happened to a node.
type EventKind int

// Kinds of membership events.
const (
	NodeJoined  EventKind = iota
	NodeLeft              // left gracefully
	NodeDead              // stopped answering: declared dead
	NodeUpdated           // changed its metadata
)

// String names the kind.
func (k EventKind) String() string {
	return [...]string{"joined", "left", "dead", "updated"}[k]
}

// Event is a change in membership.
type Event struct {
	Kind EventKind
	Node NodeMeta
}

// Peer is a node as gossip sees it.
type Peer struct {
	NodeMeta
	Alive bool
}

// Membership is this node's view of the cluster.
type Membership struct {
	ml    *memberlist.Memberlist
	meta  []byte
	cfg   MembershipConfig
	drops *drops
	now   func() time.Time
	self  atomic.Pointer[selfAddr] // where this node gossips, once started

	mu      sync.Mutex      // guards the fields below
	peers   map[string]Peer // every other node seen, by id
	leaving map[string]bool // peers that announced a graceful leave
}

// ErrMetaTooLarge is returned when NodeMeta does not fit memberlist's limit.
var ErrMetaTooLarge = errors.New("cluster: node metadata exceeds memberlist's 512-byte limit")

// Join starts gossip on cfg.Bind and joins the seeds.
func Join(cfg MembershipConfig) (*Membership, error) {
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	if len(meta) > MetaLimit {
		return nil, fmt.Errorf("%w (%d bytes): shorten the node id or addresses", ErrMetaTooLarge, len(meta))
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = FastTiming
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Membership{meta: meta, cfg: cfg, peers: map[string]Peer{}, leaving: map[string]bool{}, now: time.Now}
	m.drops = &drops{m: m}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.Bind, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if host == "0.0.0.0" || host == "::" {
		mc.AdvertiseAddr = "" // memberlist picks a private address
	}
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", cfg.Advertise, err)
		}
	}
	mc.ProbeInterval = cfg.Timing.ProbeInterval
	mc.ProbeTimeout = cfg.Timing.ProbeTimeout
	mc.SuspicionMult = cfg.Timing.SuspicionMult
	mc.GossipInterval = cfg.Timing.GossipInterval
	mc.PushPullInterval = 10 * time.Second
	mc.DeadNodeReclaimTime = time.Second // a restarted node may come back at once under its old name
	mc.SecretKey = cfg.Key
	mc.Logger = log.New(slogWriter{cfg.Log, m.drops}, "", 0)
	mc.Delegate = delegate{m}
	mc.Events = events{m}
	mc.Alive = aliveFilter{m}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	if ip, p, err := net.SplitHostPort(m.Addr()); err == nil {
		if port, err := strconv.Atoi(p); err == nil {
			m.self.Store(&selfAddr{Addr: net.ParseIP(ip), Port: uint16(port)})
		}
	}
	if !isLoopback(host) && len(cfg.Key) == 0 {
		cfg.Log.Warn("gossip listens on a non-loopback address without a gossip key: anyone who can reach it can join this cluster and speak gossip; set --gossip-key (docs/cluster.md)",
			"gossip", cfg.Bind)
	}
	if len(cfg.Seeds) > 0 {
		if _, err := ml.Join(cfg.Seeds); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("join gossip seeds %s: %w", strings.Join(cfg.Seeds, ","), err)
		}
	}
	return m, nil
}

// JoinSeeds joins the cluster through any of seeds.
func (m *Membership) JoinSeeds(seeds []string) error {
	if _, err := m.ml.Join(seeds); err != nil {
		return fmt.Errorf("join gossip seeds %s: %w", strings.Join(seeds, ","), err)
	}
	return nil
}

// Peers returns every node known, alive or gone, sorted by id. It reads the
// view kept from memberlist's events: the nodes memberlist itself returns
// are written by its goroutines while we would read them.
func (m *Membership) Peers() []Peer {
	m.mu.Lock()
	out := make([]Peer, 0, len(m.peers)+1)
	for _, p := range m.peers {
		out = append(out, p)
	}
	m.mu.Unlock()
	out = append(out, Peer{NodeMeta: m.cfg.Meta, Alive: true})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Alive reports whether node id is alive.
func (m *Membership) Alive(id string) bool {
	for _, mem := range m.Peers() {
		if mem.ID == id {
			return mem.Alive
		}
	}
	return false
}

// Self returns this node's metadata.
func (m *Membership) Self() NodeMeta { return m.cfg.Meta }

// Addr returns the gossip address this node advertises.
func (m *Membership) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Leave tells the others this node is going, then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	meta := m.cfg.Meta
	meta.Leaving = true
	if b, err := json.Marshal(meta); err == nil {
		m.mu.Lock()
		m.meta = b
		m.mu.Unlock()
		_ = m.ml.UpdateNode(timeout)
	}
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops gossip without telling anyone (the others will declare
// this node dead).
func (m *Membership) Shutdown() error { return m.ml.Shutdown() }

func (m *Membership) notify(kind EventKind, n *memberlist.Node) {
	var meta NodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		m.cfg.Log.Warn("gossip: node with unreadable metadata", "node", n.Name, "err", err)
		return
	}
	if meta.ID == m.cfg.Meta.ID {
		return
	}
	m.mu.Lock()
	switch {
	case kind == NodeDead && (m.leaving[meta.ID] || meta.Leaving), kind == NodeLeft:
		kind = NodeLeft
		m.peers[meta.ID] = Peer{NodeMeta: meta}
		delete(m.leaving, meta.ID)
	case kind == NodeDead:
		m.peers[meta.ID] = Peer{NodeMeta: meta}
	case meta.Leaving:
		m.leaving[meta.ID] = true
		m.mu.Unlock()
		return
	default:
		m.peers[meta.ID] = Peer{NodeMeta: meta, Alive: true}
		delete(m.leaving, meta.ID)
	}
	m.mu.Unlock()
	level := slog.LevelInfo
	if kind == NodeDead {
		level = slog.LevelWarn
	}
	m.cfg.Log.Log(context.Background(), level, "gossip: node "+kind.String(), "peer", meta.ID, "peer_web", meta.Web, "peer_gossip", n.Address())
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(Event{Kind: kind, Node: meta})
	}
}

type delegate struct{ m *Membership }

func (d delegate) NodeMeta(int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	return d.m.meta
}
func (d delegate) NotifyMsg([]byte) {
	d.m.drops.drop(DropMalformed, "a user message: Mephisto sends none")
}
func (d delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d delegate) LocalState(bool) []byte          { return nil }
func (d delegate) MergeRemoteState([]byte, bool)   {}

type events struct{ m *Membership }

func (e events) NotifyJoin(n *memberlist.Node)   { e.m.notify(NodeJoined, n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.m.notify(NodeUpdated, n) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.m.notify(NodeDead, n) } // notify tells a leave

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// slogWriter turns memberlist's "[LEVEL] memberlist: msg" lines into slog
// records at the matching level (its INFO chatter goes to Debug).
// A line saying memberlist dropped an incoming message is counted instead
// (see droppedLines).
type slogWriter struct {
	log   *slog.Logger
	drops *drops
}

var memberlistLevels = []struct {
	prefix string
	level  slog.Level
}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelDebug}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}}

func (w slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for _, l := range memberlistLevels {
		if strings.HasPrefix(line, l.prefix) {
			level, line = l.level, strings.TrimSpace(strings.TrimPrefix(line, l.prefix))
			break
		}
	}
	if reason, count, ok := droppedLine(line); ok {
		if count {
			w.drops.drop(reason, line)
		} else {
			w.log.Debug(line, "component", "gossip")
		}
		return len(p), nil
	}
	w.log.Log(context.Background(), level, line, "component", "gossip")
	return len(p), nil
}
