// Package state keeps a node's table shards, and the offsets they reflect, in
// one Pebble database on local disk.
//
// Layout. Every key starts with a one-byte space:
//
//	0x00 meta   identity (app, Kafka cluster id), table ids, offsets
//	0x01 data   [table id, 4 bytes BE][partition, 4 bytes BE][user key]
//
// A table shard's rows and the offsets they reflect (the last changelog
// offset applied, the last input offset processed) are always written in the
// same synced batch, so after any crash the stored offsets describe exactly
// the stored rows — never more.
package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	spaceMeta byte = 0x00
	spaceData byte = 0x01
)

var (
	keyActive    = []byte("\x00node/active")
	keyApp       = []byte("\x00id/app")
	keyCluster   = []byte("\x00id/cluster")
	keyTableSeq  = []byte("\x00tblseq")
	prefixTable  = []byte("\x00tbl/")
	prefixChglog = []byte("\x00chg/")
	prefixSource = []byte("\x00src/")
)

// ErrIdentityMismatch is returned (wrapped in an *IdentityError) when a data
// dir was written by another app or against another Kafka cluster. Test for
// it with errors.Is.
var ErrIdentityMismatch = errors.New("state: data dir belongs to another app or Kafka cluster")

// ErrCorrupt is returned when the data dir cannot be opened because its
// files are damaged, or because a running worker found a table file failing
// its checksum and marked the store corrupt (see ExitStateCorrupt). The
// error says to run the `reset` command. Test for it with errors.Is.
var ErrCorrupt = errors.New("state: data dir is corrupt")

// Identity names what a data dir's contents were derived from.
type Identity struct {
	App       string // the Mephisto app name
	ClusterID string // the Kafka cluster id reported by the brokers
}

// IdentityError says which identity a data dir has and which one a worker
// tried to open it with.
type IdentityError struct {
	Dir           string
	Stored, Given Identity
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("data dir %s was written by app %q against Kafka cluster %q, "+
		"but this worker is app %q on Kafka cluster %q: its tables would mix two histories; "+
		"point --data-dir elsewhere, or wipe it with the `reset` command",
		e.Dir, e.Stored.App, e.Stored.ClusterID, e.Given.App, e.Given.ClusterID)
}

// Unwrap makes errors.Is(err, ErrIdentityMismatch) true.
func (e *IdentityError) Unwrap() error { return ErrIdentityMismatch }

// Options configure Open.
type Options struct {
	// Dir is the directory holding the database. Created if missing.
	Dir string
	// Logger receives Pebble's own log lines. Nil discards them.
	Logger *slog.Logger
	// CacheBytes is the size of the block cache. Zero means 64 MiB.
	CacheBytes int64
	// FS replaces the file system, for fault-injection tests. Nil means the
	// real disk.
	FS vfs.FS
}

// memTableBytes is the size of Pebble's memtable (see Open). Two may be
// alive at once (one flushing), so it counts twice in a node's memory.
const memTableBytes = 16 << 20

// Store is one node's Pebble database. It is safe for concurrent use; each
// table shard is written by exactly one partition grain.
type Store struct {
	db      *pebble.DB
	lock    *pebble.Lock // the data dir's lock, held until Close
	dir     string
	opts    *pebble.Options // as opened (Pebble filled in the defaults)
	seq     atomic.Uint64   // names ingest files
	corrupt *corruption     // what a checksum failure does

	mu     sync.Mutex // guards tables
	tables map[string]uint32
}

