package node

import (
	"context"
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/timer"
)

// batch is a partly filled batch of one agent in one partition.
type batch struct {
	items []any
	msgs  []*partition.Record
	first time.Time
}

func (c *core) batchOf(a *partition.Agent) *batch {
	b := c.batches[a.Name]
	if b == nil {
		b = &batch{}
		c.batches[a.Name] = b
	}
	return b
}

func (c *core) clock() timer.Clock {
	if c.rt.cfg.Clock != nil {
		return c.rt.cfg.Clock
	}
	return timer.Real{}
}

// processBatched adds a record to its agent's batch and hands the batch to
// the handler when it is full.
func (c *core) processBatched(a *partition.Agent, m *partition.Record) error {
	b := c.batchOf(a)
	if len(b.items) == 0 {
		b.first = c.clock().Now()
	}
	if err := c.run(a, m); err != nil { // decodes and appends the item
		return err
	}
	b.msgs = append(b.msgs, m)
	if len(b.items) >= a.Batch.N {
		return c.flushBatch(a, b)
	}
	return nil
}

// flushBatch runs the batch handler; on success its sends are released and
// the batch's offsets count as processed.
func (c *core) flushBatch(a *partition.Agent, b *batch) error {
	if len(b.items) == 0 {
		return nil
	}
	c.ec.Reset(b.msgs[len(b.msgs)-1], a)
	if err := a.Batch.Flush(c.ec, b.items); err != nil {
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
		b := c.batches[a.Name]
		if a.Batch == nil || b == nil || len(b.items) == 0 {
			continue
		}
		if force || now.Sub(b.first) >= a.Batch.Within {
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
