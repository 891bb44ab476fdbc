package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mephistohq/mephisto/state/shard"
)

// Config configures a Machine.
type Config struct {
	Partition int32
	Agents    []*Agent
	Tables    []*Table
	// Readers read the store's committed rows of this partition, by table
	// index: the shards' misses.
	Readers []shard.Reader
	// Scanners read every committed row of this partition's shard, by
	// table index: windowed tables rebuild their window index from them at
	// each Restart. Nil for other tables.
	Scanners []Scanner
	// CacheKeys is how many committed keys each shard keeps decoded.
	CacheKeys int
	// Route picks the partitions of the records handlers send.
	Route Router
	// MaxRecordBytes is the producer's limit on a record: a send or table
	// write over it fails with ErrTooLarge, and a dead letter over it
	// goes without its body. 0: no limit.
	MaxRecordBytes int
	// MaxAttempts is how often a record is tried before its agent's error
	// policy applies. Default 3.
	MaxAttempts int
	// CommitInterval is how often the driver calls Tick. A partition that
	// has caught up (Deliver with caughtUp) commits at once, but not
	// sooner than a tenth of CommitInterval (at most 50ms) after its last
	// commit began. Default 500ms.
	CommitInterval time.Duration
	// MaxUncommitted starts a commit once this many records are
	// uncommitted. Default 20,000: the records are kept for a replay after
	// a failure, and each commit produces a changelog record per key
	// written since the last, so this trades memory for changelog traffic.
	MaxUncommitted int
	// Context is the handlers' context.
	Context context.Context
	Log     *slog.Logger
	// Now reads the wall clock: commit spacing and handler timings.
	// Default time.Now.
	Now func() time.Time
	// AppNow reads the app's clock, which batch windows are measured on.
	// Default Now.
	AppNow func() time.Time
	// Parallel runs the handlers of an agent with Concurrency n > 1 (up to
	// n at once) and returns their errors in order. Default: one after the
	// other.
	Parallel func(n int, jobs []func() error) []error
	// Observer is told what the metrics count; nil fields are skipped.
	Observer Observer
}

// Observer receives what a partition's metrics count.
type Observer struct {
	Handled    func(agent int, took time.Duration) // one handler run in latencySample
	DeadLetter func(agent int)                     // a dead letter was written (its commit is stored)
	Skipped    func(agent int)
	Tables     func(table int, writes, hits, misses int) // at each commit
	Committed  func(took time.Duration)                  // a commit was stored, took after it started
	Late       func(table int)                           // an event came too late for its windows and was dropped
}

// Ready is what the driver must do after an input, in order: produce
// Outputs; if Commit is set, produce its changelog records too and end the
// epoch there (call Acked when every record produced so far is
// acknowledged); write Write to the store, synced, and call Stored; mark
// Marks in the consumer group and commit them; answer the deliveries when
// Processed; stop on Stopped; restart the partition (after a backoff) on
// Fail; call Wake after WakeAfter. Its slices are reused by the next
// input.
type Ready struct {
	Outputs []Output
	Commit  *CommitStart
	Write   *Write
	// Marks are the next offsets of the source topics a stored commit
	// reflects.
	Marks map[string]int64
	// Processed says every record delivered so far is processed.
	Processed bool
	// Stopped is set once the error policy stopped the partition: answer
	// every delivery with it.
	Stopped error
	// Fail is set when a handler failed: restart the partition from its
	// last commit (Restart) after a backoff.
	Fail error
	// Drained answers a Drain: the commit it asked for is stored (DrainErr
	// nil) or cannot be.
	Drained  bool
	DrainErr error
	// WakeAfter asks for a call to Wake after that long (0: none).
	WakeAfter time.Duration
}

// CommitStart begins commit Seq: its changelog records, one per key
// written since the last commit, and the last input offset per source
// topic it covers (which a transactional driver commits with it).
type CommitStart struct {
	Seq       uint64
	Changelog []Output
	Sources   map[string]int64
}

// Write is what commit Seq writes to the store in one synced batch: the
// rows, then the spans of expired windows to delete, the changelog offset
// each table's rows reflect, and the last input offset per source topic.
type Write struct {
	Seq       uint64
	Rows      [][]shard.Row    // by table index
	Spans     [][]Span         // by table index: deleted after Rows
	Changelog map[int]int64    // table index → last changelog offset
	Sources   map[string]int64 // topic → last processed offset
}

// Empty reports whether the write holds nothing.
func (w *Write) Empty() bool {
	for _, rs := range w.Rows {
		if len(rs) > 0 {
			return false
		}
	}
	for _, ss := range w.Spans {
		if len(ss) > 0 {
			return false
		}
	}
	return len(w.Changelog) == 0 && len(w.Sources) == 0
}

// latencySample is how many handler runs one timing stands for.
const latencySample = 16

// maxEagerSpacing bounds how long a caught-up partition waits after the
// start of its last commit before it commits again.
const maxEagerSpacing = 50 * time.Millisecond

