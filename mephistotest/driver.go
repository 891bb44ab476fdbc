// Package mephistotest runs a Mephisto app's real topology inside a test,
// with no broker, no disk and no network, on a clock the test controls
// (Kafka Streams' TopologyTestDriver, Goka's tester).
//
// A Driver drives the same partition state machine a worker's grains
// drive — the same handlers, error policies, commits, table shards,
// windows and batch agents, one implementation of the rules — against
// in-memory topics and an in-memory store. Piping a record runs
// everything it causes to completion before the call returns: the
// handler, the records it sends and the agents that consume them (group-by
// repartitions, sinks, global-table writes, replies), and the commit of
// every partition. Advancing the clock fires timers and crontabs and
// closes windows that close on the clock.
//
//	func TestWordCount(t *testing.T) {
//		app, lines, counts := newApp()
//		d := mephistotest.New(t, app)
//		mephistotest.Pipe(d, lines, "", "the fox and the dog")
//		if n, _ := counts.Get(d.Context(), "the"); n != 2 {
//			t.Fatalf("the = %d, want 2", n)
//		}
//	}
//
// Outside handlers the app's own reads work as on a running worker:
// Table.Get, GlobalTable.Get, WindowedTable.Windows, Agent.Ask; they see
// the committed state, which after each Pipe is everything.
//
// Channel agents run on the sender's goroutine, at once. Not driven:
// tasks (long-running functions: call them yourself), PID messages and
// partition agents spawned at run time.
package mephistotest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/bridge"
	"github.com/mephistohq/mephisto/internal/node"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/timer"
)

// ErrNotDriven is returned by what the driver does not do: PID messages
// and partition agents spawned at run time.
var ErrNotDriven = errors.New("mephistotest: not supported by the test driver")

// Option configures a Driver.
type Option func(*Driver)

// Partitions sets how many partitions every topic has (default: the
// app's partition count: WithPartitions, 8 by default).
func Partitions(n int32) Option { return func(d *Driver) { d.parts = n } }

// Logger sets the driver's logger (default: warnings and errors to the
// test's log).
func Logger(l *slog.Logger) Option { return func(d *Driver) { d.logger = l } }

// testWriter writes log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// StartAt sets the clock's start (default: 2026-01-01 00:00 UTC).
func StartAt(t time.Time) Option { return func(d *Driver) { d.start = t } }

// maxRestarts bounds the restarts of one partition in one run: a
// partition that keeps failing without its error policy ever applying (a
// close callback that always fails) fails the test instead of hanging it.
const maxRestarts = 100

// Driver runs one app. It is safe for use by one test goroutine at a
// time (timers it fires run on that goroutine).
type Driver struct {
	t      testing.TB
	spec   node.Spec
	cfg    node.Config
	parts  int32
	start  time.Time
	clock  *timer.Fake
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	logger *slog.Logger // from the Logger option

	mu       sync.Mutex // guards the topics, for handlers that send outside their event
	topics   map[string][][]partition.Record
	all      []ref              // every record, in production order
	consumed []map[string]int64 // per partition, per topic: the next offset to deliver
	machines []*partition.Machine
	store    [][]map[string][]byte // per table, per partition
	sources  []map[string]int64    // per partition, the source offsets stored
	stopped  []error
	restarts []int
	hold     bool
	settling bool
	asking   sync.Mutex   // serializes Ask
	held     []heldCommit // commits started while commits are held
	batching bool

	faults  map[string]*fault
	timers  []*timerState
	corr    int
	metrics map[string]float64
}

// heldCommit is a commit a partition started under HoldCommits: it stays
// in flight, unacknowledged, until the hold ends or a crash drops it.
type heldCommit struct {
	p int32
	c *partition.CommitStart
}

type fault struct {
	n     int
	err   error
	panic bool
}

type timerState struct {
	t    node.Timer
	next time.Time
}

