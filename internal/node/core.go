package node

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
)

// partitionIO is what the grain of partition p does against Kafka and
// Pebble for its state machine (actors.IO): recover and load the
// partition, produce its records under one tracker per commit epoch,
// store its commits, and mark its offsets in the consumer group.
type partitionIO struct {
	rt     *Node
	p      int32
	log    *slog.Logger
	topics []string // the source topics
	// mark marks a source partition's next offset in the group session
	// that created the grain (which fences it to that generation); commit
	// asks for the marks to be committed to the group.
	mark    func(topic string, p int32, next int64)
	commit  func()
	tracker *kafka.Tracker // the records produced in the current epoch
	wrote   bool           // a commit was stored since the last Mark
	// Under exactly-once: the partition's transactional producer (started
	// anew by every Load, which fences its predecessor and aborts what it
	// left open) and the group membership its offset commits name.
	txn   *kafka.TxnProducer
	group *sarama.ConsumerGroupMetadata
}

// TxnID is the transactional id of partition p's producer: one per app
// and partition, the same on every node, so that the producer a node
// starts when it takes the partition fences the one of the node that had
// it ("/" cannot occur in an app's name).
func TxnID(app string, p int32) string { return "partition/" + app + "/" + strconv.Itoa(int(p)) }

// Load recovers the tables' shards on the first start, then reads the
// last input offsets the store reflects.
func (c *partitionIO) Load(first bool) (map[string]int64, error) {
	eos := c.rt.cfg.ExactlyOnce
	if eos {
		// Before anything is read: the new producer fences the old one
		// and aborts its open transaction, so what is committed (the
		// changelogs, the group's offsets) stops moving.
		if err := c.startTxn(); err != nil {
			return nil, err
		}
	}
	c.tracker = kafka.NewTracker() // what the last incarnation sent is dropped with it
	// Under exactly-once every load replays the changelogs' tails: a
	// transaction may have committed without its rows reaching Pebble
	// (a crash, a failed write), and Pebble is then behind Kafka.
	if first || eos {
		for _, d := range c.rt.tables {
			if err := c.recoverShard(d); err != nil {
				return nil, fmt.Errorf("recover table %s: %w", d.Name, err)
			}
		}
		c.rt.mu.Lock()
		delete(c.rt.promoted, c.p)
		c.rt.mu.Unlock()
	}
	stored := map[string]int64{}
	for _, topic := range c.topics {
		off, ok, err := c.rt.store.SourceOffset(topic, c.p)
		if err != nil {
			return nil, err
		}
		if ok {
			stored[topic] = off
		}
	}
	if eos {
		// The group's offsets, committed by the transactions, are ahead
		// of Pebble's after such a crash: what they cover is done.
		next, err := kafka.CommittedOffsets(c.rt.admin, c.rt.spec.App, c.topics, c.p)
		if err != nil {
			return nil, fmt.Errorf("read the group's committed offsets: %w", err)
		}
		var ahead map[string]int64
		for topic, n := range next {
			if off, ok := stored[topic]; !ok || n-1 > off {
				stored[topic] = n - 1
				if ahead == nil {
					ahead = map[string]int64{}
				}
				ahead[topic] = n - 1
			}
		}
		// Pebble's rows were just brought up to those transactions by the
		// changelog replay: store their offsets too, so that Pebble stays
		// whole even if the group's offsets are later lost (retention) and
		// no commit of this partition rewrites them.
		if len(ahead) > 0 {
			b := c.rt.store.NewBatch()
			for topic, off := range ahead {
				b.SetSourceOffset(topic, c.p, off)
			}
			if err := b.Commit(); err != nil {
				return nil, fmt.Errorf("store the committed input offsets: %w", err)
			}
		}
	}
	return stored, nil
}

// startTxn replaces the partition's transactional producer.
func (c *partitionIO) startTxn() error {
	if c.txn != nil {
		_ = c.txn.Close()
		c.txn = nil
	}
	rt := c.rt
	cfg := rt.net.TxnConfig(rt.spec.App+"-"+rt.cfg.NodeID+"-txn-"+strconv.Itoa(int(c.p)), TxnID(rt.spec.App, c.p), rt.cfg.TxnTimeout)
	txn, err := kafka.NewTxnProducer(rt.brokers, cfg, c.log)
	if err != nil {
		return err
	}
	c.txn = txn
	return nil
}

