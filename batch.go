package mephisto

import (
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
)

// BatchHandler handles a batch of events (Faust's stream.take(n, within)).
type BatchHandler[K, V any] func(ctx Context, batch []KV[K, V]) error

// NewBatchAgent declares an agent that gets up to n events at a time, or
// whatever arrived within d of the first one (measured on the app's clock,
// see WithClock; checked at every commit tick). While a batch fills, the
// partition defers its commit, so a crash replays the buffered events; a
// revoke or shutdown hands the partial batch to the handler first. Inside
// the handler, ctx.Event() is the batch's last event.
func NewBatchAgent[K, V any](app *App, name string, topic *Topic[K, V], n int, d time.Duration, h BatchHandler[K, V], opts ...AgentOption) *Agent[K, V] {
	if n < 1 || d <= 0 {
		app.declErr(fmt.Errorf("batch agent %s: want n ≥ 1 and within > 0, got %d and %v", name, n, d))
	}
	a := newAgent(app, name, topic, false, nil, func(ev *partition.Event, k K, v V) error {
		return ev.AddToBatch(KV[K, V]{Key: k, Value: v})
	}, opts)
	a.def.spec.Batch = &partition.Batch{N: n, Within: d, Flush: func(ev *partition.Event, items []any) error {
		batch := make([]KV[K, V], len(items))
		for i, it := range items {
			batch[i] = it.(KV[K, V])
		}
		return h(handlerCtx{ev}, batch)
	}}
	return a
}