// New starts a driver for app, which must not be running. It fails the
// test if the app's declarations are invalid. The driver stops at the
// test's end.
func New(t testing.TB, app *mephisto.App, opts ...Option) *Driver {
	t.Helper()
	d := &Driver{t: t, start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), topics: map[string][][]partition.Record{},
		faults: map[string]*fault{}, metrics: map[string]float64{}}
	for _, o := range opts {
		o(d)
	}
	spec, cfg, detach, err := bridge.Attach(app, d)
	if err != nil {
		t.Fatalf("mephistotest: %v", err)
	}
	d.spec, d.cfg = spec, cfg
	if d.parts <= 0 {
		d.parts = cfg.Partitions
	}
	if d.parts <= 0 {
		d.parts = 4
	}
	d.clock = timer.NewFake(d.start)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.log = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if d.logger != nil {
		d.log = d.logger
	}
	t.Cleanup(func() {
		d.cancel()
		detach()
	})
	d.store = make([][]map[string][]byte, len(spec.Tables))
	for i := range spec.Tables {
		d.store[i] = make([]map[string][]byte, d.parts)
		for p := range d.parts {
			d.store[i][p] = map[string][]byte{}
		}
	}
	agents := make([]*partition.Agent, len(spec.Agents))
	for i, a := range spec.Agents {
		c := *a // the app's own declaration stays as it is
		c.Run = d.faulty(a.Name, a.Run)
		agents[i] = &c
	}
	for p := range d.parts {
		d.consumed = append(d.consumed, map[string]int64{})
		d.sources = append(d.sources, map[string]int64{})
		d.stopped = append(d.stopped, nil)
		d.restarts = append(d.restarts, 0)
		d.machines = append(d.machines, d.newMachine(p, agents))
	}
	for _, ca := range spec.Channels {
		ca.SetDirect(func(k, v any) { d.runChannel(ca, k, v) })
		t.Cleanup(func() { ca.SetDirect(nil) })
	}
	for _, tm := range spec.Timers {
		d.timers = append(d.timers, &timerState{t: tm, next: tm.Schedule.Next(d.start)})
	}
	for p, m := range d.machines {
		d.exec(int32(p), m.Restart(nil))
	}
	return d
}

func (d *Driver) newMachine(p int32, agents []*partition.Agent) *partition.Machine {
	readers := make([]func([]byte) ([]byte, bool, error), len(d.spec.Tables))
	scanners := make([]partition.Scanner, len(d.spec.Tables))
	for i, tb := range d.spec.Tables {
		rows := d.store[i][p]
		readers[i] = func(k []byte) ([]byte, bool, error) { v, ok := rows[string(k)]; return v, ok, nil }
		if tb.Window != nil {
			scanners[i] = func(fn func(k, v []byte) bool) error { return scanRows(rows, nil, fn) }
		}
	}
	cfg := partition.Config{
		Partition: p, Agents: agents, Tables: d.spec.Tables, Scanners: scanners,
		CacheKeys: d.cfg.TableCacheKeys, Route: d.route, MaxAttempts: d.cfg.MaxAttempts,
		CommitInterval: d.cfg.CommitInterval, Context: d.ctx, Log: d.log.With("partition", p),
		Now: d.clock.Now, AppNow: d.clock.Now, Observer: d.observer(agents),
		// The producer's limit, as on a worker: a send too large fails
		// the same way.
		MaxRecordBytes: kafka.ClientConfig("mephistotest").Producer.MaxMessageBytes,
	}
	for _, r := range readers {
		cfg.Readers = append(cfg.Readers, r)
	}
	return partition.New(cfg)
}

// scanRows calls fn on the rows whose keys start with prefix, in key
// order.
func scanRows(rows map[string][]byte, prefix []byte, fn func(k, v []byte) bool) error {
	keys := make([]string, 0, len(rows))
	for k := range rows {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), rows[k]) {
			break
		}
	}
	return nil
}