// Close stops the transactional producer, if any: an open transaction is
// aborted.
func (c *partitionIO) Close() {
	if c.txn != nil {
		_ = c.txn.Close()
		c.txn = nil
	}
}

// Send produces outs under the current epoch's tracker (and, under
// exactly-once, in the epoch's transaction).
func (c *partitionIO) Send(outs []partition.Output) {
	type sender interface {
		Send(*kafka.Tracker, *sarama.ProducerMessage)
		SendFrom(*kafka.Tracker, *sarama.ProducerMessage, any)
	}
	var p sender = c.rt.producer
	if c.txn != nil {
		p = c.txn
	}
	for i := range outs {
		o := &outs[i]
		if o.From != nil { // a failure to produce it is laid at its input record's door
			origin := *o // outs is reused by the partition's next Ready
			p.SendFrom(c.tracker, kafka.Message(origin), &origin)
			continue
		}
		p.Send(c.tracker, kafka.Message(*o))
	}
}

// Seal ends the current epoch; its tracker reports when every record is
// acknowledged, with the changelog offsets the commit stores. Under
// exactly-once the epoch's transaction is then committed with the input
// offsets, and the commit counts as acknowledged once it is.
func (c *partitionIO) Seal(sources map[string]int64) (<-chan struct{}, func() (map[string]int64, error)) {
	t := c.tracker
	c.tracker = kafka.NewTracker()
	ours := func(acked map[kafka.TopicPartition]int64) map[string]int64 {
		offsets := make(map[string]int64, len(acked))
		for tp, off := range acked {
			if tp.Partition == c.p {
				offsets[tp.Topic] = off
			}
		}
		return offsets
	}
	if c.txn == nil {
		return t.Idle(), func() (map[string]int64, error) {
			acked, err := t.Wait(c.rt.ctx)
			if err != nil {
				return nil, produceError(err) // the grain fails; its restart drops the commit and replays its records
			}
			return ours(acked), nil
		}
	}
	txn, group := c.txn, c.group
	txn.Seal() // what the grain sends from now on goes into the next transaction
	next := make(map[string]map[int32]int64, len(sources))
	for topic, off := range sources {
		next[topic] = map[int32]int64{c.p: off + 1}
	}
	done := make(chan struct{})
	var offsets map[string]int64
	var err error
	go func() {
		defer close(done)
		acked, werr := txn.Wait(c.rt.ctx, t)
		if werr != nil {
			err = c.txnFailed(produceError(werr)) // the restart's new producer aborts the transaction
			return
		}
		c.rt.crashPoint("txn:produced")
		if cerr := txn.Commit(next, group); cerr != nil {
			err = c.txnFailed(cerr)
			return
		}
		offsets = ours(acked)
	}()
	return done, func() (map[string]int64, error) { return offsets, err }
}

// txnFailed says why a transaction could not commit, for the log and the
// node's readiness: the grain restarts from its last commit with a new
// producer either way.
func (c *partitionIO) txnFailed(err error) error {
	if kafka.Fenced(err) {
		c.rt.metrics.txnAborts.WithLabelValues("fenced").Inc()
		return fmt.Errorf("%w (another producer took over partition %d's transactional id, or the broker aborted the transaction after --transaction-timeout %v: the partition restarts from its last commit)", err, c.p, c.rt.cfg.TxnTimeout)
	}
	c.rt.metrics.txnAborts.WithLabelValues("error").Inc()
	return fmt.Errorf("%w (the transaction is aborted: the partition restarts from its last commit)", err)
}

// produceError is a tracker's error as the partition machine takes it: a
// *partition.ProduceError naming the output, and whether trying again can
// help.
func produceError(err error) error {
	var se *kafka.SendError
	if !errors.As(err, &se) {
		return err
	}
	pe := &partition.ProduceError{Output: partition.Output{Topic: se.Topic, Partition: se.Partition}, Err: se.Err, Permanent: kafka.Permanent(se.Err)}
	if o, ok := se.Origin.(*partition.Output); ok {
		pe.Output = *o
	}
	return pe
}