// task is one record for one of the agents subscribed to its topic.
type task struct {
	rec   *Record // in the machine's recordStore
	n     uint64  // rec's number there
	agent int
}

type attemptKey struct {
	topic  string
	offset int64
	agent  int
}

// batch is a partly filled batch of one agent.
type batch struct {
	items []any
	recs  []*Record
	first time.Time
}

// commit is a commit whose changelog records are in flight, or whose write
// is being stored.
type commit struct {
	seq   uint64
	upto  int              // it covers log[:upto]
	gen   uint64           // the cache generation it stores
	rows  [][]shard.Row    // per table, the writes it stores
	spans [][]Span         // per table, the expired windows it deletes
	src   map[string]int64 // the input offsets it reflects
	dead  []int            // agents of the dead letters it writes
	write bool             // its Write was handed out
	start time.Time        // when it started, for the commit latency
}

// Machine is one partition of an app: it is fed what happens to the
// partition — records delivered, a commit acknowledged or stored, a tick,
// a direct message, a drain, a failure and restart — and answers, in a
// Ready, what must be done. It runs the agents' handlers (the only code it
// calls out to, with the store's Readers for table misses) and does no I/O
// of its own; it is not safe for concurrent use.
//
// The records delivered since the last stored commit stay in its log:
// after a failure the driver reloads the partition and calls Restart,
// which drops every uncommitted effect and replays the log. A record that
// fails MaxAttempts times (or cannot be decoded) gets its agent's error
// policy, and that decision is committed before anything else is
// processed, so that a replay never applies it twice.
type Machine struct {
	cfg    Config
	fanout map[string][]int // topic → agents
	index  map[*Agent]int
	shards []*shard.Shard
	gens   shard.Gens
	ev     *Event
	wins   []*Windows // by table index; nil for a table without windows
	late   []lateLog  // by table index, for windowed tables

	log      []task      // records since the last stored commit
	recs     recordStore // the records log points to
	next     int         // index in log of the next task to process
	current  int         // index of the task being processed, -1 if none
	attempts map[attemptKey]int
	lastErr  map[attemptKey]error
	stopped  error
	failed   error

	srcDone   map[string]int64 // last offset processed per source topic, since the last commit
	srcStored map[string]int64 // last offset per source topic reflected in the store
	batches   map[string]*batch
	emitted   bool  // records were produced since the last commit began
	dead      []int // agents of the dead letters produced since the last commit began
	runs      uint  // handler runs, for sampling their duration

	inflight *commit
	seq      uint64
	began    time.Time // when the last commit began
	eager    bool      // the last delivery was caught up: commit when allowed
	soon     bool      // a Wake is due
	due      bool      // a commit is due once the one in flight is stored
	// atEnd: a commit is due once the record being processed has been
	// through all its agents (with hold: its holdAtEnd). A commit in the
	// middle of a record's tasks would mark the record done for the
	// agents still to run (they would skip it), or, if not marked, replay
	// the agents already run after a crash.
	atEnd, holdAtEnd bool
	hold             bool // processing waits until the commit in flight is stored
	draining         bool // a Drain waits for the commits to be stored

	rd Ready
}

