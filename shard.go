package mephisto

import (
	"github.com/prometheus/client_golang/prometheus"
)

// shard is the in-memory part of one table's partition: a cache of decoded
// values in front of Pebble. It holds the writes not yet committed (one
// entry per key however often the key was written, so the changelog
// carries one record per key per commit, as Kafka Streams' record cache
// does) and keeps committed values, so that the next event on a hot key
// neither reads Pebble nor decodes. Entries are evicted, least recently
// used first (approximately: a CLOCK sweep), once the shard holds more than
// limit keys, but only once Pebble holds their value: an entry written in a
// generation not yet stored stays. Only the partition's grain calls its
// methods, except cached with readOnly, which concurrent agents' workers
// call while the grain waits for them.
type shard struct {
	def   *tableDef
	core  *core
	limit int // keys kept; more only while their writes are not stored
	cache map[string]*entry
	dirty []*entry // entries written in the open generation, in first-write order
	// counts since the last flushStats: grains of one table share the
	// Prometheus counters, and an atomic add per event from every grain
	// would contend on one cache line.
	nWrites, nHits, nMisses int
	writes, hits, misses    prometheus.Counter
}

// entry is one cached key: its typed value (served to reads) and its
// encoding (written to the changelog and Pebble).
type entry struct {
	key    string
	v      any
	raw    []byte
	absent bool   // deleted, or known not to exist in Pebble
	used   bool   // read or written since the last eviction sweep
	gen    uint64 // the commit generation that last wrote it; 0 if read only
}

// row is a write frozen into a commit: the entry may change again before
// the commit reaches Pebble.
type row struct {
	key    string
	raw    []byte
	absent bool
}

func newShard(c *core, d *tableDef, limit int) *shard {
	m := c.rt.metrics
	return &shard{
		def: d, core: c, limit: limit,
		cache:  map[string]*entry{},
		writes: m.tableWrites.WithLabelValues(d.name),
		hits:   m.cacheHits.WithLabelValues(d.name),
		misses: m.cacheMisses.WithLabelValues(d.name),
	}
}

// cached returns the cache's entry for key, if any. With readOnly (a
// concurrent agent's worker) it leaves the entry's state alone: several
// workers read at once.
func (sh *shard) cached(key []byte, readOnly bool) (*entry, bool) {
	e, ok := sh.cache[string(key)]
	if ok && !readOnly {
		e.used = true
		sh.nHits++
	}
	return e, ok
}

// remember caches what a read found in Pebble (v, or absent) and returns
// the entry, or nil when the shard keeps no clean entries. Workers of
// concurrent agents must not call it.
func (sh *shard) remember(key []byte, v any, raw []byte, absent bool) *entry {
	sh.nMisses++
	if sh.limit <= 0 {
		return nil
	}
	k := string(key)
	e := &entry{key: k, v: v, raw: raw, absent: absent, used: true}
	sh.cache[k] = e
	return e
}

// put records a write (absent for a delete) in the open generation. e is
// key's entry, if the caller has it.
func (sh *shard) put(key []byte, e *entry, v any, raw []byte, absent bool) {
	if e == nil {
		var ok bool
		if e, ok = sh.cache[string(key)]; !ok {
			k := string(key)
			e = &entry{key: k}
			sh.cache[k] = e
		}
	}
	e.v, e.raw, e.absent, e.used = v, raw, absent, true
	if open := sh.core.open; e.gen != open {
		e.gen = open
		sh.dirty = append(sh.dirty, e)
	}
	sh.nWrites++
}

// freeze returns the open generation's writes for a commit and starts an
// empty one (the core advances the generation).
func (sh *shard) freeze() []row {
	if len(sh.dirty) == 0 {
		return nil
	}
	rows := make([]row, len(sh.dirty))
	for i, e := range sh.dirty {
		rows[i] = row{key: e.key, raw: e.raw, absent: e.absent}
	}
	clear(sh.dirty) // drop the pointers, so evicted entries can be collected
	sh.dirty = sh.dirty[:0]
	return rows
}

// flushStats adds the counts since the last call to the metrics.
func (sh *shard) flushStats() {
	if sh.nWrites > 0 {
		sh.writes.Add(float64(sh.nWrites))
	}
	if sh.nHits > 0 {
		sh.hits.Add(float64(sh.nHits))
	}
	if sh.nMisses > 0 {
		sh.misses.Add(float64(sh.nMisses))
	}
	sh.nWrites, sh.nHits, sh.nMisses = 0, 0, 0
}

// evict drops entries Pebble holds until the shard holds at most limit
// keys: first those not used since the last sweep, then any.
func (sh *shard) evict() {
	over := len(sh.cache) - sh.limit
	if over <= 0 {
		return
	}
	stored := sh.core.stored
	for pass := 0; pass < 2 && over > 0; pass++ {
		for k, e := range sh.cache {
			if e.gen > stored {
				continue
			}
			if e.used && pass == 0 {
				e.used = false
				continue
			}
			delete(sh.cache, k)
			if over--; over == 0 {
				break
			}
		}
	}
}

// reset drops every entry: the uncommitted writes of a grain that restarts
// (clean ones too, which is simpler than telling them apart and rare).
func (sh *shard) reset() {
	clear(sh.cache)
	clear(sh.dirty)
	sh.dirty = sh.dirty[:0]
}
