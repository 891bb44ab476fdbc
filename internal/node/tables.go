package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/cluster"
	"github.com/mephistohq/mephisto/kafka"
)

// Reads of partitioned tables from outside their grains: timers, tasks,
// pages, any goroutine of a running node. They read committed state only
// (Pebble), never a grain's uncommitted cache: here when this node is
// active for the key's partition (or, with stale, keeps a standby copy of
// it), else one hop to the node that is, whose table server answers from
// its own store only while it is active for the partition.

// ErrMoving is the error (wrapped) of a table read whose partition no node
// serves right now: it is moving between nodes (a rebalance), being
// recovered from its changelog, or its owner just died. Retry shortly.
var ErrMoving = errors.New("mephisto: the key's partition is moving or recovering; retry shortly")

// The table server's wire: an envelope whose Agent names the table, Key
// holds the encoded key, and a header the operation; the reply's status
// header says whether the key has a value (then in Value) or the server is
// not active for the partition. Error is set for anything else.
const (
	hdrOp     = "mephisto.op"
	hdrStatus = "mephisto.status"
	opGet     = "get"

	statusFound  = "found"
	statusAbsent = "absent"
	statusMoving = "moving"
)

// tableServerID is the actor id of the node's table server, the same on
// every node of the app, so a reader computes its PID from the owner's
// actor address alone.
func (rt *Node) tableServerID() string { return "tables/" + rt.spec.App }

// startTableServer spawns the table server that answers other nodes'
// reads of the partitions this node is active for.
func (rt *Node) startTableServer() error {
	if len(rt.tables) == 0 {
		return nil
	}
	if _, err := rt.system.Root.SpawnNamed(actor.PropsFromFunc(rt.serveTables), rt.tableServerID()); err != nil {
		return fmt.Errorf("start the table server: %w", err)
	}
	return nil
}

// serveTables is the table server's Receive. A read is one Pebble lookup,
// so requests are answered in turn, in the actor.
func (rt *Node) serveTables(c actor.Context) {
	switch msg := c.Message().(type) {
	case *envelopepb.Envelope:
		if c.Sender() != nil {
			c.Respond(rt.answerTable(msg))
		}
	case proto.Message:
		// Another program's message, or a newer version's: refuse, never crash.
		if c.Sender() != nil {
			c.Respond(&envelopepb.Envelope{Error: fmt.Sprintf("the table server does not accept %T: send a mephisto envelope", msg)})
		}
	}
}

// answerTable answers one read from another node.
func (rt *Node) answerTable(req *envelopepb.Envelope) *envelopepb.Envelope {
	reply := &envelopepb.Envelope{Agent: req.Agent, CorrelationId: req.CorrelationId}
	op := header(req, hdrOp)
	if op != opGet && op != opWindows {
		reply.Error = fmt.Sprintf("the table server does not know operation %q (a newer version's?)", op)
		return reply
	}
	d := rt.tableNamed(req.Agent)
	if d == nil {
		reply.Error = "no table " + req.Agent + " in app " + rt.spec.App
		return reply
	}
	p, err := rt.tablePartition(d, req.Key)
	if err != nil {
		reply.Error = err.Error()
		return reply
	}
	if op == opWindows {
		if d.Window == nil {
			reply.Error = "table " + d.Name + " has no windows"
		} else {
			rt.answerWindows(d, p, req.Key, reply)
		}
		return reply
	}
	status := statusMoving
	if loc := rt.locate(p, false); loc.local {
		raw, found, err := rt.store.Get(rt.ids[d.Index], p, req.Key)
		switch {
		case err != nil:
			reply.Error = err.Error()
			return reply
		case found:
			status, reply.Value = statusFound, raw
		default:
			status = statusAbsent
		}
	}
	reply.Headers = []*envelopepb.Header{{Key: hdrStatus, Value: []byte(status)}}
	return reply
}

