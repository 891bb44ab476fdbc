package partition

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/mephistohq/mephisto/state/shard"
)

// TestRecordStore checks that records keep their place while the log
// holds them and that chunks are cleared and reused once it no longer does.
func TestRecordStore(t *testing.T) {
	s := recordStore{maxFree: 4}
	var ptrs []*Record
	for i := range 3*recordChunk + 10 {
		r := s.peek()
		*r = Record{Topic: "t", Offset: int64(i), Key: []byte(strconv.Itoa(i))}
		if n := s.push(); n != uint64(i) {
			t.Fatalf("record %d numbered %d", i, n)
		}
		ptrs = append(ptrs, r)
	}
	check := func(from int) {
		t.Helper()
		for i := from; i < len(ptrs); i++ {
			if r := ptrs[i]; r.Offset != int64(i) || string(r.Key) != strconv.Itoa(i) {
				t.Fatalf("record %d reads offset %d key %q", i, r.Offset, r.Key)
			}
		}
	}
	check(0)
	s.release(recordChunk - 1) // the first chunk still holds a live record
	if len(s.chunks) != 4 || len(s.free) != 0 {
		t.Fatalf("after releasing part of a chunk: %d chunks, %d free, want 4, 0", len(s.chunks), len(s.free))
	}
	s.release(2*recordChunk + 5)
	if len(s.chunks) != 2 || len(s.free) != 2 || s.base != 2*recordChunk {
		t.Fatalf("after releasing two chunks: %d chunks, %d free, base %d", len(s.chunks), len(s.free), s.base)
	}
	check(2*recordChunk + 5)
	if ptrs[0].Key != nil || ptrs[recordChunk].Topic != "" {
		t.Fatal("a released chunk was not cleared")
	}
	s.release(s.next) // nothing left: the partly filled chunk goes too
	if len(s.chunks) != 0 || len(s.free) != 4 || s.base != s.next {
		t.Fatalf("after releasing everything: %d chunks, %d free (max 4), base %d next %d", len(s.chunks), len(s.free), s.base, s.next)
	}
	r := s.peek()
	if len(s.free) != 3 || r.Topic != "" {
		t.Fatalf("peek after a release: %d free, record %+v; want a cleared chunk reused", len(s.free), r)
	}
	if n := s.push(); n != uint64(len(ptrs)) {
		t.Fatalf("numbering restarted: %d, want %d", n, len(ptrs))
	}
}