// New returns the machine of a partition, with empty shards. Call Restart
// once the driver has loaded the partition.
func New(cfg Config) *Machine {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	if cfg.MaxUncommitted <= 0 {
		cfg.MaxUncommitted = 20_000
	}
	if cfg.Context == nil {
		cfg.Context = context.Background()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AppNow == nil {
		cfg.AppNow = cfg.Now
	}
	m := &Machine{
		cfg: cfg, fanout: map[string][]int{}, index: map[*Agent]int{}, current: -1,
		attempts: map[attemptKey]int{}, lastErr: map[attemptKey]error{},
		srcDone: map[string]int64{}, srcStored: map[string]int64{}, batches: map[string]*batch{},
		gens: shard.Gens{Open: 1},
		// Enough for a log of twice MaxUncommitted records (which a
		// commit then releases at once) to be refilled without
		// allocating.
		recs: recordStore{maxFree: 2*cfg.MaxUncommitted/recordChunk + 1},
	}
	for i, a := range cfg.Agents {
		m.fanout[a.Topic] = append(m.fanout[a.Topic], i)
		m.index[a] = i
	}
	for i, t := range cfg.Tables {
		m.shards = append(m.shards, shard.New(cfg.Readers[i], &m.gens, cfg.CacheKeys))
		if t.Window != nil {
			if m.wins == nil {
				m.wins, m.late = make([]*Windows, len(cfg.Tables)), make([]lateLog, len(cfg.Tables))
			}
			w := newWindows(*t.Window)
			w.late = func() { m.dropped(i) }
			m.wins[i] = w
		}
	}
	m.ev = m.newEvent()
	m.ev.batch = func(item any) {
		b := m.batchOf(m.ev.agent)
		b.items = append(b.items, item)
	}
	return m
}

func (m *Machine) newEvent() *Event {
	ev := NewEvent(m.cfg.Context, m.cfg.Route, m.shards)
	ev.maxBytes = m.cfg.MaxRecordBytes
	ev.wins = m.wins
	ev.now = m.cfg.AppNow
	return ev
}

// Topics returns the source topics the partition's agents consume.
func (m *Machine) Topics() []string {
	ts := make([]string, 0, len(m.fanout))
	for t := range m.fanout {
		ts = append(ts, t)
	}
	return ts
}

func (m *Machine) reset() *Ready {
	m.rd = Ready{Outputs: m.rd.Outputs[:0]}
	return &m.rd
}

// Restart begins an incarnation of the partition after the driver loaded
// it: stored is the last input offset per source topic the store
// reflects, which it marks. Every uncommitted effect is dropped (the
// shards too) and the log is replayed; the record the last incarnation
// failed on counts one more attempt.
func (m *Machine) Restart(stored map[string]int64) Ready {
	m.reset()
	if m.current >= 0 && m.current < len(m.log) {
		k := keyOf(m.log[m.current])
		m.attempts[k]++
		if m.lastErr[k] == nil {
			m.lastErr[k] = m.failed
		}
	}
	m.current, m.failed = -1, nil
	for _, sh := range m.shards {
		sh.Reset()
	}
	m.inflight, m.due, m.hold, m.soon = nil, false, false, false // acknowledgements of a dropped commit are ignored
	m.atEnd, m.holdAtEnd = false, false
	if err := m.loadWindows(); err != nil {
		m.fail(err)
		return m.rd
	}
	m.batches = map[string]*batch{}
	m.srcDone = map[string]int64{}
	m.srcStored = map[string]int64{}
	m.dead = nil
	for t, off := range stored {
		m.srcStored[t] = off
	}
	// The store may be ahead of the group (a crash between storing a
	// commit and committing its offsets): mark what it holds, so that the
	// group catches up even if every record replayed is one already
	// stored (which marks nothing).
	if len(stored) > 0 {
		m.rd.Marks = make(map[string]int64, len(stored))
		for t, off := range stored {
			m.rd.Marks[t] = off + 1
		}
	}
	m.emitted = false
	m.next = 0
	m.run()
	m.afterDrain()
	return m.rd
}

// Deliver appends the records of in, in offset order, and processes what
// it can. caughtUp says they end at the partition's high watermark: the
// partition then commits as soon as it may. The records are read (copied)
// before Deliver returns.
func (m *Machine) Deliver(in Input, caughtUp bool) Ready {
	m.reset()
	if m.stopped != nil {
		m.reportStop()
		return m.rd
	}
	var topic string
	var agents []int
	for i, n := 0, in.Len(); i < n; i++ {
		r := m.recs.peek()
		in.Read(i, r)
		if r.Topic != topic || agents == nil {
			topic, agents = r.Topic, m.fanout[r.Topic]
		}
		if len(agents) == 0 {
			continue // no agent takes it: its place is reused
		}
		num := m.recs.push()
		for _, a := range agents {
			m.log = append(m.log, task{rec: r, n: num, agent: a})
		}
	}
	m.eager = caughtUp
	if !m.run() {
		return m.rd
	}
	if m.inflight == nil && len(m.log) >= m.cfg.MaxUncommitted {
		m.startCommit(false)
	} else {
		m.commitEarly()
	}
	return m.rd
}

// Tick is the commit interval's tick: commit what was processed (or, with
// nothing received, what direct messages did).
func (m *Machine) Tick() Ready {
	m.reset()
	if m.wins != nil && m.failed == nil && m.stopped == nil && !m.hold {
		m.closeByClock()
	}
	if m.failed == nil && (m.next > 0 || len(m.log) == 0) {
		m.startCommit(false)
	}
	return m.rd
}

// Wake is the call a Ready's Wake asked for: a caught-up partition may
// commit again.
func (m *Machine) Wake() Ready {
	m.reset()
	m.soon = false
	m.commitEarly()
	return m.rd
}

// Acked says every record produced up to commit seq's start is
// acknowledged; offsets holds the last offset acknowledged per topic on
// this partition. An acknowledgement of a commit a restart dropped is
// ignored.
func (m *Machine) Acked(seq uint64, offsets map[string]int64) Ready {
	rd := m.reset()
	c := m.inflight
	if c == nil || c.seq != seq || c.write || m.failed != nil {
		return m.rd
	}
	w := &Write{Seq: seq, Rows: c.rows, Spans: c.spans, Changelog: map[int]int64{}, Sources: c.src}
	for i, t := range m.cfg.Tables {
		if off, ok := offsets[t.Changelog]; ok {
			w.Changelog[i] = off
		}
	}
	c.write = true
	if w.Empty() {
		m.stored(c)
		return m.rd
	}
	rd.Write = w
	return m.rd
}

// Awaiting reports whether the partition waits for the acknowledgements
// of commit seq (a restart drops the commit it waited for).
func (m *Machine) Awaiting(seq uint64) bool {
	c := m.inflight
	return c != nil && c.seq == seq && !c.write && m.failed == nil
}

// Stored says commit seq's write is in the store: its offsets are marked
// for the consumer group, its records leave the log, and processing held
// for it goes on.
func (m *Machine) Stored(seq uint64) Ready {
	m.reset()
	c := m.inflight
	if c == nil || c.seq != seq || !c.write || m.failed != nil {
		return m.rd
	}
	m.stored(c)
	return m.rd
}

func (m *Machine) stored(c *commit) {
	m.inflight = nil
	m.gens.Stored = c.gen
	if len(c.src) > 0 {
		marks := make(map[string]int64, len(c.src))
		for topic, off := range c.src {
			m.srcStored[topic] = off
			marks[topic] = off + 1
		}
		m.rd.Marks = marks
	}
	m.trim(c.upto)
	for _, sh := range m.shards {
		sh.Evict()
	}
	if f := m.cfg.Observer.DeadLetter; f != nil {
		for _, a := range c.dead {
			f(a)
		}
	}
	if f := m.cfg.Observer.Committed; f != nil {
		f(m.cfg.Now().Sub(c.start))
	}
	if m.due {
		m.due = false
		m.startCommit(m.hold)
		if m.inflight != nil {
			return
		}
	}
	m.hold = false
	if m.stopped != nil {
		m.reportStop()
	} else if m.run() {
		m.commitEarly()
	}
	m.afterDrain()
}

// reportStop says the partition stopped, once what came before the record
// that stopped it is stored: until then the node is not told, so that a
// stopped partition's state is always its last commit.
func (m *Machine) reportStop() {
	if m.inflight == nil && !m.due {
		m.rd.Stopped = m.stopped
	}
}

// Drain asks for everything processed to be committed (a revoke or a
// shutdown): partly filled batches go to their handlers first. Ready.Drained
// answers it, at once or once the commit is stored.
func (m *Machine) Drain() Ready {
	rd := m.reset()
	if m.failed != nil {
		rd.Drained, rd.DrainErr = true, m.failed
		return m.rd
	}
	m.draining = true
	if m.stopped == nil {
		if _, err := m.flushDue(true); err != nil {
			m.fail(fmt.Errorf("flush batches: %w", err))
			return m.rd
		}
	}
	m.startCommit(true)
	m.afterDrain()
	return m.rd
}

// afterDrain answers a Drain once nothing is left to store.
func (m *Machine) afterDrain() {
	if m.draining && m.inflight == nil && !m.due {
		m.draining = false
		m.rd.Drained = true
	}
}

// Failed says the driver could not carry out a Ready (a produce or a
// store write failed): the partition must restart from its last commit.
// A *ProduceError that is Permanent counts against the input record the
// output came from: after the restart that record gets its agent's error
// policy at once (a transient failure is only retried).
func (m *Machine) Failed(err error) Ready {
	m.reset()
	var pe *ProduceError
	if errors.As(err, &pe) && pe.Permanent {
		if r := pe.Output.From; r != nil {
			k := attemptKey{r.Topic, r.Offset, pe.Output.Agent}
			m.attempts[k] = m.cfg.MaxAttempts
			m.lastErr[k] = err
			m.cfg.Log.Error("a record the handler produced can never be written: its input record goes to the agent's error policy",
				"agent", m.cfg.Agents[pe.Output.Agent].Name, "topic", r.Topic, "offset", r.Offset, "output_topic", pe.Output.Topic, "err", pe.Err)
		} else {
			m.cfg.Log.Error("a changelog record can never be written (is the topic's max.message.bytes below the producer's limit?): the partition retries it",
				"topic", pe.Output.Topic, "key_bytes", len(pe.Output.Key), "value_bytes", len(pe.Output.Value), "err", pe.Err)
		}
	}
	m.fail(err)
	return m.rd
}

// DirectResult is the answer to a direct message.
type DirectResult struct {
	Reply []byte
	Err   string // the handler's error, if it failed
}

// Direct runs agent's handler on a message sent straight to the
// partition (not through Kafka): like a record's, its table writes and
// sends commit with the next commit, but nothing durable records the
// message itself — the sender retries.
func (m *Machine) Direct(agent string, key, value []byte, headers []Header) (DirectResult, Ready) {
	m.reset()
	var a *Agent
	for _, d := range m.cfg.Agents {
		if d.Name == agent {
			a = d
		}
	}
	switch {
	case a == nil:
		return DirectResult{Err: fmt.Sprintf("no agent %q on this node", agent)}, m.rd
	case a.Batch != nil:
		return DirectResult{Err: fmt.Sprintf("agent %s takes batches from its topic only: send through the topic", a.Name)}, m.rd
	}
	// A concurrent agent's handler may not write tables, whichever path
	// the event takes.
	m.ev.readOnly = a.Concurrency > 1
	defer func() { m.ev.readOnly = false }()
	rec := &Record{Partition: m.cfg.Partition, Offset: -1, Key: key, Value: value, Timestamp: m.cfg.Now(), Headers: headers}
	err := m.protect(func() error { return m.runHandler(a, rec) })
	if err == nil {
		err = m.closeWindows()
	}
	if err != nil {
		m.ev.Unstage()
		if isCloseError(err) {
			// Closes before the failing one were counted and their sends
			// just dropped: only a restart from the commit, which
			// rebuilds the closes cursor, closes them again.
			m.fail(err)
		}
		m.cfg.Log.Warn("direct message failed (the sender gets the error if it waits for a reply)", "agent", a.Name, "err", err)
		return DirectResult{Err: err.Error()}, m.rd
	}
	m.release()
	return DirectResult{Reply: m.ev.reply}, m.rd
}

// run processes the log from next on. It returns false if the partition
// failed, stopped or holds for a commit.
func (m *Machine) run() bool {
	for m.next < len(m.log) && m.stopped == nil && m.failed == nil && !m.hold {
		if m.atEnd && !m.midRecord() {
			m.atEnd = false
			m.startCommit(m.holdAtEnd)
			continue
		}
		t := m.log[m.next]
		k := keyOf(t)
		tries := 0
		if len(m.attempts) > 0 { // the common case skips hashing the key
			tries = m.attempts[k]
		}
		if m.cfg.Agents[t.agent].Concurrency > 1 && tries < m.cfg.MaxAttempts {
			m.runConcurrent()
			continue
		}
		if tries >= m.cfg.MaxAttempts {
			m.giveUp(t, fmt.Errorf("failed %d times, last: %w", tries, m.lastErr[k]))
			continue
		}
		m.current = m.next
		err := m.protect(func() error { return m.process(t) })
		if err != nil && errors.Is(err, ErrPoison) {
			m.current = -1
			m.giveUp(t, err)
			continue
		}
		if err != nil && isCloseError(err) {
			m.current = -1 // not the record's fault: it counts no attempt
			m.fail(err)
			return false
		}
		if err != nil {
			m.lastErr[k] = err
			m.fail(fmt.Errorf("%s/%d@%d: %w", t.rec.Topic, t.rec.Partition, t.rec.Offset, err))
			return false
		}
		m.current = -1
		m.next++
	}
	if m.atEnd && m.next == len(m.log) && m.stopped == nil && m.failed == nil && !m.hold {
		m.atEnd = false
		m.startCommit(m.holdAtEnd)
	}
	if m.stopped != nil || m.failed != nil || m.hold {
		return false
	}
	m.rd.Processed = true
	return true
}

// midRecord reports whether the next task is of the same record as the
// one before it: some of the record's agents have run, some not.
func (m *Machine) midRecord() bool {
	return m.next > 0 && m.next < len(m.log) && m.log[m.next].rec == m.log[m.next-1].rec
}

// process runs one task.
func (m *Machine) process(t task) error {
	r := t.rec
	if stored, ok := m.srcStored[r.Topic]; ok && r.Offset <= stored {
		return nil // already reflected in the tables (a commit reached the store but not the group)
	}
	a := m.cfg.Agents[t.agent]
	if a.Batch != nil {
		return m.processBatched(a, r)
	}
	if err := m.runHandler(a, r); err != nil {
		return err
	}
	if err := m.closeWindows(); err != nil {
		return err
	}
	m.stageReply(r, m.ev.reply, "")
	m.release()
	m.srcDone[r.Topic] = r.Offset
	return nil
}

// protect turns a handler's panic into an error, so that it takes the same
// path as a returned one.
func (m *Machine) protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return f()
}

