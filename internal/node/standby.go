package node

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
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

// stop stops tailing; what was applied is written.
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

// follow tails one table's changelog partition into its shard from where
// the shard is, until ctx is done or an error.
func (s *standby) follow(ctx context.Context, d *partition.Table, lag interface{ Set(float64) }) error {
	from, _, err := s.rt.replayFrom(d, s.p, slog.LevelWarn, "standby shard")
	if err != nil {
		return err
	}
	w := state.NewShardTail(s.rt.store, s.rt.ids[d.Index], s.p)
	defer w.Discard()
	err = kafka.Follow(ctx, s.rt.consumer, d.Changelog, s.p, from, 100*time.Millisecond, w.Apply, func(hwm int64) error {
		if err := w.Flush(); err != nil {
			return err
		}
		if last := w.Last(); last >= 0 {
			lag.Set(float64(max(0, hwm-last-1)))
		} else {
			lag.Set(float64(max(0, hwm-from)))
		}
		return nil
	})
	// What was applied is consistent with its offset: keep it.
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}
