package mephisto

import (
	"context"
	"errors"
	"fmt"

	"github.com/mephistohq/mephisto/codec"
)

// GlobalTable is a table every node keeps whole (Faust's GlobalTable):
// any handler, on any partition and any node, and any timer, task or page
// reads it locally. It shares state between agents that are not
// co-partitioned.
//
// Writes never race. A write (Set, Delete, Merge) does not change the
// local copy: it travels as a record of the internal topic
// <app>-<name>-updates, keyed by the key, to the grain of the key's
// partition, which applies the writes of one key one at a time, in the
// order they reach that partition, and writes the result to the table's
// changelog <app>-<name>-changelog; every node copies that changelog into
// its Pebble. So concurrent Merges of one key from many partitions and
// nodes all count — Faust's `table[k] += 1` on a GlobalTable, where every
// worker writes its own copy and the last changelog write wins, loses
// them. What a program can rely on:
//
//   - Order: the writes of one key are applied in the order the key's
//     partition of the updates topic holds them; the writes one handler
//     (or one task) makes to a key arrive in the order it made them.
//   - Delivery: at least once. A write from a handler is produced with the
//     handler's other outputs when its partition commits, so a crash
//     before the commit writes it again on replay: a Merge may then be
//     applied twice (never lost; under exactly-once, once).
//   - Visibility: a write is visible on every node once the key's grain
//     has committed it and the node's copy has applied the changelog
//     record — about two commit intervals plus a fetch, on every node,
//     the writer's included: a handler does not read its own write back.
//     GET /cluster shows each node's lag under global_tables, and the
//     metric mephisto_global_table_lag_records per partition.
//   - Start: a node is not ready (/readyz) before its copy has caught up
//     with the changelog as it was when the node started.
type GlobalTable[K, V any] struct {
	app     *App
	owner   *Table[K, V]
	updates *Topic[K, globalWrite[V]]
	merge   func(old, delta V) V
}

// GlobalOption configures a global table.
type GlobalOption[V any] func(*globalOptions[V])

type globalOptions[V any] struct {
	merge func(old, delta V) V
	dflt  func() V
}

// MergeWith declares how Merge combines a key's value with a delta
// (Faust's `+=` on a table): merge(old, delta) is applied by the key's
// grain to the current value (or the default), so it need not commute,
// but a Merge replayed after a crash is applied again — Sum, Max, Min and
// set union are safe to see twice only as far as at-least-once allows.
func MergeWith[V any](merge func(old, delta V) V) GlobalOption[V] {
	return func(o *globalOptions[V]) { o.merge = merge }
}

// GlobalDefault sets the value a missing key reads as, and the value
// Merge starts from (default: V's zero value).
func GlobalDefault[V any](fn func() V) GlobalOption[V] {
	return func(o *globalOptions[V]) { o.dflt = fn }
}

// Number is the types Sum adds.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Sum adds: MergeWith(Sum[int64]) makes Merge(ctx, key, 1) a counter.
func Sum[V Number](old, delta V) V { return old + delta }

// ErrNoMerge is returned by Merge on a global table declared without
// MergeWith.
var ErrNoMerge = errors.New("mephisto: Merge on a global table declared without MergeWith")

// NewGlobalTable declares a global table: the table name (changelog
// <app>-<name>-changelog), the internal topic <app>-<name>-updates that
// carries writes to the key's grain, and the internal agent <name>-apply
// that applies them there.
func NewGlobalTable[K, V any](app *App, name string, kc codec.Codec[K], vc codec.Codec[V], opts ...GlobalOption[V]) *GlobalTable[K, V] {
	var o globalOptions[V]
	for _, opt := range opts {
		opt(&o)
	}
	g := &GlobalTable[K, V]{app: app, merge: o.merge}
	g.owner = NewTable(app, name, kc, vc)
	if o.dflt != nil {
		g.owner.WithDefault(o.dflt)
	}
	app.mu.Lock()
	if app.globals == nil {
		app.globals = map[string]bool{}
	}
	app.globals[name] = true
	app.mu.Unlock()
	g.updates = newTopic(app, app.name+"-"+name+"-updates", kc, globalWriteCodec[V]{vc}, true)
	newAgent(app, name+"-apply", g.updates, true, nil, func(ev *event, k K, w globalWrite[V]) error {
		return g.apply(handlerCtx{ev}, k, w)
	}, nil)
	return g
}

// apply runs in the grain of the key's partition: the only writer of the
// key.
func (g *GlobalTable[K, V]) apply(ctx Context, key K, w globalWrite[V]) error {
	switch w.op {
	case opSet:
		return g.owner.Set(ctx, key, w.value)
	case opDelete:
		return g.owner.Delete(ctx, key)
	case opMerge:
		if g.merge == nil {
			return fmt.Errorf("global table %s: %w", g.owner.Name(), ErrNoMerge)
		}
		return g.owner.Update(ctx, key, func(old V) V { return g.merge(old, w.value) })
	}
	return fmt.Errorf("global table %s: unknown write %q", g.owner.Name(), w.op)
}

// Name returns the table's name.
func (g *GlobalTable[K, V]) Name() string { return g.owner.Name() }

// ChangelogTopic returns the name of the table's changelog topic.
func (g *GlobalTable[K, V]) ChangelogTopic() string { return g.owner.ChangelogTopic() }

// UpdatesTopic returns the name of the internal topic that carries writes
// to the key's grain.
func (g *GlobalTable[K, V]) UpdatesTopic() string { return g.updates.Name() }

