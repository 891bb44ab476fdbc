package mephisto

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/state/shard"
	"github.com/mephistohq/mephisto/window"
)

// Window is one window of a windowed table: the half-open span [Start,
// End). A sliding window of time difference d holds the events from Start
// to Start+d inclusive, so its End is Start+d+1ms; a session's End is one
// millisecond after its last event.
type Window struct {
	Start, End time.Time
}

func windowOf(r window.Range) Window {
	return Window{Start: time.UnixMilli(r.Start), End: time.UnixMilli(r.End)}
}

// Contains reports whether the window holds instant t.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// WindowValue is a key's value in one window.
type WindowValue[V any] struct {
	Window Window
	Value  V
}

// WindowOption configures a windowed table: exactly one of Tumbling,
// Hopping, Sliding and Session, then any of Grace, Expires, a time option
// and CloseOnClock.
type WindowOption func(*windowConfig)

type windowConfig struct {
	spec      window.Spec
	kinds     int
	merge     any // func(a, b V) V of a session table
	time      func(ev *partition.Event) (int64, error)
	wallClose bool
	errs      []error
}

// Tumbling windows are fixed-size, adjacent and non-overlapping: each
// event counts in the one window holding its time (Faust's
// Table.tumbling).
func Tumbling(size time.Duration) WindowOption {
	return func(c *windowConfig) { c.kinds++; c.spec.Kind, c.spec.Size = window.Tumbling, size }
}

// Hopping windows are size long and start every step: each event counts
// in size/step of them (Faust's Table.hopping). Update updates all of
// them.
func Hopping(size, step time.Duration) WindowOption {
	return func(c *windowConfig) {
		c.kinds++
		c.spec.Kind, c.spec.Size, c.spec.Step = window.Hopping, size, step
	}
}

// Sliding windows (Kafka Streams' definition) hold the events of a key
// that are at most timeDifference apart: a window ends at each event
// and holds the events of the timeDifference before it, and windows exist
// only where events are. Update updates every window holding the event
// and makes the new ones it needs, starting from the value of the
// existing window that holds exactly their other events.
func Sliding(timeDifference time.Duration) WindowOption {
	return func(c *windowConfig) { c.kinds++; c.spec.Kind, c.spec.Size = window.Sliding, timeDifference }
}

// Session windows hold a key's runs of activity: events at most gap
// apart are in one session, and an event that bridges two sessions
// merges them, their values combined by merge (its first argument is the
// earlier session's value).
func Session[V any](gap time.Duration, merge func(a, b V) V) WindowOption {
	return func(c *windowConfig) {
		c.kinds++
		c.spec.Kind, c.spec.Gap, c.merge = window.Session, gap, merge
	}
}

// Grace is how long after its end a window still takes events that come
// late, by stream time (default 0). Once stream time reaches the end plus
// grace the window closes (OnClose runs) and later events for it are
// dropped, counted in mephisto_window_late_events_total.
func Grace(d time.Duration) WindowOption { return func(c *windowConfig) { c.spec.Grace = d } }

// Expires is how long after its end a window stays readable (Faust's
// expires=; at least the grace, which is the default). Expired windows are
// deleted from the store and the changelog and never served.
func Expires(d time.Duration) WindowOption { return func(c *windowConfig) { c.spec.Expires = d } }

// TimeFromRecord takes an event's time from its Kafka record's timestamp:
// the default.
func TimeFromRecord() WindowOption {
	return func(c *windowConfig) { c.time = recordTime }
}

func recordTime(ev *partition.Event) (int64, error) { return ev.Record().Timestamp.UnixMilli(), nil }

// TimeFromClock takes an event's time from the app's clock when it is
// handled (Faust's relative_to_now).
func TimeFromClock() WindowOption {
	return func(c *windowConfig) {
		c.time = func(ev *partition.Event) (int64, error) { return ev.Now().UnixMilli(), nil }
	}
}

