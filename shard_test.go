package mephisto

import (
	"reflect"
	"testing"

	"github.com/mephistohq/mephisto/state"
)

func TestValueType(t *testing.T) {
	type point struct{ X, Y int }
	type named struct {
		Name string
		At   [2]point
	}
	type withSlice struct{ Tags []string }
	for _, c := range []struct {
		v    any
		want bool
	}{
		{int64(0), true}, {"", true}, {3.5, true}, {true, true}, {[4]byte{}, true},
		{point{}, true}, {named{}, true},
		{[]byte(nil), false}, {map[string]int{}, false}, {&point{}, false},
		{withSlice{}, false}, {[]int{}, false}, {[1][]int{}, false},
	} {
		if got := valueType(reflect.TypeOf(c.v)); got != c.want {
			t.Errorf("valueType(%T) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestRecoveryWindow replays a changelog with repeated keys and tombstones
// through the window into a real store: the last record per key wins, a
// tombstone removes the row, and a key set again after its tombstone is
// back.
func TestRecoveryWindow(t *testing.T) {
	st, err := state.Open(state.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := newRecoveryWindow()
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
		w.put([]byte(r.k), v)
	}
	if w.records != 9 || len(w.keys) != 4 {
		t.Fatalf("window holds %d records, %d keys; want 9 and 4", w.records, len(w.keys))
	}
	b := st.NewBatch()
	w.writeTo(b, 1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	w.reset()
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