func (d *Driver) observer(agents []*partition.Agent) partition.Observer {
	inc := func(name string, n float64) { d.metrics[name] += n }
	return partition.Observer{
		DeadLetter: func(a int) { inc(metricKey("mephisto_dead_letters_total", "agent", agents[a].Name), 1) },
		Skipped:    func(a int) { inc(metricKey("mephisto_skipped_total", "agent", agents[a].Name), 1) },
		Tables: func(i, writes, hits, misses int) {
			name := d.spec.Tables[i].Name
			inc(metricKey("mephisto_table_writes_total", "table", name), float64(writes))
			inc(metricKey("mephisto_table_cache_hits_total", "table", name), float64(hits))
			inc(metricKey("mephisto_table_cache_misses_total", "table", name), float64(misses))
		},
		Committed: func(time.Duration) { inc("mephisto_commits_total", 1) },
		Late:      func(i int) { inc(metricKey("mephisto_window_late_events_total", "table", d.spec.Tables[i].Name), 1) },
	}
}

func metricKey(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	return b.String() + "}"
}

// Metric returns the value of a counter a worker exports under the same
// name and labels (label, value pairs), as this driver counted it:
// mephisto_events_in_total{topic}, mephisto_dead_letters_total{agent},
// mephisto_skipped_total{agent}, mephisto_window_late_events_total{table},
// mephisto_table_writes_total{table}, mephisto_table_cache_hits_total,
// mephisto_table_cache_misses_total, mephisto_commits_total,
// mephisto_timer_runs_total{timer} and
// mephisto_grain_restarts_total{grain}.
func (d *Driver) Metric(name string, labels ...string) float64 {
	return d.metrics[metricKey(name, labels...)]
}

// Context returns a context for the app's reads and sends outside
// handlers (it ends with the test).
func (d *Driver) Context() context.Context { return d.ctx }

// Clock returns the app's clock: the time handlers, timers, batch
// windows and windows on the clock see. Move it with Advance.
func (d *Driver) Clock() *timer.Fake { return d.clock }

// Now returns the clock's time.
func (d *Driver) Now() time.Time { return d.clock.Now() }

// faulty wraps an agent's handler with the faults the test asked for.
func (d *Driver) faulty(name string, run func(*partition.Event) error) func(*partition.Event) error {
	return func(ev *partition.Event) error {
		if f := d.faults[name]; f != nil && f.n > 0 {
			f.n--
			if f.panic {
				panic(fmt.Sprintf("mephistotest: agent %s panics on purpose", name))
			}
			return f.err
		}
		return run(ev)
	}
}

// Fail makes the next n runs of agent's handler fail with err (nil: a
// generic error), so that a test sees the retries and, past the app's
// MaxAttempts, the agent's error policy.
func (d *Driver) Fail(agent string, n int, err error) {
	if err == nil {
		err = fmt.Errorf("mephistotest: agent %s fails on purpose", agent)
	}
	d.faults[agent] = &fault{n: n, err: err}
}

// Panic makes the next n runs of agent's handler panic.
func (d *Driver) Panic(agent string, n int) { d.faults[agent] = &fault{n: n, panic: true} }

// HoldCommits stops (true) or resumes (false) the commits: records are
// processed, batches flushed and windows closed on the clock, their
// outputs produced, but each commit a partition starts stays in flight,
// unacknowledged, so the tables' writes, the windows and the input
// offsets since the last commit stay uncommitted and Crash has something
// to lose and replay. Resuming acknowledges the held commits and commits
// the rest.
func (d *Driver) HoldCommits(hold bool) {
	d.hold = hold
	if !hold {
		held := d.held
		d.held = nil
		for _, h := range held {
			d.ack(h.p, h.c) // a commit a crash dropped is ignored
		}
		d.settle()
	}
}

// Crash restarts partition p from its last commit, as a worker killed
// and restarted would: its uncommitted effects are dropped and the
// records since the commit processed again (their outputs, already
// produced, are produced again: at-least-once). It returns the records
// the replay produced.
func (d *Driver) Crash(p int32) []RawRecord {
	before := d.produced()
	d.restart(p, false)
	d.settle()
	return d.since(before)
}

