package state

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ExitStateCorrupt is the exit code of a worker that found its table state
// corrupt while running (a table file failed its checksum): the code of any
// command that failed. It does not restart into the same failure: the
// store is marked corrupt first, and every later Open refuses it with
// ErrCorrupt until the `reset` command wipes it.
const ExitStateCorrupt = 1

// corruptMarker is the file, in the store's directory, that marks the store
// corrupt. Pebble ignores files whose names it does not know; Reset removes
// it with the rest.
const corruptMarker = "MEPHISTO-CORRUPT"

// resetAdvice is what to do about a corrupt store, as the README says it.
const resetAdvice = "the tables can be rebuilt from Kafka: run the `reset` command, then start the worker again (it rebuilds them from the changelogs)"

// corruption handles damage found in a running store. It is shared by the
// store's read paths and Pebble's event listener and logger.
type corruption struct {
	log  *slog.Logger // never nil: the reason must be logged before exiting
	fs   vfs.FS
	dir  string
	once sync.Once
}

func newCorruption(log *slog.Logger, fsys vfs.FS, dir string) *corruption {
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return &corruption{log: log, fs: fsys, dir: dir}
}

// fatal marks the store corrupt, logs what to do and exits the process with
// ExitStateCorrupt. It does not return. Only one caller marks and exits;
// any other blocks until the process is gone.
//
// Exiting rather than returning an error: the read may be the node's
// (a partition's miss, an HTTP lookup) or Pebble's own (a compaction); a
// corrupt block fails again on every retry, so an error would only have
// the partition restart forever. What was committed is in the changelogs.
func (c *corruption) fatal(cause string) {
	c.once.Do(func() {
		args := []any{"component", "pebble", "dir", c.dir, "cause", cause}
		if err := c.mark(cause); err != nil {
			args = append(args, "mark_error", err.Error())
		}
		c.log.Error("table state is corrupt (Pebble found a damaged file): exiting; "+
			"the worker refuses to start on this data dir until it is reset — "+resetAdvice, args...)
		os.Exit(ExitStateCorrupt)
	})
	select {}
}

// mark writes the corrupt marker durably.
func (c *corruption) mark(cause string) error {
	path := c.fs.PathJoin(c.dir, corruptMarker)
	f, err := c.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s\n%s\n", time.Now().UTC().Format(time.RFC3339), cause)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	d, err := c.fs.OpenDir(c.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// markedCorrupt returns the cause a running store recorded when it found
// itself corrupt; ok is false when the store was never marked.
func markedCorrupt(fsys vfs.FS, dir string) (cause string, ok bool) {
	f, err := fsys.Open(fsys.PathJoin(dir, corruptMarker))
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return strings.Join(strings.Fields(string(b)), " "), true
}

// dataCorruption is Pebble's DataCorruption event: a table file failed its
// checksum (on a read of the node's, or in a compaction). Pebble's default
// calls Logger.Fatalf.
func (c *corruption) dataCorruption(info pebble.DataCorruptionInfo) {
	// info.String() formats the details with %+v: stack traces.
	c.fatal(fmt.Sprintf("%s: %v", info.Path, info.Details))
}
