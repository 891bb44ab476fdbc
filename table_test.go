package mephisto

import (
	"context"
	"reflect"
	"testing"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/state/shard"
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

// TestHandlerReadsAllocateNothing: a handler's Get of a cached key costs
// no allocation — the reads-from-anywhere path is taken only outside a
// handler, and must not slow the hot path.
func TestHandlerReadsAllocateNothing(t *testing.T) {
	app := New("alloc")
	counts := NewTable(app, "counts", codec.String(), codec.Int64())
	sh := shard.New(func([]byte) ([]byte, bool, error) { return nil, false, nil }, &shard.Gens{Open: 1}, 100)
	var ctx Context = handlerCtx{partition.NewEvent(context.Background(), nil, []*shard.Shard{sh})}
	if err := counts.Set(ctx, "the", 42); err != nil {
		t.Fatal(err)
	}
	if _, err := counts.Get(ctx, "absent"); err != nil { // caches the absence
		t.Fatal(err)
	}
	for _, key := range []string{"the", "absent"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := counts.Lookup(ctx, key); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Lookup(%q) in a handler: %v allocations, want 0", key, allocs)
		}
	}
	if n, err := counts.Get(ctx, "the"); err != nil || n != 42 {
		t.Errorf("Get in a handler = %d, %v; want the uncommitted 42", n, err)
	}
}