// TestMachineRecordsAcrossChunks delivers batches spanning many chunks of
// the record store, commits some of them, restarts, and checks that every
// handler run and every output's origin names the record it was given.
func TestMachineRecordsAcrossChunks(t *testing.T) {
	seen := map[int64]int{}
	a := &Agent{Name: "a", Topic: "t"}
	a.Run = func(ev *Event) error {
		r := ev.Record()
		if want := fmt.Sprintf("k%d", r.Offset); string(r.Key) != want || string(r.Value) != "v"+want[1:] {
			return fmt.Errorf("record %d has key %q value %q", r.Offset, r.Key, r.Value)
		}
		seen[r.Offset]++
		return ev.Send("out", r.Key, r.Value, true)
	}
	m := New(Config{Agents: []*Agent{a}, MaxUncommitted: 1 << 20,
		Route: func(string, []byte, bool, int32) (int32, error) { return 0, nil }})
	m.Restart(nil)
	var off int64
	deliver := func(n int) {
		t.Helper()
		recs := make(Records, n)
		for i := range recs {
			recs[i] = Record{Topic: "t", Offset: off, Key: fmt.Appendf(nil, "k%d", off), Value: fmt.Appendf(nil, "v%d", off)}
			off++
		}
		rd := m.Deliver(recs, false)
		if rd.Fail != nil {
			t.Fatal(rd.Fail)
		}
		if len(rd.Outputs) != n {
			t.Fatalf("%d outputs for %d records", len(rd.Outputs), n)
		}
		for i, o := range rd.Outputs {
			if o.From == nil || o.From.Offset != recs[i].Offset || string(o.Key) != string(recs[i].Key) {
				t.Fatalf("output %d (%s) comes from %+v, want offset %d", i, o.Key, o.From, recs[i].Offset)
			}
		}
	}
	commit := func() {
		t.Helper()
		rd := m.Tick()
		if rd.Commit == nil {
			t.Fatal("no commit")
		}
		rd = m.Acked(rd.Commit.Seq, nil)
		if rd.Write != nil {
			rd = m.Stored(rd.Write.Seq)
		}
		if rd.Marks["t"] != off {
			t.Fatalf("marks %v after a commit, want t=%d", rd.Marks, off)
		}
	}
	deliver(700)
	deliver(300)
	commit() // every chunk is released
	if free := len(m.recs.free); len(m.recs.chunks) != 0 || free < 3 {
		t.Fatalf("after a commit of everything: %d chunks in use, %d free", len(m.recs.chunks), free)
	}
	deliver(recordChunk + 1)
	deliver(3*recordChunk - 7) // reuses the released chunks
	rd := m.Tick()             // a commit of those, not stored: ...
	deliver(2 * recordChunk)   // ... processing goes on meanwhile
	rd = m.Acked(rd.Commit.Seq, nil)
	m.Stored(rd.Write.Seq) // releases the chunks before the last delivery's
	deliver(recordChunk / 2)
	m.Failed(fmt.Errorf("lost the producer"))
	first := off - 2*recordChunk - recordChunk/2
	rd = m.Restart(map[string]int64{"t": first - 1}) // replays what the log still holds
	if rd.Fail != nil {
		t.Fatal(rd.Fail)
	}
	if len(rd.Outputs) != int(off-first) || rd.Outputs[0].From.Offset != first {
		t.Fatalf("the replay produced %d outputs from offset %d, want %d from %d", len(rd.Outputs), rd.Outputs[0].From.Offset, off-first, first)
	}
	for o := range off {
		want := 1
		if o >= first {
			want = 2
		}
		if seen[o] != want {
			t.Fatalf("record %d handled %d times, want %d", o, seen[o], want)
		}
	}
}

// TestDeliverAllocations checks that a running partition allocates
// nothing per record it is delivered: records go to reused chunks, the
// log and the Ready's outputs keep their capacity (issue 9).
func TestDeliverAllocations(t *testing.T) {
	one := []byte("1")
	a := &Agent{Name: "a", Topic: "t"}
	a.Run = func(ev *Event) error {
		ev.Shard(0).Put(ev.Record().Key, nil, nil, one, false)
		return nil
	}
	m := New(Config{Agents: []*Agent{a}, Tables: []*Table{{Name: "counts", Changelog: "counts-changelog"}},
		Readers: []shard.Reader{func([]byte) ([]byte, bool, error) { return nil, false, nil }}, CacheKeys: 100,
		Route: func(string, []byte, bool, int32) (int32, error) { return 0, nil }})
	m.Restart(nil)
	keys := make([][]byte, 10)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	const n = 4 * recordChunk
	recs := make(Records, n)
	var off int64
	cycle := func() {
		for i := range recs {
			recs[i] = Record{Topic: "t", Offset: off, Key: keys[off%int64(len(keys))]}
			off++
		}
		m.Deliver(recs, false)
		rd := m.Tick()
		rd = m.Acked(rd.Commit.Seq, nil)
		m.Stored(rd.Write.Seq)
	}
	cycle() // the log, the chunks and the shard's entries are made once
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const cycles = 20
	for range cycles {
		cycle()
	}
	runtime.ReadMemStats(&after)
	mallocs := float64(after.Mallocs-before.Mallocs) / cycles
	perRecord := float64(after.TotalAlloc-before.TotalAlloc) / cycles / n
	t.Logf("a cycle of %d records: %.1f allocations, %.1f bytes per record", n, mallocs, perRecord)
	if mallocs > 40 || perRecord > 8 {
		t.Errorf("a cycle of %d records allocates %.0f times, %.1f bytes per record: want a few allocations per commit, none per record", n, mallocs, perRecord)
	}
}