// runHandler runs agent a's handler on r; its effects stay staged in m.ev.
func (m *Machine) runHandler(a *Agent, r *Record) error {
	m.ev.Reset(r, a)
	// Reading the clock for every event costs as much as a simple
	// handler: time one event in latencySample.
	if m.runs++; m.runs%latencySample != 0 || m.cfg.Observer.Handled == nil {
		return a.Run(m.ev)
	}
	start := m.cfg.Now()
	if err := a.Run(m.ev); err != nil {
		return err
	}
	m.cfg.Observer.Handled(m.index[a], m.cfg.Now().Sub(start))
	return nil
}

// release moves the staged effects of the event just handled to the
// outputs.
func (m *Machine) release() {
	if len(m.ev.staged) > 0 {
		var from *Record
		agent := 0
		if r := m.ev.rec; r != nil && r.Offset >= 0 {
			from, agent = r, m.index[m.ev.agent]
		}
		for _, o := range m.ev.staged {
			if o.From == nil {
				o.From, o.Agent = from, agent
			}
			m.rd.Outputs = append(m.rd.Outputs, o)
		}
		m.emitted = true
	}
	m.ev.Unstage()
}

// runConcurrent runs the tasks of one concurrent agent from next on, up to
// the next task of another agent (or one out of attempts), through
// Parallel, then releases their effects in offset order.
func (m *Machine) runConcurrent() {
	agent := m.log[m.next].agent
	end := m.next
	for end < len(m.log) && m.log[end].agent == agent {
		if m.attempts[keyOf(m.log[end])] >= m.cfg.MaxAttempts {
			break // the sequential path applies the error policy to it
		}
		end++
	}
	if end == m.next {
		return
	}
	tasks := m.log[m.next:end]
	evs := make([]*Event, len(tasks))
	jobs := make([]func() error, len(tasks))
	for i, t := range tasks {
		jobs[i] = func() error {
			if stored, ok := m.srcStored[t.rec.Topic]; ok && t.rec.Offset <= stored {
				return nil
			}
			ev := m.newEvent()
			ev.Reset(t.rec, m.cfg.Agents[t.agent])
			ev.readOnly = true
			evs[i] = ev
			return m.protect(func() error { return ev.agent.Run(ev) })
		}
	}
	var errs []error
	if m.cfg.Parallel != nil {
		errs = m.cfg.Parallel(m.cfg.Agents[agent].Concurrency, jobs)
	} else {
		errs = make([]error, len(jobs))
		for i, j := range jobs {
			errs[i] = j()
		}
	}
	for i, err := range errs {
		t := m.log[m.next]
		if err != nil && errors.Is(err, ErrPoison) {
			m.giveUp(t, err)
			if m.hold || m.stopped != nil || m.failed != nil {
				return // the rest runs again once the give-up is stored
			}
			continue
		}
		if err != nil {
			m.lastErr[keyOf(t)] = err
			m.current = m.next
			m.fail(fmt.Errorf("%s/%d@%d: %w", t.rec.Topic, t.rec.Partition, t.rec.Offset, err))
			return
		}
		if ev := evs[i]; ev != nil {
			m.ev.Reset(t.rec, m.cfg.Agents[t.agent]) // the outputs come from t
			m.ev.staged = append(m.ev.staged, ev.staged...)
			m.stageReply(t.rec, ev.reply, "")
			m.release()
		}
		m.srcDone[t.rec.Topic] = t.rec.Offset
		m.next++
	}
}