func (d *Driver) restart(p int32, counted bool) {
	if counted {
		d.restarts[p]++
		d.metrics[metricKey("mephisto_grain_restarts_total", "grain", fmt.Sprintf("partition/%s/%d", d.spec.App, p))]++
		if d.restarts[p] > maxRestarts {
			d.t.Fatalf("mephistotest: partition %d restarted %d times without progress (a close callback that always fails?)", p, maxRestarts)
		}
	}
	src := map[string]int64{}
	for k, v := range d.sources[p] {
		src[k] = v
	}
	d.exec(p, d.machines[p].Restart(src))
}

// route picks the partition of a record, as a worker's producer does.
func (d *Driver) route(topic string, key []byte, keyed bool, fallback int32) (int32, error) {
	if keyed && key != nil {
		return kafka.Partition(key, d.parts), nil
	}
	return ((fallback % d.parts) + d.parts) % d.parts, nil
}

// append adds a record to its topic and returns its offset.
func (d *Driver) append(r partition.Record) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	ps := d.topics[r.Topic]
	if ps == nil {
		ps = make([][]partition.Record, d.parts)
		d.topics[r.Topic] = ps
	}
	r.Offset = int64(len(ps[r.Partition]))
	ps[r.Partition] = append(ps[r.Partition], r)
	d.all = append(d.all, ref{r.Topic, r.Partition, r.Offset})
	return r.Offset
}

func (d *Driver) produce(o partition.Output) int64 {
	ts := o.Timestamp
	if ts.IsZero() {
		ts = d.clock.Now()
	}
	return d.append(partition.Record{Topic: o.Topic, Partition: o.Partition, Timestamp: ts,
		Key: o.Key, Value: o.Value, Headers: o.Headers})
}

// pending returns the records of partition p its agents have not been
// given yet, and marks them given.
func (d *Driver) pending(p int32) partition.Records {
	d.mu.Lock()
	defer d.mu.Unlock()
	var in partition.Records
	for _, topic := range d.machines[p].Topics() {
		ps := d.topics[topic]
		if ps == nil {
			continue
		}
		from := d.consumed[p][topic]
		for _, r := range ps[p][from:] {
			in = append(in, r)
		}
		d.consumed[p][topic] = int64(len(ps[p]))
		if n := len(ps[p]) - int(from); n > 0 {
			d.metrics[metricKey("mephisto_events_in_total", "topic", topic)] += float64(n)
		}
	}
	return in
}

// settle runs every partition until nothing is left to deliver, then
// commits every partition (unless commits are held).
func (d *Driver) settle() {
	if d.settling {
		return // the outer run picks up what was just sent
	}
	d.settling = true
	defer func() { d.settling = false }()
	for {
		progressed := false
		for p := range d.parts {
			if d.stopped[p] != nil {
				d.pending(p) // a stopped partition takes nothing
				continue
			}
			if in := d.pending(p); len(in) > 0 {
				d.exec(p, d.machines[p].Deliver(in, false))
				progressed = true
			}
		}
		if progressed {
			continue
		}
		before := d.produced()
		for p := range d.parts {
			d.exec(p, d.machines[p].Tick())
		}
		if d.produced() == before && d.quiet() {
			return
		}
	}
}

// quiet reports whether no partition has records left to take.
func (d *Driver) quiet() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.parts {
		for _, topic := range d.machines[p].Topics() {
			if ps := d.topics[topic]; ps != nil && d.consumed[p][topic] < int64(len(ps[p])) {
				return false
			}
		}
	}
	return true
}

// produced counts the records in every topic.
func (d *Driver) produced() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.all)
}

// ref places a record in the topics.
type ref struct {
	topic string
	p     int32
	off   int64
}

