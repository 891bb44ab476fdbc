package systest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
)

const (
	// appName is the test app's default name (its consumer group and the
	// prefix of its changelog topics).
	appName = "systest"
	// partitions is the partition count the workers create topics with.
	partitions = 4
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "systest",
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/systest/testapp", Out: &testappBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "systest:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// Child processes, ports and waiting: the process harness the suites
// share.

// stopTimeout bounds a clean stop (SIGTERM to exit).
const stopTimeout = 60 * time.Second

// startProc starts path with args and the extra environment env, in the
// test's environment without MEPHISTO_* and SYSTEST_* variables (the
// binaries would read them as flag defaults).
func startProc(t testing.TB, name string, env []string, path string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartT(t, proctest.Spec{Name: name, Path: path, Args: args,
		Env: childEnv(env), LogDir: proctest.LogDir(t, "systest")})
}

func childEnv(extra []string) []string { return proctest.Environ(extra, "MEPHISTO_", "SYSTEST_") }

// runCmd runs a short-lived command to completion, within a minute.
func runCmd(t testing.TB, name string, env []string, path string, args ...string) proctest.Result {
	t.Helper()
	return proctest.RunT(t, proctest.Spec{Name: name, Path: path, Args: args, Env: childEnv(env)}, time.Minute)
}

// freeAddr returns a free loopback address.
func freeAddr(t testing.TB) string { return proctest.FreeAddrT(t, false) }

var waitFor = proctest.WaitForT

// ---------------------------------------------------------------------------
// The broker.

type brokerProc struct {
	*proctest.Proc
	addr, dataDir, clusterID string
}

// startBroker runs `mephisto broker` on addr with dataDir and waits until it
// says it listens.
func startBroker(t testing.TB, name, addr, dataDir string) *brokerProc {
	t.Helper()
	b := &brokerProc{dataDir: dataDir}
	b.Proc = startProc(t, name, nil, mephistoBin, "broker", "--listen", addr, "--data-dir", dataDir)
	b.addr, b.clusterID = b.WaitListeningT(t, 30*time.Second, addr)
	return b
}

// newBroker starts a broker on a free port with a fresh data dir.
func newBroker(t testing.TB) *brokerProc {
	t.Helper()
	return startBroker(t, "broker", freeAddr(t), t.TempDir())
}

// addrs splits a bootstrap list (what --brokers takes).
func addrs(bootstrap string) []string { return strings.Split(bootstrap, ",") }

// ---------------------------------------------------------------------------
// The two brokers the critical tests run on: kfake (`mephisto broker`) and
// Apache Kafka.

// sharedKafka is the package's Apache Kafka broker: the kafka subtests
// share it, each with an app name and topics of its own.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "kafka"}}

// env is a test's broker and the names the test app uses on it.
type env struct {
	t      testing.TB
	kind   string // "kfake" or "kafka"
	addr   string // bootstrap address(es)
	app    string // the app's name: its consumer group, its changelogs' prefix
	prefix string // prefixes the input topics' names

	fake  *brokerProc     // kfake: the test's own `mephisto broker`
	kafka *proctest.Kafka // kafka: the shared broker, or the test's own
}

// eachBroker runs f as subtest "kfake", on a `mephisto broker` of its
// own, and as subtest "kafka", on Apache Kafka (skipped where Java or Maven
// is missing). On Kafka the subtest shares the package's broker, with an
// app name and topics of its own, unless own is set (it stops the broker).
func eachBroker(t *testing.T, own bool, f func(t *testing.T, e *env)) {
	for _, kind := range []string{"kfake", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, kind, own))
		})
	}
}

// kfakeEnv is the env of a test that runs on kfake only: a broker of its
// own and the app's default names.
func kfakeEnv(t testing.TB) *env { return newEnv(t, "kfake", true) }

