package mephisto

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/state/shard"
)

// tableDef is a declared table, whatever its types.
type tableDef struct {
	spec *partition.Table
}

// Table is a typed, partitioned, durable key-value table (Faust's Table).
// Each partition's shard belongs to the grain that processes that
// partition: handlers read and write the shard of the event's partition.
// Every write goes to the compacted changelog topic <app>-<table>-changelog,
// from which the shard is rebuilt on any node.
//
// Inside a handler, reads are served from an in-memory cache of the
// event's shard (see Config.TableCacheKeys) in front of Pebble, and see
// the handler's own writes not yet committed. A value read is the
// handler's own: changing a map or slice it read does not change the
// table until it is Set.
//
// Anywhere else on a running worker — a timer, a task, a page, a channel
// agent, any goroutine — Get and Lookup return the committed value of the
// key's partition (the partition the key hashes to): from this node's
// store when it is active for that partition, otherwise from the node that
// is, one hop by actor message. AllowStale lets a standby copy here answer
// instead. Range and RangePrefix iterate the partitions this node is
// active for. Writes happen only in handlers (ErrNotInAgent elsewhere).
type Table[K, V any] struct {
	app  *App
	def  *tableDef
	kc   codec.Codec[K]
	vc   codec.Codec[V]
	dflt func() V
	// share is true when V holds no references (numbers, strings, arrays
	// and structs of them): the cache then hands out its own copy of a
	// value. Otherwise every read decodes the stored encoding, so that a
	// handler changing a value it read (a map, a slice) without Set
	// cannot change what later reads see.
	share  bool
	borrow codec.Borrower[K] // set when the key codec can lend a key's bytes
}

// NewTable declares a table. Missing keys read as V's zero value unless a
// default is set with WithDefault.
func NewTable[K, V any](app *App, name string, kc codec.Codec[K], vc codec.Codec[V]) *Table[K, V] {
	d := &tableDef{spec: &partition.Table{
		Name: name, Changelog: app.name + "-" + name + "-changelog",
		KeyCodec: kc.Name(), ValueCodec: vc.Name(),
		KeyText: textEncoder(kc),
		ValueJSON: func(b []byte) (json.RawMessage, error) {
			v, err := vc.Decode(b)
			if err != nil {
				return nil, err
			}
			return codec.ToJSON(v)
		},
	}}
	app.mu.Lock()
	if _, dup := app.tables[name]; dup {
		app.errs = append(app.errs, fmt.Errorf("table %s declared twice", name))
	}
	if !nameRE.MatchString(name) {
		app.errs = append(app.errs, fmt.Errorf("table name %q: use only letters, digits, '.', '_' and '-'", name))
	}
	d.spec.Index = len(app.tables)
	app.tables[name] = d
	app.mu.Unlock()
	t := &Table[K, V]{app: app, def: d, kc: kc, vc: vc, share: valueType(reflect.TypeFor[V]())}
	t.borrow, _ = kc.(codec.Borrower[K])
	return t
}

