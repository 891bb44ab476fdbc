package state

import (
	"bytes"
	"context"
	"fmt"
	"slices"
)

// RestoreWindow keeps the last changelog record per key, in first-seen
// order, so that a restore writes each key once per window (a changelog
// holds many records per key until compaction catches up). Its values are
// copies: a record's value pins its whole fetch buffer.
type RestoreWindow struct {
	index   map[string]int // key → slot
	keys    [][]byte
	values  [][]byte
	deleted []bool
	records int // records put since the last reset
}

// NewRestoreWindow returns an empty window.
func NewRestoreWindow() *RestoreWindow {
	return &RestoreWindow{index: map[string]int{}}
}

// Put records key's latest value (nil: a tombstone).
func (w *RestoreWindow) Put(key, value []byte) {
	w.records++
	if i, ok := w.index[string(key)]; ok {
		w.values[i] = append(w.values[i][:0], value...)
		w.deleted[i] = value == nil
		return
	}
	w.index[string(key)] = len(w.keys)
	w.keys = append(w.keys, bytes.Clone(key))
	w.values = append(w.values, bytes.Clone(value))
	w.deleted = append(w.deleted, value == nil)
}

func (w *RestoreWindow) WriteTo(b *Batch, table uint32, p int32) {
	for i, k := range w.keys {
		if w.deleted[i] {
			b.Delete(table, p, k)
		} else {
			b.Set(table, p, k, w.values[i])
		}
	}
}

// IngestMinKeys is the window size from which a restore writes a window
// as a table file rather than a batch.
const IngestMinKeys = 4096

// Ingest writes the window, in key order, as one table file.
func (w *RestoreWindow) Ingest(ctx context.Context, st *Store, table uint32, p int32) error {
	order := make([]int, len(w.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(w.keys[a], w.keys[b]) })
	in, err := st.NewIngest(table, p)
	if err != nil {
		return err
	}
	for _, i := range order {
		if w.deleted[i] {
			err = in.Delete(w.keys[i])
		} else {
			err = in.Set(w.keys[i], w.values[i])
		}
		if err != nil {
			in.Abort()
			return fmt.Errorf("write restored rows: %w", err)
		}
	}
	return in.Finish(ctx)
}

// Reset empties the window, keeping its memory.
func (w *RestoreWindow) Reset() {
	clear(w.index)
	clear(w.keys)
	clear(w.values)
	w.keys, w.values, w.deleted, w.records = w.keys[:0], w.values[:0], w.deleted[:0], 0
}

// Len returns how many keys the window holds.
func (w *RestoreWindow) Len() int { return len(w.keys) }

// Records returns how many records were put since the last Reset.
func (w *RestoreWindow) Records() int { return w.records }
