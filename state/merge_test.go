package state

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("ab"), []byte("ac")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
		{[]byte{0x00}, []byte{0x01}},
	} {
		if got := prefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestMerge: rows of several shards come in key order, equal keys in the
// order of the shards asked for, a prefix bounds them, other tables' and
// unasked shards' rows never show, and stopping early stops.
func TestMerge(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	tbl, _ := s.TableID("t")
	other, _ := s.TableID("other")
	b := s.NewBatch()
	rows := map[int32][]string{
		0: {"apple", "cherry", "fig", "dup"},
		1: {"banana", "date", "dup", "\xff\xff"},
		2: {"avocado", "blueberry"},
		3: {"apricot"}, // not asked for
	}
	for p, keys := range rows {
		for _, k := range keys {
			b.Set(tbl, p, []byte(k), fmt.Appendf(nil, "%d:%s", p, k))
		}
	}
	b.Set(other, 0, []byte("aardvark"), []byte("x"))
	b.Set(tbl, -1, []byte("a"), []byte("last partition id"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	collect := func(prefix string, limit int) []string {
		var out []string
		err := s.Merge(tbl, []int32{1, 0, 2}, []byte(prefix), func(p int32, k, v []byte) bool {
			if want := fmt.Sprintf("%d:%s", p, k); string(v) != want {
				t.Errorf("row %q of partition %d has value %q", k, p, v)
			}
			out = append(out, fmt.Sprintf("%d:%s", p, k))
			return len(out) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := collect("", 100)
	want := []string{"0:apple", "2:avocado", "1:banana", "2:blueberry", "0:cherry", "1:date", "1:dup", "0:dup", "0:fig", "1:\xff\xff"}
	if !slices.Equal(all, want) {
		t.Errorf("merge of all:\n got %q\nwant %q", all, want)
	}
	if got := collect("a", 100); !slices.Equal(got, []string{"0:apple", "2:avocado"}) {
		t.Errorf("prefix a: %q", got)
	}
	if got := collect("d", 100); !slices.Equal(got, []string{"1:date", "1:dup", "0:dup"}) {
		t.Errorf("prefix d: %q", got)
	}
	if got := collect("\xff", 100); !slices.Equal(got, []string{"1:\xff\xff"}) {
		t.Errorf("prefix 0xff: %q", got)
	}
	if got := collect("zzz", 100); len(got) != 0 {
		t.Errorf("prefix zzz: %q", got)
	}
	if got := collect("", 3); !slices.Equal(got, want[:3]) {
		t.Errorf("stopped after 3: %q", got)
	}
	if err := s.Merge(tbl, nil, nil, func(int32, []byte, []byte) bool { t.Error("a row of no shard"); return true }); err != nil {
		t.Fatal(err)
	}
	var last []string
	if err := s.Merge(tbl, []int32{-1}, nil, func(p int32, k, _ []byte) bool { last = append(last, string(k)); return true }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(last, ",") != "a" {
		t.Errorf("partition -1: %q", last)
	}
}

// TestMergeSnapshot: rows written while a merge runs do not show in it.
func TestMergeSnapshot(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	tbl, _ := s.TableID("t")
	b := s.NewBatch()
	b.Set(tbl, 0, []byte("a"), []byte("1"))
	b.Set(tbl, 1, []byte("c"), []byte("1"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := s.Merge(tbl, []int32{0, 1}, nil, func(p int32, k, _ []byte) bool {
		if len(seen) == 0 {
			w := s.NewBatch()
			w.Set(tbl, 1, []byte("b"), []byte("2"))
			w.Delete(tbl, 1, []byte("c"))
			if err := w.Commit(); err != nil {
				t.Error(err)
			}
		}
		seen = append(seen, string(k))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "a,c" {
		t.Errorf("merge saw %q, want the snapshot's a,c", seen)
	}
}
