package mephisto

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
	"github.com/prometheus/client_golang/prometheus"
)

// core is the processing logic of one partition p: it runs the agents'
// handlers, keeps the uncommitted table writes in a write-back cache (one
// entry per key, so the changelog carries one record per key per commit,
// not one per event), and runs the commit protocol. The grain actor drives
// it; nothing else touches it.
type core struct {
	rt     *runtime
	p      int32
	sess   sarama.ConsumerGroupSession // fences commits to the generation that created the grain
	kick   chan<- struct{}             // asks for the marked offsets to be committed to the group
	log    *slog.Logger
	shards []*shard
	agents []*agentDef
	fanout map[string][]int // topic → indexes in agents

	tracker   *kafka.Tracker                    // records produced since the last commit
	srcDone   map[string]int64                  // last offset processed per source topic, since the last commit
	srcStored map[string]int64                  // last offset per source topic reflected in Pebble
	batches   map[string]*batch                 // partly filled batches, by agent
	latency   map[*agentDef]prometheus.Observer // resolved once: a label lookup per event costs
	ec        eventCtx
	runs      uint // handler runs, for sampling their duration

	// Cache generations: writes go to generation open; Pebble holds every
	// generation up to stored. pending is the commit in flight, if any.
	open, stored uint64
	pending      *pendingCommit
}

// latencySample is how many handler runs mephisto_processing_seconds
// counts one of.
const latencySample = 16

func (s *shard) get(key []byte) ([]byte, bool, error) {
	return s.core.rt.store.Get(s.def.id, s.core.p, key)
}

func newCore(rt *runtime, p int32, sess sarama.ConsumerGroupSession, kick chan<- struct{}) *core {
	rt.mu.Lock()
	agents, fanout := rt.agents, rt.fanout // replaced, never modified, when agents are spawned
	rt.mu.Unlock()
	c := &core{
		rt: rt, p: p, sess: sess, kick: kick,
		log:     rt.log.With("partition", p),
		agents:  agents,
		fanout:  fanout,
		tracker: kafka.NewTracker(),
		open:    1,
	}
	for _, d := range rt.tables {
		c.shards = append(c.shards, newShard(c, d, rt.cfg.TableCacheKeys))
	}
	c.ec = eventCtx{Context: rt.ctx, core: c}
	c.latency = make(map[*agentDef]prometheus.Observer, len(agents))
	for _, a := range agents {
		c.latency[a] = rt.metrics.latency.WithLabelValues(a.name)
	}
	return c
}

func (c *core) Fanout(topic string) []int { return c.fanout[topic] }

func (c *core) Load(ctx context.Context, first bool) error {
	for _, sh := range c.shards {
		sh.reset()
	}
	c.pending = nil                 // its records are replayed
	c.batches = map[string]*batch{} // the grain replays their records
	c.srcDone = map[string]int64{}
	c.srcStored = map[string]int64{}
	if first {
		for _, sh := range c.shards {
			if err := c.recoverShard(sh); err != nil {
				return fmt.Errorf("recover table %s: %w", sh.def.name, err)
			}
		}
		c.rt.mu.Lock()
		delete(c.rt.promoted, c.p)
		c.rt.mu.Unlock()
	}
	for topic := range c.fanout {
		off, ok, err := c.rt.store.SourceOffset(topic, c.p)
		if err != nil {
			return err
		}
		if ok {
			c.srcStored[topic] = off
		}
	}
	return nil
}