// Write stores a commit in one synced Pebble batch: the rows, the
// changelog offsets they reflect and the source offsets.
func (c *partitionIO) Write(w *partition.Write) error {
	c.rt.crashPoint("commit:acked")
	b := c.rt.store.NewBatch()
	for i, rows := range w.Rows {
		id := c.rt.ids[i]
		for _, r := range rows {
			if r.Absent {
				b.Delete(id, c.p, []byte(r.Key))
			} else {
				b.Set(id, c.p, []byte(r.Key), r.Raw)
			}
		}
	}
	for i, spans := range w.Spans { // after the rows: a window written and expired in one commit ends deleted
		id := c.rt.ids[i]
		for _, sp := range spans {
			if sp.One() {
				b.Delete(id, c.p, sp.Lo) // a point tombstone is cheaper to read past than a range
			} else {
				b.DeleteRange(id, c.p, sp.Lo, sp.Hi)
			}
		}
	}
	for i, off := range w.Changelog {
		b.SetChangelogOffset(c.rt.ids[i], c.p, off)
	}
	for topic, off := range w.Sources {
		b.SetSourceOffset(topic, c.p, off)
	}
	if err := b.Commit(); err != nil {
		return err
	}
	c.rt.crashPoint("commit:stored")
	c.wrote = true
	for i, rows := range w.Rows {
		if hook := c.rt.tables[i].OnChange; hook != nil {
			for _, r := range rows {
				value := r.Raw
				if r.Absent {
					value = nil
				}
				c.rt.changed(c.rt.tables[i], hook, c.p, []byte(r.Key), value)
			}
		}
	}
	return nil
}

// changed calls a table's change hook, containing a panic in it: a hook
// is user code on the path of a commit or a tail.
func (rt *Node) changed(d *partition.Table, hook func(int32, []byte, []byte) error, p int32, key, value []byte) {
	defer func() {
		if r := recover(); r != nil {
			rt.log.Error("a table's change hook panicked; the change itself is stored", "table", d.Name, "partition", p, "panic", r)
		}
	}()
	if err := hook(p, key, value); err != nil {
		rt.log.Warn("a table's change hook failed; the change itself is stored", "table", d.Name, "partition", p, "err", err)
	}
}

// Mark marks the next offsets for the group's commit and asks for it.
// Under exactly-once the offsets went with the commit's transaction: a
// second, plain commit could move them back after a later transaction.
func (c *partitionIO) Mark(next map[string]int64) {
	if c.rt.cfg.ExactlyOnce {
		if c.wrote {
			c.wrote = false
			c.rt.crashPoint("commit:marked")
		}
		return
	}
	for topic, off := range next {
		c.mark(topic, c.p, off)
	}
	c.commit()
	if c.wrote { // the marks of a commit, not those a restart makes of the store
		c.wrote = false
		c.rt.crashPoint("commit:marked")
	}
}

// replayFrom returns the changelog offset from which the shard (d, p) must
// be replayed and the offset after the last record to replay (the end of
// what the node's changelog reader is given: read committed under
// exactly-once). A shard whose stored offset does not
// fit the changelog (ahead of its end: the topic was recreated; before its
// start: retention dropped records it never applied) is wiped, logged at
// level as what, and replayed from the start.
func (rt *Node) replayFrom(d *partition.Table, p int32, level slog.Level, what string) (from, hwm int64, err error) {
	st := rt.store
	stored, ok, err := st.ChangelogOffset(rt.ids[d.Index], p)
	if err != nil {
		return 0, 0, err
	}
	oldest, hwm, err := kafka.Bounds(rt.cclient, d.Changelog, p)
	if err != nil {
		return 0, 0, err
	}
	// The replay ends after the last record it is given: the changelog
	// may end with a transaction marker.
	upto := func(from int64) (int64, int64, error) {
		end, err := kafka.DataEnd(rt.cclient, d.Changelog, p, from, hwm)
		return from, end, err
	}
	var why string
	switch {
	case !ok:
		return upto(oldest)
	case stored >= hwm:
		why = what + " is AHEAD of its changelog (was the changelog topic deleted or recreated?): wiping the shard and rebuilding it from the changelog"
	case stored+1 < oldest:
		why = "changelog no longer holds the records after the " + what + "'s offset (retention?): wiping the shard and rebuilding it"
	default:
		return upto(stored + 1)
	}
	rt.log.Log(rt.ctx, level, why, "table", d.Name, "partition", p, "stored_offset", stored, "changelog_start", oldest, "changelog_end", hwm)
	if err := st.WipeShard(rt.ids[d.Index], p); err != nil {
		return 0, 0, err
	}
	return upto(oldest)
}

