package node

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
	"github.com/mephistohq/mephisto/state/shard"
)

// core is the processing logic of one partition p: it runs the agents'
// handlers, keeps the uncommitted table writes in a write-back cache (one
// entry per key, so the changelog carries one record per key per commit,
// not one per event), and runs the commit protocol. The grain actor drives
// it; nothing else touches it.
type core struct {
	rt     *Node
	p      int32
	sess   sarama.ConsumerGroupSession // fences commits to the generation that created the grain
	kick   chan<- struct{}             // asks for the marked offsets to be committed to the group
	log    *slog.Logger
	tables []*partition.Table // the node's, by index
	shards []*shard.Shard     // by table index
	stats  []tableStats       // by table index
	agents []*partition.Agent
	fanout map[string][]int // topic → indexes in agents

	tracker   *kafka.Tracker                           // records produced since the last commit
	srcDone   map[string]int64                         // last offset processed per source topic, since the last commit
	srcStored map[string]int64                         // last offset per source topic reflected in Pebble
	batches   map[string]*batch                        // partly filled batches, by agent
	latency   map[*partition.Agent]prometheus.Observer // resolved once: a label lookup per event costs
	ec        *partition.Event
	runs      uint // handler runs, for sampling their duration

	// Cache generations: writes go to generation Open; Pebble holds every
	// generation up to Stored. pending is the commit in flight, if any.
	gens    shard.Gens
	pending *pendingCommit
}

// tableStats are a table's counters, resolved once per core.
type tableStats struct{ writes, hits, misses prometheus.Counter }

// latencySample is how many handler runs mephisto_processing_seconds
// counts one of.
const latencySample = 16

func newCore(rt *Node, p int32, sess sarama.ConsumerGroupSession, kick chan<- struct{}) *core {
	rt.mu.Lock()
	agents, fanout := rt.agents, rt.fanout // replaced, never modified, when agents are spawned
	rt.mu.Unlock()
	c := &core{
		rt: rt, p: p, sess: sess, kick: kick,
		log:     rt.log.With("partition", p),
		agents:  agents,
		fanout:  fanout,
		tracker: kafka.NewTracker(),
		tables:  rt.tables,
		gens:    shard.Gens{Open: 1},
	}
	for _, d := range rt.tables {
		id := rt.ids[d.Index]
		read := func(key []byte) ([]byte, bool, error) { return rt.store.Get(id, p, key) }
		c.shards = append(c.shards, shard.New(read, &c.gens, rt.cfg.TableCacheKeys))
		m := rt.metrics
		c.stats = append(c.stats, tableStats{m.tableWrites.WithLabelValues(d.Name), m.cacheHits.WithLabelValues(d.Name), m.cacheMisses.WithLabelValues(d.Name)})
	}
	c.ec = partition.NewEvent(rt.ctx, rt.route, c.shards)
	c.ec.SetBatch(func(item any) {
		b := c.batchOf(c.ec.Agent())
		b.items = append(b.items, item)
	})
	c.latency = make(map[*partition.Agent]prometheus.Observer, len(agents))
	for _, a := range agents {
		c.latency[a] = rt.metrics.latency.WithLabelValues(a.Name)
	}
	return c
}

func (c *core) Fanout(topic string) []int { return c.fanout[topic] }

