// Package window is the arithmetic of windowed tables: which windows an
// event at a given time belongs to (tumbling, hopping and session
// windows), when a window closes and when it expires, and how a window is
// written into a table key. It does no I/O and keeps no state: the
// partition state machine calls it.
//
// Times are unix milliseconds. A window is the half-open range [Start,
// End): an event at End belongs to the next window. A session window,
// whose end is an event's time, ends one millisecond after its last
// event.
package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Range is one window: [Start, End) in unix milliseconds.
type Range struct{ Start, End int64 }

// Contains reports whether the window holds time t.
func (r Range) Contains(t int64) bool { return r.Start <= t && t < r.End }

func (r Range) String() string {
	return fmt.Sprintf("[%s, %s)", time.UnixMilli(r.Start).UTC().Format(time.RFC3339Nano), time.UnixMilli(r.End).UTC().Format(time.RFC3339Nano))
}

// Kind is a kind of window.
type Kind int

// The kinds of windows.
const (
	// Tumbling windows are fixed-size, adjacent and non-overlapping: each
	// event belongs to exactly one.
	Tumbling Kind = iota + 1
	// Hopping windows are fixed-size and start every Step: an event
	// belongs to Size/Step of them.
	Hopping
	// Session windows hold a run of events of one key with gaps of less
	// than Gap between them; an event that bridges two sessions merges
	// them.
	Session
	// Sliding windows (Kafka Streams' definition) hold the events of one
	// key at most Size apart: a window [t-Size, t] ends at each event t,
	// and one [t+1, t+1+Size] starts just after it while later events
	// fall in it. Windows are made only where events are, so an event
	// updates the windows holding it and makes at most two: see Slide.
	Sliding
)

func (k Kind) String() string {
	switch k {
	case Tumbling:
		return "tumbling"
	case Hopping:
		return "hopping"
	case Session:
		return "session"
	case Sliding:
		return "sliding"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Spec describes a windowed table's windows.
type Spec struct {
	Kind Kind
	// Size is the window length (tumbling, hopping), or the largest time
	// difference between two events of one sliding window.
	Size time.Duration
	// Step is how often a hopping window starts.
	Step time.Duration
	// Gap is the inactivity that ends a session.
	Gap time.Duration
	// Grace is how long after its end a window still takes late events;
	// it closes when stream time reaches End + Grace.
	Grace time.Duration
	// Expires is how long after its end a window stays readable (at
	// least Grace; 0 means Grace).
	Expires time.Duration
}

// Errors of a Spec.
var ErrSpec = errors.New("window: invalid spec")

// Validate reports a spec that cannot work.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s windows: %s", ErrSpec, s.Kind, fmt.Sprintf(format, args...))
	}
	positiveMs := func(name string, d time.Duration) error {
		if d < time.Millisecond {
			return bad("%s must be at least 1ms, got %v", name, d)
		}
		if d%time.Millisecond != 0 {
			return bad("%s must be whole milliseconds, got %v", name, d)
		}
		return nil
	}
	switch s.Kind {
	case Tumbling, Sliding:
		if err := positiveMs("size", s.Size); err != nil {
			return err
		}
	case Hopping:
		if err := positiveMs("size", s.Size); err != nil {
			return err
		}
		if err := positiveMs("step", s.Step); err != nil {
			return err
		}
		if s.Step > s.Size {
			return bad("step (%v) must not be longer than size (%v)", s.Step, s.Size)
		}
	case Session:
		if err := positiveMs("gap", s.Gap); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrSpec, int(s.Kind))
	}
	if s.Grace < 0 || s.Grace%time.Millisecond != 0 {
		return bad("grace must be whole milliseconds and not negative, got %v", s.Grace)
	}
	if s.Expires != 0 && (s.Expires < s.Grace || s.Expires%time.Millisecond != 0) {
		return bad("expires (%v) must be whole milliseconds and at least grace (%v)", s.Expires, s.Grace)
	}
	return nil
}

func ms(d time.Duration) int64 { return int64(d / time.Millisecond) }

// floorDiv divides rounding towards minus infinity (times before 1970
// are negative).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Assign returns the fixed windows (tumbling, hopping) holding time t, in
// start order. Session windows depend on the key's other events: see
// Merge.
func (s Spec) Assign(t int64) []Range {
	switch s.Kind {
	case Tumbling:
		size := ms(s.Size)
		start := floorDiv(t, size) * size
		return []Range{{start, start + size}}
	case Hopping:
		size, step := ms(s.Size), ms(s.Step)
		last := floorDiv(t, step) * step
		var out []Range
		for start := last - floorDiv(size-1, step)*step; start <= last; start += step {
			if start+size > t {
				out = append(out, Range{start, start + size})
			}
		}
		return out
	}
	return nil
}

