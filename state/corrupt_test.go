package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChecksumFailure: bytes flipped inside a table file (.sst) are found
// when the bad block is first read. The worker must not take that for a
// full disk, nor crash-loop: it logs that the state is corrupt with the
// advice for a corrupt data dir and exits with ExitStateCorrupt; every
// later Open refuses with ErrCorrupt and the same advice until Reset; after
// Reset the store opens empty (the node rebuilds it from the changelogs).
// The exit is real: the read runs in a child process.
func TestChecksumFailure(t *testing.T) {
	if dir := os.Getenv("MEPHISTO_CORRUPT_CHILD"); dir != "" {
		corruptChild(dir)
		return
	}
	dir := t.TempDir()
	s := open(t, dir)
	b := s.NewBatch()
	for i := range 1000 {
		b.Set(1, 0, fmt.Appendf(nil, "k%04d", i), bytes.Repeat([]byte{'v'}, 100))
	}
	b.SetSourceOffset("in", 0, 999)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ssts := damageTables(t, dir)
	t.Logf("flipped bytes in %v", ssts)

	cmd := exec.Command(os.Args[0], "-test.run=^TestChecksumFailure$")
	cmd.Env = append(os.Environ(), "MEPHISTO_CORRUPT_CHILD="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	log := stderr.String()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitStateCorrupt {
		t.Errorf("child reading the damaged table: %v, want exit %d", err, ExitStateCorrupt)
	}
	if !strings.Contains(log, "corrupt") || !strings.Contains(log, "reset") || !strings.Contains(log, "changelogs") {
		t.Errorf("log does not say the state is corrupt and to reset it")
	}
	if strings.Contains(log, "disk full") {
		t.Errorf("log blames a full disk for a checksum failure")
	}
	if t.Failed() {
		t.Fatalf("child's log:\n%s", log)
	}

	for range 2 { // refused every time, not once
		_, err = Open(Options{Dir: dir})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reset") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("open after the checksum failure: %v; want ErrCorrupt naming the dir and reset", err)
		}
	}
	if err := Reset(dir); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if _, ok, err := s.Get(1, 0, []byte("k0000")); ok || err != nil {
		t.Errorf("after reset: row present %v, err %v; want an empty store", ok, err)
	}
}

// damageTables flips bytes near the start of every table file in dir (its
// first data block) and returns their names.
func damageTables(t *testing.T, dir string) []string {
	t.Helper()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no .sst to damage")
	}
	for _, f := range ssts {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 16; i < 48 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ssts
}

func corruptChild(dir string) {
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	_, _, err = s.Get(1, 0, []byte("k0000"))
	fmt.Fprintf(os.Stderr, "a read of the damaged block returned (err %v) instead of exiting\n", err)
	os.Exit(0)
}
