package mephisto

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mephistohq/mephisto/codec"
)

// SetTable is a partitioned table whose values are sets of members
// (Faust's SetTable): a handler adds members to a key's set and discards
// them, as it updates any table — in the grain of the key's partition, on
// the key's shard.
type SetTable[K any, M comparable] struct {
	t  *Table[K, memberSet[M]]
	mc codec.Codec[M]
}

// NewSetTable declares a set table; mc encodes the members (the stored
// set is ordered by the members' encodings).
func NewSetTable[K any, M comparable](app *App, name string, kc codec.Codec[K], mc codec.Codec[M]) *SetTable[K, M] {
	return &SetTable[K, M]{t: NewTable(app, name, kc, memberSetCodec[M]{mc}), mc: mc}
}

// Name returns the table's name.
func (s *SetTable[K, M]) Name() string { return s.t.Name() }

// Add adds members to key's set.
func (s *SetTable[K, M]) Add(ctx context.Context, key K, members ...M) error {
	return s.t.Update(ctx, key, func(v memberSet[M]) memberSet[M] { return v.apply(s.mc, members, nil) })
}

// Discard removes members from key's set (members not in it are no
// error); a set left empty is deleted.
func (s *SetTable[K, M]) Discard(ctx context.Context, key K, members ...M) error {
	v, err := s.t.Get(ctx, key)
	if err != nil {
		return err
	}
	v = v.apply(s.mc, nil, members)
	if len(v.Members) == 0 {
		return s.t.Delete(ctx, key)
	}
	return s.t.Set(ctx, key, v)
}

// Contains reports whether member is in key's set.
func (s *SetTable[K, M]) Contains(ctx context.Context, key K, member M) (bool, error) {
	v, err := s.t.Get(ctx, key)
	return slices.Contains(v.Members, member), err
}

// Members returns key's set, ordered by the members' encodings.
func (s *SetTable[K, M]) Members(ctx context.Context, key K) ([]M, error) {
	v, err := s.t.Get(ctx, key)
	return v.Members, err
}

// SetGlobalTable is a global table whose values are sets of members
// (Faust's SetGlobalTable): every node reads the whole table locally, and
// Add and Discard from any handler, timer or task on any node are applied
// by the key's grain, so that none is lost to a concurrent one (see
// GlobalTable for the ordering, delivery and visibility rules).
type SetGlobalTable[K any, M comparable] struct {
	g  *GlobalTable[K, memberSet[M]]
	mc codec.Codec[M]
}

// NewSetGlobalTable declares a global set table.
func NewSetGlobalTable[K any, M comparable](app *App, name string, kc codec.Codec[K], mc codec.Codec[M]) *SetGlobalTable[K, M] {
	s := &SetGlobalTable[K, M]{mc: mc}
	s.g = NewGlobalTable(app, name, kc, memberSetCodec[M]{mc}, MergeWith(func(old, change memberSet[M]) memberSet[M] {
		return old.apply(mc, change.Members, change.Discarded)
	}))
	return s
}

// Name returns the table's name.
func (s *SetGlobalTable[K, M]) Name() string { return s.g.Name() }

// Add adds members to key's set.
func (s *SetGlobalTable[K, M]) Add(ctx context.Context, key K, members ...M) error {
	return s.g.Merge(ctx, key, memberSet[M]{Members: members})
}

// Discard removes members from key's set.
func (s *SetGlobalTable[K, M]) Discard(ctx context.Context, key K, members ...M) error {
	return s.g.Merge(ctx, key, memberSet[M]{Discarded: members})
}

// Contains reports whether member is in key's set, in this node's copy.
func (s *SetGlobalTable[K, M]) Contains(ctx context.Context, key K, member M) (bool, error) {
	v, err := s.g.Get(ctx, key)
	return slices.Contains(v.Members, member), err
}

// Members returns key's set in this node's copy, ordered by the members'
// encodings.
func (s *SetGlobalTable[K, M]) Members(ctx context.Context, key K) ([]M, error) {
	v, err := s.g.Get(ctx, key)
	return v.Members, err
}

// memberSet is a set as a table stores it (Members, ordered by their
// encodings, no duplicates) and, as a global table's Merge carries it, a
// change to one (Members to add, Discarded to remove).
type memberSet[M comparable] struct {
	Members   []M
	Discarded []M
}

// MarshalJSON renders the set as the JSON array of its members (GET
// /tables/{t}/{k}).
func (s memberSet[M]) MarshalJSON() ([]byte, error) {
	if s.Members == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.Members)
}

// apply returns s with add added and discard removed, in order.
func (s memberSet[M]) apply(mc codec.Codec[M], add, discard []M) memberSet[M] {
	out := make([]M, 0, len(s.Members)+len(add))
	for _, m := range s.Members {
		if !slices.Contains(discard, m) {
			out = append(out, m)
		}
	}
	for _, m := range add {
		if !slices.Contains(out, m) && !slices.Contains(discard, m) {
			out = append(out, m)
		}
	}
	return memberSet[M]{Members: sortByEncoding(mc, out)}
}

// sortByEncoding orders members by their encodings (a member that does not
// encode sorts first; the table's write reports the error).
func sortByEncoding[M any](mc codec.Codec[M], ms []M) []M {
	enc := make(map[int][]byte, len(ms))
	idx := make([]int, len(ms))
	for i, m := range ms {
		idx[i] = i
		enc[i], _ = mc.Encode(m)
	}
	slices.SortStableFunc(idx, func(a, b int) int { return bytes.Compare(enc[a], enc[b]) })
	out := make([]M, len(ms))
	for i, j := range idx {
		out[i] = ms[j]
	}
	return out
}

// memberSetCodec encodes a memberSet: the count of members, each member's
// length and encoding, then the same for the discarded ones (uvarints).
type memberSetCodec[M comparable] struct{ mc codec.Codec[M] }

func (c memberSetCodec[M]) Name() string { return "set/" + c.mc.Name() }

func (c memberSetCodec[M]) Encode(s memberSet[M]) ([]byte, error) {
	var b []byte
	for _, list := range [][]M{s.Members, s.Discarded} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, m := range list {
			e, err := c.mc.Encode(m)
			if err != nil {
				return nil, fmt.Errorf("set member: %w", err)
			}
			b = binary.AppendUvarint(b, uint64(len(e)))
			b = append(b, e...)
		}
	}
	return b, nil
}

func (c memberSetCodec[M]) Decode(b []byte) (memberSet[M], error) {
	var s memberSet[M]
	for i, list := range []*[]M{&s.Members, &s.Discarded} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			if i == 1 && len(b) == 0 {
				break
			}
			return s, fmt.Errorf("%w: set: bad member count", codec.ErrDecode)
		}
		b = b[k:]
		for range n {
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return s, fmt.Errorf("%w: set: truncated member", codec.ErrDecode)
			}
			m, err := c.mc.Decode(b[k : k+int(l)])
			if err != nil {
				return s, err
			}
			*list = append(*list, m)
			b = b[k+int(l):]
		}
	}
	if len(b) != 0 {
		return s, fmt.Errorf("%w: set: %d trailing bytes", codec.ErrDecode, len(b))
	}
	return s, nil
}