// stageReply stages the reply to a request that came through Kafka (a
// record with a reply-to header): the result, or errText if it failed.
func (m *Machine) stageReply(r *Record, value []byte, errText string) {
	to := r.Header(HeaderReplyTo)
	if to == "" || (value == nil && errText == "") {
		return
	}
	topic, p := ReplyTarget(to)
	if p < 0 {
		var err error
		if p, err = m.cfg.Route(topic, r.Key, true, r.Partition); err != nil {
			m.cfg.Log.Warn("cannot reply", "reply_to", to, "err", err)
			return
		}
	}
	corr := r.Header(HeaderCorrelationID)
	headers := []Header{{Key: HeaderCorrelationID, Value: []byte(corr)}}
	if errText != "" {
		headers = append(headers, Header{Key: HeaderError, Value: []byte(errText)})
	}
	key := r.Key
	if corr != "" {
		key = []byte(corr)
	}
	m.ev.Stage(Output{Topic: topic, Partition: p, Key: key, Value: value, Headers: headers})
}

// ReplyTarget parses a reply-to header into a topic and partition (-1: by
// key).
func ReplyTarget(h string) (string, int32) {
	for i := len(h) - 1; i > 0; i-- {
		if h[i] == ':' {
			if p, err := strconv.Atoi(h[i+1:]); err == nil {
				return h[:i], int32(p)
			}
			break
		}
	}
	return h, -1
}

