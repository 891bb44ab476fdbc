package mephisto

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/timer"
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
	a := newAgent(app, name, topic, false, nil, func(ec *eventCtx, k K, v V) error {
		b := ec.core.batchOf(ec.agent)
		b.items = append(b.items, KV[K, V]{Key: k, Value: v})
		return nil
	}, opts)
	a.def.batch = &batchSpec{n: n, within: d, flush: func(ec *eventCtx, items []any) error {
		batch := make([]KV[K, V], len(items))
		for i, it := range items {
			batch[i] = it.(KV[K, V])
		}
		return h(ec, batch)
	}}
	return a
}

type batchSpec struct {
	n      int
	within time.Duration
	flush  func(ec *eventCtx, items []any) error
}

// batch is a partly filled batch of one agent in one partition.
type batch struct {
	items []any
	msgs  []*sarama.ConsumerMessage
	first time.Time
}

func (c *core) batchOf(a *agentDef) *batch {
	b := c.batches[a.name]
	if b == nil {
		b = &batch{}
		c.batches[a.name] = b
	}
	return b
}

func (c *core) clock() timer.Clock {
	if c.rt.cfg.clock != nil {
		return c.rt.cfg.clock
	}
	return timer.Real{}
}

// processBatched adds a record to its agent's batch and hands the batch to
// the handler when it is full.
func (c *core) processBatched(a *agentDef, m *sarama.ConsumerMessage) error {
	b := c.batchOf(a)
	if len(b.items) == 0 {
		b.first = c.clock().Now()
	}
	if err := c.run(a, m); err != nil { // decodes and appends the item
		return err
	}
	b.msgs = append(b.msgs, m)
	if len(b.items) >= a.batch.n {
		return c.flushBatch(a, b)
	}
	return nil
}

// flushBatch runs the batch handler; on success its sends are released and
// the batch's offsets count as processed.
func (c *core) flushBatch(a *agentDef, b *batch) error {
	if len(b.items) == 0 {
		return nil
	}
	ec := &c.ec
	ec.msg, ec.agent, ec.staged, ec.reply = b.msgs[len(b.msgs)-1], a, ec.staged[:0], nil
	if err := a.batch.flush(ec, b.items); err != nil {
		return fmt.Errorf("batch of %d: %w", len(b.items), err)
	}
	c.release()
	for _, m := range b.msgs {
		if done, ok := c.srcDone[m.Topic]; !ok || m.Offset > done {
			c.srcDone[m.Topic] = m.Offset
		}
	}
	b.items, b.msgs = b.items[:0], b.msgs[:0]
	return nil
}

// flushDue hands every batch whose time is up (or all, with force) to its
// handler. It reports whether a batch is still filling.
func (c *core) flushDue(force bool) (pending bool, err error) {
	now := c.clock().Now()
	for _, a := range c.agents {
		b := c.batches[a.name]
		if a.batch == nil || b == nil || len(b.items) == 0 {
			continue
		}
		if force || now.Sub(b.first) >= a.batch.within {
			if err := c.flushBatch(a, b); err != nil {
				return false, err
			}
			continue
		}
		pending = true
	}
	return pending, nil
}

// FlushAll hands every partly filled batch to its handler.
func (c *core) FlushAll(context.Context) error {
	_, err := c.flushDue(true)
	return err
}