func newEnv(t testing.TB, kind string, own bool) *env {
	t.Helper()
	e := &env{t: t, kind: kind, app: appName}
	switch kind {
	case "kfake":
		e.fake = newBroker(t)
		e.addr = e.fake.addr
	case "kafka":
		if own {
			e.kafka = proctest.StartKafkaT(t, proctest.KafkaSpec{LogDir: proctest.LogDir(t, "systest")})
		} else {
			e.kafka = sharedKafka.Get(t)
			e.app = proctest.SharedName(t, "st")
			e.prefix = e.app + "."
		}
		e.addr = e.kafka.Bootstrap()
	default:
		t.Fatalf("unknown broker kind %q", kind)
	}
	return e
}

// topic is the name of the test app's topic name.
func (e *env) topic(name string) string { return e.prefix + name }

// changelog is the name of table's changelog topic.
func (e *env) changelog(table string) string { return e.app + "-" + table + "-changelog" }

// names is the environment that gives the test app its names.
func (e *env) names(extra []string) []string {
	return append([]string{"SYSTEST_APP_NAME=" + e.app, "SYSTEST_TOPIC_PREFIX=" + e.prefix}, extra...)
}

// startWorker runs a worker on this env's broker with its names.
func (e *env) startWorker(name, dataDir string, extraEnv []string, extra ...string) *workerProc {
	e.t.Helper()
	return startWorker(e.t, name, e.addr, dataDir, e.names(extraEnv), extra...)
}

func (e *env) newProducer() *producer {
	e.t.Helper()
	return newProducer(e.t, e.addr)
}

// stopBroker stops the broker cleanly (SIGTERM); restartBroker starts it
// again on the same address and data, and requires the same cluster id.
func (e *env) stopBroker() {
	e.t.Helper()
	if e.fake != nil {
		e.fake.StopT(e.t, stopTimeout)
		return
	}
	if err := e.kafka.StopBroker(0); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) restartBroker() {
	e.t.Helper()
	if e.fake != nil {
		b := startBroker(e.t, "broker", e.fake.addr, e.fake.dataDir)
		if b.clusterID != e.fake.clusterID {
			e.t.Fatalf("the restarted broker has cluster id %s, want %s (its data dir keeps it)", b.clusterID, e.fake.clusterID)
		}
		e.fake = b
		return
	}
	if err := e.kafka.RestartBroker(0); err != nil {
		e.t.Fatal(err)
	}
}

// waitCaughtUp is waitCaughtUp on the app's topics (names as the app
// declares them).
func (e *env) waitCaughtUp(topics ...string) {
	e.t.Helper()
	full := make([]string, len(topics))
	for i, tp := range topics {
		full[i] = e.topic(tp)
	}
	waitCaughtUp(e.t, e.addr, e.app, full...)
}

// ---------------------------------------------------------------------------
// Workers.

type workerProc struct {
	*proctest.Proc
	t            testing.TB
	web, dataDir string
}

// startWorker runs `testapp worker` against brokers with dataDir. extra
// flags come last, so they override the defaults.
func startWorker(t testing.TB, name, brokers, dataDir string, env []string, extra ...string) *workerProc {
	t.Helper()
	w := &workerProc{t: t, web: freeAddr(t), dataDir: dataDir}
	args := append([]string{"worker", "--brokers", brokers, "--data-dir", dataDir, "--web", w.web,
		"--partitions", strconv.Itoa(partitions), "--commit-interval", "100ms", "--node-id", "n1"}, extra...)
	w.Proc = startProc(t, name, env, testappBin, args...)
	return w
}

func (w *workerProc) get(path string) (int, []byte, error) { return proctest.Get(w.web, path) }

// ready returns /readyz's answer.
func (w *workerProc) ready() (bool, string) { return proctest.Ready(w.web) }

func (w *workerProc) waitReady(timeout time.Duration) {
	w.t.Helper()
	waitFor(w.t, timeout, w.Name()+" ready", func() (bool, string) {
		if w.Exited() {
			w.t.Fatalf("%s exited before it was ready: %s", w.Name(), w.DescribeExit())
		}
		return w.ready()
	})
}

