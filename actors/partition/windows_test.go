package partition

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/state/shard"
	"github.com/mephistohq/mephisto/window"
)

// winEnv drives a Machine with one tumbling windowed table (10 ms, grace
// 2 ms, expires 20 ms) whose handler counts each record in its window at
// the record's timestamp, and whose close callback sends the count to
// topic closed. It plays the driver: outputs are collected, commits are
// acknowledged and stored into rows at once.
type winEnv struct {
	t      *testing.T
	m      *Machine
	rows   map[string]string
	spans  int // range deletions applied
	out    []string
	closed []string
	fail   int // close callbacks to fail
	skip   int // close callbacks to let through before failing
}

func newWinEnv(t *testing.T) *winEnv {
	e := &winEnv{t: t, rows: map[string]string{}}
	spec := window.Spec{Kind: window.Tumbling, Size: 10 * time.Millisecond, Grace: 2 * time.Millisecond, Expires: 20 * time.Millisecond}
	tab := &Table{Name: "w", Changelog: "w-changelog", Window: &spec}
	tab.OnClose = func(ev *Event, key []byte, r window.Range) error {
		if e.skip > 0 {
			e.skip--
		} else if e.fail > 0 {
			e.fail--
			return fmt.Errorf("close fails")
		}
		raw, _, _ := e.value(ev, key)
		k, _, _ := window.Split(key)
		return ev.Send("closed", k, []byte(fmt.Sprintf("%d-%d=%s", r.Start, r.End, raw)), true)
	}
	agent := &Agent{Name: "count", Topic: "t", Run: func(ev *Event) error {
		w, sh := ev.Windows(0), ev.Shard(0)
		ts := ev.Record().Timestamp.UnixMilli()
		w.Observe(ts)
		r := spec.Current(ts)
		if w.Late(r) {
			w.Dropped()
			return nil
		}
		key := window.Key(ev.Record().Key, r.Start)
		raw, found, _ := e.value(ev, key)
		n := 0
		fmt.Sscan(string(raw), &n)
		sh.Put(key, nil, nil, []byte(fmt.Sprint(n+1)), false)
		if !found {
			w.Track(ev.Record().Key, r)
		}
		return nil
	}}
	e.m = New(Config{Agents: []*Agent{agent}, Tables: []*Table{tab},
		Readers:  []shard.Reader{func(k []byte) ([]byte, bool, error) { v, ok := e.rows[string(k)]; return []byte(v), ok, nil }},
		Scanners: []Scanner{e.scan}, CacheKeys: 100,
		Route: func(string, []byte, bool, int32) (int32, error) { return 0, nil }})
	e.apply(e.m.Restart(nil))
	return e
}

func (e *winEnv) value(ev *Event, key []byte) ([]byte, bool, error) {
	sh := ev.Shard(0)
	if en, ok := sh.Cached(key, true); ok {
		return en.Raw, !en.Absent, nil
	}
	return sh.Get(key)
}

func (e *winEnv) scan(fn func(k, v []byte) bool) error {
	keys := make([]string, 0, len(e.rows))
	for k := range e.rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), []byte(e.rows[k])) {
			break
		}
	}
	return nil
}

// apply carries a Ready out: outputs are kept, a commit is acknowledged
// and stored. It returns the Ready's failure.
func (e *winEnv) apply(rd Ready) error {
	for _, o := range rd.Outputs {
		e.out = append(e.out, fmt.Sprintf("%s %s", o.Key, o.Value))
	}
	if rd.Fail != nil {
		return rd.Fail
	}
	if c := rd.Commit; c != nil {
		for _, o := range c.Changelog {
			e.closed = append(e.closed, describeKey(o.Key, o.Value))
		}
		rd2 := e.m.Acked(c.Seq, map[string]int64{"w-changelog": 1})
		if w := rd2.Write; w != nil {
			for _, r := range w.Rows[0] {
				if r.Absent {
					delete(e.rows, r.Key)
				} else {
					e.rows[r.Key] = string(r.Raw)
				}
			}
			for _, sp := range w.Spans[0] {
				e.spans++
				for k := range e.rows {
					if k >= string(sp.Lo) && k < string(sp.Hi) {
						delete(e.rows, k)
					}
				}
			}
			return e.apply(e.m.Stored(w.Seq))
		}
		return e.apply(rd2)
	}
	return nil
}

// describeKey renders a changelog record of the windowed table.
func describeKey(k, v []byte) string {
	if string(k) == MetaKey {
		s, c, _ := DecodeMeta(v)
		return fmt.Sprintf("times=%d/%d", s, c)
	}
	key, start, _ := window.Split(k)
	if v == nil {
		return fmt.Sprintf("%s@%d=<tombstone>", key, start)
	}
	return fmt.Sprintf("%s@%d=%s", key, start, v)
}

var nextOffset int64

func (e *winEnv) deliver(recs ...string) error {
	var in Records
	for _, r := range recs {
		key, ms, _ := strings.Cut(r, "@")
		var t int64
		fmt.Sscan(ms, &t)
		nextOffset++
		in = append(in, Record{Topic: "t", Offset: nextOffset, Key: []byte(key), Timestamp: time.UnixMilli(t)})
	}
	if err := e.apply(e.m.Deliver(in, false)); err != nil {
		return err
	}
	return e.apply(e.m.Tick())
}