// Current returns the window of an event at t that Faust's current()
// means: the latest-starting fixed window holding t.
func (s Spec) Current(t int64) Range {
	ws := s.Assign(t)
	if len(ws) == 0 {
		return Range{}
	}
	return ws[len(ws)-1]
}

// CloseAt returns the stream time at which window r closes: when stream
// time reaches it, r takes no more events and its close callback runs. A
// window closes Grace after its end; a session Gap later still, once no
// event on time can extend it.
func (s Spec) CloseAt(r Range) int64 { return s.settled(r) + ms(s.Grace) }

// settled is when window r can take no more events on time: its end, or
// a session's end plus the gap.
func (s Spec) settled(r Range) int64 {
	if s.Kind == Session {
		return r.End + ms(s.Gap)
	}
	return r.End
}

// ExpireAt returns the stream time at which window r is deleted: Expires
// (at least Grace) after it settled.
func (s Spec) ExpireAt(r Range) int64 {
	exp := s.Expires
	if exp < s.Grace {
		exp = s.Grace
	}
	return s.settled(r) + ms(exp)
}

// Late reports whether an event for window r comes too late once stream
// time (or the close watermark) is closed: r has already closed.
func (s Spec) Late(r Range, closed int64) bool { return s.CloseAt(r) <= closed }

// Key returns the table key of window start of the user key key: the
// key's length, the key, then the start, big-endian with the sign bit
// flipped, so that one key's windows are adjacent and in time order (and
// expiring a key's old windows is one range).
func Key(key []byte, start int64) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(key)+8), uint64(len(key)))
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, uint64(start)^(1<<63))
}

// Prefix returns the prefix every window key of key starts with.
func Prefix(key []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(key)), uint64(len(key)))
	return append(b, key...)
}

// ErrKey is returned for a table key that Key did not make.
var ErrKey = errors.New("window: not a window key")

// Split returns the user key and the window start of a table key made by
// Key.
func Split(k []byte) (key []byte, start int64, err error) {
	n, w := binary.Uvarint(k)
	if w <= 0 || uint64(len(k)-w) != n+8 {
		return nil, 0, ErrKey
	}
	key = k[w : w+int(n)]
	return key, int64(binary.BigEndian.Uint64(k[w+int(n):]) ^ (1 << 63)), nil
}

// Joins reports whether an event at t belongs to session r (or bridges
// into it): it is at most Gap before its first event or after its last.
func (s Spec) Joins(r Range, t int64) bool {
	gap := ms(s.Gap)
	return r.Start-gap <= t && t <= r.End-1+gap
}

// Merge returns the session an event at t makes of a key's sessions: the
// sessions it joins (in sessions' order, which Merge does not need sorted)
// merged with the event, and those sessions, which the merged one
// replaces. With none joined, the event starts a session of its own.
func (s Spec) Merge(sessions []Range, t int64) (merged Range, joined []Range) {
	merged = Range{t, t + 1}
	for _, r := range sessions {
		if s.Joins(r, t) {
			joined = append(joined, r)
			merged.Start = min(merged.Start, r.Start)
			merged.End = max(merged.End, r.End)
		}
	}
	return merged, joined
}

// Of returns the window of a fixed or sliding window table that starts
// at start (a session's end is not in its key: see Stamp).
func (s Spec) Of(start int64) Range {
	if s.Kind == Sliding {
		return Range{start, start + ms(s.Size) + 1} // [start, start+Size] inclusive
	}
	return Range{start, start + ms(s.Size)}
}

// Latest returns the latest-ending window an event at t can belong to,
// which is the last to close: the event is late when it has closed.
func (s Spec) Latest(t int64) Range {
	switch s.Kind {
	case Session:
		return Range{t, t + 1}
	case Sliding:
		return s.Of(t) // the right window of an earlier event can start at t
	}
	return s.Current(t)
}

// Stamped reports whether a table row's value carries a time before the
// value (Stamp): a session's end, or the latest event time in a sliding
// window.
func (s Spec) Stamped() bool { return s.Kind == Session || s.Kind == Sliding }