// Open opens (creating if needed) the store in opts.Dir. It fails with a
// *LockedError (ErrLocked) while another worker has the store open, and with
// ErrCorrupt when the store is damaged or was marked corrupt.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("state: no data dir given")
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = 64 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	fsys := opts.FS
	if fsys == nil {
		fsys = vfs.Default
	}
	corrupt := newCorruption(opts.Logger, fsys, opts.Dir)
	po := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Cache:              cache,
		FS:                 fsys,
		Logger:             pebbleLogger{log: orDiscard(opts.Logger), corrupt: corrupt},
		// A table file failing its checksum is corruption, not a failing
		// write: Pebble's default calls Logger.Fatalf.
		EventListener: &pebble.EventListener{DataCorruption: corrupt.dataCorruption},
		// Tables are written in bursts of random keys (a commit's dirty
		// keys, a shard's changelog replay). Pebble's 4 MiB default
		// flushes a memtable every few thousand keys into small, fully
		// overlapping L0 files that compaction must then merge: with a
		// million keys, compaction took most of the CPU. A larger memtable
		// absorbs a burst, and rewrites of the same key, before it flushes.
		MemTableSize: memTableBytes,
	}
	// A table read of a key that does not exist yet (the first event of
	// every new key) would otherwise search every level: bloom filters
	// answer most of them without reading a block.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	if err := fsys.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: create data dir %s: %w", opts.Dir, err)
	}
	po.EnsureDefaults() // Open fills in a copy; NewIngest needs them too
	// The lock first, so that a live worker's dir is never called corrupt
	// (nor a marked one opened).
	lock, err := lockDir(opts.Dir, fsys)
	if err != nil {
		return nil, err
	}
	if cause, ok := markedCorrupt(fsys, opts.Dir); ok {
		_ = lock.Close()
		return nil, fmt.Errorf("%w: %s: a worker found a damaged table file (%s); %s", ErrCorrupt, opts.Dir, cause, resetAdvice)
	}
	po.Lock = lock
	db, err := pebble.Open(opts.Dir, po)
	if err != nil {
		_ = lock.Close()
	}
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("state: open %s: %w (check the data dir's owner and mode)", opts.Dir, err)
	default:
		// Anything else that stops an existing store from opening is damage
		// to its files (Pebble does not mark all of it ErrCorruption).
		return nil, fmt.Errorf("%w: %s: %w (%s)", ErrCorrupt, opts.Dir, err, resetAdvice)
	}
	return &Store{db: db, lock: lock, dir: opts.Dir, opts: po, corrupt: corrupt, tables: map[string]uint32{}}, nil
}

// Close closes the database and releases the data dir's lock.
func (s *Store) Close() error {
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// Dir returns the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// DB exposes the Pebble database, for metrics and tests.
func (s *Store) DB() *pebble.DB { return s.db }

// CheckIdentity records id on first use and afterwards refuses any other
// identity with an *IdentityError.
func (s *Store) CheckIdentity(id Identity) error {
	app, okApp, err := s.getMeta(keyApp)
	if err != nil {
		return err
	}
	cluster, okCluster, err := s.getMeta(keyCluster)
	if err != nil {
		return err
	}
	if !okApp && !okCluster {
		b := s.db.NewBatch()
		defer b.Close()
		_ = b.Set(keyApp, []byte(id.App), nil)
		_ = b.Set(keyCluster, []byte(id.ClusterID), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("state: record identity: %w", err)
		}
		return nil
	}
	stored := Identity{App: string(app), ClusterID: string(cluster)}
	if stored != id {
		return &IdentityError{Dir: s.dir, Stored: stored, Given: id}
	}
	return nil
}

// SetActive records the partitions this node was last active for, so that
// after a restart it claims them again in its first join.
func (s *Store) SetActive(parts []int32) error {
	v := make([]byte, 0, 4*len(parts))
	for _, p := range parts {
		v = binary.BigEndian.AppendUint32(v, uint32(p))
	}
	return s.db.Set(keyActive, v, pebble.Sync)
}

// Active returns what SetActive recorded.
func (s *Store) Active() ([]int32, error) {
	v, ok, err := s.getMeta(keyActive)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]int32, 0, len(v)/4)
	for i := 0; i+4 <= len(v); i += 4 {
		out = append(out, int32(binary.BigEndian.Uint32(v[i:])))
	}
	return out, nil
}