// TimeFrom takes an event's time from fn, given the record being
// handled.
func TimeFrom(fn func(ev Event) (time.Time, error)) WindowOption {
	return func(c *windowConfig) {
		c.time = func(ev *partition.Event) (int64, error) {
			t, err := fn(handlerCtx{ev}.Event())
			if err != nil {
				return 0, fmt.Errorf("event time: %w", err)
			}
			return t.UnixMilli(), nil
		}
	}
}

// TimeFromValue takes an event's time from a field of its key or value
// (Faust's relative_to_field): fn gets the event decoded as a record of
// topic, which the events must come from.
func TimeFromValue[K, V any](topic *Topic[K, V], fn func(key K, value V) time.Time) WindowOption {
	return func(c *windowConfig) {
		c.time = func(ev *partition.Event) (int64, error) {
			r := ev.Record()
			if r.Topic != topic.Name() && r.Offset >= 0 {
				return 0, fmt.Errorf("event time is read from records of topic %s, but the event came from %s", topic.Name(), r.Topic)
			}
			k, err := topic.kc.Decode(r.Key)
			if err != nil {
				return 0, fmt.Errorf("event time: decode key: %w", err)
			}
			v, err := topic.vc.Decode(r.Value)
			if err != nil {
				return 0, fmt.Errorf("event time: decode value: %w", err)
			}
			return fn(k, v).UnixMilli(), nil
		}
	}
}

// CloseOnClock also closes windows when the app's clock reaches their end
// plus grace, checked at every commit interval, so that a partition whose
// events stop still closes (and expires) its windows. Events whose windows
// the clock closed are late.
func CloseOnClock() WindowOption { return func(c *windowConfig) { c.wallClose = true } }

// slot is a windowed table's stored value: the user's value and, for the
// kinds that need one, a time (a session's end, a sliding window's latest
// event).
type slot[V any] struct {
	stamp int64
	v     V
}

type slotCodec[V any] struct {
	vc      codec.Codec[V]
	stamped bool
}

func (c slotCodec[V]) Name() string { return c.vc.Name() }

func (c slotCodec[V]) Encode(s slot[V]) ([]byte, error) {
	b, err := c.vc.Encode(s.v)
	if err != nil || !c.stamped {
		return b, err
	}
	return window.Stamp(s.stamp, b), nil
}

func (c slotCodec[V]) Decode(b []byte) (slot[V], error) {
	var s slot[V]
	if c.stamped {
		var err error
		if s.stamp, b, err = window.Unstamp(b); err != nil {
			return s, err
		}
	}
	v, err := c.vc.Decode(b)
	s.v = v
	return s, err
}

// WindowedTable is a table of values per key and window (Faust's
// windowed tables): tumbling, hopping, sliding or session windows over
// event time, with a grace period for late events, a close callback, and
// an expiry. It is partitioned, durable and recovered like Table: its rows
// live in Pebble keyed by key then window start, with a changelog topic
// <app>-<table>-changelog, standbys and failover.
//
// Time: each partition's stream time is the largest event time its
// table updates have seen (event time is the record's timestamp unless a
// time option says otherwise). A window closes once stream time reaches its
// end plus its grace (or the clock does, with CloseOnClock): OnClose runs
// once for each key and window, in the partition's grain, and the window
// takes no more events. It stays readable until stream time reaches its
// end plus Expires; then it is deleted.
//
// In a handler, Update and the reads see the event's partition, with
// the handler's uncommitted writes; elsewhere (timers, tasks, pages) the
// reads return the committed windows of the key's partition, from the
// node active for it, as Table's do.
type WindowedTable[K, V any] struct {
	app    *App
	tab    *Table[[]byte, slot[V]]
	kc     codec.Codec[K]
	vc     codec.Codec[V]
	spec   window.Spec
	time   func(ev *partition.Event) (int64, error)
	merge  func(a, b V) V
	dflt   func() V
	borrow codec.Borrower[K]
}