// replayFrom returns the changelog offset from which the shard (d, p) must
// be replayed and the changelog's end. A shard whose stored offset does not
// fit the changelog (ahead of its end: the topic was recreated; before its
// start: retention dropped records it never applied) is wiped, logged at
// level as what, and replayed from the start.
func (rt *runtime) replayFrom(d *tableDef, p int32, level slog.Level, what string) (from, hwm int64, err error) {
	st := rt.store
	stored, ok, err := st.ChangelogOffset(d.id, p)
	if err != nil {
		return 0, 0, err
	}
	oldest, hwm, err := kafka.Bounds(rt.cclient, d.changelog, p)
	if err != nil {
		return 0, 0, err
	}
	var why string
	switch {
	case !ok:
		return oldest, hwm, nil
	case stored >= hwm:
		why = what + " is AHEAD of its changelog (was the changelog topic deleted or recreated?): wiping the shard and rebuilding it from the changelog"
	case stored+1 < oldest:
		why = "changelog no longer holds the records after the " + what + "'s offset (retention?): wiping the shard and rebuilding it"
	default:
		return stored + 1, hwm, nil
	}
	rt.log.Log(rt.ctx, level, why, "table", d.name, "partition", p, "stored_offset", stored, "changelog_start", oldest, "changelog_end", hwm)
	if err := st.WipeShard(d.id, p); err != nil {
		return 0, 0, err
	}
	return oldest, hwm, nil
}