// TableID returns the stable numeric id of a table, allocating and
// persisting one on first use.
func (s *Store) TableID(name string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.tables[name]; ok {
		return id, nil
	}
	key := append(bytes.Clone(prefixTable), name...)
	v, ok, err := s.getMeta(key)
	if err != nil {
		return 0, err
	}
	if ok && len(v) == 4 {
		id := binary.BigEndian.Uint32(v)
		s.tables[name] = id
		return id, nil
	}
	seq, ok, err := s.getMeta(keyTableSeq)
	if err != nil {
		return 0, err
	}
	var id uint32 = 1
	if ok && len(seq) == 4 {
		id = binary.BigEndian.Uint32(seq) + 1
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(keyTableSeq, be32(id), nil)
	_ = b.Set(key, be32(id), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("state: allocate table id for %s: %w", name, err)
	}
	s.tables[name] = id
	return id, nil
}

// Get reads a committed row. ok is false when the key has no row.
func (s *Store) Get(table uint32, partition int32, key []byte) (value []byte, ok bool, err error) {
	return s.get(DataKey(table, partition, key))
}

// ChangelogOffset returns the last changelog offset applied to a table
// shard; ok is false when none was ever applied.
func (s *Store) ChangelogOffset(table uint32, partition int32) (int64, bool, error) {
	return s.getOffset(changelogKey(table, partition))
}

// SourceOffset returns the last input offset processed for a source topic
// partition; ok is false when none was ever processed.
func (s *Store) SourceOffset(topic string, partition int32) (int64, bool, error) {
	return s.getOffset(sourceKey(topic, partition))
}

// WipeShard deletes every row of a table shard and its changelog offset, so
// that it is rebuilt from the changelog's start.
func (s *Store) WipeShard(table uint32, partition int32) error {
	lo, hi := ShardBounds(table, partition)
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(lo, hi, nil)
	_ = b.Delete(changelogKey(table, partition), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("state: wipe table %d partition %d: %w", table, partition, err)
	}
	return nil
}

// Scan calls fn for each committed row of a table shard in key order until
// fn returns false.
func (s *Store) Scan(table uint32, partition int32, fn func(key, value []byte) bool) error {
	lo, hi := ShardBounds(table, partition)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("state: scan: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(lo):], it.Value()) {
			break
		}
	}
	return s.readError(it.Error())
}

// NewBatch starts a write batch. Nothing in it is visible until Commit.
func (s *Store) NewBatch() *Batch { return &Batch{b: s.db.NewBatch()} }

// Batch is a set of row writes and offset updates committed atomically.
type Batch struct{ b *pebble.Batch }

// Set writes a row.
func (b *Batch) Set(table uint32, partition int32, key, value []byte) {
	_ = b.b.Set(DataKey(table, partition, key), value, nil)
}

// Delete removes a row.
func (b *Batch) Delete(table uint32, partition int32, key []byte) {
	_ = b.b.Delete(DataKey(table, partition, key), nil)
}

// DeleteRange removes the rows of a table shard whose keys are in
// [lo, hi) with one range deletion (expired windows of a key).
func (b *Batch) DeleteRange(table uint32, partition int32, lo, hi []byte) {
	_ = b.b.DeleteRange(DataKey(table, partition, lo), DataKey(table, partition, hi), nil)
}

// SetChangelogOffset records the last changelog offset the batch's rows
// reflect for a table shard.
func (b *Batch) SetChangelogOffset(table uint32, partition int32, offset int64) {
	_ = b.b.Set(changelogKey(table, partition), be64(offset), nil)
}

// SetSourceOffset records the last input offset the batch reflects.
func (b *Batch) SetSourceOffset(topic string, partition int32, offset int64) {
	_ = b.b.Set(sourceKey(topic, partition), be64(offset), nil)
}

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return int(b.b.Count()) }

// CommitNoSync writes the batch without waiting for the disk, and releases
// it: a crash may lose it whole, never part of it. For writes that are
// redone after a crash anyway (rebuilding a shard from its changelog).
func (b *Batch) CommitNoSync() error {
	defer b.b.Close()
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	return nil
}

