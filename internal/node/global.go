package node

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
)

// Global tables (issue 11). A global table is a partitioned table whose
// every partition is also copied to every node: the grain active for
// partition p writes it (its changelog is the table's), and every other
// node tails that changelog partition into its own Pebble, like a standby
// of every partition. Reads are local, from the copy; writes travel to
// the key's grain as records (the root package's GlobalTable).

// isGlobal reports whether table index is global.
func (rt *Node) isGlobal(index int) bool { return slices.Contains(rt.spec.Global, index) }

// partitioned returns the tables that are not global (a standby tails
// these).
func (rt *Node) partitioned() []*partition.Table {
	var out []*partition.Table
	for _, d := range rt.tables {
		if !rt.isGlobal(d.Index) {
			out = append(out, d)
		}
	}
	return out
}

// globalTables returns the global tables.
func (rt *Node) globalTables() []*partition.Table {
	out := make([]*partition.Table, 0, len(rt.spec.Global))
	for _, i := range rt.spec.Global {
		out = append(out, rt.tables[i])
	}
	return out
}

// placeGlobals keeps a global copy of every partition that is not active
// here: it stops the copies of partitions that became active (their grain
// writes them now and replays only the tail since the copy's offset) and
// starts copies of the others. It runs before the node consumes and in
// every Assigned, before any grain starts.
func (rt *Node) placeGlobals(active map[int32]bool) error {
	globals := rt.globalTables()
	if len(globals) == 0 {
		return nil
	}
	n, err := rt.partitionCount(globals[0].Changelog)
	if err != nil {
		return fmt.Errorf("global tables: %w", err)
	}
	rt.mu.Lock()
	var stopping []*standby
	for p, s := range rt.globals {
		if active[p] {
			stopping = append(stopping, s)
			delete(rt.globals, p)
		}
	}
	var start []int32
	for p := range n {
		if _, ok := rt.globals[p]; !ok && !active[p] {
			start = append(start, p)
		}
	}
	rt.mu.Unlock()
	for _, s := range stopping {
		s.stop()
	}
	for _, p := range start {
		s := rt.startTails(p, globals, "global copy", rt.metrics.globalLag)
		rt.mu.Lock()
		rt.globals[p] = s
		rt.mu.Unlock()
	}
	return nil
}

func (rt *Node) stopGlobals() {
	rt.mu.Lock()
	all := rt.globals
	rt.globals = map[int32]*standby{}
	rt.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
}

// globalsPendingLocked says which partitions' global copies are still
// catching up with their changelogs ("" when all are): a node is not ready
// before its copies are (rt.mu held).
func (rt *Node) globalsPendingLocked() string {
	var pending []int32
	for p, s := range rt.globals {
		if !s.caughtUp() {
			pending = append(pending, p)
		}
	}
	if len(pending) == 0 {
		return ""
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i] < pending[j] })
	return fmt.Sprintf("partitions %v of the global tables catching up with their changelogs", pending)
}

// GlobalCopy is how far this node's copy of a global table is behind its
// changelog, as GET /cluster shows it.
type GlobalCopy struct {
	// Lag is the changelog records not yet applied, summed over the
	// partitions this node copies (the partitions it is active for have
	// none: their grain writes them).
	Lag int64 `json:"lag"`
	// Copied lists the partitions this node copies; the others are active
	// here.
	Copied []int32 `json:"copied"`
}

// globalCopies returns, per global table, how far behind this node's copy
// is.
func (rt *Node) globalCopies() map[string]GlobalCopy {
	globals := rt.globalTables()
	if len(globals) == 0 {
		return nil
	}
	rt.mu.Lock()
	tails := make(map[int32]*standby, len(rt.globals))
	for p, s := range rt.globals {
		tails[p] = s
	}
	rt.mu.Unlock()
	out := make(map[string]GlobalCopy, len(globals))
	for _, d := range globals {
		var c GlobalCopy
		for p, s := range tails {
			c.Copied = append(c.Copied, p)
			c.Lag += max(0, s.lagOf(d.Index))
		}
		sort.Slice(c.Copied, func(i, j int) bool { return c.Copied[i] < c.Copied[j] })
		out[d.Name] = c
	}
	return out
}

// ReadGlobal returns the value of key (encoded) in global table index from
// this node's copy: the committed state of the key's partition, as far as
// this node has applied its changelog (its own grain's commits if it is
// active for it).
func (rt *Node) ReadGlobal(index int, key []byte) (value []byte, found bool, err error) {
	d := rt.tables[index]
	n, err := rt.partitionCount(d.Changelog)
	if err != nil {
		return nil, false, err
	}
	return rt.store.Get(rt.ids[index], kafka.Partition(key, n), key)
}

// ScanGlobal calls fn on every row of global table index in this node's
// copy whose key starts with prefix (nil: all), in key order across its
// partitions, from one Pebble snapshot, until fn returns false or ctx
// ends. key and value are valid during the call only.
func (rt *Node) ScanGlobal(ctx context.Context, index int, prefix []byte, fn func(key, value []byte) bool) error {
	d := rt.tables[index]
	n, err := rt.partitionCount(d.Changelog)
	if err != nil {
		return err
	}
	parts := make([]int32, n)
	for p := range parts {
		parts[p] = int32(p)
	}
	return rt.mergeRows(ctx, index, parts, prefix, fn)
}