// NewWindowedTable declares a windowed table; opts give its windows.
// Missing windows read as V's zero value unless a default is set with
// WithDefault. A spec that cannot work (no window kind, a hop longer than
// its window, an expiry below the grace…) is a declaration error that Run
// reports.
func NewWindowedTable[K, V any](app *App, name string, kc codec.Codec[K], vc codec.Codec[V], opts ...WindowOption) *WindowedTable[K, V] {
	c := windowConfig{time: recordTime}
	for _, o := range opts {
		o(&c)
	}
	t := &WindowedTable[K, V]{app: app, kc: kc, vc: vc, spec: c.spec, time: c.time}
	t.borrow, _ = kc.(codec.Borrower[K])
	t.tab = NewTable[[]byte, slot[V]](app, name, codec.Bytes(), slotCodec[V]{vc: vc, stamped: c.spec.Stamped()})
	t.tab.share = valueType(reflect.TypeFor[V]())
	t.tab.WithDefault(func() slot[V] { return slot[V]{v: t.zero()} })
	switch err := c.spec.Validate(); {
	case c.kinds == 0:
		app.declErr(fmt.Errorf("windowed table %s: no window kind: give one of Tumbling, Hopping, Sliding and Session", name))
	case c.kinds > 1:
		app.declErr(fmt.Errorf("windowed table %s: more than one window kind", name))
	case err != nil:
		app.declErr(fmt.Errorf("windowed table %s: %w", name, err))
	}
	if c.spec.Kind == window.Session {
		m, ok := c.merge.(func(a, b V) V)
		if !ok {
			app.declErr(fmt.Errorf("windowed table %s: the session merge function takes %T, the table's values are %v", name, c.merge, reflect.TypeFor[V]()))
		}
		t.merge = m
	}
	spec := t.tab.def.spec
	ws := c.spec
	spec.Window, spec.CloseOnWallClock = &ws, c.wallClose
	spec.KeyCodec = kc.Name()
	spec.KeyText = textEncoder(kc)
	spec.ValueJSON = func(b []byte) (json.RawMessage, error) {
		v, err := vc.Decode(b)
		if err != nil {
			return nil, err
		}
		return codec.ToJSON(v)
	}
	return t
}

// WithDefault sets the value a key reads as in a window it has no value
// in (Faust's default=) and returns the table.
func (t *WindowedTable[K, V]) WithDefault(fn func() V) *WindowedTable[K, V] {
	t.dflt = fn
	return t
}

// OnClose sets the function called once for each key and window when the
// window closes (Faust's on_window_close), with the window's final value.
// It runs in the grain of the window's partition, after the handler of
// the event that advanced stream time past the window's end plus grace
// (or at a commit tick, with CloseOnClock), so it can send to topics and
// read tables through ctx; what it sends commits with that event. A window
// due while its partition was down or moving closes once the partition
// runs again. If it returns an error the partition restarts and retries
// it (the event that closed the window is not at fault and goes to no
// error policy); under exactly-once a window's close is sent once.
func (t *WindowedTable[K, V]) OnClose(fn func(ctx Context, key K, w Window, value V) error) *WindowedTable[K, V] {
	idx := t.tab.def.spec.Index
	t.tab.def.spec.OnClose = func(ev *partition.Event, wk []byte, r window.Range) error {
		kb, _, err := window.Split(wk)
		if err != nil {
			return err
		}
		k, err := t.kc.Decode(kb)
		if err != nil {
			return fmt.Errorf("table %s: stored key %q: %w", t.Name(), kb, err)
		}
		s, _, _, err := t.tab.read(ev.Shard(idx), wk, true)
		if err != nil {
			return err
		}
		return fn(handlerCtx{ev}, k, windowOf(r), s.v)
	}
	return t
}

// Name returns the table's name.
func (t *WindowedTable[K, V]) Name() string { return t.tab.Name() }

// ChangelogTopic returns the name of the table's changelog topic.
func (t *WindowedTable[K, V]) ChangelogTopic() string { return t.tab.ChangelogTopic() }

