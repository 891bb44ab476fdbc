package harness

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestVisibility: a write is visible at the first change a copy applied
// with it or a later write, in the order the changes were applied (not
// the order they are listed); a write no change covers is unseen.
func TestVisibility(t *testing.T) {
	const ms = 1_000_000 // ns
	written := []int64{100 * ms, 110 * ms, 120 * ms, 130 * ms, 140 * ms}
	seen := [][2]int64{
		{145 * ms, 110 * ms}, // 100 and 110 (100 superseded before its commit) — listed out of order
		{125 * ms, 100 * ms}, // 100 alone, earlier
		{160 * ms, 130 * ms}, // 120 (through its successor) and 130
		{170 * ms, 120 * ms}, // an older value again (a replay): shows nothing new
	}
	got, unseen := visibility(written, seen)
	if want := []float64{25, 35, 40, 30}; !slices.Equal(got, want) || unseen != 1 {
		t.Errorf("visibility = %v, %d unseen; want %v, 1 unseen (140 ms never shown)", got, unseen, want)
	}
	if got, unseen := visibility(written, nil); len(got) != 0 || unseen != len(written) {
		t.Errorf("no changes seen: %v, %d unseen", got, unseen)
	}
	if got, unseen := visibility(nil, seen); len(got) != 0 || unseen != 0 {
		t.Errorf("nothing written: %v, %d unseen", got, unseen)
	}
	// One change showing the last write covers all of them.
	if got, _ := visibility([]int64{3 * ms, 1 * ms, 2 * ms}, [][2]int64{{5 * ms, 3 * ms}}); !slices.Equal(got, []float64{4, 3, 2}) {
		t.Errorf("one change covering all: %v, want [4 3 2] (writes sorted)", got)
	}
}

func TestSplitWritten(t *testing.T) {
	before, after := splitWritten([]int64{5, 1, 3, 4, 2}, 3)
	if !slices.Equal(before, []int64{1, 2}) || !slices.Equal(after, []int64{3, 4, 5}) {
		t.Errorf("split at 3: %v | %v, want [1 2] | [3 4 5]", before, after)
	}
	if before, after := splitWritten(nil, 3); len(before)+len(after) != 0 {
		t.Errorf("nothing written: %v | %v", before, after)
	}
}

// TestGlobalReport: the harness reads what bench/app/global.go answers,
// and the global tables' part of GET /cluster.
func TestGlobalReport(t *testing.T) {
	var rep globalReport
	if err := json.Unmarshal([]byte(`{"node":"g1","value":1000,"found":true,"written":[10,20],"seen":[[15,10],[26,20]]}`), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Node != "g1" || rep.Value != 1000 || !rep.Found || len(rep.Written) != 2 || rep.Seen[1] != [2]int64{26, 20} {
		t.Errorf("report: %+v", rep)
	}
	var v globalView
	if err := json.Unmarshal([]byte(`{"nodes":[],"global_tables":{"global":{"lag":3,"copied":[1,2]}}}`), &v); err != nil {
		t.Fatal(err)
	}
	if c := v.GlobalTables["global"]; c.Lag != 3 || !slices.Equal(c.Copied, []int32{1, 2}) {
		t.Errorf("global view: %+v", v)
	}
}
