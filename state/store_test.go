package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	id := Identity{App: "wc", ClusterID: "c1"}
	if err := s.CheckIdentity(id); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if err := s.CheckIdentity(id); err != nil {
		t.Fatalf("same identity refused: %v", err)
	}
	for _, other := range []Identity{{App: "wc", ClusterID: "c2"}, {App: "orders", ClusterID: "c1"}} {
		err := s.CheckIdentity(other)
		if !errors.Is(err, ErrIdentityMismatch) {
			t.Fatalf("%v accepted: %v", other, err)
		}
		if !strings.Contains(err.Error(), "reset") || !strings.Contains(err.Error(), dir) {
			t.Errorf("error does not tell the operator what to do: %v", err)
		}
	}
}

func TestTableIDsAreStable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a, _ := s.TableID("a")
	b, _ := s.TableID("b")
	if a == b {
		t.Fatalf("two tables share id %d", a)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	b2, _ := s.TableID("b")
	a2, _ := s.TableID("a")
	c, _ := s.TableID("c")
	if a2 != a || b2 != b || c == a || c == b {
		t.Fatalf("ids after reopen: a %d→%d b %d→%d c %d", a, a2, b, b2, c)
	}
}

func TestBatchCommitsRowsAndOffsetsTogether(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b := s.NewBatch()
	b.Set(1, 3, []byte("k"), []byte("v"))
	b.SetChangelogOffset(1, 3, 41)
	b.SetSourceOffset("words", 3, 99)
	if _, ok, _ := s.Get(1, 3, []byte("k")); ok {
		t.Fatal("row visible before commit")
	}
	if _, ok, _ := s.SourceOffset("words", 3); ok {
		t.Fatal("offset visible before commit")
	}
	// A discarded batch leaves nothing.
	d := s.NewBatch()
	d.Set(1, 3, []byte("x"), []byte("y"))
	d.SetSourceOffset("words", 3, 1000)
	d.Discard()
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	v, ok, err := s.Get(1, 3, []byte("k"))
	if err != nil || !ok || string(v) != "v" {
		t.Fatalf("row: %q %v %v", v, ok, err)
	}
	if off, ok, _ := s.ChangelogOffset(1, 3); !ok || off != 41 {
		t.Fatalf("changelog offset %d %v", off, ok)
	}
	if off, ok, _ := s.SourceOffset("words", 3); !ok || off != 99 {
		t.Fatalf("source offset %d %v", off, ok)
	}
	if _, ok, _ := s.Get(1, 3, []byte("x")); ok {
		t.Fatal("discarded row stored")
	}
}

func TestWipeShardTouchesOnlyThatShard(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	b := s.NewBatch()
	for _, sh := range []struct {
		table uint32
		p     int32
	}{{1, 0}, {1, 1}, {2, 1}, {1, 2}} {
		b.Set(sh.table, sh.p, []byte("k"), []byte("v"))
		b.SetChangelogOffset(sh.table, sh.p, 7)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.WipeShard(1, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(1, 1, []byte("k")); ok {
		t.Error("wiped row still there")
	}
	if _, ok, _ := s.ChangelogOffset(1, 1); ok {
		t.Error("wiped shard kept its offset")
	}
	for _, sh := range [][2]int64{{1, 0}, {2, 1}, {1, 2}} {
		if _, ok, _ := s.Get(uint32(sh[0]), int32(sh[1]), []byte("k")); !ok {
			t.Errorf("shard %v lost its row", sh)
		}
	}
	var keys []string
	if err := s.Scan(1, 2, func(k, _ []byte) bool { keys = append(keys, string(k)); return true }); err != nil || len(keys) != 1 || keys[0] != "k" {
		t.Errorf("scan of shard 1/2: %v %v", keys, err)
	}
}

func TestCorruptDataDir(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b := s.NewBatch()
	b.Set(1, 0, []byte("k"), []byte("v"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST to corrupt")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte("this is not a manifest at all, not even close"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(Options{Dir: dir})
	if err == nil {
		t.Fatal("opened a corrupt data dir")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error does not name the dir: %v", err)
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reset") {
		t.Errorf("error does not say it is corrupt and what to do: %v", err)
	}
}

func TestSecondOpenSaysDirInUse(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(Options{Dir: dir})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "another worker") {
		t.Fatalf("second open: %v", err)
	}
}
