package node

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// standby keeps this node's copy of partition p's table shards warm while
// another node is active for p (DESIGN decision 8): it tails each table's
// changelog partition with a plain consumer into Pebble, storing the
// offset applied in the same batch as the rows, so that a promotion only
// replays the tail written since.
type standby struct {
	rt     *Node
	p      int32
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (rt *Node) startStandby(p int32) *standby {
	ctx, cancel := context.WithCancel(rt.ctx)
	s := &standby{rt: rt, p: p, cancel: cancel}
	for _, d := range rt.tables {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tail(ctx, d)
		}()
	}
	rt.log.Info("standby started", "partition", p, "tables", len(rt.tables))
	return s
}

// stop stops tailing; what was applied is committed.
func (s *standby) stop() {
	s.cancel()
	s.wg.Wait()
}

// tail follows one table's changelog partition until ctx is done,
// restarting with backoff after errors.
func (s *standby) tail(ctx context.Context, d *partition.Table) {
	log := s.rt.log.With("partition", s.p, "table", d.Name)
	lag := s.rt.metrics.standbyLag.WithLabelValues(d.Name, strconv.Itoa(int(s.p)))
	defer s.rt.metrics.standbyLag.DeleteLabelValues(d.Name, strconv.Itoa(int(s.p)))
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := s.follow(ctx, d, lag)
		if ctx.Err() != nil {
			return
		}
		delay := kafkaBackoff(attempt)
		log.Warn("standby tailer failed; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (s *standby) follow(ctx context.Context, d *partition.Table, lag interface{ Set(float64) }) error {
	st := s.rt.store
	from, _, err := s.rt.replayFrom(d, s.p, slog.LevelWarn, "standby shard")
	if err != nil {
		return err
	}
	pc, err := s.rt.consumer.ConsumePartition(d.Changelog, s.p, from)
	if err != nil {
		return err
	}
	defer pc.AsyncClose()
	b := st.NewBatch()
	defer func() { b.Discard() }()
	var last int64 = -1
	flush := func() error {
		if last < 0 || b.Len() == 0 {
			return nil
		}
		b.SetChangelogOffset(s.rt.ids[d.Index], s.p, last)
		err := b.Commit()
		b = st.NewBatch()
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return flush()
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
			if last >= 0 {
				lag.Set(float64(max(0, pc.HighWaterMarkOffset()-last-1)))
			} else {
				lag.Set(float64(max(0, pc.HighWaterMarkOffset()-from)))
			}
		case m, ok := <-pc.Messages():
			if !ok {
				return errors.New("changelog consumer closed")
			}
			applyChangelog(b, s.rt.ids[d.Index], s.p, m)
			last = m.Offset
			if b.Len() >= 10_000 {
				if err := flush(); err != nil {
					return err
				}
			}
		case err := <-pc.Errors():
			if err != nil {
				_ = flush()
				return err
			}
		}
	}
}

// applyChangelog applies one changelog record to a batch: a null value is a
// tombstone.
func applyChangelog(b interface {
	Set(uint32, int32, []byte, []byte)
	Delete(uint32, int32, []byte)
}, id uint32, p int32, m *sarama.ConsumerMessage) {
	if m.Value == nil {
		b.Delete(id, p, m.Key)
	} else {
		b.Set(id, p, m.Key, m.Value)
	}
}
