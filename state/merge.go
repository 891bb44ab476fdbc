package state

import (
	"bytes"
	"container/heap"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Merge calls fn for every committed row of the shards parts of a table
// whose key starts with prefix, in key order across the shards, until fn
// returns false. A key held by several shards (a table not keyed like its
// input: writes follow the event's partition) comes once per shard, in
// the order of parts. All shards are read from one snapshot of the store,
// so the rows are those of one moment even while grains commit; one
// Pebble iterator per shard is open at a time, merged through a heap, so
// memory does not grow with the table.
//
// key and value are only valid during the call: fn copies what it keeps.
// fn may read the store (Get) but must not wait for a commit.
func (s *Store) Merge(table uint32, parts []int32, prefix []byte, fn func(p int32, key, value []byte) bool) error {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	h := &mergeHeap{}
	defer func() {
		for _, c := range h.its {
			_ = c.it.Close()
		}
	}()
	for i, p := range parts {
		lo, hi := PrefixBounds(table, p, prefix)
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return fmt.Errorf("state: merge: %w", err)
		}
		c := &cursor{it: it, p: p, order: i, skip: len(DataKey(table, p, nil))}
		if !it.First() {
			err := it.Error()
			_ = it.Close()
			if err != nil {
				return s.readError(err)
			}
			continue
		}
		h.its = append(h.its, c)
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := h.its[0]
		if !fn(c.p, c.key(), c.it.Value()) {
			return nil
		}
		if c.it.Next() {
			heap.Fix(h, 0)
			continue
		}
		err := c.it.Error()
		heap.Pop(h)
		_ = c.it.Close()
		if err != nil {
			return s.readError(err)
		}
	}
	return nil
}

// PrefixBounds returns the key range [lo, hi) of the rows of a table shard
// whose user key starts with prefix (the whole shard for an empty one).
func PrefixBounds(table uint32, partition int32, prefix []byte) (lo, hi []byte) {
	lo, hi = ShardBounds(table, partition)
	if len(prefix) == 0 {
		return lo, hi
	}
	lo = DataKey(table, partition, prefix)
	if end := prefixEnd(prefix); end != nil {
		hi = DataKey(table, partition, end)
	}
	return lo, hi
}

// prefixEnd returns the least key greater than every key starting with
// prefix, or nil when there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// cursor is one shard's iterator in a merge.
type cursor struct {
	it    *pebble.Iterator
	p     int32
	order int // position in Merge's parts: breaks ties between equal keys
	skip  int // the length of the shard's key prefix
}

func (c *cursor) key() []byte { return c.it.Key()[c.skip:] }

// mergeHeap orders cursors by their current user key, then by order.
type mergeHeap struct{ its []*cursor }

func (h *mergeHeap) Len() int { return len(h.its) }
func (h *mergeHeap) Less(i, j int) bool {
	if c := bytes.Compare(h.its[i].key(), h.its[j].key()); c != 0 {
		return c < 0
	}
	return h.its[i].order < h.its[j].order
}
func (h *mergeHeap) Swap(i, j int) { h.its[i], h.its[j] = h.its[j], h.its[i] }
func (h *mergeHeap) Push(x any)    { h.its = append(h.its, x.(*cursor)) }
func (h *mergeHeap) Pop() any {
	c := h.its[len(h.its)-1]
	h.its = h.its[:len(h.its)-1]
	return c
}