func (t *WindowedTable[K, V]) zero() V {
	if t.dflt != nil {
		return t.dflt()
	}
	var v V
	return v
}

func (t *WindowedTable[K, V]) key(key K) ([]byte, error) {
	if t.borrow != nil {
		return t.borrow.Borrow(key), nil
	}
	kb, err := t.kc.Encode(key)
	if err != nil {
		return nil, fmt.Errorf("table %s: encode key: %w", t.Name(), err)
	}
	return kb, nil
}

// handler returns the event, the table's shard and window state in the
// event's partition, or nil outside a handler.
func (t *WindowedTable[K, V]) handler(ctx context.Context) (*partition.Event, *partition.Windows) {
	ev := partition.From(ctx)
	if ev == nil {
		return nil, nil
	}
	w := ev.Windows(t.tab.def.spec.Index)
	if w == nil {
		return nil, nil
	}
	return ev, w
}

// Update replaces the key's value in every window holding the event's
// time with fn's result (starting from the default in a window it has no
// value in), and advances the partition's stream time. An event whose
// windows have all closed is dropped (counted in
// mephisto_window_late_events_total, logged at a sampled rate). In a
// session table an event that bridges sessions merges them first.
// Only in a handler.
func (t *WindowedTable[K, V]) Update(ctx context.Context, key K, fn func(V) V) error {
	ev, sh, err := t.tab.shardOf(ctx, "update")
	if err != nil {
		return err
	}
	w := ev.Windows(t.tab.def.spec.Index)
	ts, err := t.time(ev)
	if err != nil {
		return fmt.Errorf("table %s: %w", t.Name(), err)
	}
	kb, err := t.key(key)
	if err != nil {
		return err
	}
	w.Observe(ts)
	if w.Late(t.spec.Latest(ts)) {
		w.Dropped()
		return nil
	}
	put := func(r window.Range, s slot[V], e *shard.Entry, found bool) error {
		if err := t.tab.write(ev, sh, window.Key(kb, r.Start), e, s); err != nil {
			return err
		}
		if !found {
			w.Track(kb, r)
		}
		return nil
	}
	switch t.spec.Kind {
	case window.Tumbling, window.Hopping:
		for _, r := range t.spec.Assign(ts) {
			if w.Late(r) {
				continue
			}
			s, found, e, err := t.tab.read(sh, window.Key(kb, r.Start), false)
			if err != nil {
				return err
			}
			s.v = fn(s.v)
			if err := put(r, s, e, found); err != nil {
				return err
			}
		}
	case window.Session:
		return t.updateSession(ev, sh, w, kb, ts, fn)
	case window.Sliding:
		return t.updateSliding(ev, sh, w, kb, ts, fn)
	}
	return nil
}

// updateSession merges the sessions the event joins into one, applies fn
// and writes it under the merged session's start.
func (t *WindowedTable[K, V]) updateSession(ev *partition.Event, sh *shard.Shard, w *partition.Windows, kb []byte, ts int64, fn func(V) V) error {
	merged, joined := t.spec.Merge(w.Live(kb), ts)
	for _, r := range joined {
		if w.Late(r) { // its final value went out: the event is late for it
			w.Dropped()
			return nil
		}
	}
	joined = append([]window.Range(nil), joined...) // Untrack changes the index's slice
	v := t.zero()
	for i, r := range joined {
		s, _, _, err := t.tab.read(sh, window.Key(kb, r.Start), false)
		if err != nil {
			return err
		}
		if i == 0 {
			v = s.v
		} else {
			v = t.merge(v, s.v)
		}
	}
	for _, r := range joined {
		w.Untrack(kb, r)
		if r.Start != merged.Start {
			sh.Put(window.Key(kb, r.Start), nil, nil, nil, true)
		}
	}
	wk := window.Key(kb, merged.Start)
	_, _, e, err := t.tab.read(sh, wk, false)
	if err != nil {
		return err
	}
	if err := t.tab.write(ev, sh, wk, e, slot[V]{stamp: merged.End, v: fn(v)}); err != nil {
		return err
	}
	w.Track(kb, merged)
	return nil
}

