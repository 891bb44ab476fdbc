package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Ingest writes rows of one table shard into a new sorted table file and
// adds the file to the store at once, bypassing the memtable: for bulk
// loads such as a shard's restore from its changelog, where going through
// the memtable costs a flush and compactions of every row. Rows must come
// in increasing key order, each key once. Nothing is visible before
// Finish; Finish is atomic.
type Ingest struct {
	s     *Store
	path  string
	w     *sstable.Writer
	table uint32
	p     int32
	key   []byte
	rows  int
}

// NewIngest starts an ingest into the shard (table, partition).
func (s *Store) NewIngest(table uint32, partition int32) (*Ingest, error) {
	fs := s.opts.FS
	path := filepath.Join(s.dir, fmt.Sprintf("ingest-%d-%d-%d.sst", table, partition, s.seq.Add(1)))
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("state: create %s: %w", path, err)
	}
	// Options of L0, not of the bottom level: a file written for the
	// bottom level drops its tombstones (nothing is below it), but an
	// ingested file lands above whatever it overlaps, and its deletes must
	// hide the rows there.
	wo := s.opts.MakeWriterOptions(0, s.db.FormatMajorVersion().MaxTableFormat())
	return &Ingest{s: s, path: path, w: sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo),
		table: table, p: partition}, nil
}

func (in *Ingest) dataKey(key []byte) []byte {
	in.key = append(in.key[:0], spaceData)
	in.key = binary.BigEndian.AppendUint32(in.key, in.table)
	in.key = binary.BigEndian.AppendUint32(in.key, uint32(in.p))
	return append(in.key, key...)
}

// Set writes a row.
func (in *Ingest) Set(key, value []byte) error {
	in.rows++
	return in.w.Set(in.dataKey(key), value)
}

// Delete removes a row.
func (in *Ingest) Delete(key []byte) error {
	in.rows++
	return in.w.Delete(in.dataKey(key))
}

// Finish closes the file and adds it to the store; the rows are then
// durable (Pebble syncs the file and its manifest).
func (in *Ingest) Finish(ctx context.Context) error {
	fs := in.s.opts.FS
	defer func() { _ = fs.Remove(in.path) }() // Pebble links or copies what it keeps
	if err := in.w.Close(); err != nil {
		return fmt.Errorf("state: write %s: %w", in.path, err)
	}
	if in.rows == 0 {
		return nil
	}
	if err := in.s.db.Ingest(ctx, []string{in.path}); err != nil {
		return fmt.Errorf("state: ingest %s: %w", in.path, err)
	}
	return nil
}

// Abort drops the ingest.
func (in *Ingest) Abort() {
	_ = in.w.Close()
	_ = in.s.opts.FS.Remove(in.path)
}