// valueType reports whether values of t hold no references, so that a copy
// of one shares nothing with the original.
func valueType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	case reflect.Array:
		return valueType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !valueType(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// WithDefault sets the value missing keys read as (Faust's default=) and
// returns the table.
func (t *Table[K, V]) WithDefault(fn func() V) *Table[K, V] {
	t.dflt = fn
	return t
}

// Name returns the table's name.
func (t *Table[K, V]) Name() string { return t.def.spec.Name }

// ChangelogTopic returns the name of the table's changelog topic.
func (t *Table[K, V]) ChangelogTopic() string { return t.def.spec.Changelog }

func (t *Table[K, V]) zero() V {
	if t.dflt != nil {
		return t.dflt()
	}
	var v V
	return v
}

// shardOf returns the event and the table's shard of the event's
// partition, if op may run there.
func (t *Table[K, V]) shardOf(ctx context.Context, op string) (*partition.Event, *shard.Shard, error) {
	ev := partition.From(ctx)
	var sh *shard.Shard
	if ev != nil {
		sh = ev.Shard(t.def.spec.Index)
	}
	if sh == nil {
		return nil, nil, fmt.Errorf("table %s: %s: %w", t.def.spec.Name, op, ErrNotInAgent)
	}
	if ev.ReadOnly() && op != "get" {
		return nil, nil, fmt.Errorf("table %s: %s in agent %s: %w", t.def.spec.Name, op, ev.Agent().Name, ErrReadOnly)
	}
	return ev, sh, nil
}

// Lookup returns the value of key and whether the key has one.
//
// In an agent's handler it reads the event's shard, the handler's
// uncommitted writes included. Elsewhere on a running worker it returns
// the committed value of the key's partition, here or from the node
// active for it (see Table); the error then wraps ErrPartitionMoving while
// no node serves that partition (a rebalance, a recovery; retry),
// ErrNoRemote when the owner cannot be asked (a node without an actor
// address), ErrTimeout when ctx ends first, and ErrNotRunning when no
// worker runs.
func (t *Table[K, V]) Lookup(ctx context.Context, key K) (V, bool, error) {
	ev := partition.From(ctx)
	var sh *shard.Shard
	if ev != nil {
		sh = ev.Shard(t.def.spec.Index)
	}
	if sh == nil {
		return t.committed(ctx, key)
	}
	kb, err := t.key(key)
	if err != nil {
		return t.zero(), false, err
	}
	v, ok, _, err := t.read(sh, kb, ev.ReadOnly())
	return v, ok, err
}

// Get returns the value of key, or the default when it has none. Where it
// reads from is as for Lookup.
func (t *Table[K, V]) Get(ctx context.Context, key K) (V, error) {
	v, _, err := t.Lookup(ctx, key)
	return v, err
}

// committed reads the committed value of key outside a handler.
func (t *Table[K, V]) committed(ctx context.Context, key K) (V, bool, error) {
	n := t.app.running()
	if n == nil {
		return t.zero(), false, fmt.Errorf("table %s: get: %w", t.def.spec.Name, ErrNotRunning)
	}
	kb, err := t.key(key)
	if err != nil {
		return t.zero(), false, err
	}
	raw, found, err := n.TableGet(ctx, t.def.spec.Index, kb, staleOK(ctx))
	if err != nil {
		return t.zero(), false, fmt.Errorf("table %s: get %q: %w", t.def.spec.Name, kb, err)
	}
	if !found {
		return t.zero(), false, nil
	}
	v, err := t.vc.Decode(raw)
	if err != nil {
		return t.zero(), false, fmt.Errorf("table %s: stored value of key %q: %w", t.def.spec.Name, kb, err)
	}
	return v, true, nil
}

type staleKey struct{}

// AllowStale returns a context under which a table read outside a handler
// (Get, Lookup, Range) may be answered by this node's standby copy of the
// key's partition instead of the node active for it: no network hop, and
// an answer while the partition moves, at the price of a value that may
// lag the owner's by the standby's changelog lag (the metric
// mephisto_standby_lag_records), or be older still while the standby
// catches up after a restart. Where this node is active for the partition
// it answers as always; where it keeps no copy the read goes to the owner
// as without AllowStale. Range under AllowStale also visits the standby
// partitions here. It is GET /tables/{t}/{k}?stale=ok for code. Inside a
// handler it changes nothing: handlers read their own shard.
func AllowStale(ctx context.Context) context.Context {
	return context.WithValue(ctx, staleKey{}, true)
}

func staleOK(ctx context.Context) bool {
	ok, _ := ctx.Value(staleKey{}).(bool)
	return ok
}

// Set sets the value of key.
func (t *Table[K, V]) Set(ctx context.Context, key K, value V) error {
	ev, sh, err := t.shardOf(ctx, "set")
	if err != nil {
		return err
	}
	kb, err := t.key(key)
	if err != nil {
		return err
	}
	return t.write(ev, sh, kb, nil, value)
}

// Delete removes key.
func (t *Table[K, V]) Delete(ctx context.Context, key K) error {
	_, sh, err := t.shardOf(ctx, "delete")
	if err != nil {
		return err
	}
	kb, err := t.key(key)
	if err != nil {
		return err
	}
	sh.Put(kb, nil, nil, nil, true)
	return nil
}

// Update replaces the value of key (or the default) with fn's result.
func (t *Table[K, V]) Update(ctx context.Context, key K, fn func(V) V) error {
	ev, sh, err := t.shardOf(ctx, "update")
	if err != nil {
		return err
	}
	kb, err := t.key(key)
	if err != nil {
		return err
	}
	v, _, e, err := t.read(sh, kb, false)
	if err != nil {
		return err
	}
	return t.write(ev, sh, kb, e, fn(v))
}

// key encodes key. The result may share the memory of a string key (see
// codec.Borrower), so it is only read, and copied where it is kept.
func (t *Table[K, V]) key(key K) ([]byte, error) {
	if t.borrow != nil {
		return t.borrow.Borrow(key), nil
	}
	kb, err := t.kc.Encode(key)
	if err != nil {
		return nil, fmt.Errorf("table %s: encode key: %w", t.def.spec.Name, err)
	}
	return kb, nil
}

// read returns the value of kb (the default when it has none), whether it
// has one, and its cache entry (nil if it is not cached).
func (t *Table[K, V]) read(sh *shard.Shard, kb []byte, readOnly bool) (V, bool, *shard.Entry, error) {
	if e, ok := sh.Cached(kb, readOnly); ok {
		if e.Absent {
			return t.zero(), false, e, nil
		}
		if t.share {
			return e.V.(V), true, e, nil
		}
		v, err := t.vc.Decode(e.Raw)
		if err != nil {
			return t.zero(), false, e, fmt.Errorf("table %s: cached value of key %q: %w", t.def.spec.Name, kb, err)
		}
		return v, true, e, nil
	}
	raw, ok, err := sh.Get(kb)
	if err != nil {
		return t.zero(), false, nil, err
	}
	if !ok {
		if readOnly {
			return t.zero(), false, nil, nil
		}
		return t.zero(), false, sh.Remember(kb, nil, nil, true), nil
	}
	v, err := t.vc.Decode(raw)
	if err != nil {
		return t.zero(), false, nil, fmt.Errorf("table %s: stored value of key %q: %w", t.def.spec.Name, kb, err)
	}
	if readOnly {
		return v, true, nil, nil
	}
	return v, true, sh.Remember(kb, t.cached(v), raw, false), nil
}

// cached is what the shard cache keeps of v: v itself when reads may share
// it, nothing otherwise (reads decode the encoding, and keeping v would
// keep a handler's map or slice alive for nothing).
func (t *Table[K, V]) cached(v V) any {
	if t.share {
		return v
	}
	return nil
}

// write sets kb to value in the shard's cache; e is kb's entry if the
// caller has it. A value whose changelog record would be over the
// producer's limit is refused (the error wraps ErrTooLarge): it could never
// be committed.
func (t *Table[K, V]) write(ev *partition.Event, sh *shard.Shard, kb []byte, e *shard.Entry, value V) error {
	vb, err := t.vc.Encode(value)
	if err != nil {
		return fmt.Errorf("table %s: encode value: %w", t.def.spec.Name, err)
	}
	if err := ev.CheckSize(t.def.spec.Changelog, kb, vb); err != nil {
		return fmt.Errorf("table %s: key %q: %w", t.def.spec.Name, kb, err)
	}
	sh.Put(kb, e, t.cached(value), vb, false)
	return nil
}

// Range calls fn for each key of the table and its committed value, in
// key order, until fn returns false (Faust's items()). It visits the
// partitions this node is active for (with AllowStale, also those it
// keeps standby copies of) — not the whole table: run it on every node,
// or serve it through a page on each, for all of it. It reads the
// committed state, one snapshot of it: inside a handler, the handler's
// writes not yet committed are not in it.
//
// Key order is the byte order of the encoded keys: lexicographic for
// codec.String and codec.Bytes, numeric for non-negative codec.Int64
// keys. A key written from several partitions (a table not keyed like
// its input: writes follow the event's partition) comes once per
// partition holding it. Rows are read one at a time from a Pebble
// iterator per partition, merged, so a large table is not loaded into
// memory. fn runs on the caller's goroutine and may read tables; in a
// handler it holds up the partition like any handler code.
//
// It fails, wrapping ErrPartitionMoving, while the node is between
// assignments or recovering a partition it was given (the rows would be
// incomplete); with ctx's error when ctx ends; with ErrNotRunning when no
// worker runs; and when a stored key or value does not decode.
func (t *Table[K, V]) Range(ctx context.Context, fn func(key K, value V) bool) error {
	return t.scan(ctx, nil, fn)
}

// RangePrefix is Range over the keys that start with prefix, for tables
// whose key codec keeps prefixes (codec.String, codec.Bytes: the
// encoding of a prefix is a prefix of the encoding); other key codecs
// fail with an error.
func (t *Table[K, V]) RangePrefix(ctx context.Context, prefix K, fn func(key K, value V) bool) error {
	if name := t.kc.Name(); name != "string" && name != "bytes" {
		return fmt.Errorf("table %s: prefix scans need string or bytes keys (codec.String, codec.Bytes), not codec %s", t.def.spec.Name, name)
	}
	pb, err := t.kc.Encode(prefix)
	if err != nil {
		return fmt.Errorf("table %s: encode prefix: %w", t.def.spec.Name, err)
	}
	if len(pb) == 0 {
		pb = nil
	}
	return t.scan(ctx, pb, fn)
}

func (t *Table[K, V]) scan(ctx context.Context, prefix []byte, fn func(K, V) bool) error {
	n := t.app.running()
	if n == nil {
		return fmt.Errorf("table %s: range: %w", t.def.spec.Name, ErrNotRunning)
	}
	var derr error
	err := n.TableRange(ctx, t.def.spec.Index, prefix, staleOK(ctx), func(kb, vb []byte) bool {
		k, err := t.kc.Decode(kb)
		if err != nil {
			derr = fmt.Errorf("table %s: stored key %q: %w", t.def.spec.Name, kb, err)
			return false
		}
		v, err := t.vc.Decode(vb)
		if err != nil {
			derr = fmt.Errorf("table %s: stored value of key %q: %w", t.def.spec.Name, kb, err)
			return false
		}
		return fn(k, v)
	})
	if derr != nil {
		return derr
	}
	if err != nil {
		return fmt.Errorf("table %s: range: %w", t.def.spec.Name, err)
	}
	return nil
}