// updateSliding updates the windows holding the event and makes those it
// needs (window.Spec.Slide).
func (t *WindowedTable[K, V]) updateSliding(ev *partition.Event, sh *shard.Shard, w *partition.Windows, kb []byte, ts int64, fn func(V) V) error {
	d := t.spec.Size.Milliseconds()
	var slots []window.Slot
	var vals []V
	for _, r := range w.Live(kb) {
		if r.Start < ts-2*d || r.Start > ts+1 {
			continue
		}
		s, _, _, err := t.tab.read(sh, window.Key(kb, r.Start), false)
		if err != nil {
			return err
		}
		slots = append(slots, window.Slot{Range: r, Max: s.stamp})
		vals = append(vals, s.v)
	}
	plan := t.spec.Slide(slots, ts, w.Watermark())
	for _, i := range plan.Update {
		wk := window.Key(kb, slots[i].Start)
		if err := t.tab.write(ev, sh, wk, nil, slot[V]{stamp: max(slots[i].Max, ts), v: fn(vals[i])}); err != nil {
			return err
		}
	}
	for _, nw := range plan.Create {
		v := t.zero()
		if nw.From >= 0 {
			v = vals[nw.From] // the value before this event's update
		}
		if nw.Apply {
			v = fn(v)
		}
		if err := t.tab.write(ev, sh, window.Key(kb, nw.Range.Start), nil, slot[V]{stamp: nw.Max, v: v}); err != nil {
			return err
		}
		w.Track(kb, nw.Range)
	}
	return nil
}

// eventTime returns the time of the event in ctx, or the app's clock
// outside a handler.
func (t *WindowedTable[K, V]) eventTime(ctx context.Context) (int64, error) {
	if ev, w := t.handler(ctx); ev != nil && w != nil {
		ts, err := t.time(ev)
		if err != nil {
			return 0, fmt.Errorf("table %s: %w", t.Name(), err)
		}
		return ts, nil
	}
	return t.app.now().UnixMilli(), nil
}

// Get returns the key's value in the window of the current event (Faust's
// current()): the latest-starting tumbling or hopping window holding the
// event's time, the session holding it, or the sliding window ending at
// it. Outside a handler it is the window holding the app's clock's now.
func (t *WindowedTable[K, V]) Get(ctx context.Context, key K) (V, error) {
	v, _, err := t.Lookup(ctx, key)
	return v, err
}

// Lookup is Get, and whether the key has a value in that window.
func (t *WindowedTable[K, V]) Lookup(ctx context.Context, key K) (V, bool, error) {
	ts, err := t.eventTime(ctx)
	if err != nil {
		return t.zero(), false, err
	}
	return t.at(ctx, key, ts)
}

// Now returns the key's value in the window holding the app's clock's
// current time (Faust's now()).
func (t *WindowedTable[K, V]) Now(ctx context.Context, key K) (V, error) {
	v, _, err := t.at(ctx, key, t.app.now().UnixMilli())
	return v, err
}

// Delta returns the key's value in the window holding the instant d
// before the current event's time (Faust's delta()).
func (t *WindowedTable[K, V]) Delta(ctx context.Context, key K, d time.Duration) (V, error) {
	ts, err := t.eventTime(ctx)
	if err != nil {
		return t.zero(), err
	}
	v, _, err := t.at(ctx, key, ts-d.Milliseconds())
	return v, err
}

// At returns the key's value in the window holding instant at, and
// whether it has one (the latest-starting such window; for a sliding
// table the one ending at it, if there is one).
func (t *WindowedTable[K, V]) At(ctx context.Context, key K, at time.Time) (V, bool, error) {
	return t.at(ctx, key, at.UnixMilli())
}