func (e *winEnv) store() string {
	var parts []string
	for k, v := range e.rows {
		parts = append(parts, describeKey([]byte(k), []byte(v)))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestMachineWindows(t *testing.T) {
	e := newWinEnv(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.deliver("a@1", "b@3", "a@11", "a@9"))
	if got, want := e.store(), "a@0=2 a@10=1 b@0=1 times=11/11"; got != want {
		t.Fatalf("store %q, want %q", got, want)
	}
	must(e.deliver("b@12", "a@5")) // closes [0,10); a@5 is late
	if got, want := strings.Join(e.out, ","), "a 0-10=2,b 0-10=1"; got != want {
		t.Fatalf("closes %q, want %q", got, want)
	}
	// Restart from the store: the index is rebuilt, nothing closes again.
	e.out = nil
	must(e.apply(e.m.Restart(nil)))
	must(e.deliver("a@25")) // closes [10,20) (a, b); expires [0,10) at 30? not yet
	if got, want := strings.Join(e.out, ","), "a 10-20=1,b 10-20=1"; got != want {
		t.Fatalf("closes after restart %q, want %q", got, want)
	}
	e.closed = nil
	e.out = nil
	must(e.deliver("c@41")) // closes [20,30) of a; expires [0,10) (at 30) and [10,20) (at 40)
	if got, want := e.store(), "a@20=1 c@40=1 times=41/41"; got != want {
		t.Fatalf("store %q, want %q", got, want)
	}
	if got, want := strings.Join(e.out, ","), "a 20-30=1"; got != want {
		t.Fatalf("closes %q, want %q", got, want)
	}
	if e.spans != 2 {
		t.Errorf("%d spans deleted, want one per key (a, b)", e.spans)
	}
	for _, want := range []string{"a@0=<tombstone>", "a@10=<tombstone>", "b@0=<tombstone>", "b@10=<tombstone>", "times=41/41"} {
		if !strings.Contains(strings.Join(e.closed, " "), want) {
			t.Errorf("changelog %v lacks %s", e.closed, want)
		}
	}
	// A failing close restarts the partition without counting an attempt
	// against the record, and is retried.
	e.out, e.fail = nil, 1
	err := e.deliver("c@53")
	if err == nil || !strings.Contains(err.Error(), "close fails") {
		t.Fatalf("deliver with a failing close: %v", err)
	}
	must(e.apply(e.m.Restart(nil)))
	if got, want := strings.Join(e.out, ","), "c 40-50=1"; got != want { // and no dead letter
		t.Fatalf("outputs after the retry %q, want %q", got, want)
	}
	if n := e.m.attempts[attemptKey{"t", nextOffset, 0}]; n != 0 {
		t.Fatalf("the record that closed the window counts %d failed attempts", n)
	}
}

// TestDirectCloseFails: a direct message that moves stream time past two
// windows whose second close fails restarts the partition, so that the
// first close, counted and then dropped with the message's effects, is
// sent after all.
func TestDirectCloseFails(t *testing.T) {
	e := newWinEnv(t)
	if err := e.deliver("a@1", "b@2"); err != nil {
		t.Fatal(err)
	}
	e.m.cfg.Now = func() time.Time { return time.UnixMilli(30) }
	e.skip, e.fail = 1, 1
	res, rd := e.m.Direct("count", []byte("c"), nil, nil)
	if res.Err == "" || rd.Fail == nil {
		t.Fatalf("direct message with a failing close: result %+v, partition failure %v; want both", res, rd.Fail)
	}
	if len(rd.Outputs) != 0 {
		t.Fatalf("outputs %v of a failed direct message", rd.Outputs)
	}
	if err := e.apply(e.m.Restart(nil)); err != nil {
		t.Fatal(err)
	}
	if err := e.deliver("d@31"); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(e.out, ","), "a 0-10=1,b 0-10=1"; got != want {
		t.Fatalf("closes %q, want %q", got, want)
	}
}

func TestWindowsIndex(t *testing.T) {
	spec := window.Spec{Kind: window.Session, Gap: 5 * time.Millisecond}
	w := newWindows(spec)
	w.Track([]byte("a"), window.Range{Start: 0, End: 4})
	w.Track([]byte("a"), window.Range{Start: 20, End: 21})
	w.Track([]byte("b"), window.Range{Start: 2, End: 4})
	if got := fmt.Sprint(w.Live([]byte("a"))); got != "[[1970-01-01T00:00:00Z, 1970-01-01T00:00:00.004Z) [1970-01-01T00:00:00.02Z, 1970-01-01T00:00:00.021Z)]" {
		t.Fatalf("Live(a) = %s", got)
	}
	w.Untrack([]byte("a"), window.Range{Start: 20, End: 21})
	if len(w.ends) != 1 || len(w.byEnd[4]) != 2 || len(w.Live([]byte("a"))) != 1 {
		t.Fatalf("after Untrack: ends %v byEnd %v", w.ends, w.byEnd)
	}
	w.Observe(9) // end 4 + gap 5: due
	if end, ok := w.due(); !ok || end != 4 {
		t.Fatalf("due = %d %v", end, ok)
	}
}