// recoverShard replays the table's changelog partition from the last
// offset the shard applied up to the high watermark, before the grain
// processes any input (DESIGN decision 7).
func (c *core) recoverShard(sh *shard) error {
	st, topic, id := c.rt.store, sh.def.changelog, sh.def.id
	from, hwm, err := c.rt.replayFrom(sh.def, c.p, slog.LevelError, "table shard")
	if err != nil {
		return err
	}
	total := hwm - from
	remaining := c.rt.metrics.recoveryRemaining.WithLabelValues(sh.def.name, strconv.Itoa(int(c.p)))
	c.rt.metrics.recoveryLast.WithLabelValues(sh.def.name, strconv.Itoa(int(c.p))).Set(float64(max(0, total)))
	c.rt.mu.Lock()
	promoted := c.rt.promoted[c.p]
	c.rt.mu.Unlock()
	if promoted {
		c.log.Info("promoted standby shard: replaying only the changelog tail", "table", sh.def.name, "tail_records", max(0, total))
	}
	if total <= 0 {
		remaining.Set(0)
		return nil
	}
	remaining.Set(float64(total))
	start := time.Now()
	c.log.Info("recovering table shard from changelog", "table", sh.def.name, "from", from, "to", hwm, "records", total)
	recovered := c.rt.metrics.recoveryRecords.WithLabelValues(sh.def.name)
	// A changelog holds many records per key until compaction catches up:
	// keep the last per key in a window and write the window to Pebble at
	// once, so that Pebble sees each key once per window, not once per
	// record. The window's values are copies (a record's value pins its
	// whole fetch buffer) and its slots are reused as keys repeat.
	const windowKeys, windowRecords = 50_000, 500_000
	w := newRecoveryWindow()
	var n, last int64 = 0, -1
	lastLog := start
	flush := func(sync bool) error {
		if last < 0 {
			return nil
		}
		b := st.NewBatch()
		if len(w.keys) >= ingestMinKeys {
			// A window this large goes straight into a sorted table
			// file: through the memtable, Pebble would flush it and
			// then compact it, and that was most of a restore's CPU.
			// The offset follows in the batch below: a crash in
			// between leaves rows newer than the offset, which the
			// replay from the offset writes again, the same.
			if err := w.ingest(c.rt.ctx, st, id, c.p); err != nil {
				b.Discard()
				return err
			}
		} else {
			w.writeTo(b, id, c.p)
		}
		b.SetChangelogOffset(id, c.p, last)
		recovered.Add(float64(w.records))
		remaining.Set(float64(hwm - 1 - last))
		w.reset()
		// A crash may lose an unsynced batch but never splits one: the
		// shard's offset stays with its rows and the replay resumes there.
		if sync {
			return b.Commit()
		}
		return b.CommitNoSync()
	}
	err = kafka.ReadRange(c.rt.ctx, c.rt.consumer, topic, c.p, from, hwm, func(m *sarama.ConsumerMessage) error {
		w.put(m.Key, m.Value)
		n, last = n+1, m.Offset
		if len(w.index) < windowKeys && w.records < windowRecords {
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
			c.log.Info("recovery progress", "table", sh.def.name, "percent", int(done*100), "records", n, "eta", eta.Round(time.Second))
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
	c.log.Info("recovered table shard", "table", sh.def.name, "records", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// recoveryWindow keeps the last changelog record per key, in first-seen
// order.
type recoveryWindow struct {
	index   map[string]int // key → slot
	keys    [][]byte
	values  [][]byte
	deleted []bool
	records int // records put since the last reset
}

func newRecoveryWindow() *recoveryWindow {
	return &recoveryWindow{index: map[string]int{}}
}

// put records key's latest value (nil: a tombstone).
func (w *recoveryWindow) put(key, value []byte) {
	w.records++
	if i, ok := w.index[string(key)]; ok {
		w.values[i] = append(w.values[i][:0], value...)
		w.deleted[i] = value == nil
		return
	}
	w.index[string(key)] = len(w.keys)
	w.keys = append(w.keys, bytes.Clone(key))
	w.values = append(w.values, bytes.Clone(value))
	w.deleted = append(w.deleted, value == nil)
}

func (w *recoveryWindow) writeTo(b *state.Batch, table uint32, p int32) {
	for i, k := range w.keys {
		if w.deleted[i] {
			b.Delete(table, p, k)
		} else {
			b.Set(table, p, k, w.values[i])
		}
	}
}

// ingestMinKeys is the window size from which a restore writes a window
// as a table file rather than a batch.
const ingestMinKeys = 4096

// ingest writes the window, in key order, as one table file.
func (w *recoveryWindow) ingest(ctx context.Context, st *state.Store, table uint32, p int32) error {
	order := make([]int, len(w.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(w.keys[a], w.keys[b]) })
	in, err := st.NewIngest(table, p)
	if err != nil {
		return err
	}
	for _, i := range order {
		if w.deleted[i] {
			err = in.Delete(w.keys[i])
		} else {
			err = in.Set(w.keys[i], w.values[i])
		}
		if err != nil {
			in.Abort()
			return fmt.Errorf("write restored rows: %w", err)
		}
	}
	return in.Finish(ctx)
}

func (w *recoveryWindow) reset() {
	clear(w.index)
	clear(w.keys)
	clear(w.values)
	w.keys, w.values, w.deleted, w.records = w.keys[:0], w.values[:0], w.deleted[:0], 0
}

func (c *core) Process(_ context.Context, t actors.Task) error {
	m := t.Msg
	if stored, ok := c.srcStored[m.Topic]; ok && m.Offset <= stored {
		return nil // already reflected in the tables (a commit reached Pebble but not Kafka)
	}
	a := c.agents[t.Agent]
	if a.batch != nil {
		return c.processBatched(a, m)
	}
	if err := c.run(a, m); err != nil {
		return err
	}
	c.stageReply(m, c.ec.reply, "")
	c.release()
	c.srcDone[m.Topic] = m.Offset
	return nil
}

// Concurrency returns how many actors run agent i's handler.
func (c *core) Concurrency(i int) int { return c.agents[i].concurrency }

// ProcessReadOnly runs a task of a concurrent agent on a context of its
// own, with table writes refused. It is safe to call from several
// goroutines while the grain waits. release, run by the grain in offset
// order, produces the task's sends and marks its offset processed.
func (c *core) ProcessReadOnly(_ context.Context, t actors.Task) (func(), error) {
	m := t.Msg
	if stored, ok := c.srcStored[m.Topic]; ok && m.Offset <= stored {
		return func() {}, nil
	}
	a := c.agents[t.Agent]
	ec := &eventCtx{Context: c.rt.ctx, core: c, msg: m, agent: a, readOnly: true}
	start := time.Now()
	if err := a.run(ec); err != nil {
		return nil, err
	}
	c.latency[a].Observe(time.Since(start).Seconds())
	return func() {
		for _, pm := range ec.staged {
			c.rt.producer.Send(c.tracker, pm)
		}
		c.ec.staged = c.ec.staged[:0]
		c.stageReply(m, ec.reply, "")
		c.release()
		c.srcDone[m.Topic] = m.Offset
	}, nil
}

// run runs agent a's handler on m; its effects stay staged in c.ec.
func (c *core) run(a *agentDef, m *sarama.ConsumerMessage) error {
	ec := &c.ec
	ec.msg, ec.agent, ec.staged, ec.reply = m, a, ec.staged[:0], nil
	// Reading the clock and observing the histogram for every event costs
	// as much as a simple handler: time one event in latencySample.
	if c.runs++; c.runs%latencySample != 0 {
		return a.run(ec)
	}
	start := time.Now()
	if err := a.run(ec); err != nil {
		return err
	}
	c.latency[a].Observe(time.Since(start).Seconds())
	return nil
}

// release produces the staged effects of the event just handled.
func (c *core) release() {
	for _, pm := range c.ec.staged {
		c.rt.producer.Send(c.tracker, pm)
	}
	c.ec.staged = c.ec.staged[:0]
}

// stageReply stages the reply to a request that came through Kafka (a
// record with a reply-to header): the result, or errText if it failed.
func (c *core) stageReply(m *sarama.ConsumerMessage, value []byte, errText string) {
	to := headerValue(m.Headers, headerReplyTo)
	if to == "" || (value == nil && errText == "") {
		return
	}
	topic, p := replyTarget(to)
	if p < 0 {
		var err error
		if p, err = c.rt.partitionFor(topic, m.Key, true, m.Partition); err != nil {
			c.log.Warn("cannot reply", "reply_to", to, "err", err)
			return
		}
	}
	headers := []sarama.RecordHeader{{Key: []byte(headerCorrelationID), Value: []byte(headerValue(m.Headers, headerCorrelationID))}}
	if errText != "" {
		headers = append(headers, sarama.RecordHeader{Key: []byte(headerError), Value: []byte(errText)})
	}
	key := m.Key
	if corr := headerValue(m.Headers, headerCorrelationID); corr != "" {
		key = []byte(corr)
	}
	c.ec.staged = append(c.ec.staged, &sarama.ProducerMessage{Topic: topic, Partition: p,
		Key: bytesEncoder(key), Value: bytesEncoder(value), Headers: headers})
}

// Direct handles a message sent straight to this grain's PID: the agent's
// handler runs like for a record (its table writes and sends commit with
// the next commit), and the reply, or the error, goes back in an envelope.
// Nothing durable records the request itself: the sender retries.
func (c *core) Direct(_ context.Context, env *envelopepb.Envelope) (out *envelopepb.Envelope) {
	out = &envelopepb.Envelope{Agent: env.Agent, CorrelationId: env.CorrelationId}
	var a *agentDef
	for _, d := range c.agents {
		if d.name == env.Agent {
			a = d
		}
	}
	if a == nil {
		out.Error = fmt.Sprintf("no agent %q on this node", env.Agent)
		return out
	}
	if a.batch != nil {
		out.Error = fmt.Sprintf("agent %s takes batches from its topic only: send through the topic", a.name)
		return out
	}
	// A concurrent agent's handler may not write tables, whichever path
	// the event takes.
	c.ec.readOnly = a.concurrency > 1
	defer func() { c.ec.readOnly = false }()
	m := &sarama.ConsumerMessage{Partition: c.p, Offset: -1, Key: env.Key, Value: env.Value, Timestamp: time.Now()}
	for _, h := range env.Headers {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	defer func() {
		if r := recover(); r != nil {
			c.ec.staged = c.ec.staged[:0]
			out.Error = fmt.Sprintf("handler panicked: %v", r)
			c.log.Warn("direct message: handler panicked", "agent", a.name, "panic", fmt.Sprint(r))
		}
	}()
	if err := c.run(a, m); err != nil {
		c.ec.staged = c.ec.staged[:0]
		out.Error = err.Error()
		c.log.Warn("direct message failed (the sender gets the error if it waits for a reply)", "agent", a.name, "err", err)
		return out
	}
	c.release()
	out.Value = c.ec.reply
	return out
}

func (c *core) GiveUp(_ context.Context, t actors.Task, cause error) error {
	m, a := t.Msg, c.agents[t.Agent]
	attrs := []any{"agent", a.name, "topic", m.Topic, "offset", m.Offset, "err", cause}
	switch a.policy {
	case DeadLetter:
		p, err := c.rt.partitionFor(a.deadLetterTopic, nil, false, m.Partition)
		if err != nil {
			return err
		}
		headers := make([]sarama.RecordHeader, 0, len(m.Headers)+5)
		for _, h := range m.Headers {
			headers = append(headers, *h)
		}
		headers = append(headers,
			sarama.RecordHeader{Key: []byte("mephisto.error"), Value: []byte(cause.Error())},
			sarama.RecordHeader{Key: []byte("mephisto.agent"), Value: []byte(a.name)},
			sarama.RecordHeader{Key: []byte("mephisto.topic"), Value: []byte(m.Topic)},
			sarama.RecordHeader{Key: []byte("mephisto.partition"), Value: []byte(strconv.Itoa(int(m.Partition)))},
			sarama.RecordHeader{Key: []byte("mephisto.offset"), Value: []byte(strconv.FormatInt(m.Offset, 10))},
		)
		c.rt.producer.Send(c.tracker, &sarama.ProducerMessage{
			Topic: a.deadLetterTopic, Partition: p, Key: bytesEncoder(m.Key), Value: bytesEncoder(m.Value), Headers: headers})
		c.rt.metrics.deadLetters.WithLabelValues(a.name).Inc()
		c.log.Warn("record sent to the dead-letter topic; processing goes on", append(attrs, "dead_letter_topic", a.deadLetterTopic)...)
	case Skip:
		c.rt.metrics.skipped.WithLabelValues(a.name).Inc()
		c.log.Warn("record skipped by the agent's error policy", attrs...)
	case Stop:
		c.ec.staged = c.ec.staged[:0]
		c.stageReply(m, nil, cause.Error())
		c.release()
		c.log.Error("partition STOPPED by the agent's error policy: fix the cause, then restart the worker", attrs...)
		return fmt.Errorf("%w: agent %s, %s/%d@%d: %w", actors.ErrPartitionStopped, a.name, m.Topic, m.Partition, m.Offset, cause)
	}
	c.ec.staged = c.ec.staged[:0]
	c.stageReply(m, nil, cause.Error())
	c.release()
	c.srcDone[m.Topic] = m.Offset
	return nil
}

// StartCommit begins the commit protocol (DESIGN decision 5) for
// everything processed so far, and returns without waiting: (a) the
// write-back cache's changelog records are produced, and the commit waits
// for them and every record produced since the last commit to be
// acknowledged. Processing goes on meanwhile, into a new generation of the
// cache and a new tracker; acked (if not nil) is called, from another
// goroutine, once the acknowledgements are in, and FinishCommit then
// completes steps (b) and (c). Overlapping step (a) with processing matters:
// waiting for it stalls the partition for a produce round trip per commit.
// It returns false when there was nothing to commit. At most one commit is
// in flight: an earlier one is finished first.
func (c *core) StartCommit(ctx context.Context, acked func()) (bool, error) {
	if err := c.FinishCommit(ctx); err != nil {
		return false, err
	}
	pending, err := c.flushDue(false)
	if err != nil {
		return false, err
	}
	if pending {
		return false, actors.ErrDeferred // never commit past records waiting in a batch
	}
	if c.idle() {
		return false, nil
	}
	pc := &pendingCommit{tracker: c.tracker, gen: c.open, src: c.srcDone, rows: make([][]row, len(c.shards))}
	for i, sh := range c.shards {
		sh.flushStats()
		pc.rows[i] = sh.freeze()
		for _, r := range pc.rows[i] {
			pm := &sarama.ProducerMessage{Topic: sh.def.changelog, Partition: c.p, Key: sarama.StringEncoder(r.key)}
			if !r.absent {
				pm.Value = sarama.ByteEncoder(r.raw)
			}
			c.rt.producer.Send(pc.tracker, pm)
		}
	}
	c.tracker = kafka.NewTracker()
	c.srcDone = map[string]int64{}
	c.open++
	c.pending = pc
	if acked != nil {
		idle := pc.tracker.Idle()
		go func() {
			select {
			case <-idle:
				acked()
			case <-c.rt.ctx.Done():
			}
		}()
	}
	return true, nil
}

// pendingCommit is a commit whose changelog records are in flight.
type pendingCommit struct {
	tracker *kafka.Tracker   // the records it waits for
	gen     uint64           // the cache generation it stores
	rows    [][]row          // per shard, the writes it stores
	src     map[string]int64 // the input offsets it reflects
}

// FinishCommit completes the commit StartCommit began, if any: it waits
// for (a), then (b) writes one synced Pebble batch holding the rows and the
// changelog and source offsets they reflect, and (c) marks the source
// offsets for the consumer group's commit.
func (c *core) FinishCommit(context.Context) error {
	pc := c.pending
	if pc == nil {
		return nil
	}
	acked, err := pc.tracker.Wait(c.rt.ctx)
	if err != nil {
		return err // the grain fails; its restart drops the commit and replays its records
	}
	c.rt.crashPoint("commit:acked")

	b := c.rt.store.NewBatch()
	for i, sh := range c.shards {
		id := sh.def.id
		for _, r := range pc.rows[i] {
			if r.absent {
				b.Delete(id, c.p, []byte(r.key))
			} else {
				b.Set(id, c.p, []byte(r.key), r.raw)
			}
		}
		if off, ok := acked[kafka.TopicPartition{Topic: sh.def.changelog, Partition: c.p}]; ok {
			b.SetChangelogOffset(id, c.p, off)
		}
	}
	for topic, off := range pc.src {
		b.SetSourceOffset(topic, c.p, off)
	}
	if b.Len() == 0 {
		b.Discard()
		c.pending = nil
		return nil
	}
	if err := b.Commit(); err != nil {
		return err
	}
	c.rt.crashPoint("commit:stored")
	c.pending, c.stored = nil, pc.gen
	for topic, off := range pc.src {
		c.srcStored[topic] = off
		c.sess.MarkOffset(topic, c.p, off+1, "")
	}
	if len(pc.src) > 0 {
		select {
		case c.kick <- struct{}{}:
		default: // a commit is already due
		}
	}
	c.rt.crashPoint("commit:marked")
	c.rt.metrics.commits.Inc()
	for _, sh := range c.shards {
		sh.evict()
	}
	return nil
}

// Commit runs the whole commit protocol and returns once it is done.
func (c *core) Commit(ctx context.Context) error {
	if _, err := c.StartCommit(ctx, nil); err != nil {
		return err
	}
	return c.FinishCommit(ctx)
}

// idle reports whether there is nothing to commit: no table writes, no
// input processed, no record in flight.
func (c *core) idle() bool {
	if len(c.srcDone) > 0 || c.tracker.Pending() > 0 {
		return false
	}
	for _, sh := range c.shards {
		if len(sh.dirty) > 0 {
			return false
		}
	}
	return true
}

var _ actors.Core = (*core)(nil)