// table reads the committed values of keys over HTTP; a key never written
// (404) reads as 0.
func (w *workerProc) table(table string, keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		code, body, err := w.get("/tables/" + table + "/" + k)
		if err != nil {
			return nil, err
		}
		switch code {
		case http.StatusOK:
			var v struct {
				Table, Key string
				Value      int64
			}
			if err := json.Unmarshal(body, &v); err != nil {
				return nil, fmt.Errorf("%s/%s: %v: %s", table, k, err, body)
			}
			if v.Table != table || v.Key != k {
				return nil, fmt.Errorf("%s/%s: answer names %s/%s", table, k, v.Table, v.Key)
			}
			out[k] = v.Value
		case http.StatusNotFound:
			out[k] = 0
		default:
			return nil, fmt.Errorf("%s/%s: HTTP %d %s", table, k, code, strings.TrimSpace(string(body)))
		}
	}
	return out, nil
}

// waitTable waits until the worker serves exactly want for table.
func (w *workerProc) waitTable(timeout time.Duration, table string, want map[string]int64) {
	w.t.Helper()
	keys := keysOf(want)
	waitFor(w.t, timeout, fmt.Sprintf("%s: %s == expected (%d keys, total %d)", w.Name(), table, len(want), sum(want)), func() (bool, string) {
		if w.Exited() {
			w.t.Fatalf("%s exited: %s", w.Name(), w.DescribeExit())
		}
		got, err := w.table(table, keys)
		if err != nil {
			return false, err.Error()
		}
		if d := diff(got, want); d != "" {
			return false, d
		}
		return true, ""
	})
}

// waitTableAtLeast waits until the worker serves at least want[k] for
// every key k of table.
func (w *workerProc) waitTableAtLeast(timeout time.Duration, table string, want map[string]int64) map[string]int64 {
	w.t.Helper()
	keys := keysOf(want)
	var got map[string]int64
	waitFor(w.t, timeout, fmt.Sprintf("%s: %s >= truth (%d keys)", w.Name(), table, len(want)), func() (bool, string) {
		if w.Exited() {
			w.t.Fatalf("%s exited: %s", w.Name(), w.DescribeExit())
		}
		var err error
		if got, err = w.table(table, keys); err != nil {
			return false, err.Error()
		}
		for _, k := range keys {
			if got[k] < want[k] {
				return false, fmt.Sprintf("%s = %d < %d", k, got[k], want[k])
			}
		}
		return true, ""
	})
	return got
}

func keysOf(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// diff describes how got differs from want ("" if equal on want's keys).
func diff(got, want map[string]int64) string {
	var d []string
	for _, k := range keysOf(want) {
		if got[k] != want[k] {
			d = append(d, fmt.Sprintf("%s=%d want %d", k, got[k], want[k]))
		}
	}
	if len(d) == 0 {
		return ""
	}
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("… (%d keys differ)", len(d)))
	}
	return fmt.Sprintf("got total %d, want %d: %s", sum(got), sum(want), strings.Join(d, ", "))
}

// ---------------------------------------------------------------------------
// Input.

// record is one produced record; partition and offset are set once the
// broker acknowledged it.
type record struct {
	key, value string
	partition  int32
	offset     int64
}

var eventKeys = func() []string {
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%02d", i)
	}
	return keys
}()

// makeEvents returns n records for topic events, keyed by a pseudo-random
// choice among eventKeys.
func makeEvents(n int, seed uint64) []*record {
	r := rand.New(rand.NewPCG(seed, 1))
	recs := make([]*record, n)
	for i := range recs {
		recs[i] = &record{key: eventKeys[r.IntN(len(eventKeys))], value: "e" + strconv.Itoa(i), offset: -1}
	}
	return recs
}

// makeLines returns n records for topic lines, each of 1 to 5 words, and
// how often each word occurs.
func makeLines(n int, seed uint64) ([]*record, map[string]int64) {
	r := rand.New(rand.NewPCG(seed, 2))
	truth := map[string]int64{}
	for i := 0; i < 30; i++ {
		truth[fmt.Sprintf("w%02d", i)] = 0
	}
	recs := make([]*record, n)
	for i := range recs {
		words := make([]string, 1+r.IntN(5))
		for j := range words {
			words[j] = fmt.Sprintf("w%02d", r.IntN(30))
			truth[words[j]]++
		}
		recs[i] = &record{key: "line-" + strconv.Itoa(i), value: strings.Join(words, " "), offset: -1}
	}
	return recs, truth
}