// Stamp returns the stored value of a row that carries time t (see
// Stamped): t, big-endian, then the value's encoding.
func Stamp(t int64, value []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(t)), value...)
}

// ErrStamp is returned for a stored value too short to carry a stamp.
var ErrStamp = errors.New("window: stored value has no time stamp")

// Unstamp splits a value made by Stamp.
func Unstamp(raw []byte) (int64, []byte, error) {
	if len(raw) < 8 {
		return 0, nil, ErrStamp
	}
	return int64(binary.BigEndian.Uint64(raw)), raw[8:], nil
}

// Slot is a live sliding window of a key and the latest event time it
// holds.
type Slot struct {
	Range
	Max int64
}

// NewWindow is a sliding window an event makes: it starts from the
// value of existing window From (-1: the table's default), and Apply
// says whether the event updates it (a window starting just after the
// event takes only the later events' value).
type NewWindow struct {
	Range Range
	From  int
	Apply bool
	Max   int64 // its latest event time once made
}

// SlidePlan is what an event does to a key's sliding windows: update the
// existing windows Update (indexes), then make Create. Windows already
// closed are left out of both.
type SlidePlan struct {
	Update []int
	Create []NewWindow
}

// Slide plans an event at t in a sliding window table, given the key's
// windows starting in [t-2·Size, t+1], in start order, each with its
// latest event time: the windows holding t are updated, and the event's
// own window [t-Size, t] is made if missing (from the value of the
// window before it, if that holds exactly the events of [t-Size, t)), and
// so are the window just after the previous event and the one just after
// this event, where events fall in them. This is Kafka Streams' sliding
// window algorithm (KIP-450); closed is the close watermark.
func (s Spec) Slide(existing []Slot, t, closed int64) SlidePlan {
	d := ms(s.Size)
	var plan SlidePlan
	left, right := -1, -1
	leftMade, rightMade := false, false
	prev, hasPrev := int64(0), false
	open := func(r Range) bool { return !s.Late(r, closed) }
	starts := make(map[int64]bool, len(existing))
	for i, w := range existing {
		starts[w.Start] = true
		end := w.Start + d // inclusive
		switch {
		case end < t:
			left, prev, hasPrev = i, w.Max, true
		case end == t:
			leftMade = true
			if w.Max < t {
				prev, hasPrev = w.Max, true
			}
			if open(w.Range) {
				plan.Update = append(plan.Update, i)
			}
		case w.Start <= t:
			right = i
			if open(w.Range) {
				plan.Update = append(plan.Update, i)
			}
		case w.Start == t+1:
			rightMade = true
		}
	}
	mk := func(nw NewWindow) {
		// The window after the previous event may be this event's own
		// (prev+1 = t-Size): both hold only this event, so one is made.
		if open(nw.Range) && !starts[nw.Range.Start] {
			starts[nw.Range.Start] = true
			plan.Create = append(plan.Create, nw)
		}
	}
	if hasPrev {
		if ps := prev + 1; !starts[ps] && ps+d >= t {
			mk(NewWindow{Range: s.Of(ps), From: -1, Apply: true, Max: t})
		}
	}
	if !leftMade {
		from, mx := -1, t
		if hasPrev && t-d <= prev && left >= 0 {
			from, mx = left, max(t, existing[left].Max)
		}
		mk(NewWindow{Range: s.Of(t - d), From: from, Apply: true, Max: mx})
	}
	if !rightMade && right >= 0 && existing[right].Max > t {
		mk(NewWindow{Range: s.Of(t + 1), From: right, Apply: false, Max: existing[right].Max})
	}
	return plan
}

// String describes the spec as the CLI and /topology show it, e.g.
// "tumbling 1m0s grace 10s expires 1h0m0s".
func (s Spec) String() string {
	var b []byte
	switch s.Kind {
	case Tumbling, Sliding:
		b = fmt.Appendf(b, "%s %v", s.Kind, s.Size)
	case Hopping:
		b = fmt.Appendf(b, "%s %v every %v", s.Kind, s.Size, s.Step)
	case Session:
		b = fmt.Appendf(b, "%s gap %v", s.Kind, s.Gap)
	default:
		return s.Kind.String()
	}
	b = fmt.Appendf(b, " grace %v", s.Grace)
	exp := max(s.Expires, s.Grace)
	return string(fmt.Appendf(b, " expires %v", exp))
}