// Commit writes the batch durably (fsync) and releases it.
func (b *Batch) Commit() error {
	defer b.b.Close()
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	return nil
}

// Discard releases the batch without writing it.
func (b *Batch) Discard() { _ = b.b.Close() }

// DataKey returns the Pebble key of a table row.
func DataKey(table uint32, partition int32, key []byte) []byte {
	k := make([]byte, 9, 9+len(key))
	k[0] = spaceData
	binary.BigEndian.PutUint32(k[1:], table)
	binary.BigEndian.PutUint32(k[5:], uint32(partition))
	return append(k, key...)
}

// ShardBounds returns the key range [lo, hi) of a table shard.
func ShardBounds(table uint32, partition int32) (lo, hi []byte) {
	lo = DataKey(table, partition, nil)
	hi = DataKey(table, partition+1, nil)
	if partition == -1 { // the next partition would wrap around
		hi = DataKey(table+1, 0, nil)
	}
	return lo, hi
}

// Reset deletes a data dir's store entirely, corrupt or not. It refuses
// with a *LockedError (ErrLocked) naming the holder while a worker has the
// store open, and holds the lock itself while it deletes.
func Reset(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		lock, err := lockDir(dir, vfs.Default)
		if err != nil {
			return fmt.Errorf("state: reset %s: %w", dir, err)
		}
		defer lock.Close()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("state: reset %s: %w", dir, err)
	}
	return nil
}

// Exists reports whether dir holds a store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "CURRENT"))
	if err == nil {
		return true
	}
	// Newer Pebble format versions name the marker file differently.
	m, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	return len(m) > 0
}

func changelogKey(table uint32, partition int32) []byte {
	k := append(bytes.Clone(prefixChglog), be32(table)...)
	return append(k, be32(uint32(partition))...)
}

func sourceKey(topic string, partition int32) []byte {
	k := append(bytes.Clone(prefixSource), topic...)
	k = append(k, 0)
	return append(k, be32(uint32(partition))...)
}

func (s *Store) getMeta(key []byte) ([]byte, bool, error) { return s.get(key) }

func (s *Store) getOffset(key []byte) (int64, bool, error) {
	v, ok, err := s.get(key)
	if err != nil || !ok {
		return -1, false, err
	}
	if len(v) != 8 {
		return -1, false, fmt.Errorf("%w: offset record %q has %d bytes", ErrCorrupt, key, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.readError(err)
	}
	out := bytes.Clone(v)
	_ = closer.Close()
	return out, true, nil
}

// readError wraps a read's error. A corruption error is fatal (see
// corruption.fatal): Pebble reports a table file's checksum failure to its
// event listener first, which exits; this catches what it does not report.
func (s *Store) readError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pebble.ErrCorruption) {
		s.corrupt.fatal(err.Error())
	}
	return fmt.Errorf("state: read: %w", err)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v int64) []byte  { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// pebbleLogger routes Pebble's printf-style logs through slog.
type pebbleLogger struct {
	log     *slog.Logger
	corrupt *corruption
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// ExitStateFailure is the exit code of a worker whose table state cannot be
// written (disk full or failing): EX_IOERR.
const ExitStateFailure = 74

func (l pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf when it cannot write its log (a full or failing
	// disk) or finds an invariant broken; it must not go on. What was
	// committed is intact: a restarted worker resumes from it. Corruption
	// (a checksum failure) goes to the event listener, but an ingestion's
	// comes here: a restart would only fail again.
	cause := fmt.Sprintf(format, args...)
	if strings.Contains(cause, "corruption") || strings.Contains(cause, "checksum") {
		l.corrupt.fatal(cause)
	}
	l.log.Error("table state cannot be written (disk full or failing?): exiting; nothing committed is lost — free disk space or fix the disk, then restart the worker",
		"component", "pebble", "cause", cause)
	os.Exit(ExitStateFailure)
}