func (c *core) Load(ctx context.Context, first bool) error {
	for _, sh := range c.shards {
		sh.Reset()
	}
	c.pending = nil                 // its records are replayed
	c.batches = map[string]*batch{} // the grain replays their records
	c.srcDone = map[string]int64{}
	c.srcStored = map[string]int64{}
	if first {
		for _, d := range c.tables {
			if err := c.recoverShard(d); err != nil {
				return fmt.Errorf("recover table %s: %w", d.Name, err)
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
	rt.log.Log(rt.ctx, level, why, "table", d.Name, "partition", p, "stored_offset", stored, "changelog_start", oldest, "changelog_end", hwm)
	if err := st.WipeShard(rt.ids[d.Index], p); err != nil {
		return 0, 0, err
	}
	return oldest, hwm, nil
}

// recoverShard replays the table's changelog partition from the last
// offset the shard applied up to the high watermark, before the grain
// processes any input (DESIGN decision 7).
func (c *core) recoverShard(d *partition.Table) error {
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

func (c *core) Process(_ context.Context, t actors.Task) error {
	m := t.Rec
	if stored, ok := c.srcStored[m.Topic]; ok && m.Offset <= stored {
		return nil // already reflected in the tables (a commit reached Pebble but not Kafka)
	}
	a := c.agents[t.Agent]
	if a.Batch != nil {
		return c.processBatched(a, m)
	}
	if err := c.run(a, m); err != nil {
		return err
	}
	c.stageReply(m, c.ec.Reply(), "")
	c.release()
	c.srcDone[m.Topic] = m.Offset
	return nil
}

// Concurrency returns how many actors run agent i's handler.
func (c *core) Concurrency(i int) int { return c.agents[i].Concurrency }

// ProcessReadOnly runs a task of a concurrent agent on a context of its
// own, with table writes refused. It is safe to call from several
// goroutines while the grain waits. release, run by the grain in offset
// order, produces the task's sends and marks its offset processed.
func (c *core) ProcessReadOnly(_ context.Context, t actors.Task) (func(), error) {
	m := t.Rec
	if stored, ok := c.srcStored[m.Topic]; ok && m.Offset <= stored {
		return func() {}, nil
	}
	a := c.agents[t.Agent]
	ev := partition.NewEvent(c.rt.ctx, c.rt.route, c.shards)
	ev.Reset(m, a)
	ev.SetReadOnly(true)
	start := time.Now()
	if err := a.Run(ev); err != nil {
		return nil, err
	}
	c.latency[a].Observe(time.Since(start).Seconds())
	return func() {
		for _, o := range ev.Staged() {
			c.rt.producer.Send(c.tracker, producerMessage(o))
		}
		c.ec.Unstage()
		c.stageReply(m, ev.Reply(), "")
		c.release()
		c.srcDone[m.Topic] = m.Offset
	}, nil
}

// run runs agent a's handler on m; its effects stay staged in c.ec.
func (c *core) run(a *partition.Agent, m *partition.Record) error {
	ec := c.ec
	ec.Reset(m, a)
	// Reading the clock and observing the histogram for every event costs
	// as much as a simple handler: time one event in latencySample.
	if c.runs++; c.runs%latencySample != 0 {
		return a.Run(ec)
	}
	start := time.Now()
	if err := a.Run(ec); err != nil {
		return err
	}
	c.latency[a].Observe(time.Since(start).Seconds())
	return nil
}

// release produces the staged effects of the event just handled.
func (c *core) release() {
	for _, o := range c.ec.Staged() {
		c.rt.producer.Send(c.tracker, producerMessage(o))
	}
	c.ec.Unstage()
}

// stageReply stages the reply to a request that came through Kafka (a
// record with a reply-to header): the result, or errText if it failed.
func (c *core) stageReply(m *partition.Record, value []byte, errText string) {
	to := m.Header(headerReplyTo)
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
	corr := m.Header(headerCorrelationID)
	headers := []partition.Header{{Key: headerCorrelationID, Value: []byte(corr)}}
	if errText != "" {
		headers = append(headers, partition.Header{Key: headerError, Value: []byte(errText)})
	}
	key := m.Key
	if corr != "" {
		key = []byte(corr)
	}
	c.ec.Stage(partition.Output{Topic: topic, Partition: p, Key: key, Value: value, Headers: headers})
}

// Direct handles a message sent straight to this grain's PID: the agent's
// handler runs like for a record (its table writes and sends commit with
// the next commit), and the reply, or the error, goes back in an envelope.
// Nothing durable records the request itself: the sender retries.
func (c *core) Direct(_ context.Context, env *envelopepb.Envelope) (out *envelopepb.Envelope) {
	out = &envelopepb.Envelope{Agent: env.Agent, CorrelationId: env.CorrelationId}
	var a *partition.Agent
	for _, d := range c.agents {
		if d.Name == env.Agent {
			a = d
		}
	}
	if a == nil {
		out.Error = fmt.Sprintf("no agent %q on this node", env.Agent)
		return out
	}
	if a.Batch != nil {
		out.Error = fmt.Sprintf("agent %s takes batches from its topic only: send through the topic", a.Name)
		return out
	}
	// A concurrent agent's handler may not write tables, whichever path
	// the event takes.
	c.ec.SetReadOnly(a.Concurrency > 1)
	defer c.ec.SetReadOnly(false)
	m := &partition.Record{Partition: c.p, Offset: -1, Key: env.Key, Value: env.Value, Timestamp: time.Now()}
	for _, h := range env.Headers {
		m.Headers = append(m.Headers, partition.Header{Key: h.Key, Value: h.Value})
	}
	defer func() {
		if r := recover(); r != nil {
			c.ec.Unstage()
			out.Error = fmt.Sprintf("handler panicked: %v", r)
			c.log.Warn("direct message: handler panicked", "agent", a.Name, "panic", fmt.Sprint(r))
		}
	}()
	if err := c.run(a, m); err != nil {
		c.ec.Unstage()
		out.Error = err.Error()
		c.log.Warn("direct message failed (the sender gets the error if it waits for a reply)", "agent", a.Name, "err", err)
		return out
	}
	c.release()
	out.Value = c.ec.Reply()
	return out
}

func (c *core) GiveUp(_ context.Context, t actors.Task, cause error) error {
	m, a := t.Rec, c.agents[t.Agent]
	attrs := []any{"agent", a.Name, "topic", m.Topic, "offset", m.Offset, "err", cause}
	switch a.Policy {
	case partition.DeadLetter:
		p, err := c.rt.partitionFor(a.DeadLetterTopic, nil, false, m.Partition)
		if err != nil {
			return err
		}
		headers := make([]partition.Header, 0, len(m.Headers)+5)
		headers = append(headers, m.Headers...)
		headers = append(headers,
			partition.Header{Key: partition.HeaderError, Value: []byte(cause.Error())},
			partition.Header{Key: partition.HeaderAgent, Value: []byte(a.Name)},
			partition.Header{Key: partition.HeaderTopic, Value: []byte(m.Topic)},
			partition.Header{Key: partition.HeaderPartition, Value: []byte(strconv.Itoa(int(m.Partition)))},
			partition.Header{Key: partition.HeaderOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		)
		c.rt.producer.Send(c.tracker, producerMessage(partition.Output{
			Topic: a.DeadLetterTopic, Partition: p, Key: m.Key, Value: m.Value, Headers: headers}))
		c.rt.metrics.deadLetters.WithLabelValues(a.Name).Inc()
		c.log.Warn("record sent to the dead-letter topic; processing goes on", append(attrs, "dead_letter_topic", a.DeadLetterTopic)...)
	case partition.Skip:
		c.rt.metrics.skipped.WithLabelValues(a.Name).Inc()
		c.log.Warn("record skipped by the agent's error policy", attrs...)
	case partition.Stop:
		c.ec.Unstage()
		c.stageReply(m, nil, cause.Error())
		c.release()
		c.log.Error("partition STOPPED by the agent's error policy: fix the cause, then restart the worker", attrs...)
		return fmt.Errorf("%w: agent %s, %s/%d@%d: %w", partition.ErrPartitionStopped, a.Name, m.Topic, m.Partition, m.Offset, cause)
	}
	c.ec.Unstage()
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
		return false, partition.ErrDeferred // never commit past records waiting in a batch
	}
	if c.idle() {
		return false, nil
	}
	pc := &pendingCommit{tracker: c.tracker, gen: c.gens.Open, src: c.srcDone, rows: make([][]shard.Row, len(c.shards))}
	for i, sh := range c.shards {
		c.flushStats(i)
		pc.rows[i] = sh.Freeze()
		for _, r := range pc.rows[i] {
			pm := &sarama.ProducerMessage{Topic: c.tables[i].Changelog, Partition: c.p, Key: sarama.StringEncoder(r.Key)}
			if !r.Absent {
				pm.Value = sarama.ByteEncoder(r.Raw)
			}
			c.rt.producer.Send(pc.tracker, pm)
		}
	}
	c.tracker = kafka.NewTracker()
	c.srcDone = map[string]int64{}
	c.gens.Open++
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

// flushStats adds table i's counts since the last call to the metrics.
func (c *core) flushStats(i int) {
	w, h, m := c.shards[i].Stats()
	if w > 0 {
		c.stats[i].writes.Add(float64(w))
	}
	if h > 0 {
		c.stats[i].hits.Add(float64(h))
	}
	if m > 0 {
		c.stats[i].misses.Add(float64(m))
	}
}

// pendingCommit is a commit whose changelog records are in flight.
type pendingCommit struct {
	tracker *kafka.Tracker   // the records it waits for
	gen     uint64           // the cache generation it stores
	rows    [][]shard.Row    // per shard, the writes it stores
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
	for i, d := range c.tables {
		id := c.rt.ids[d.Index]
		for _, r := range pc.rows[i] {
			if r.Absent {
				b.Delete(id, c.p, []byte(r.Key))
			} else {
				b.Set(id, c.p, []byte(r.Key), r.Raw)
			}
		}
		if off, ok := acked[kafka.TopicPartition{Topic: d.Changelog, Partition: c.p}]; ok {
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
	c.pending, c.gens.Stored = nil, pc.gen
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
		sh.Evict()
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
		if sh.Dirty() {
			return false
		}
	}
	return true
}

// producerMessage is o as sarama sends it.
func producerMessage(o partition.Output) *sarama.ProducerMessage {
	pm := &sarama.ProducerMessage{Topic: o.Topic, Partition: o.Partition, Key: bytesEncoder(o.Key), Value: bytesEncoder(o.Value)}
	if len(o.Headers) > 0 {
		pm.Headers = make([]sarama.RecordHeader, len(o.Headers))
		for i, h := range o.Headers {
			pm.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
	}
	return pm
}

// bytesEncoder keeps a nil key nil on the wire (sarama.ByteEncoder(nil)
// would be an empty, non-null key).
func bytesEncoder(b []byte) sarama.Encoder {
	if b == nil {
		return nil
	}
	return sarama.ByteEncoder(b)
}

var _ actors.Core = (*core)(nil)
