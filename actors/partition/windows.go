package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/mephistohq/mephisto/state/shard"
	"github.com/mephistohq/mephisto/window"
)

// MetaKey is the row of a windowed table's shard that holds the
// partition's stream time and close watermark. Being a row, it is written
// in the same store batch and changelog as the windows it governs, and a
// restore or a standby gets it like any row; window.Split refuses it.
const MetaKey = "\xff"

// EncodeMeta and DecodeMeta are the value of a windowed shard's MetaKey
// row: its stream time and close watermark, big-endian.
func EncodeMeta(stream, closed int64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(stream))
	return binary.BigEndian.AppendUint64(b, uint64(closed))
}

// DecodeMeta reads a value made by EncodeMeta.
func DecodeMeta(raw []byte) (stream, closed int64, err error) {
	if len(raw) != 16 {
		return 0, 0, errors.New("window times row: want 16 bytes")
	}
	return int64(binary.BigEndian.Uint64(raw)), int64(binary.BigEndian.Uint64(raw[8:])), nil
}

// NoTime is the stream time of a partition that has seen no event.
const NoTime = math.MinInt64

// Windows is the window state of one windowed table's partition: the
// stream time (the largest event time seen), the close watermark (every
// window whose end plus grace is at or below it has been closed), and an
// index of the live windows, by end, which closing and expiry walk in
// order. The index is rebuilt from the store at each restart, so it holds
// exactly the committed windows plus those written since.
type Windows struct {
	spec   window.Spec
	stream int64
	closed int64
	dirty  bool // the times changed since the last commit

	ends   []int64            // distinct ends of live windows, ascending
	byEnd  map[int64][]winRef // live windows by end
	closes int                // ends[:closes] are closed
	// perKey lists each key's live windows in start order, for the kinds
	// whose windows cannot be computed from an event's time (session,
	// sliding).
	perKey map[string][]window.Range

	expired []winRef // since the last commit
	late    func()   // counts a late event
}

type winRef struct {
	key   string
	start int64
}

func newWindows(spec window.Spec) *Windows {
	w := &Windows{spec: spec}
	w.reset()
	return w
}

func (w *Windows) reset() {
	w.stream, w.closed, w.dirty = NoTime, NoTime, false
	w.ends, w.byEnd, w.closes, w.expired = w.ends[:0], map[int64][]winRef{}, 0, nil
	if w.spec.Stamped() {
		w.perKey = map[string][]window.Range{}
	}
}

// Spec returns the table's window spec.
func (w *Windows) Spec() window.Spec { return w.spec }

// Stream returns the partition's stream time (NoTime before any event).
func (w *Windows) Stream() int64 { return w.stream }

// Watermark returns the time windows are late, closed and expired by:
// the stream time, or the wall clock where it closed windows.
func (w *Windows) Watermark() int64 { return max(w.stream, w.closed) }

// Observe advances the stream time to event time t.
func (w *Windows) Observe(t int64) {
	if t > w.stream {
		w.stream, w.dirty = t, true
	}
}

// Late reports whether window r has closed: it takes no more events.
func (w *Windows) Late(r window.Range) bool { return w.spec.Late(r, w.Watermark()) }

// Expired reports whether window r is past its expiry: it is never served.
func (w *Windows) Expired(r window.Range) bool { return w.spec.ExpireAt(r) <= w.Watermark() }

// Dropped counts an event that came too late for all its windows.
func (w *Windows) Dropped() {
	if w.late != nil {
		w.late()
	}
}

// Live returns key's live windows in start order (session and sliding
// tables only). The slice is the index's: do not keep or change it.
func (w *Windows) Live(key []byte) []window.Range { return w.perKey[string(key)] }

// Track adds a window the table just wrote for the first time.
func (w *Windows) Track(key []byte, r window.Range) { w.track(string(key), r) }

func (w *Windows) track(k string, r window.Range) {
	i, found := slices.BinarySearch(w.ends, r.End)
	if !found {
		if i < w.closes { // a closed window is never written: keep the cursor right anyway
			w.closes++
		}
		w.ends = slices.Insert(w.ends, i, r.End)
	}
	w.byEnd[r.End] = append(w.byEnd[r.End], winRef{k, r.Start})
	if w.perKey != nil {
		rs := w.perKey[k]
		j := sort.Search(len(rs), func(j int) bool { return rs[j].Start >= r.Start })
		w.perKey[k] = slices.Insert(rs, j, r)
	}
}

