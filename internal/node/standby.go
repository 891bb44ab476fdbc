package node

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
)

// standby keeps this node's copy of partition p of some tables warm while
// another node is active for p (DESIGN decision 8): it tails each table's
// changelog partition with a plain consumer into Pebble, storing the
// offset applied in the same batch as the rows, so that a promotion only
// replays the tail written since. A standby of the plan's choosing tails
// the partitioned tables; a global copy (global.go) tails the global ones,
// on every node, for every partition not active here.
type standby struct {
	rt     *Node
	p      int32
	what   string // "standby shard" or "global copy", in logs
	tables []*partition.Table
	lag    *prometheus.GaugeVec // labelled table, partition
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	behind map[int]int64 // by table index: records behind the high watermark
	caught map[int]bool  // by table index: reached the high watermark it saw at start
}

func (rt *Node) startStandby(p int32) *standby {
	return rt.startTails(p, rt.partitioned(), "standby shard", rt.metrics.standbyLag)
}

// startTails starts tailing tables' changelog partitions p.
func (rt *Node) startTails(p int32, tables []*partition.Table, what string, lag *prometheus.GaugeVec) *standby {
	ctx, cancel := context.WithCancel(rt.ctx)
	s := &standby{rt: rt, p: p, what: what, tables: tables, lag: lag, cancel: cancel, behind: map[int]int64{}, caught: map[int]bool{}}
	for _, d := range tables {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tail(ctx, d)
		}()
	}
	rt.log.Debug(what+" started", "partition", p, "tables", len(tables))
	return s
}

// stop stops tailing; what was applied is written.
func (s *standby) stop() {
	s.cancel()
	s.wg.Wait()
}

// caughtUp reports whether every table's tail has reached the high
// watermark it saw (once: a tail that falls behind later still counts).
func (s *standby) caughtUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.caught) == len(s.tables)
}

// lagOf returns how far behind the tail of table index is (-1: unknown).
func (s *standby) lagOf(index int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.behind[index]; ok {
		return n
	}
	return -1
}

// tail follows one table's changelog partition until ctx is done,
// restarting with backoff after errors.
func (s *standby) tail(ctx context.Context, d *partition.Table) {
	log := s.rt.log.With("partition", s.p, "table", d.Name)
	lag := s.lag.WithLabelValues(d.Name, strconv.Itoa(int(s.p)))
	defer s.lag.DeleteLabelValues(d.Name, strconv.Itoa(int(s.p)))
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := s.follow(ctx, d, lag)
		if ctx.Err() != nil {
			return
		}
		delay := kafkaBackoff(attempt)
		log.Warn(s.what+" tailer failed; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// follow tails one table's changelog partition into its shard from where
// the shard is, until ctx is done or an error.
func (s *standby) follow(ctx context.Context, d *partition.Table, lag prometheus.Gauge) error {
	from, target, err := s.rt.replayFrom(d, s.p, slog.LevelWarn, s.what)
	if err != nil {
		return err
	}
	next := from // the offset after the last one applied
	w := state.NewShardTail(s.rt.store, s.rt.ids[d.Index], s.p)
	defer w.Discard()
	// The changes a flush stores, for the table's change hook.
	type change struct{ key, value []byte }
	var changes []change
	apply := w.Apply
	if d.OnChange != nil {
		apply = func(key, value []byte, offset int64) error {
			if err := w.Apply(key, value, offset); err != nil {
				return err
			}
			changes = append(changes, change{key, value})
			return nil
		}
	}
	flush := func() error {
		if err := w.Flush(); err != nil {
			return err
		}
		for _, c := range changes {
			s.rt.changed(d, d.OnChange, s.p, c.key, c.value)
		}
		changes = changes[:0]
		return nil
	}
	err = kafka.Follow(ctx, s.rt.consumer, d.Changelog, s.p, from, 100*time.Millisecond, apply, func(hwm int64) error {
		if err := flush(); err != nil {
			return err
		}
		if last := w.Last(); last >= 0 {
			next = last + 1
		}
		// sarama knows the high watermark only once a fetch has answered:
		// until then the one read at the start stands.
		behind := max(0, max(hwm, target)-next)
		lag.Set(float64(behind))
		s.mu.Lock()
		s.behind[d.Index] = behind
		if next >= target {
			s.caught[d.Index] = true
		}
		s.mu.Unlock()
		return nil
	})
	// What was applied is consistent with its offset: keep it.
	if ferr := flush(); err == nil {
		err = ferr
	}
	return err
}
