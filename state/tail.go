package state

// A ShardTail applies a table shard's changelog records, in offset order,
// to the store in batches, each storing the offset of its last record with
// its rows: a standby shard is always consistent with the offset it
// records (DESIGN decision 8). It is not safe for concurrent use.
type ShardTail struct {
	st    *Store
	table uint32
	p     int32
	b     *Batch
	last  int64 // offset of the last record applied, -1 before any
}

// tailBatch is how many rows a ShardTail holds before it writes them.
const tailBatch = 10_000

// NewShardTail returns a ShardTail of partition p of table.
func NewShardTail(st *Store, table uint32, p int32) *ShardTail {
	return &ShardTail{st: st, table: table, p: p, b: st.NewBatch(), last: -1}
}

// Apply applies the changelog record at offset: a nil value is a
// tombstone. It writes the batch once it is large.
func (t *ShardTail) Apply(key, value []byte, offset int64) error {
	if value == nil {
		t.b.Delete(t.table, t.p, key)
	} else {
		t.b.Set(t.table, t.p, key, value)
	}
	t.last = offset
	if t.b.Len() >= tailBatch {
		return t.Flush()
	}
	return nil
}

// Last returns the offset of the last record applied (-1 before any).
func (t *ShardTail) Last() int64 { return t.last }

// Flush writes what was applied since the last write, durably, with the
// offset of its last record.
func (t *ShardTail) Flush() error {
	if t.last < 0 || t.b.Len() == 0 {
		return nil
	}
	t.b.SetChangelogOffset(t.table, t.p, t.last)
	err := t.b.Commit()
	t.b = t.st.NewBatch()
	return err
}

// Discard drops what was applied and not written.
func (t *ShardTail) Discard() { t.b.Discard() }
