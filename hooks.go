package mephisto

import "fmt"

// OnChange sets fn to be told of every change applied to this node's
// copies of the table (Faust's on_changelog_event): on the node active for
// the key's partition once the commit that wrote it is stored, and on the
// nodes keeping a standby copy of that partition as they apply its
// changelog record; deleted reports a Delete (value is then the zero
// value). For a global table, every node is told, as its copy applies the
// change. Recovery of a shard at start does not call it.
//
// fn runs on the goroutine that applies the change — a partition's grain
// between its commits, or a copy's tailer — so it must be quick and must
// not block: count, log, update an in-memory index, or hand the change to
// a channel or a task. It must not write tables (a handler's ErrNotInAgent
// rules apply: it runs outside any handler) and must not keep the key's
// or value's memory. A panic in fn is logged; the change stays stored.
// Declare it before the app runs.
func (t *Table[K, V]) OnChange(fn func(key K, value V, deleted bool)) {
	t.def.spec.OnChange = func(_ int32, kb, vb []byte) error {
		k, err := t.kc.Decode(kb)
		if err != nil {
			return fmt.Errorf("decode the key: %w", err)
		}
		var v V
		if vb != nil {
			if v, err = t.vc.Decode(vb); err != nil {
				return fmt.Errorf("decode the value: %w", err)
			}
		}
		fn(k, v, vb == nil)
		return nil
	}
}

// OnChange sets fn to be told of every change this node's copy of the
// global table applies: on every node, once the change is stored there
// (see Table.OnChange for what fn may do).
func (g *GlobalTable[K, V]) OnChange(fn func(key K, value V, deleted bool)) { g.owner.OnChange(fn) }