// Lookup returns the value of key in this node's copy and whether it has
// one. It works anywhere while the worker runs (ErrNotRunning otherwise).
func (g *GlobalTable[K, V]) Lookup(ctx context.Context, key K) (V, bool, error) {
	n := g.app.running()
	if n == nil {
		return g.owner.zero(), false, fmt.Errorf("global table %s: %w", g.owner.Name(), ErrNotRunning)
	}
	kb, err := g.owner.kc.Encode(key)
	if err != nil {
		return g.owner.zero(), false, fmt.Errorf("global table %s: encode key: %w", g.owner.Name(), err)
	}
	raw, found, err := n.ReadGlobal(g.owner.def.spec.Index, kb)
	if err != nil || !found {
		return g.owner.zero(), false, err
	}
	v, err := g.owner.vc.Decode(raw)
	if err != nil {
		return g.owner.zero(), false, fmt.Errorf("global table %s: %w", g.owner.Name(), err)
	}
	return v, true, nil
}

// Get returns the value of key in this node's copy, or the default.
func (g *GlobalTable[K, V]) Get(ctx context.Context, key K) (V, error) {
	v, _, err := g.Lookup(ctx, key)
	return v, err
}

// Set makes key's value value, from a handler (sent when its partition
// commits), a timer, a task or a page (sent and acknowledged before Set
// returns).
func (g *GlobalTable[K, V]) Set(ctx context.Context, key K, value V) error {
	return g.updates.Send(ctx, key, globalWrite[V]{op: opSet, value: value})
}

// Delete removes key.
func (g *GlobalTable[K, V]) Delete(ctx context.Context, key K) error {
	return g.updates.Send(ctx, key, globalWrite[V]{op: opDelete})
}

// Merge combines key's value with delta by the table's MergeWith function
// (ErrNoMerge without one), where the key's grain applies it: Merge of
// one key from any number of partitions and nodes never loses one.
func (g *GlobalTable[K, V]) Merge(ctx context.Context, key K, delta V) error {
	if g.merge == nil {
		return fmt.Errorf("global table %s: %w", g.owner.Name(), ErrNoMerge)
	}
	return g.updates.Send(ctx, key, globalWrite[V]{op: opMerge, value: delta})
}

// Range calls fn on every key and value of this node's copy, in key
// order, until fn returns false. It reads one snapshot of the copy and
// holds no more than a key per partition in memory.
func (g *GlobalTable[K, V]) Range(ctx context.Context, fn func(key K, value V) bool) error {
	return g.scan(ctx, nil, fn)
}

// RangePrefix is Range over the keys that start with prefix, for string
// and bytes keys (see Table.RangePrefix).
func (g *GlobalTable[K, V]) RangePrefix(ctx context.Context, prefix K, fn func(key K, value V) bool) error {
	if name := g.owner.kc.Name(); name != "string" && name != "bytes" {
		return fmt.Errorf("global table %s: prefix scans need string or bytes keys (codec.String, codec.Bytes), not codec %s", g.Name(), name)
	}
	pb, err := g.owner.kc.Encode(prefix)
	if err != nil {
		return fmt.Errorf("global table %s: encode prefix: %w", g.Name(), err)
	}
	if len(pb) == 0 {
		pb = nil
	}
	return g.scan(ctx, pb, fn)
}

func (g *GlobalTable[K, V]) scan(ctx context.Context, prefix []byte, fn func(K, V) bool) error {
	n := g.app.running()
	if n == nil {
		return fmt.Errorf("global table %s: %w", g.owner.Name(), ErrNotRunning)
	}
	var derr error
	err := n.ScanGlobal(ctx, g.owner.def.spec.Index, prefix, func(kb, vb []byte) bool {
		k, err := g.owner.kc.Decode(kb)
		if err != nil {
			derr = fmt.Errorf("global table %s: stored key %q: %w", g.owner.Name(), kb, err)
			return false
		}
		v, err := g.owner.vc.Decode(vb)
		if err != nil {
			derr = fmt.Errorf("global table %s: stored value of key %q: %w", g.owner.Name(), kb, err)
			return false
		}
		return fn(k, v)
	})
	return errors.Join(derr, err)
}

// A write to a global table on its way to the key's grain: one byte for
// the operation, then the value's encoding.
type globalWrite[V any] struct {
	op    byte
	value V
}

const (
	opSet    = 's'
	opDelete = 'd'
	opMerge  = 'm'
)

type globalWriteCodec[V any] struct{ vc codec.Codec[V] }

func (c globalWriteCodec[V]) Name() string { return "global-write/" + c.vc.Name() }

func (c globalWriteCodec[V]) Encode(w globalWrite[V]) ([]byte, error) {
	if w.op == opDelete {
		return []byte{opDelete}, nil
	}
	b, err := c.vc.Encode(w.value)
	if err != nil {
		return nil, err
	}
	return append([]byte{w.op}, b...), nil
}

func (c globalWriteCodec[V]) Decode(b []byte) (globalWrite[V], error) {
	if len(b) == 0 {
		return globalWrite[V]{}, fmt.Errorf("%w: empty global-table write", codec.ErrDecode)
	}
	w := globalWrite[V]{op: b[0]}
	switch w.op {
	case opDelete:
		return w, nil
	case opSet, opMerge:
		v, err := c.vc.Decode(b[1:])
		w.value = v
		return w, err
	}
	return w, fmt.Errorf("%w: global-table write of unknown kind %q", codec.ErrDecode, b[0])
}