// giveUp applies t's agent's error policy and moves past t, then commits
// at once and holds processing until the commit is stored, so that a
// replay after a later failure does not apply the policy again (a second
// dead letter).
func (m *Machine) giveUp(t task, cause error) {
	r, a := t.rec, m.cfg.Agents[t.agent]
	attrs := []any{"agent", a.Name, "topic", r.Topic, "offset", r.Offset, "err", cause}
	m.ev.Reset(r, a) // what it sends comes from r
	switch a.Policy {
	case DeadLetter:
		p, err := m.cfg.Route(a.DeadLetterTopic, nil, false, r.Partition)
		if err != nil {
			m.fail(fmt.Errorf("dead-letter topic %s: %w", a.DeadLetterTopic, err))
			return
		}
		m.ev.Stage(m.deadLetter(t, a, p, cause))
		m.dead = append(m.dead, t.agent)
		m.cfg.Log.Warn("sending the record to the dead-letter topic; processing goes on once it is written", append(attrs, "dead_letter_topic", a.DeadLetterTopic)...)
	case Skip:
		if f := m.cfg.Observer.Skipped; f != nil {
			f(t.agent)
		}
		m.cfg.Log.Warn("record skipped by the agent's error policy", attrs...)
	case Stop:
		m.stageReply(r, nil, cause.Error())
		m.release()
		m.cfg.Log.Error("partition STOPPED by the agent's error policy: fix the cause, then restart the worker", attrs...)
		m.stopped = fmt.Errorf("%w: agent %s, %s/%d@%d: %w", ErrPartitionStopped, a.Name, r.Topic, r.Partition, r.Offset, cause)
		m.log = m.log[:m.next] // keep what was processed, and commit it
		m.startCommit(true)
		m.reportStop()
		return
	}
	m.stageReply(r, nil, cause.Error())
	m.release()
	m.srcDone[r.Topic] = r.Offset
	m.next++
	m.startCommit(true)
}