// exec carries out a Ready as a grain does, against the in-memory topics
// and store.
func (d *Driver) exec(p int32, rd partition.Ready) {
	m := d.machines[p]
	for _, o := range rd.Outputs {
		d.produce(o)
	}
	if c := rd.Commit; c != nil {
		if d.hold {
			d.held = append(d.held, heldCommit{p, c})
		} else {
			d.ack(p, c)
		}
	}
	if w := rd.Write; w != nil {
		for i, rows := range w.Rows {
			for _, r := range rows {
				if r.Absent {
					delete(d.store[i][p], r.Key)
				} else {
					d.store[i][p][r.Key] = append([]byte(nil), r.Raw...)
				}
			}
		}
		for i, spans := range w.Spans {
			for _, sp := range spans {
				for k := range d.store[i][p] {
					if k >= string(sp.Lo) && k < string(sp.Hi) {
						delete(d.store[i][p], k)
					}
				}
			}
		}
		for topic, off := range w.Sources {
			d.sources[p][topic] = off
		}
		d.exec(p, m.Stored(w.Seq))
	}
	if rd.Stopped != nil && d.stopped[p] == nil {
		d.stopped[p] = rd.Stopped
		d.log.Error("partition stopped by an agent's error policy", "partition", p, "err", rd.Stopped)
	}
	if rd.Fail != nil {
		d.log.Warn("partition failed: restarting it from its last commit", "partition", p, "err", rd.Fail)
		d.restart(p, true)
	}
}

// ack produces commit c's changelog records and acknowledges them, as a
// worker's producer does.
func (d *Driver) ack(p int32, c *partition.CommitStart) {
	offsets := map[string]int64{}
	for _, o := range c.Changelog {
		offsets[o.Topic] = d.produce(o)
	}
	d.exec(p, d.machines[p].Acked(c.Seq, offsets))
}

// Stopped returns the error that stopped partition p (an agent's Stop
// policy), or nil.
func (d *Driver) Stopped(p int32) error { return d.stopped[p] }

// RecordOption sets a piped record's timestamp, headers or partition.
type RecordOption func(*partition.Record)

// At sets the record's timestamp (default: the clock's now).
func At(t time.Time) RecordOption { return func(r *partition.Record) { r.Timestamp = t } }

// Header adds a header to the record.
func Header(key, value string) RecordOption {
	return func(r *partition.Record) {
		r.Headers = append(r.Headers, partition.Header{Key: key, Value: []byte(value)})
	}
}

// ToPartition sends the record to partition p instead of its key's.
func ToPartition(p int32) RecordOption { return func(r *partition.Record) { r.Partition = p } }

// Pipe writes a record to topic, as a producer would (to its key's
// partition), and runs everything it causes to completion, commits
// included.
func Pipe[K, V any](d *Driver, topic *mephisto.Topic[K, V], key K, value V, opts ...RecordOption) {
	d.t.Helper()
	kb, err := topic.KeyCodec().Encode(key)
	if err != nil {
		d.t.Fatalf("mephistotest: pipe to %s: encode key: %v", topic.Name(), err)
	}
	vb, err := topic.ValueCodec().Encode(value)
	if err != nil {
		d.t.Fatalf("mephistotest: pipe to %s: encode value: %v", topic.Name(), err)
	}
	d.PipeRaw(topic.Name(), kb, vb, opts...)
}

// PipeRaw writes a record of raw bytes to topic (a nil key goes to
// partition 0), for input a codec would refuse.
func (d *Driver) PipeRaw(topic string, key, value []byte, opts ...RecordOption) {
	r := partition.Record{Topic: topic, Timestamp: d.clock.Now(), Key: key, Value: value, Partition: -1}
	for _, o := range opts {
		o(&r)
	}
	if r.Partition < 0 {
		r.Partition, _ = d.route(topic, key, key != nil, 0)
	}
	d.append(r)
	if !d.batching {
		d.settle()
	}
}

// Batch runs f, in which Pipe only queues its records, then runs them all
// to completion at once: one commit for many records, as a worker
// consuming a backlog would, instead of one per record.
func (d *Driver) Batch(f func()) {
	d.batching = true
	defer func() {
		d.batching = false
		d.settle()
	}()
	f()
}

