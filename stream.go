package mephisto

import (
	"fmt"

	"github.com/mephistohq/mephisto/actors/partition"
)

// Filter returns a handler that calls h only for events pred accepts
// (Faust's stream.filter). The others are skipped and count as processed.
func Filter[K, V any](pred func(key K, value V) bool, h Handler[K, V]) Handler[K, V] {
	return func(ctx Context, k K, v V) error {
		if !pred(k, v) {
			return nil
		}
		return h(ctx, k, v)
	}
}

// Echo returns a handler that copies every event to each of topics and
// then calls h, if not nil (Faust's stream.echo). The copies are effects of
// the event: sent only if h succeeds.
func Echo[K, V any](h Handler[K, V], topics ...*Topic[K, V]) Handler[K, V] {
	return func(ctx Context, k K, v V) error {
		for _, t := range topics {
			if err := t.Send(ctx, k, v); err != nil {
				return fmt.Errorf("echo to %s: %w", t.Name(), err)
			}
		}
		if h == nil {
			return nil
		}
		return h(ctx, k, v)
	}
}

// Through forwards every record of src to dst through an internal agent
// named name and returns dst, to consume from (Faust's stream.through):
// the records are persisted in dst, keyed as they were, before anything
// else happens to them.
func Through[K, V any](src *Topic[K, V], name string, dst *Topic[K, V]) *Topic[K, V] {
	newAgent(src.app, name, src, true, nil, func(ev *partition.Event, k K, v V) error {
		if ev.Record().Key == nil {
			return dst.SendValue(ev, v)
		}
		return dst.Send(ev, k, v)
	}, nil)
	return dst
}
