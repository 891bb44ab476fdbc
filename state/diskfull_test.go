package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestDiskFull: Pebble cannot go on when its log cannot be written, so a
// worker whose disk fills logs what to do and exits with ExitStateFailure.
// Reopened once there is space, the store holds exactly what was committed
// before, with rows and offsets in agreement. The disk filling up is
// injected with Pebble's errorfs in a child process (the exit is real).
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if os.Getenv("MEPHISTO_DISKFULL_CHILD") != "" {
		diskFullChild(os.Getenv("MEPHISTO_DISKFULL_DIR"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFull$")
	cmd.Env = append(os.Environ(), "MEPHISTO_DISKFULL_CHILD=1", "MEPHISTO_DISKFULL_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitStateFailure {
		t.Fatalf("child: %v (want exit %d)\n%s", err, ExitStateFailure, stderr.String())
	}
	if log := stderr.String(); !strings.Contains(log, "disk full") || !strings.Contains(log, "restart the worker") {
		t.Errorf("log does not tell the operator what happened and what to do:\n%s", log)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after disk full: %v", err)
	}
	defer s.Close()
	if v, ok, _ := s.Get(1, 0, []byte("before")); !ok || string(v) != "1" {
		t.Errorf("data committed before the disk filled is lost: %q %v", v, ok)
	}
	off, _, _ := s.SourceOffset("in", 0)
	_, during, _ := s.Get(1, 0, []byte("during"))
	if during != (off == 20) || (off != 10 && off != 20) {
		t.Errorf("rows and offsets disagree after the crash: row present %v, offset %d", during, off)
	}
	b := s.NewBatch()
	b.Set(1, 0, []byte("after"), []byte("3"))
	if err := b.Commit(); err != nil {
		t.Fatalf("commit after space came back: %v", err)
	}
}

func diskFullChild(dir string) {
	full := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return fmt.Errorf("injected: %w", syscall.ENOSPC)
		}
		return nil
	})}
	s, err := Open(Options{Dir: dir, FS: errorfs.Wrap(vfs.Default, full), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		panic(err)
	}
	b := s.NewBatch()
	b.Set(1, 0, []byte("before"), []byte("1"))
	b.SetSourceOffset("in", 0, 10)
	if err := b.Commit(); err != nil {
		panic(err)
	}
	full.On()
	b = s.NewBatch()
	b.Set(1, 0, []byte("during"), []byte("2"))
	b.SetSourceOffset("in", 0, 20)
	err = b.Commit()
	fmt.Fprintf(os.Stderr, "commit on a full disk returned %v instead of exiting\n", err)
	os.Exit(0)
}