// countKeys counts records per key (every eventKey present, maybe 0).
func countKeys(recs ...[]*record) map[string]int64 {
	truth := map[string]int64{}
	for _, k := range eventKeys {
		truth[k] = 0
	}
	for _, rs := range recs {
		for _, r := range rs {
			truth[r.key]++
		}
	}
	return truth
}

type producer struct {
	t      testing.TB
	client sarama.Client
	sp     sarama.SyncProducer
	once   sync.Once

	stopping atomic.Bool    // set by close: background sends stop between batches
	inflight sync.WaitGroup // background sends
}

// newProducer connects a producer (Mephisto's client configuration:
// idempotent, acks=all) to the broker at addr.
func newProducer(t testing.TB, addr string) *producer {
	t.Helper()
	client, err := sarama.NewClient(addrs(addr), kafka.ClientConfig("systest-producer"))
	if err != nil {
		t.Fatalf("producer: connect to %s: %v", addr, err)
	}
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		t.Fatalf("producer: %v", err)
	}
	p := &producer{t: t, client: client, sp: sp}
	t.Cleanup(p.close)
	return p
}

// close stops background sends and closes the producer. (sarama panics on
// a send after Close, so a background send still running after a while
// keeps the producer open rather than crash the test binary.)
func (p *producer) close() {
	p.once.Do(func() {
		p.stopping.Store(true)
		done := make(chan struct{})
		go func() { p.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.t.Errorf("a background send is still running; leaving the producer open")
			return
		}
		_ = p.sp.Close()
		_ = p.client.Close()
	})
}

// send produces recs to topic in order, in batches of batch records, each
// on the partition its key hashes to, and records their offsets.
func (p *producer) send(topic string, recs []*record, batch int) error {
	for len(recs) > 0 {
		if p.stopping.Load() {
			return errors.New("producer closed")
		}
		n := min(batch, len(recs))
		msgs := make([]*sarama.ProducerMessage, n)
		for i, r := range recs[:n] {
			r.partition = kafka.Partition([]byte(r.key), partitions)
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Partition: r.partition,
				Key: sarama.StringEncoder(r.key), Value: sarama.StringEncoder(r.value)}
		}
		if err := p.sp.SendMessages(msgs); err != nil {
			if errs, ok := err.(sarama.ProducerErrors); ok && len(errs) > 0 {
				err = fmt.Errorf("%d of %d records failed, first: %w", len(errs), n, errs[0].Err)
			}
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		for i, r := range recs[:n] {
			r.offset = msgs[i].Offset
		}
		recs = recs[n:]
	}
	return nil
}

func (p *producer) mustSend(topic string, recs []*record) {
	p.t.Helper()
	if err := p.send(topic, recs, 500); err != nil {
		p.t.Fatal(err)
	}
}