// deadLetter is the dead letter of t: the record's key, value and headers
// (less any mephisto.* header, which only Mephisto may set) and headers
// naming the error and the record's coordinates. One that would be over
// the producer's limit, or that the broker refused for good, goes without
// the record's key, value and headers, and says so.
func (m *Machine) deadLetter(t task, a *Agent, p int32, cause error) Output {
	r := t.rec
	coords := []Header{
		{Key: HeaderError, Value: []byte(cause.Error())},
		{Key: HeaderAgent, Value: []byte(a.Name)},
		{Key: HeaderTopic, Value: []byte(r.Topic)},
		{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	}
	headers := make([]Header, 0, len(r.Headers)+len(coords))
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, "mephisto.") {
			headers = append(headers, h)
		}
	}
	o := Output{Topic: a.DeadLetterTopic, Partition: p, Key: r.Key, Value: r.Value, Headers: append(headers, coords...), From: r, Agent: t.agent}
	var pe *ProduceError
	refused := errors.As(m.lastErr[keyOf(t)], &pe) && pe.Permanent && pe.Output.Topic == a.DeadLetterTopic
	if refused || m.cfg.MaxRecordBytes > 0 && o.Size() > m.cfg.MaxRecordBytes {
		size := len(r.Key) + len(r.Value)
		if len(coords[0].Value) > 4096 {
			coords[0].Value = coords[0].Value[:4096]
		}
		o.Key, o.Value = nil, nil
		o.Headers = append(coords, Header{Key: HeaderDropped, Value: []byte(fmt.Sprintf("the record's key, value and headers (%d bytes) could not be written to the dead-letter topic", size))})
	}
	return o
}

// startCommit begins the commit protocol for everything processed so
// far: the shards' writes become changelog records, and the commit waits
// for them and every record produced since the last commit (Acked), then
// for its store write (Stored). Processing goes on meanwhile, into a new
// cache generation — unless hold, which also waits for a commit already in
// flight. At most one commit is in flight: a commit due meanwhile starts
// when it is stored.
func (m *Machine) startCommit(hold bool) {
	if m.failed != nil {
		return
	}
	if m.inflight != nil {
		m.due = true
		m.hold = m.hold || hold
		return
	}
	if m.midRecord() {
		m.atEnd, m.holdAtEnd = true, m.holdAtEnd || hold
		return
	}
	m.holdAtEnd = false
	pending, err := m.flushDue(false)
	if err != nil {
		m.fail(err)
		return
	}
	if pending {
		return // never commit past records waiting in a batch
	}
	for i, w := range m.wins {
		if w != nil && w.dirty {
			m.shards[i].Put([]byte(MetaKey), nil, nil, EncodeMeta(w.stream, w.closed), false)
			w.dirty = false
		}
	}
	if m.idle() {
		m.trim(m.next)
		return
	}
	m.seq++
	c := &commit{seq: m.seq, upto: m.next, gen: m.gens.Open, src: m.srcDone, dead: m.dead, rows: make([][]shard.Row, len(m.shards))}
	if m.cfg.Observer.Committed != nil {
		c.start = m.cfg.Now()
	}
	var expired [][][]byte // per table, the window keys whose tombstones the changelog gets
	if m.wins != nil {
		c.spans, expired = make([][]Span, len(m.shards)), make([][][]byte, len(m.shards))
		for i, w := range m.wins {
			if w != nil {
				c.spans[i], expired[i] = w.spans()
			}
		}
	}
	start := &CommitStart{Seq: c.seq, Sources: c.src}
	n := 0
	for i, sh := range m.shards {
		if f := m.cfg.Observer.Tables; f != nil {
			w, h, ms := sh.Stats()
			f(i, w, h, ms)
		}
		c.rows[i] = sh.Freeze()
		n += len(c.rows[i])
		if expired != nil {
			n += len(expired[i])
		}
	}
	if n > 0 {
		start.Changelog = make([]Output, 0, n)
	}
	for i := range m.shards {
		for _, r := range c.rows[i] {
			o := Output{Topic: m.cfg.Tables[i].Changelog, Partition: m.cfg.Partition, Key: []byte(r.Key)}
			if !r.Absent {
				o.Value = r.Raw
			}
			start.Changelog = append(start.Changelog, o)
		}
		if expired != nil {
			for _, k := range expired[i] { // after the rows: a window written and expired in one commit ends deleted
				start.Changelog = append(start.Changelog, Output{Topic: m.cfg.Tables[i].Changelog, Partition: m.cfg.Partition, Key: k})
			}
		}
	}
	m.srcDone = map[string]int64{}
	m.dead = nil
	m.gens.Open++
	m.emitted = false
	m.inflight = c
	m.hold = m.hold || hold
	m.began = m.cfg.Now()
	m.rd.Commit = start
}

