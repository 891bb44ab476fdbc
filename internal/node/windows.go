package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/window"
)

// Reads of windowed tables from outside their grains: a key's committed
// live windows, from the store of the node active for the key's partition
// (as TableGet), filtered by the partition's committed watermark so that an
// expired window is never served, even where its deletion has not reached
// this copy yet.

const opWindows = "windows"

// WindowRow is one committed window of a key: its span and the value's
// encoding (without the row's stamp).
type WindowRow struct {
	Range window.Range
	Value []byte
}

// WindowRows returns the live windows of key (encoded) in windowed table
// index idx, in start order: from this node's store when it is active for
// the key's partition (with stale, also a standby copy), else from the
// owner's table server. Errors are as TableGet's.
func (rt *Node) WindowRows(ctx context.Context, idx int, key []byte, stale bool) ([]WindowRow, error) {
	d := rt.tables[idx]
	if d.Window == nil {
		return nil, fmt.Errorf("table %s has no windows", d.Name)
	}
	p, err := rt.tablePartition(d, key)
	if err != nil {
		return nil, err
	}
	loc := rt.locate(p, stale)
	switch {
	case loc.local || loc.standby:
		return rt.localWindows(d, p, key)
	case !loc.owned:
		return nil, fmt.Errorf("%w: no node is active for partition %d (a rebalance is under way, or the node is still joining)", ErrMoving, p)
	case loc.owner.NodeID == rt.cfg.NodeID:
		return nil, fmt.Errorf("%w: partition %d is being recovered here", ErrMoving, p)
	case loc.owner.Actor == "" || rt.actorAddr() == "":
		return nil, fmt.Errorf("%w: node %s is active for partition %d, and reads between nodes need both to take actor messages (start them with --actor)", ErrNoRemote, loc.owner.NodeID, p)
	}
	reply, err := rt.remote.Request(ctx, actor.NewPID(loc.owner.Actor, rt.tableServerID()), &envelopepb.Envelope{
		Agent: d.Name, Key: key, Headers: []*envelopepb.Header{{Key: hdrOp, Value: []byte(opWindows)}},
	})
	switch {
	case errors.Is(err, ErrNoOwner), errors.Is(err, ErrNodeDead):
		return nil, fmt.Errorf("%w: partition %d: %w", ErrMoving, p, err)
	case err != nil:
		return nil, fmt.Errorf("read partition %d from node %s: %w", p, loc.owner.NodeID, err)
	}
	switch s := header(reply, hdrStatus); s {
	case statusFound:
		return decodeWindowRows(reply.Value)
	case statusMoving:
		return nil, fmt.Errorf("%w: node %s is no longer active for partition %d", ErrMoving, loc.owner.NodeID, p)
	default:
		return nil, fmt.Errorf("%w: node %s answered a read with status %q", ErrRemote, loc.owner.NodeID, s)
	}
}

// localWindows reads key's live windows of table d in partition p from
// this node's store.
func (rt *Node) localWindows(d *partition.Table, p int32, key []byte) ([]WindowRow, error) {
	id := rt.ids[d.Index]
	return LiveWindows(d, key,
		func(prefix []byte, fn func(k, v []byte) bool) error {
			return rt.store.Merge(id, []int32{p}, prefix, func(_ int32, k, v []byte) bool { return fn(k, v) })
		},
		func() ([]byte, bool, error) { return rt.store.Get(id, p, []byte(partition.MetaKey)) })
}

// LiveWindows returns key's live windows of windowed table d from one
// partition's committed rows: scan iterates the rows whose keys start
// with a prefix, in key order; meta reads the partition's MetaKey row,
// whose watermark hides the expired windows a copy has not deleted yet.
// Any driver of partitions (a node's store, the test driver's) reads
// windows through it.
func LiveWindows(d *partition.Table, key []byte, scan func(prefix []byte, fn func(k, v []byte) bool) error, meta func() ([]byte, bool, error)) ([]WindowRow, error) {
	spec := *d.Window
	var rows []WindowRow
	var derr error
	err := scan(window.Prefix(key), func(k, v []byte) bool {
		_, start, err := window.Split(k)
		if err != nil {
			return true // another key with this prefix's bytes cannot split like this one: not ours
		}
		r := spec.Of(start)
		if spec.Stamped() {
			var t int64
			if t, v, err = window.Unstamp(v); err != nil {
				derr = fmt.Errorf("table %s: stored window %d of key %q: %w", d.Name, start, key, err)
				return false
			}
			if spec.Kind == window.Session {
				r.End = t
			}
		}
		rows = append(rows, WindowRow{Range: r, Value: append([]byte(nil), v...)})
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	// The watermark is read after the rows: a newer one only hides more.
	m, found, err := meta()
	if err != nil || !found {
		return rows, err
	}
	stream, closed, err := partition.DecodeMeta(m)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", d.Name, err)
	}
	wm := max(stream, closed)
	live := rows[:0]
	for _, r := range rows {
		if spec.ExpireAt(r.Range) > wm {
			live = append(live, r)
		}
	}
	return live, nil
}

// answerWindows answers another node's read of a key's windows.
func (rt *Node) answerWindows(d *partition.Table, p int32, key []byte, reply *envelopepb.Envelope) {
	status := statusMoving
	if loc := rt.locate(p, false); loc.local {
		rows, err := rt.localWindows(d, p, key)
		if err != nil {
			reply.Error = err.Error()
			return
		}
		status, reply.Value = statusFound, encodeWindowRows(rows)
	}
	reply.Headers = []*envelopepb.Header{{Key: hdrStatus, Value: []byte(status)}}
}

func encodeWindowRows(rows []WindowRow) []byte {
	var b []byte
	for _, r := range rows {
		b = binary.AppendVarint(b, r.Range.Start)
		b = binary.AppendVarint(b, r.Range.End)
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

func decodeWindowRows(b []byte) ([]WindowRow, error) {
	var rows []WindowRow
	bad := fmt.Errorf("%w: a malformed windows reply", ErrRemote)
	for len(b) > 0 {
		start, n := binary.Varint(b)
		if n <= 0 {
			return nil, bad
		}
		b = b[n:]
		end, n := binary.Varint(b)
		if n <= 0 {
			return nil, bad
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, bad
		}
		rows = append(rows, WindowRow{Range: window.Range{Start: start, End: end}, Value: b[n : n+int(l)]})
		b = b[n+int(l):]
	}
	return rows, nil
}
