package state

import (
	"context"
	"fmt"
	"testing"
)

// TestRestoreWindow replays a changelog with repeated keys and tombstones
// through the window into a real store: the last record per key wins, a
// tombstone removes the row, and a key set again after its tombstone is
// back.
func TestRestoreWindow(t *testing.T) {
	st, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := NewRestoreWindow()
	seed := st.NewBatch()
	seed.Set(1, 0, []byte("gone"), []byte("old")) // in Pebble before the replay
	if err := seed.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ k, v string }{
		{"a", "1"}, {"b", "1"}, {"a", "22"}, {"gone", ""}, {"c", "1"}, {"c", ""}, {"c", "333"}, {"b", ""}, {"a", "4"},
	} {
		var v []byte
		if r.v != "" {
			v = []byte(r.v)
		}
		w.Put([]byte(r.k), v)
	}
	if w.records != 9 || len(w.keys) != 4 {
		t.Fatalf("window holds %d records, %d keys; want 9 and 4", w.records, len(w.keys))
	}
	b := st.NewBatch()
	w.WriteTo(b, 1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Reset()
	if w.records != 0 || len(w.keys) != 0 || len(w.index) != 0 {
		t.Fatalf("reset left %d records, %d keys", w.records, len(w.keys))
	}
	for k, want := range map[string]string{"a": "4", "b": "", "c": "333", "gone": ""} {
		v, ok, err := st.Get(1, 0, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if want == "" && ok {
			t.Errorf("%s = %q, want no row", k, v)
		}
		if want != "" && string(v) != want {
			t.Errorf("%s = %q (ok %v), want %q", k, v, ok, want)
		}
	}
}

// TestRestoreWindowIngest writes a window too large for a batch as a
// table file: rows and tombstones land as the last record per key says,
// over rows the store had before, next to rows of another shard.
func TestRestoreWindowIngest(t *testing.T) {
	st, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seed := st.NewBatch()
	seed.Set(1, 0, []byte("k00007"), []byte("old"))   // deleted by the window
	seed.Set(1, 0, []byte("k00008"), []byte("old"))   // overwritten
	seed.Set(1, 1, []byte("k00007"), []byte("other")) // another shard: untouched
	if err := seed.Commit(); err != nil {
		t.Fatal(err)
	}
	w := NewRestoreWindow()
	const n = 2 * IngestMinKeys
	for i := n - 1; i >= 0; i-- { // out of order: ingest sorts
		w.Put(fmt.Appendf(nil, "k%05d", i), fmt.Appendf(nil, "v%d", i))
	}
	w.Put([]byte("k00007"), nil)
	w.Put([]byte("k00009"), nil)
	w.Put([]byte("k00009"), []byte("back"))
	if err := w.Ingest(context.Background(), st, 1, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"k00000": "v0", "k00007": "", "k00008": "v8", "k00009": "back", fmt.Sprintf("k%05d", n-1): fmt.Sprintf("v%d", n-1)}
	for k, v := range want {
		got, ok, err := st.Get(1, 0, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if v == "" && ok || v != "" && string(got) != v {
			t.Errorf("%s = %q (ok %v), want %q", k, got, ok, v)
		}
	}
	rows := 0
	if err := st.Scan(1, 0, func(_, _ []byte) bool { rows++; return true }); err != nil {
		t.Fatal(err)
	}
	if rows != n-1 {
		t.Errorf("shard holds %d rows, want %d", rows, n-1)
	}
	if got, _, _ := st.Get(1, 1, []byte("k00007")); string(got) != "other" {
		t.Errorf("other shard's row = %q, want %q", got, "other")
	}
}