// commitEarly starts a commit if the last delivery was caught up, now or,
// if the last commit began too recently, at a Wake once a tenth of the
// commit interval (at most maxEagerSpacing) has passed since.
func (m *Machine) commitEarly() {
	if !m.eager || m.next == 0 || m.inflight != nil || m.failed != nil || m.stopped != nil || m.hold {
		return
	}
	wait := min(m.cfg.CommitInterval/10, maxEagerSpacing) - m.cfg.Now().Sub(m.began)
	if wait <= 0 {
		m.startCommit(false)
		return
	}
	if !m.soon {
		m.soon = true
		m.rd.WakeAfter = wait
	}
}

// idle reports whether there is nothing to commit: no table writes, no
// input processed, no record produced.
func (m *Machine) idle() bool {
	if len(m.srcDone) > 0 || m.emitted {
		return false
	}
	for _, sh := range m.shards {
		if sh.Dirty() {
			return false
		}
	}
	return true
}

// trim drops the first n tasks of the log: a commit holds them.
func (m *Machine) trim(n int) {
	if len(m.attempts) > 0 || len(m.lastErr) > 0 {
		for _, t := range m.log[:n] {
			k := keyOf(t)
			delete(m.attempts, k)
			delete(m.lastErr, k)
		}
	}
	copy(m.log, m.log[n:])
	clear(m.log[len(m.log)-n:]) // drop the references the shift left behind
	m.log = m.log[:len(m.log)-n]
	m.next -= n
	if len(m.log) > 0 {
		m.recs.release(m.log[0].n)
	} else {
		m.recs.release(m.recs.next)
	}
}

// fail drops the commit in flight (its records are replayed) and asks
// the driver for a restart.
func (m *Machine) fail(err error) {
	m.failed = err
	m.inflight, m.due, m.hold, m.atEnd = nil, false, false, false
	m.rd.Fail = err
	if m.draining {
		m.draining = false
		m.rd.Drained, m.rd.DrainErr = true, err
	}
}

func keyOf(t task) attemptKey { return attemptKey{t.rec.Topic, t.rec.Offset, t.agent} }

func (m *Machine) batchOf(a *Agent) *batch {
	b := m.batches[a.Name]
	if b == nil {
		b = &batch{}
		m.batches[a.Name] = b
	}
	return b
}

// processBatched adds a record to its agent's batch and hands the batch to
// the handler when it is full.
func (m *Machine) processBatched(a *Agent, r *Record) error {
	b := m.batchOf(a)
	if len(b.items) == 0 {
		b.first = m.cfg.AppNow()
	}
	if err := m.runHandler(a, r); err != nil { // decodes and adds the item
		return err
	}
	b.recs = append(b.recs, r)
	if len(b.items) >= a.Batch.N {
		return m.flushBatch(a, b)
	}
	return nil
}

// flushBatch runs the batch handler; on success its sends are released and
// the batch's offsets count as processed.
func (m *Machine) flushBatch(a *Agent, b *batch) error {
	if len(b.items) == 0 {
		return nil
	}
	m.ev.Reset(b.recs[len(b.recs)-1], a)
	err := m.protect(func() error { return a.Batch.Flush(m.ev, b.items) })
	if err == nil {
		err = m.closeWindows()
	}
	if err != nil {
		m.ev.Unstage()
		return fmt.Errorf("batch of %d: %w", len(b.items), err)
	}
	m.release()
	for _, r := range b.recs {
		if done, ok := m.srcDone[r.Topic]; !ok || r.Offset > done {
			m.srcDone[r.Topic] = r.Offset
		}
	}
	b.items, b.recs = b.items[:0], b.recs[:0]
	return nil
}

// flushDue hands every batch whose time is up (or all, with force) to its
// handler. It reports whether a batch is still filling.
func (m *Machine) flushDue(force bool) (pending bool, err error) {
	now := m.cfg.AppNow()
	for _, a := range m.cfg.Agents {
		b := m.batches[a.Name]
		if a.Batch == nil || b == nil || len(b.items) == 0 {
			continue
		}
		if force || now.Sub(b.first) >= a.Batch.Within {
			if err := m.flushBatch(a, b); err != nil {
				return false, err
			}
			continue
		}
		pending = true
	}
	return pending, nil
}