// sendAsync produces in the background; wait for it with the returned
// function.
func (p *producer) sendAsync(topic string, recs []*record, batch int) (wait func()) {
	errc := make(chan error, 1)
	p.inflight.Add(1)
	go func() {
		defer p.inflight.Done()
		errc <- p.send(topic, recs, batch)
	}()
	var once sync.Once
	return func() {
		p.t.Helper()
		once.Do(func() {
			select {
			case err := <-errc:
				if err != nil {
					p.t.Fatal(err)
				}
			case <-time.After(120 * time.Second):
				p.t.Fatalf("producing to %s did not finish", topic)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// What a (dead or stopped) worker left on disk and in Kafka.

// shardState is what Pebble holds for one partition: the last source offset
// processed and the last changelog offset applied (-1: none).
type shardState struct{ src, chg int64 }

type diskState struct {
	parts [partitions]shardState
	rows  map[string]int64 // every row of the table, all partitions
}

// readDisk opens the Pebble store in dataDir (its owner must be dead) and
// reads table's rows and offsets, source being the table's input topic.
func readDisk(t testing.TB, dataDir, table, source string) diskState {
	t.Helper()
	st, err := state.Open(state.Options{Dir: filepath.Join(dataDir, "state")})
	if err != nil {
		t.Fatalf("open the dead worker's store: %v", err)
	}
	defer st.Close()
	id, err := st.TableID(table)
	if err != nil {
		t.Fatal(err)
	}
	d := diskState{rows: map[string]int64{}}
	for p := int32(0); p < partitions; p++ {
		src, ok, err := st.SourceOffset(source, p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			src = -1
		}
		chg, ok, err := st.ChangelogOffset(id, p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			chg = -1
		}
		d.parts[p] = shardState{src: src, chg: chg}
		err = st.Scan(id, p, func(k, v []byte) bool {
			n, err := codec.Int64().Decode(v)
			if err != nil {
				t.Errorf("row %s/%d/%q: %v", table, p, k, err)
			}
			if kp := kafka.Partition(k, partitions); kp != p {
				t.Errorf("row %q of %s stored in partition %d, but the key hashes to %d", k, table, p, kp)
			}
			d.rows[string(k)] = n
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("on disk: %s offsets per partition (source, changelog): %v; %d rows, total %d", table, d.parts, len(d.rows), sum(d.rows))
	return d
}

// checkDataMatchesOffsets checks the commit protocol's invariant on what a
// worker left in Pebble: for every partition, the stored rows count exactly
// the input records up to the stored source offset — the offsets are never
// ahead of the data, nor behind it. sent must be every record of the
// source topic since offset 0.
func checkDataMatchesOffsets(t testing.TB, d diskState, sent []*record) {
	t.Helper()
	want := map[string]int64{}
	var inPart [partitions]int64
	for _, r := range sent {
		if r.offset < 0 {
			t.Fatalf("record %q was not acknowledged", r.value)
		}
		if r.offset <= d.parts[r.partition].src {
			want[r.key]++
			inPart[r.partition]++
		}
	}
	var rowsIn [partitions]int64
	for k, v := range d.rows {
		rowsIn[kafka.Partition([]byte(k), partitions)] += v
	}
	for p := range partitions {
		src := d.parts[p].src
		if inPart[p] != src+1 {
			t.Fatalf("partition %d: stored source offset %d, but only %d records were produced up to it", p, src, inPart[p])
		}
		if rowsIn[p] != src+1 {
			t.Errorf("partition %d: Pebble's rows count %d records, but its stored source offset %d says %d: data and offsets disagree",
				p, rowsIn[p], src, src+1)
		}
	}
	all := map[string]int64{}
	for k := range want {
		all[k] = 0
	}
	for k := range d.rows {
		all[k] = 0
	}
	for k := range all {
		if d.rows[k] != want[k] {
			t.Errorf("key %s (partition %d): Pebble holds %d, but the records up to the stored offset count %d",
				k, kafka.Partition([]byte(k), partitions), d.rows[k], want[k])
		}
	}
}

// committedOffsets returns the consumer group's committed offsets of topic
// (-1: none).
func committedOffsets(t testing.TB, addr, group, topic string) [partitions]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(addrs(addr), kafka.ClientConfig("systest-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		t.Fatalf("list committed offsets of group %s: %v", group, err)
	}
	var out [partitions]int64
	for i := range out {
		out[i] = -1
		if b := resp.GetBlock(topic, int32(i)); b != nil {
			out[i] = b.Offset
		}
	}
	return out
}

// checkCommittedNotAhead checks that the group's committed offsets in Kafka
// are never ahead of what Pebble holds (step c after step b), and returns
// them.
func checkCommittedNotAhead(t testing.TB, addr, group, topic string, d diskState) [partitions]int64 {
	t.Helper()
	c := committedOffsets(t, addr, group, topic)
	for p := range partitions {
		if c[p] > d.parts[p].src+1 {
			t.Errorf("partition %d: committed offset %d in Kafka is ahead of Pebble's data (source offset %d)", p, c[p], d.parts[p].src)
		}
	}
	t.Logf("committed offsets of %s in Kafka: %v", topic, c)
	return c
}

// scanTopic reads every partition of topic from from(p, oldest) to its
// high watermark and calls f on each record; it returns each partition's
// log start and end.
func scanTopic(t testing.TB, addr, topic string, from func(p int32, oldest int64) int64,
	f func(p int32, m *sarama.ConsumerMessage) error) (starts, ends [partitions]int64) {
	t.Helper()
	client, err := sarama.NewClient(addrs(addr), kafka.ClientConfig("systest-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for p := int32(0); p < partitions; p++ {
		oldest, hwm, err := kafka.Bounds(client, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		starts[p], ends[p] = oldest, hwm
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = kafka.ReadRange(ctx, consumer, topic, p, from(p, oldest), hwm, func(m *sarama.ConsumerMessage) error { return f(p, m) })
		cancel()
		if err != nil {
			t.Fatalf("read %s/%d: %v", topic, p, err)
		}
	}
	return starts, ends
}

// fromOldest starts a scan at the log start.
func fromOldest(_ int32, oldest int64) int64 { return oldest }

// changelogTails reads, for each partition, the changelog records after the
// offset Pebble applied last, and returns the latest value per key.
func changelogTails(t testing.TB, addr, topic string, d diskState) map[string]int64 {
	t.Helper()
	latest := map[string]int64{}
	var tails [partitions]int64
	scanTopic(t, addr, topic, func(p int32, oldest int64) int64 { return max(d.parts[p].chg+1, oldest) },
		func(p int32, m *sarama.ConsumerMessage) error {
			if m.Value == nil {
				return fmt.Errorf("unexpected tombstone for %q at %d", m.Key, m.Offset)
			}
			n, err := codec.Int64().Decode(m.Value)
			if err != nil {
				return err
			}
			latest[string(m.Key)] = n
			tails[p]++
			return nil
		})
	t.Logf("changelog %s: records after Pebble's offsets per partition: %v", topic, tails)
	return latest
}

// expectAfterRestart computes what a worker restarted on d must end with
// once it has processed sent: it first replays the changelog tail over the
// stored rows (changelog records carry values, so the latest one per key
// wins), then processes every record after the stored source offset again.
func expectAfterRestart(d diskState, tail map[string]int64, sent []*record) map[string]int64 {
	exp := countKeys()
	for k, v := range d.rows {
		exp[k] = v
	}
	for k, v := range tail {
		exp[k] = v
	}
	for _, r := range sent {
		if r.offset > d.parts[r.partition].src {
			exp[r.key]++
		}
	}
	return exp
}

// requireAtLeast fails unless got[k] >= truth[k] for every key.
func requireAtLeast(t testing.TB, what string, got, truth map[string]int64) {
	t.Helper()
	for _, k := range keysOf(truth) {
		if got[k] < truth[k] {
			t.Errorf("%s: %s = %d < truth %d: an update was lost", what, k, got[k], truth[k])
		}
	}
}

// logEnds returns the high watermark of every partition of topic.
func logEnds(t testing.TB, client sarama.Client, topic string) [partitions]int64 {
	t.Helper()
	var out [partitions]int64
	for p := range out {
		_, hwm, err := kafka.Bounds(client, topic, int32(p))
		if err != nil {
			t.Fatal(err)
		}
		out[p] = hwm
	}
	return out
}

// waitCaughtUp waits until the consumer group has committed every record
// of topics, in order: when topics feed each other (lines → words), list
// the upstream ones first, so that an upstream topic committed in full
// (whose outputs were acknowledged before its offsets were committed)
// makes the downstream log end final.
func waitCaughtUp(t testing.TB, addr, group string, topics ...string) {
	t.Helper()
	client, err := sarama.NewClient(addrs(addr), kafka.ClientConfig("systest-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitFor(t, 60*time.Second, fmt.Sprintf("group caught up on %v", topics), func() (bool, string) {
		for _, topic := range topics {
			c := committedOffsets(t, addr, group, topic)
			end := logEnds(t, client, topic)
			for p := range partitions {
				if end[p] > 0 && c[p] != end[p] {
					return false, fmt.Sprintf("%s: committed %v, log end %v", topic, c, end)
				}
			}
		}
		return true, ""
	})
}

// readTopic counts the records of topic per key.
func readTopic(t testing.TB, addr, topic string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	scanTopic(t, addr, topic, fromOldest, func(_ int32, m *sarama.ConsumerMessage) error {
		out[string(m.Key)]++
		return nil
	})
	return out
}