func header(env *envelopepb.Envelope, key string) string {
	for _, h := range env.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (rt *Node) tableNamed(name string) *partition.Table {
	for _, d := range rt.tables {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// tablePartition returns the partition key (encoded) hashes to in table d.
// Until the node has its first assignment plan nothing is served (and the
// Kafka clients the partition count may need are not yet set up).
func (rt *Node) tablePartition(d *partition.Table, key []byte) (int32, error) {
	rt.mu.Lock()
	planned := rt.plan != nil
	rt.mu.Unlock()
	if !planned {
		return 0, fmt.Errorf("%w: the node has not joined the cluster yet", ErrMoving)
	}
	n, err := rt.partitionCount(d.Changelog)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMoving, err)
	}
	return kafka.Partition(key, n), nil
}

// location is where a table partition is served, as this node sees it.
type location struct {
	local   bool // this node is active for it and has recovered it
	standby bool // this node keeps a standby copy (asked for stale reads only)
	// owner is the node the assignment names active for it; owned is
	// false when there is no assignment yet, or it names nobody.
	owner cluster.NodeInfo
	owned bool
}

// locate says where partition p of the tables is served. With stale, a
// standby copy here counts.
func (rt *Node) locate(p int32, stale bool) location {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var loc location
	if gs, ok := rt.grains[p]; ok && gs.loaded {
		loc.local = true
		return loc
	}
	if stale && rt.standbys[p] != nil {
		loc.standby = true
		return loc
	}
	if rt.plan != nil {
		loc.owner, loc.owned = rt.plan.ActiveFor(p)
	}
	return loc
}

// TableGet reads the committed value of key (encoded) in table index idx:
// from this node's store when it is active for the key's partition (with
// stale, also when it keeps a standby copy), else from the owner's table
// server, one hop. Errors wrap ErrMoving when nobody serves the partition
// right now, ErrNoRemote when the hop cannot be made (a node without an
// actor address), ErrTimeout when ctx ends first.
func (rt *Node) TableGet(ctx context.Context, idx int, key []byte, stale bool) ([]byte, bool, error) {
	d := rt.tables[idx]
	p, err := rt.tablePartition(d, key)
	if err != nil {
		return nil, false, err
	}
	loc := rt.locate(p, stale)
	switch {
	case loc.local || loc.standby:
		return rt.store.Get(rt.ids[idx], p, key)
	case !loc.owned:
		return nil, false, fmt.Errorf("%w: no node is active for partition %d (a rebalance is under way, or the node is still joining)", ErrMoving, p)
	case loc.owner.NodeID == rt.cfg.NodeID:
		return nil, false, fmt.Errorf("%w: partition %d is being recovered here", ErrMoving, p)
	case loc.owner.Actor == "":
		return nil, false, fmt.Errorf("%w: node %s is active for partition %d but takes no messages from other nodes (start it with --actor)", ErrNoRemote, loc.owner.NodeID, p)
	case rt.actorAddr() == "":
		return nil, false, fmt.Errorf("%w: node %s is active for partition %d, and this node cannot ask it: it takes no part in messages between nodes (start it with --actor, or WithActorAddr)", ErrNoRemote, loc.owner.NodeID, p)
	}
	pid := actor.NewPID(loc.owner.Actor, rt.tableServerID())
	reply, err := rt.remote.Request(ctx, pid, &envelopepb.Envelope{
		Agent: d.Name, Key: key, Headers: []*envelopepb.Header{{Key: hdrOp, Value: []byte(opGet)}},
	})
	switch {
	case errors.Is(err, ErrNoOwner), errors.Is(err, ErrNodeDead):
		return nil, false, fmt.Errorf("%w: partition %d: %w", ErrMoving, p, err)
	case err != nil:
		return nil, false, fmt.Errorf("read partition %d from node %s: %w", p, loc.owner.NodeID, err)
	}
	switch s := header(reply, hdrStatus); s {
	case statusFound:
		return reply.Value, true, nil
	case statusAbsent:
		return nil, false, nil
	case statusMoving:
		return nil, false, fmt.Errorf("%w: node %s is no longer active for partition %d", ErrMoving, loc.owner.NodeID, p)
	default:
		return nil, false, fmt.Errorf("%w: node %s answered a read with status %q", ErrRemote, loc.owner.NodeID, s)
	}
}

// TableRange calls fn for each committed row of table index idx whose key
// starts with prefix, over the partitions this node is active for (with
// stale, also those it keeps standby copies of), in key order, until fn
// returns false or ctx ends. key and value are valid during the call only.
// It fails with ErrMoving while the node is between assignments or has
// assigned partitions still recovering: their rows would be missing.
func (rt *Node) TableRange(ctx context.Context, idx int, prefix []byte, stale bool, fn func(key, value []byte) bool) error {
	parts, err := rt.localPartitions(stale)
	if err != nil || len(parts) == 0 {
		return err
	}
	return rt.mergeRows(ctx, idx, parts, prefix, fn)
}

// mergeRows calls fn on the rows of table index idx in parts whose key
// starts with prefix, in key order, from one Pebble snapshot, until fn
// returns false or ctx ends (checked every 256 rows).
func (rt *Node) mergeRows(ctx context.Context, idx int, parts []int32, prefix []byte, fn func(key, value []byte) bool) error {
	var n int
	var cerr error
	err := rt.store.Merge(rt.ids[idx], parts, prefix, func(_ int32, k, v []byte) bool {
		if n++; n%256 == 0 {
			if cerr = ctx.Err(); cerr != nil {
				return false
			}
		}
		return fn(k, v)
	})
	if err == nil {
		err = cerr
	}
	return err
}

// localPartitions returns, sorted, the partitions this node serves table
// rows of: those it is active for, and with stale those it keeps standby
// copies of.
func (rt *Node) localPartitions(stale bool) ([]int32, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if !rt.session {
		return nil, fmt.Errorf("%w: the node is between partition assignments", ErrMoving)
	}
	var parts, recovering []int32
	for p, gs := range rt.grains {
		if gs.loaded {
			parts = append(parts, p)
		} else {
			recovering = append(recovering, p)
		}
	}
	if len(recovering) > 0 {
		slices.Sort(recovering)
		return nil, fmt.Errorf("%w: partitions %v are recovering here", ErrMoving, recovering)
	}
	if stale {
		for p := range rt.standbys {
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	return parts, nil
}

// TableOwner says where the key (encoded) of table index idx is served:
// here, or by the node at web (its HTTP address). It fails with ErrMoving
// when nobody serves it right now.
func (rt *Node) TableOwner(idx int, key []byte) (local bool, web string, err error) {
	p, err := rt.tablePartition(rt.tables[idx], key)
	if err != nil {
		return false, "", err
	}
	loc := rt.locate(p, false)
	switch {
	case loc.local:
		return true, "", nil
	case loc.owned && loc.owner.NodeID != rt.cfg.NodeID && loc.owner.Web != "":
		return false, loc.owner.Web, nil
	}
	return false, "", fmt.Errorf("%w: partition %d", ErrMoving, p)
}