// recoverShard replays the table's changelog partition from the last
// offset the shard applied up to the high watermark, before the grain
// processes any input (DESIGN decision 7).
func (c *partitionIO) recoverShard(d *partition.Table) error {
	st, topic, id := c.rt.store, d.Changelog, c.rt.ids[d.Index]
	from, hwm, err := c.rt.replayFrom(d, c.p, slog.LevelError, "table shard")
	if err != nil {
		return err
	}
	total := hwm - from
	remaining := c.rt.metrics.recoveryRemaining.WithLabelValues(d.Name, strconv.Itoa(int(c.p)))
	c.rt.metrics.recoveryLast.WithLabelValues(d.Name, strconv.Itoa(int(c.p))).Set(float64(max(0, total)))
	c.rt.mu.Lock()
	promoted := c.rt.promoted[c.p]
	c.rt.mu.Unlock()
	if promoted {
		c.log.Info("promoted standby shard: replaying only the changelog tail", "table", d.Name, "tail_records", max(0, total))
	}
	if total <= 0 {
		remaining.Set(0)
		return nil
	}
	remaining.Set(float64(total))
	start := time.Now()
	c.log.Info("recovering table shard from changelog", "table", d.Name, "from", from, "to", hwm, "records", total)
	recovered := c.rt.metrics.recoveryRecords.WithLabelValues(d.Name)
	// A changelog holds many records per key until compaction catches up:
	// keep the last per key in a window and write the window to Pebble at
	// once, so that Pebble sees each key once per window, not once per
	// record. The window's values are copies (a record's value pins its
	// whole fetch buffer) and its slots are reused as keys repeat.
	const windowKeys, windowRecords = 50_000, 500_000
	w := state.NewRestoreWindow()
	var n, last int64 = 0, -1
	lastLog := start
	flush := func(sync bool) error {
		if last < 0 {
			return nil
		}
		b := st.NewBatch()
		if w.Len() >= state.IngestMinKeys {
			// A window this large goes straight into a sorted table
			// file: through the memtable, Pebble would flush it and
			// then compact it, and that was most of a restore's CPU.
			// The offset follows in the batch below: a crash in
			// between leaves rows newer than the offset, which the
			// replay from the offset writes again, the same.
			if err := w.Ingest(c.rt.ctx, st, id, c.p); err != nil {
				b.Discard()
				return err
			}
		} else {
			w.WriteTo(b, id, c.p)
		}
		b.SetChangelogOffset(id, c.p, last)
		recovered.Add(float64(w.Records()))
		remaining.Set(float64(hwm - 1 - last))
		w.Reset()
		// A crash may lose an unsynced batch but never splits one: the
		// shard's offset stays with its rows and the replay resumes there.
		if sync {
			return b.Commit()
		}
		return b.CommitNoSync()
	}
	err = kafka.ReadRange(c.rt.ctx, c.rt.consumer, topic, c.p, from, hwm, func(m *sarama.ConsumerMessage) error {
		w.Put(m.Key, m.Value)
		n, last = n+1, m.Offset
		if w.Len() < windowKeys && w.Records() < windowRecords {
			return nil
		}
		if err := flush(false); err != nil {
			return err
		}
		if now := time.Now(); now.Sub(lastLog) > 2*time.Second {
			lastLog = now
			done := float64(m.Offset-from+1) / float64(total)
			rate := float64(n) / now.Sub(start).Seconds()
			eta := time.Duration(float64(hwm-1-m.Offset)/rate) * time.Second
			c.log.Info("recovery progress", "table", d.Name, "percent", int(done*100), "records", n, "eta", eta.Round(time.Second))
		}
		return nil
	})
	if err == nil {
		err = flush(true)
	}
	if err != nil {
		return err
	}
	remaining.Set(0)
	c.log.Info("recovered table shard", "table", d.Name, "records", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

var _ actors.IO = (*partitionIO)(nil)