// Untrack drops a window the table deleted (a session merged into
// another).
func (w *Windows) Untrack(key []byte, r window.Range) {
	k := string(key)
	g := w.byEnd[r.End]
	for i, e := range g {
		if e.key == k && e.start == r.Start {
			g = slices.Delete(g, i, i+1)
			break
		}
	}
	if len(g) > 0 {
		w.byEnd[r.End] = g
	} else {
		w.dropEnd(r.End)
	}
	if w.perKey != nil {
		w.unlist(k, r)
	}
}

func (w *Windows) dropEnd(end int64) {
	delete(w.byEnd, end)
	if i, found := slices.BinarySearch(w.ends, end); found {
		w.ends = slices.Delete(w.ends, i, i+1)
		if i < w.closes {
			w.closes--
		}
	}
}

func (w *Windows) unlist(k string, r window.Range) {
	rs := w.perKey[k]
	for i, x := range rs {
		if x == r {
			rs = slices.Delete(rs, i, i+1)
			break
		}
	}
	if len(rs) == 0 {
		delete(w.perKey, k)
	} else {
		w.perKey[k] = rs
	}
}

// load rebuilds the state from the committed rows of the shard.
func (w *Windows) load(scan Scanner) error {
	w.reset()
	if scan == nil {
		return nil
	}
	var derr error
	err := scan(func(k, v []byte) bool {
		if string(k) == MetaKey {
			w.stream, w.closed, derr = DecodeMeta(v)
			return derr == nil
		}
		key, start, err := window.Split(k)
		if err != nil {
			derr = err
			return false
		}
		r := w.spec.Of(start)
		if w.spec.Kind == window.Session {
			end, _, err := window.Unstamp(v)
			if err != nil {
				derr = err
				return false
			}
			r.End = end
		}
		w.track(string(key), r)
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	for w.closes < len(w.ends) && w.spec.CloseAt(window.Range{End: w.ends[w.closes]}) <= w.closed {
		w.closes++
	}
	return nil
}

// due returns the end of the next window group to close, if one is due.
func (w *Windows) due() (int64, bool) {
	if w.closes < len(w.ends) {
		if end := w.ends[w.closes]; w.spec.CloseAt(window.Range{End: end}) <= w.Watermark() {
			return end, true
		}
	}
	return 0, false
}

// expire moves the windows past their expiry out of the index, into the
// next commit's deletions, and out of the shard's cache.
func (w *Windows) expire(sh *shard.Shard) {
	wm := w.Watermark()
	for len(w.ends) > 0 && w.closes > 0 && w.spec.ExpireAt(window.Range{End: w.ends[0]}) <= wm {
		end := w.ends[0]
		for _, e := range w.byEnd[end] {
			w.expired = append(w.expired, e)
			if w.perKey != nil {
				w.unlist(e.key, window.Range{Start: e.start, End: end})
			}
			sh.Forget([]byte(window.Key([]byte(e.key), e.start)))
		}
		delete(w.byEnd, end)
		w.ends = w.ends[1:]
		w.closes--
	}
}

// Span is a range of keys [Lo, Hi) a commit deletes from a table's shard
// in the store: expired windows. A span of one key has Hi = Lo + 0x00.
type Span struct{ Lo, Hi []byte }

// One reports whether the span holds the single key Lo.
func (s Span) One() bool {
	return len(s.Hi) == len(s.Lo)+1 && s.Hi[len(s.Lo)] == 0 && string(s.Hi[:len(s.Lo)]) == string(s.Lo)
}

// spans returns the expired windows as key spans (one per key: a key's
// windows expire in start order, so every window between its first and
// last expired one has expired too) and their window keys, and forgets
// them.
func (w *Windows) spans() ([]Span, [][]byte) {
	if len(w.expired) == 0 {
		return nil, nil
	}
	ex := w.expired
	w.expired = nil
	slices.SortFunc(ex, func(a, b winRef) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		return int(min(max(a.start-b.start, -1), 1))
	})
	var spans []Span
	keys := make([][]byte, len(ex))
	for i, e := range ex {
		keys[i] = window.Key([]byte(e.key), e.start)
		if n := len(spans); n > 0 && i > 0 && ex[i-1].key == e.key {
			spans[n-1].Hi = append(keys[i][:len(keys[i]):len(keys[i])], 0)
			continue
		}
		spans = append(spans, Span{Lo: keys[i], Hi: append(keys[i][:len(keys[i]):len(keys[i])], 0)})
	}
	return spans, keys
}

// Scanner reads every committed row of a table's shard, in key order,
// until fn returns false: windowed tables rebuild their index from it.
type Scanner func(fn func(key, value []byte) bool) error

// lateLog samples the log lines of late events: the first, then at most
// one per lateLogEvery with the count since.
const lateLogEvery = 10 * time.Second

// closeError is a window close callback's failure: the partition
// restarts and retries the close, and no record's attempts count it.
type closeError struct{ err error }

func (e *closeError) Error() string { return e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

func isCloseError(err error) bool {
	var ce *closeError
	return errors.As(err, &ce)
}

type lateLog struct {
	n    int64     // dropped since the last line
	last time.Time // when the last line was logged
}

// loadWindows rebuilds every windowed table's state from the store.
func (m *Machine) loadWindows() error {
	for i, w := range m.wins {
		if w == nil {
			continue
		}
		var scan Scanner
		if i < len(m.cfg.Scanners) {
			scan = m.cfg.Scanners[i]
		}
		if err := w.load(scan); err != nil {
			return fmt.Errorf("table %s: rebuild the window index from the store: %w", m.cfg.Tables[i].Name, err)
		}
	}
	return nil
}

// closeWindows closes the windows that are due, calling the tables'
// close callbacks with the current event (their sends go out with it),
// then expires those past their expiry.
func (m *Machine) closeWindows() error {
	for i, w := range m.wins {
		if w == nil {
			continue
		}
		t := m.cfg.Tables[i]
		for {
			end, ok := w.due()
			if !ok {
				break
			}
			if t.OnClose != nil {
				for _, e := range w.byEnd[end] {
					r := window.Range{Start: e.start, End: end}
					key := window.Key([]byte(e.key), e.start)
					if err := m.protect(func() error { return t.OnClose(m.ev, key, r) }); err != nil {
						m.cfg.Log.Error("a window's close callback failed: the partition restarts and retries it (fix the callback; no later window of the table closes meanwhile)",
							"table", t.Name, "key", e.key, "window", r.String(), "err", err)
						// %v: an error wrapping ErrPoison must not send the
						// record that closed the window to its error policy.
						return &closeError{fmt.Errorf("table %s: close window %v of key %q: %v", t.Name, r, e.key, err)}
					}
				}
			}
			w.closes++
		}
		if wm := w.Watermark(); wm > w.closed {
			w.closed, w.dirty = wm, true
		}
		w.expire(m.shards[i])
	}
	return nil
}

// closeByClock closes and expires, on the app's clock, the windows of the
// tables that close on it.
func (m *Machine) closeByClock() {
	now := m.cfg.AppNow().UnixMilli()
	moved := false
	for i, w := range m.wins {
		if w == nil || !m.cfg.Tables[i].CloseOnWallClock || now <= w.Watermark() {
			continue
		}
		// Move the watermark only when that closes or expires a window: a
		// new watermark is a changelog record, and an idle partition
		// should not commit at every tick.
		next := false
		if w.closes < len(w.ends) && w.spec.CloseAt(window.Range{End: w.ends[w.closes]}) <= now {
			next = true
		}
		if w.closes > 0 && w.spec.ExpireAt(window.Range{End: w.ends[0]}) <= now {
			next = true
		}
		if next {
			w.closed, w.dirty, moved = now, true, true
		}
	}
	if !moved {
		return
	}
	m.ev.Reset(&Record{Partition: m.cfg.Partition, Offset: -1, Timestamp: m.cfg.AppNow()}, nil)
	if err := m.closeWindows(); err != nil {
		m.ev.Unstage()
		m.fail(err)
		return
	}
	m.release()
}

// dropped counts a late event of table i and logs it, sampled.
func (m *Machine) dropped(i int) {
	if f := m.cfg.Observer.Late; f != nil {
		f(i)
	}
	l := &m.late[i]
	l.n++
	if now := m.cfg.Now(); l.last.IsZero() || now.Sub(l.last) >= lateLogEvery {
		w := m.wins[i]
		m.cfg.Log.Warn("events too late for their windows were dropped (they arrived after the window's end plus the grace period, by stream time: raise the table's grace to keep them)",
			"table", m.cfg.Tables[i].Name, "dropped", l.n, "stream_time", time.UnixMilli(w.Watermark()).UTC(), "grace", w.spec.Grace)
		l.n, l.last = 0, now
	}
}