func (t *WindowedTable[K, V]) at(ctx context.Context, key K, ts int64) (V, bool, error) {
	ws, err := t.windows(ctx, key, ts, ts+1)
	if err != nil || len(ws) == 0 {
		return t.zero(), false, err
	}
	pick := len(ws) - 1 // the latest-starting
	if t.spec.Kind == window.Sliding {
		for i, x := range ws {
			if x.Window.End.UnixMilli()-1 == ts {
				pick = i
			}
		}
	}
	return ws[pick].Value, true, nil
}

// Windows returns the key's live windows that overlap [from, to), in
// start order, with its value in each. Expired windows are never
// returned.
func (t *WindowedTable[K, V]) Windows(ctx context.Context, key K, from, to time.Time) ([]WindowValue[V], error) {
	return t.windows(ctx, key, from.UnixMilli(), to.UnixMilli())
}

func (t *WindowedTable[K, V]) windows(ctx context.Context, key K, from, to int64) ([]WindowValue[V], error) {
	kb, err := t.key(key)
	if err != nil {
		return nil, err
	}
	overlaps := func(r window.Range) bool { return r.Start < to && from < r.End }
	ev, w := t.handler(ctx)
	if ev == nil {
		return t.committed(ctx, kb, overlaps)
	}
	sh := ev.Shard(t.tab.def.spec.Index)
	var out []WindowValue[V]
	add := func(r window.Range) error {
		if w.Expired(r) || !overlaps(r) {
			return nil
		}
		s, found, _, err := t.tab.read(sh, window.Key(kb, r.Start), ev.ReadOnly())
		if err != nil || !found {
			return err
		}
		out = append(out, WindowValue[V]{Window: windowOf(r), Value: s.v})
		return nil
	}
	if t.spec.Stamped() {
		for _, r := range w.Live(kb) {
			if err := add(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	// Fixed windows: the starts that can overlap [from, to), bounded by
	// what can be live (not expired, not after stream time).
	size, step := t.spec.Size.Milliseconds(), t.spec.Step.Milliseconds()
	if t.spec.Kind == window.Tumbling {
		step = size
	}
	lo := from - size + 1
	if wm := w.Watermark(); wm != partition.NoTime {
		lo = max(lo, wm-max(t.spec.Expires, t.spec.Grace).Milliseconds()-size)
	}
	hi := to
	if st := w.Stream(); st != partition.NoTime {
		hi = min(hi, st+1)
	}
	if lo >= hi {
		return nil, nil
	}
	for start := floorTo(lo, step); start < hi; start += step {
		if err := add(t.spec.Of(start)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func floorTo(t, step int64) int64 {
	q := t / step
	if t%step != 0 && t < 0 {
		q--
	}
	return q * step
}

// committed reads the key's committed live windows outside a handler.
func (t *WindowedTable[K, V]) committed(ctx context.Context, kb []byte, keep func(window.Range) bool) ([]WindowValue[V], error) {
	n := t.app.running()
	if n == nil {
		return nil, fmt.Errorf("table %s: get: %w", t.Name(), ErrNotRunning)
	}
	rows, err := n.WindowRows(ctx, t.tab.def.spec.Index, kb, staleOK(ctx))
	if err != nil {
		return nil, fmt.Errorf("table %s: get %q: %w", t.Name(), kb, err)
	}
	var out []WindowValue[V]
	for _, r := range rows {
		if !keep(r.Range) {
			continue
		}
		v, err := t.vc.Decode(r.Value)
		if err != nil {
			return nil, fmt.Errorf("table %s: stored value of key %q: %w", t.Name(), kb, err)
		}
		out = append(out, WindowValue[V]{Window: windowOf(r.Range), Value: v})
	}
	return out, nil
}

// now reads the app's clock (WithClock; the wall clock by default).
func (a *App) now() time.Time {
	if c := a.Config().clock; c != nil {
		return c.Now()
	}
	// A test driver is the app's runtime and has its own clock.
	if c, ok := a.running().(interface{ Now() time.Time }); ok {
		return c.Now()
	}
	return time.Now()
}