// Advance moves the clock by dur: each timer and crontab due meanwhile
// fires at its time, in order, then every partition ticks (committing,
// flushing batches whose time is up, closing windows that close on the
// clock), each step run to completion.
func (d *Driver) Advance(dur time.Duration) {
	end := d.clock.Now().Add(dur)
	for {
		var next *timerState
		for _, ts := range d.timers {
			if !ts.next.After(end) && (next == nil || ts.next.Before(next.next)) {
				next = ts
			}
		}
		if next == nil {
			break
		}
		if wait := next.next.Sub(d.clock.Now()); wait > 0 {
			d.clock.Advance(wait)
			d.settle()
		}
		at := next.next
		next.next = next.t.Schedule.Next(at)
		d.metrics[metricKey("mephisto_timer_runs_total", "timer", next.t.Name)]++
		if err := next.t.Run(d.ctx); err != nil {
			d.log.Warn("timer failed", "timer", next.t.Name, "err", err)
		}
		d.settle()
	}
	if wait := end.Sub(d.clock.Now()); wait > 0 {
		d.clock.Advance(wait)
	}
	d.settle()
}

// RawRecord is a record as the driver's topics hold it.
type RawRecord = partition.Record

// Raw returns every record of topic by name (a dead-letter topic, a
// changelog, an internal topic), in the order they were produced.
func (d *Driver) Raw(topic string) []RawRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []RawRecord
	for _, r := range d.all {
		if r.topic == topic {
			out = append(out, d.topics[r.topic][r.p][r.off])
		}
	}
	return out
}

// since returns the records produced after the first n.
func (d *Driver) since(n int) []RawRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []RawRecord
	for _, r := range d.all[n:] {
		out = append(out, d.topics[r.topic][r.p][r.off])
	}
	return out
}

// Record is a typed record of a topic.
type Record[K, V any] struct {
	Key       K
	Value     V
	Timestamp time.Time
	Headers   map[string]string
	Partition int32
	Offset    int64
}

// Records returns every record of topic, decoded, in the order they were
// produced.
func Records[K, V any](d *Driver, topic *mephisto.Topic[K, V]) []Record[K, V] {
	d.t.Helper()
	var out []Record[K, V]
	for _, r := range d.Raw(topic.Name()) {
		k, err := topic.KeyCodec().Decode(r.Key)
		if err != nil && r.Key != nil {
			d.t.Fatalf("mephistotest: %s/%d@%d: decode key: %v", r.Topic, r.Partition, r.Offset, err)
		}
		v, err := topic.ValueCodec().Decode(r.Value)
		if err != nil {
			d.t.Fatalf("mephistotest: %s/%d@%d: decode value: %v", r.Topic, r.Partition, r.Offset, err)
		}
		out = append(out, Record[K, V]{Key: k, Value: v, Timestamp: r.Timestamp, Headers: headers(r.Headers), Partition: r.Partition, Offset: r.Offset})
	}
	return out
}

func headers(hs []partition.Header) map[string]string {
	if len(hs) == 0 {
		return nil
	}
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// DeadLetter is a record an agent's error policy sent to its dead-letter
// topic.
type DeadLetter struct {
	Key, Value []byte
	Error      string // the mephisto.error header
	Topic      string // where the record came from
	Partition  int32
	Offset     int64
	Headers    map[string]string
}

// DeadLetters returns the dead letters of agent (its topic
// <app>-<agent>-dead-letters unless the app named another).
func (d *Driver) DeadLetters(agent string) []DeadLetter {
	topic := ""
	for _, a := range d.spec.Agents {
		if a.Name == agent {
			topic = a.DeadLetterTopic
		}
	}
	if topic == "" {
		d.t.Fatalf("mephistotest: no agent %s with a dead-letter topic", agent)
	}
	var out []DeadLetter
	for _, r := range d.Raw(topic) {
		h := headers(r.Headers)
		p, _ := strconv.Atoi(h[partition.HeaderPartition])
		off, _ := strconv.ParseInt(h[partition.HeaderOffset], 10, 64)
		out = append(out, DeadLetter{Key: r.Key, Value: r.Value, Error: h[partition.HeaderError], Topic: h[partition.HeaderTopic],
			Partition: int32(p), Offset: off, Headers: h})
	}
	return out
}

// The runtime the app's declarations use outside handlers.

// Ask sends a request to topic and returns the reply its agent produced.
func (d *Driver) Ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	// Map and Join ask from a goroutine per request: they take turns.
	d.asking.Lock()
	defer d.asking.Unlock()
	d.corr++
	corr := fmt.Sprintf("mephistotest-%d", d.corr)
	const replies = "mephistotest.replies"
	p, _ := d.route(topic, key, keyed, idx)
	d.append(partition.Record{Topic: topic, Partition: p, Timestamp: d.clock.Now(), Key: key, Value: value, Headers: []partition.Header{
		{Key: partition.HeaderReplyTo, Value: []byte(replies + ":0")}, {Key: partition.HeaderCorrelationID, Value: []byte(corr)}}})
	d.settle()
	for _, r := range slices.Backward(d.Raw(replies)) {
		if r.Header(partition.HeaderCorrelationID) != corr {
			continue
		}
		if e := r.Header(partition.HeaderError); e != "" {
			return r.Value, fmt.Errorf("%w: %s", node.ErrRemote, e)
		}
		return r.Value, nil
	}
	return nil, fmt.Errorf("%w: no reply to a request to %s: does a reply agent consume it?", node.ErrTimeout, topic)
}

