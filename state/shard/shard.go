// Package shard is the in-memory part of a table's partition: a cache of
// decoded values in front of the store, which holds the writes not yet
// committed and keeps committed values for the next events on hot keys.
// It does no I/O of its own: misses go to a Reader.
package shard

// Reader reads a committed value from the store: the value, whether the key
// has one, or an error.
type Reader func(key []byte) ([]byte, bool, error)

// Gens are a partition's cache generations: writes go to generation Open;
// the store holds every generation up to Stored. All shards of one
// partition share them, and only the partition changes them.
type Gens struct {
	Open, Stored uint64
}

// Shard is one table's partition in memory. It holds the writes not yet
// committed (one entry per key however often the key was written, so the
// changelog carries one record per key per commit, as Kafka Streams'
// record cache does) and keeps committed values, so that the next event on
// a hot key neither reads the store nor decodes. Entries are evicted, least
// recently used first (approximately: a CLOCK sweep), once the shard holds
// more than its limit, but only once the store holds their value: an entry
// written in a generation not yet stored stays. Only the partition's own
// turn calls its methods, except Cached with readOnly, which concurrent
// handlers call while the partition waits for them.
type Shard struct {
	read  Reader
	gens  *Gens
	limit int // keys kept; more only while their writes are not stored
	cache map[string]*Entry
	dirty []*Entry // entries written in the open generation, in first-write order
	// counts since the last Stats: shards of one table on many partitions
	// share their metrics, and an atomic add per event would contend.
	writes, hits, misses int
}

// Entry is one cached key: its typed value (served to reads), its
// encoding (written to the changelog and the store), and whether it is
// absent.
type Entry struct {
	key    string
	V      any    // the decoded value, when reads may share it
	Raw    []byte // the encoding
	Absent bool   // deleted, or known not to exist in the store
	used   bool   // read or written since the last eviction sweep
	gen    uint64 // the commit generation that last wrote it; 0 if read only
}

// Row is a write frozen into a commit: the entry may change again before
// the commit reaches the store.
type Row struct {
	Key    string
	Raw    []byte
	Absent bool
}

// New returns an empty shard reading misses from read, keeping up to limit
// committed keys, in the generations gens.
func New(read Reader, gens *Gens, limit int) *Shard {
	return &Shard{read: read, gens: gens, limit: limit, cache: map[string]*Entry{}}
}

// Get reads a committed value from the store (a miss of the cache).
func (sh *Shard) Get(key []byte) ([]byte, bool, error) { return sh.read(key) }

// Cached returns the cache's entry for key, if any. With readOnly (a
// concurrent handler) it leaves the entry's state alone: several handlers
// read at once.
func (sh *Shard) Cached(key []byte, readOnly bool) (*Entry, bool) {
	e, ok := sh.cache[string(key)]
	if ok && !readOnly {
		e.used = true
		sh.hits++
	}
	return e, ok
}

// Remember caches what a read found in the store (v and raw, or absent)
// and returns the entry, or nil when the shard keeps no clean entries.
// Concurrent handlers must not call it.
func (sh *Shard) Remember(key []byte, v any, raw []byte, absent bool) *Entry {
	sh.misses++
	if sh.limit <= 0 {
		return nil
	}
	k := string(key)
	e := &Entry{key: k, V: v, Raw: raw, Absent: absent, used: true}
	sh.cache[k] = e
	return e
}

// Put records a write (absent for a delete) in the open generation. e is
// key's entry, if the caller has it.
func (sh *Shard) Put(key []byte, e *Entry, v any, raw []byte, absent bool) {
	if e == nil {
		var ok bool
		if e, ok = sh.cache[string(key)]; !ok {
			k := string(key)
			e = &Entry{key: k}
			sh.cache[k] = e
		}
	}
	e.V, e.Raw, e.Absent, e.used = v, raw, absent, true
	if open := sh.gens.Open; e.gen != open {
		e.gen = open
		sh.dirty = append(sh.dirty, e)
	}
	sh.writes++
}

// Dirty reports whether the open generation holds writes.
func (sh *Shard) Dirty() bool { return len(sh.dirty) > 0 }

// Freeze returns the open generation's writes for a commit and starts an
// empty one (the partition advances the generation).
func (sh *Shard) Freeze() []Row {
	if len(sh.dirty) == 0 {
		return nil
	}
	rows := make([]Row, len(sh.dirty))
	for i, e := range sh.dirty {
		rows[i] = Row{Key: e.key, Raw: e.Raw, Absent: e.Absent}
	}
	clear(sh.dirty) // drop the pointers, so evicted entries can be collected
	sh.dirty = sh.dirty[:0]
	return rows
}

// Stats returns the writes, cache hits and misses since the last call.
func (sh *Shard) Stats() (writes, hits, misses int) {
	writes, hits, misses = sh.writes, sh.hits, sh.misses
	sh.writes, sh.hits, sh.misses = 0, 0, 0
	return writes, hits, misses
}

// Len returns how many keys the shard holds.
func (sh *Shard) Len() int { return len(sh.cache) }

// Evict drops entries the store holds until the shard holds at most its
// limit: first those not used since the last sweep, then any.
func (sh *Shard) Evict() {
	over := len(sh.cache) - sh.limit
	if over <= 0 {
		return
	}
	stored := sh.gens.Stored
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

// Reset drops every entry: the uncommitted writes of a partition that
// restarts (clean ones too, which is simpler than telling them apart and
// rare).
func (sh *Shard) Reset() {
	clear(sh.cache)
	clear(sh.dirty)
	sh.dirty = sh.dirty[:0]
}

// Forget drops key's entry unless it holds a write the store does not
// have yet: a window that expired, which nothing reads again.
func (sh *Shard) Forget(key []byte) {
	if e, ok := sh.cache[string(key)]; ok && e.gen <= sh.gens.Stored {
		delete(sh.cache, string(key))
	}
}