// SendSync produces a record outside a handler and runs what it causes.
func (d *Driver) SendSync(ctx context.Context, topic string, key, value []byte, keyed bool, hs ...partition.Header) (int64, error) {
	p, _ := d.route(topic, key, keyed, 0)
	off := d.append(partition.Record{Topic: topic, Partition: p, Timestamp: d.clock.Now(), Key: key, Value: value, Headers: hs})
	d.settle()
	return off, nil
}

func (d *Driver) keyPartition(key []byte) int32 { return kafka.Partition(key, d.parts) }

// ReadGlobal reads a global table's committed value.
func (d *Driver) ReadGlobal(index int, key []byte) ([]byte, bool, error) {
	v, ok := d.store[index][d.keyPartition(key)][string(key)]
	return v, ok, nil
}

// ScanGlobal iterates a global table's committed rows.
func (d *Driver) ScanGlobal(ctx context.Context, index int, prefix []byte, fn func(key, value []byte) bool) error {
	return d.TableRange(ctx, index, prefix, false, fn)
}

// TableGet reads a table's committed value in the key's partition.
func (d *Driver) TableGet(_ context.Context, idx int, key []byte, _ bool) ([]byte, bool, error) {
	v, ok := d.store[idx][d.keyPartition(key)][string(key)]
	return v, ok, nil
}

// TableRange iterates a table's committed rows of every partition in key
// order.
func (d *Driver) TableRange(_ context.Context, idx int, prefix []byte, _ bool, fn func(key, value []byte) bool) error {
	type row struct {
		k string
		v []byte
	}
	var rows []row
	for _, part := range d.store[idx] {
		for k, v := range part {
			if strings.HasPrefix(k, string(prefix)) && (d.spec.Tables[idx].Window == nil || k != partition.MetaKey) {
				rows = append(rows, row{k, v})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].k < rows[j].k })
	for _, r := range rows {
		if !fn([]byte(r.k), r.v) {
			break
		}
	}
	return nil
}

// TableOwner says every key is served here.
func (d *Driver) TableOwner(int, []byte) (bool, string, error) { return true, "", nil }

// WindowRows reads a key's committed live windows.
func (d *Driver) WindowRows(_ context.Context, idx int, key []byte, _ bool) ([]node.WindowRow, error) {
	rows := d.store[idx][d.keyPartition(key)]
	return node.LiveWindows(d.spec.Tables[idx], key,
		func(prefix []byte, fn func(k, v []byte) bool) error { return scanRows(rows, prefix, fn) },
		func() ([]byte, bool, error) { v, ok := rows[partition.MetaKey]; return v, ok, nil })
}

// WebAddr is empty: the driver serves no HTTP.
func (d *Driver) WebAddr() string { return "" }

// Logger returns the app's logger.
func (d *Driver) Logger() *slog.Logger { return d.log }

// Ready is true unless a partition stopped.
func (d *Driver) Ready() (bool, string) {
	for p, err := range d.stopped {
		if err != nil {
			return false, fmt.Sprintf("partition %d stopped: %v", p, err)
		}
	}
	return true, ""
}

// PIDOf is not driven.
func (d *Driver) PIDOf(string, []byte) (*actor.PID, error) { return nil, ErrNotDriven }

// SendPID is not driven.
func (d *Driver) SendPID(*actor.PID, *envelopepb.Envelope) error { return ErrNotDriven }

// Request is not driven.
func (d *Driver) Request(context.Context, *actor.PID, *envelopepb.Envelope) (*envelopepb.Envelope, error) {
	return nil, ErrNotDriven
}

// ActorSystem is nil: the driver runs no actors.
func (d *Driver) ActorSystem() *actor.ActorSystem { return nil }

// AddAgent is not driven.
func (d *Driver) AddAgent(*partition.Agent) error { return ErrNotDriven }

// StartChannelAgent runs a channel agent spawned at run time as the
// declared ones run: on the sender's goroutine.
func (d *Driver) StartChannelAgent(ca *node.ChannelAgent) error {
	ca.SetDirect(func(k, v any) { d.runChannel(ca, k, v) })
	d.t.Cleanup(func() { ca.SetDirect(nil) })
	return nil
}

// runChannel handles one message sent to a channel agent, at once, as
// the agent's actor would: a failure is retried up to the app's
// MaxAttempts, then the message is logged and dropped; what the handler
// sends goes out as soon as it succeeds.
func (d *Driver) runChannel(ca *node.ChannelAgent, k, v any) {
	attempts := max(d.cfg.MaxAttempts, 1)
	spec := &partition.Agent{Name: ca.Name, Topic: "channel:" + ca.Channel, Policy: partition.Skip}
	run := d.faulty(ca.Name, func(ev *partition.Event) error { return ca.Run(ev, k, v) })
	for i := 1; ; i++ {
		ev := partition.NewEvent(d.ctx, d.route, nil)
		ev.Reset(&partition.Record{Topic: spec.Topic, Offset: -1, Timestamp: d.clock.Now()}, spec)
		err := protect(func() error { return run(ev) })
		if err == nil {
			for _, o := range ev.Staged() {
				d.produce(o)
			}
			d.settle()
			return
		}
		if i >= attempts {
			d.log.Error("channel agent failed: the message is dropped", "agent", ca.Name, "attempts", i, "err", err)
			d.metrics[metricKey("mephisto_skipped_total", "agent", ca.Name)]++
			return
		}
		d.metrics[metricKey("mephisto_grain_restarts_total", "grain", "channel/"+ca.Name)]++
	}
}

func protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return f()
}

// TableRows returns every committed row of the table named table,
// decoded with kc and vc — what a node restoring the table from its
// changelog would load. It serves tests of a program whose constructor
// hands out no table handle (with the handle, use the table's Get and
// Range with d.Context()). It fails the test for an unknown or windowed
// table, or a row that does not decode.
func TableRows[K comparable, V any](d *Driver, table string, kc codec.Codec[K], vc codec.Codec[V]) map[K]V {
	d.t.Helper()
	idx := -1
	for i, tb := range d.spec.Tables {
		if tb.Name == table {
			idx = i
		}
	}
	switch {
	case idx < 0:
		d.t.Fatalf("mephistotest: the app has no table %q", table)
	case d.spec.Tables[idx].Window != nil:
		d.t.Fatalf("mephistotest: %s is a windowed table: read it with its Windows", table)
	}
	rows := map[K]V{}
	_ = d.TableRange(d.ctx, idx, nil, false, func(kb, vb []byte) bool {
		k, err := kc.Decode(kb)
		if err != nil {
			d.t.Fatalf("mephistotest: table %s: key %q: %v", table, kb, err)
		}
		v, err := vc.Decode(vb)
		if err != nil {
			d.t.Fatalf("mephistotest: table %s: value of %v: %v", table, k, err)
		}
		rows[k] = v
		return true
	})
	return rows
}
