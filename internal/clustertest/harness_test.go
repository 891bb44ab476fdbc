package clustertest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

const (
	appName        = "ctest"
	numPartitions  = 8
	eventsTopic    = "events"
	countsTable    = "counts"
	commitInterval = 100 * time.Millisecond
	sessionTimeout = 10 * time.Second
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

// ---------------------------------------------------------------------------
// Child processes, ports and waiting: the process harness the suites
// share.

// proc is a child process of the suite, its output in files.
type proc = proctest.Proc

// startProc starts path with args, in the test's environment without
// MEPHISTO_* and CLUSTERTEST_* variables (the binaries would read them),
// plus env.
func startProc(t testing.TB, logDir string, env []string, name, path string, args ...string) *proc {
	t.Helper()
	return proctest.StartT(t, proctest.Spec{Name: name, Path: path, Args: args,
		Env: proctest.Environ(env, "MEPHISTO_", "CLUSTERTEST_"), LogDir: logDir})
}

var (
	freeAddr = proctest.FreeAddrT
	waitFor  = proctest.WaitForT
)

const pollEvery = proctest.PollEvery

// ---------------------------------------------------------------------------
// The cluster: one broker and N workers.

type cluster struct {
	t      *testing.T
	b      *broker
	logDir string
	// broker is the broker's process: `mephisto broker` on kfake, the
	// shared Apache Kafka's JVM on Kafka.
	broker  *proc
	brokers string // the bootstrap address
	workers []*worker
	// The names of the app, its input topic and the counts table's
	// changelog on this broker (see eachBroker).
	app, events, changelog string

	clientOnce sync.Once
	client     sarama.Client
	admin      sarama.ClusterAdmin
}

// worker is one node of the test app; it keeps its id, ports and data dir
// across restarts.
type worker struct {
	c       *cluster
	id      string
	web     string
	gossip  string
	join    string
	dataDir string
	proc    *proc
	procs   []*proc // every incarnation, oldest first
}

// newCluster starts n workers on b (and, on kfake, the broker) and waits
// until they form one cluster: every node ready, in one generation, every
// node in every node's plan and alive.
func newCluster(t *testing.T, b *broker, n int) *cluster {
	t.Helper()
	logDir := proctest.LogDir(t, "clustertest")
	c := &cluster{t: t, b: b, logDir: logDir, app: b.app, events: b.events, changelog: b.changelog()}
	c.brokers, c.broker = b.start(t, logDir)
	seed := ""
	for i := range n {
		w := &worker{c: c, id: fmt.Sprintf("n%d", i+1), web: freeAddr(t, false),
			gossip: freeAddr(t, true), dataDir: t.TempDir()}
		if i == 0 {
			seed = w.gossip
		}
		w.join = seed
		c.workers = append(c.workers, w)
	}
	for _, w := range c.workers {
		w.start()
	}
	c.waitFormed(90*time.Second, c.workers, true)
	return c
}

func (w *worker) start() {
	w.c.t.Helper()
	name := w.id
	if len(w.procs) > 0 {
		name = fmt.Sprintf("%s.run%d", w.id, len(w.procs)+1)
	}
	w.proc = startProc(w.c.t, w.c.logDir, w.c.b.env, name, testappBin, "worker",
		"--brokers", w.c.brokers, "--node-id", w.id, "--web", w.web,
		"--gossip", w.gossip, "--join", w.join, "--data-dir", w.dataDir,
		"--partitions", strconv.Itoa(numPartitions), "--commit-interval", commitInterval.String(),
		"--session-timeout", sessionTimeout.String())
	w.procs = append(w.procs, w.proc)
}

// logs returns the stderr of every incarnation of the worker.
func (w *worker) logs() string {
	var b strings.Builder
	for _, p := range w.procs {
		b.WriteString(p.Stderr())
	}
	return b.String()
}

func (w *worker) gossipPort() int {
	_, p, _ := net.SplitHostPort(w.gossip)
	n, _ := strconv.Atoi(p)
	return n
}

func (c *cluster) worker(id string) *worker {
	for _, w := range c.workers {
		if w.id == id {
			return w
		}
	}
	c.t.Fatalf("no worker %s", id)
	return nil
}

// running fails the test if the broker or a worker of ws has exited.
func (c *cluster) running(ws []*worker) {
	c.t.Helper()
	procs := []*proc{c.broker}
	for _, w := range ws {
		procs = append(procs, w.proc)
	}
	if err := proctest.Running(procs...); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// waitFormed waits until ws are exactly the cluster: each is ready, each
// one's /cluster names exactly ws, in one generation, and every partition
// has an active among them; with alive, every node must also be alive in
// every node's view (gossip).
func (c *cluster) waitFormed(timeout time.Duration, ws []*worker, alive bool) (clusterView, time.Duration) {
	c.t.Helper()
	var last clusterView
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.id
	}
	what := fmt.Sprintf("cluster of %v formed (all ready, one generation)", ids)
	if alive {
		what = fmt.Sprintf("cluster of %v formed (all ready, one generation, all alive)", ids)
	}
	d := waitFor(c.t, timeout, what, func() (bool, string) {
		c.running(ws)
		var why string
		last, why = formed(ws, alive)
		return why == "", why
	})
	return last, d
}

// formed says why ws are not (yet) exactly the cluster ("" if they are),
// see waitFormed.
func formed(ws []*worker, alive bool) (clusterView, string) {
	nodes := make([]proctest.Node, len(ws))
	for i, w := range ws {
		nodes[i] = proctest.Node{ID: w.id, Web: w.web}
	}
	v, why := proctest.Formed(nodes, numPartitions, alive)
	return clusterView{v}, why
}

// gossipConverged waits up to timeout until every node of ws sees every
// node alive; it returns why not, or "".
func (c *cluster) gossipConverged(timeout time.Duration, ws []*worker) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.running(ws)
		var why string
		for _, w := range ws {
			v, err := w.cluster()
			if err != nil {
				why = w.id + ": " + err.Error()
				break
			}
			for _, n := range v.Nodes {
				if !n.Alive {
					why += fmt.Sprintf("%s sees %s not alive; ", w.id, n.ID)
				}
			}
		}
		if why == "" || time.Now().After(deadline) {
			return why
		}
		time.Sleep(pollEvery)
	}
}

// ---------------------------------------------------------------------------
// HTTP.

func (w *worker) get(path string) (int, []byte, error) { return proctest.Get(w.web, path) }

func (w *worker) ready() (bool, string) { return proctest.Ready(w.web) }

// clusterView is a node's answer to GET /cluster, with the questions this
// suite asks of it.
type clusterView struct{ proctest.ClusterView }

func (w *worker) cluster() (clusterView, error) {
	v, err := proctest.Cluster(w.web)
	return clusterView{v}, err
}

// readKey reads counts[key] through w: (value, true) if found, (0, false)
// on 404; an error for anything else (e.g. 503 while the partition moves).
func (w *worker) readKey(key string) (int64, bool, error) {
	code, body, err := w.get("/tables/" + countsTable + "/" + key)
	if err != nil {
		return 0, false, err
	}
	switch code {
	case http.StatusOK:
		var v struct {
			Table string `json:"table"`
			Key   string `json:"key"`
			Value int64  `json:"value"`
			Stale bool   `json:"stale"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return 0, false, fmt.Errorf("%s: %v: %s", key, err, body)
		}
		if v.Table != countsTable || v.Key != key || v.Stale {
			return 0, false, fmt.Errorf("asked for %s/%s, got %s", countsTable, key, body)
		}
		return v.Value, true, nil
	case http.StatusNotFound:
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("%s via %s: HTTP %d %s", key, w.id, code, strings.TrimSpace(string(body)))
	}
}

// readAll reads every key through w, a few requests at a time; a key
// never written reads as 0.
func (w *worker) readAll(keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	var mu sync.Mutex
	var firstErr error
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ch {
				v, _, err := w.readKey(k)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[k] = v
				mu.Unlock()
			}
		}()
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	return out, firstErr
}

// metric sums the samples of the metric name whose labels include labels
// in w's /metrics; found says whether any did.
func (w *worker) metric(name string, labels map[string]string) (v float64, found bool, err error) {
	v, n, err := proctest.Metric(w.web, name, labels)
	return v, n > 0, err
}

// ---------------------------------------------------------------------------
// Kafka: producing with a truth of what was acknowledged, reading offsets
// and the changelog.

func (c *cluster) kafka() (sarama.Client, sarama.ClusterAdmin) {
	c.clientOnce.Do(func() {
		cfg := kafka.ClientConfig("clustertest-inspect")
		var err error
		if c.client, err = sarama.NewClient(strings.Split(c.brokers, ","), cfg); err != nil {
			c.t.Fatalf("kafka client: %v", err)
		}
		if c.admin, err = sarama.NewClusterAdminFromClient(c.client); err != nil {
			c.t.Fatalf("kafka admin: %v", err)
		}
		c.t.Cleanup(func() { _ = c.admin.Close() })
	})
	return c.client, c.admin
}

// endOffsets returns the high watermark of every partition of topic.
func (c *cluster) endOffsets(topic string) map[int32]int64 {
	c.t.Helper()
	client, _ := c.kafka()
	out := map[int32]int64{}
	for p := int32(0); p < numPartitions; p++ {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			c.t.Fatalf("end offset of %s/%d: %v", topic, p, err)
		}
		out[p] = off
	}
	return out
}

// committed returns the consumer group's committed offset of every
// partition of the events topic (0 when none).
func (c *cluster) committed() map[int32]int64 {
	c.t.Helper()
	_, admin := c.kafka()
	ps := make([]int32, numPartitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(c.app, map[string][]int32{c.events: ps})
	if err != nil {
		c.t.Fatalf("committed offsets of group %s: %v", c.app, err)
	}
	out := map[int32]int64{}
	for _, p := range ps {
		out[p] = 0
		if b := resp.GetBlock(c.events, p); b != nil && b.Offset > 0 {
			out[p] = b.Offset
		}
	}
	return out
}

// caughtUp reports whether the group has committed every record of the
// events topic.
func (c *cluster) caughtUp() (bool, string) {
	end, com := c.endOffsets(c.events), c.committed()
	var lag int64
	for p := range end {
		lag += end[p] - com[p]
	}
	return lag == 0, fmt.Sprintf("group lag %d records", lag)
}

// truth counts the records Kafka acknowledged, per key.
type truth struct {
	mu     sync.Mutex
	counts map[string]int64
	failed int64 // sends that failed: they may or may not have been written
}

func newTruth() *truth { return &truth{counts: map[string]int64{}} }

func (tr *truth) snapshot() (map[string]int64, int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := make(map[string]int64, len(tr.counts))
	for k, v := range tr.counts {
		m[k] = v
	}
	return m, tr.failed
}

func (tr *truth) total() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var n int64
	for _, v := range tr.counts {
		n += v
	}
	return n
}

// producer sends to the cluster's events topic.
type producer struct {
	sarama.SyncProducer
	topic string
}

func (c *cluster) newProducer(t testing.TB) producer {
	t.Helper()
	prod, err := sarama.NewSyncProducer(strings.Split(c.brokers, ","), kafka.ClientConfig("clustertest-producer"))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return producer{prod, c.events}
}

func message(topic, key string, seq int64) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Partition: kafka.Partition([]byte(key), numPartitions),
		Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(strconv.FormatInt(seq, 10))}
}

// send produces one record per key (in one batch) and adds what was
// acknowledged to tr.
func send(prod producer, tr *truth, keys []string) error {
	msgs := make([]*sarama.ProducerMessage, len(keys))
	for i, k := range keys {
		msgs[i] = message(prod.topic, k, int64(i))
	}
	err := prod.SendMessages(msgs)
	failed := map[*sarama.ProducerMessage]bool{}
	var perrs sarama.ProducerErrors
	if errors.As(err, &perrs) {
		for _, pe := range perrs {
			failed[pe.Msg] = true
		}
	} else if err != nil {
		for _, m := range msgs {
			failed[m] = true
		}
	}
	tr.mu.Lock()
	for i, m := range msgs {
		if failed[m] {
			tr.failed++
		} else {
			tr.counts[keys[i]]++
		}
	}
	tr.mu.Unlock()
	return err
}

// preload sends n records over keys (random keys, batches of 500).
func preload(t testing.TB, prod producer, tr *truth, keys []string, n int, rng *rand.Rand) {
	t.Helper()
	start := time.Now()
	for sent := 0; sent < n; {
		b := min(500, n-sent)
		batch := make([]string, b)
		for i := range batch {
			batch[i] = keys[rng.IntN(len(keys))]
		}
		if err := send(prod, tr, batch); err != nil {
			t.Fatalf("produce: %v", err)
		}
		sent += b
	}
	t.Logf("produced %d records over %d keys in %v", n, len(keys), time.Since(start).Round(time.Millisecond))
}

// load is a producer goroutine sending keyed records at a steady rate and
// recording in its truth what Kafka acknowledged.
type load struct {
	truth  *truth
	stopCh chan struct{}
	done   chan struct{}
	sends  atomic.Int64
	errs   atomic.Int64
	lastEr atomic.Value
	stopFn func()
}

const loadTick = 20 * time.Millisecond

func startLoad(t testing.TB, prod producer, tr *truth, keys []string, perSecond int) *load {
	l := &load{truth: tr, stopCh: make(chan struct{}), done: make(chan struct{})}
	perTick := max(1, perSecond*int(loadTick)/int(time.Second))
	rng := rand.New(rand.NewPCG(7, 11))
	go func() {
		defer close(l.done)
		tick := time.NewTicker(loadTick)
		defer tick.Stop()
		for {
			select {
			case <-l.stopCh:
				return
			case <-tick.C:
			}
			batch := make([]string, perTick)
			for i := range batch {
				batch[i] = keys[rng.IntN(len(keys))]
			}
			if err := send(prod, tr, batch); err != nil {
				l.errs.Add(1)
				l.lastEr.Store(err.Error())
			}
			l.sends.Add(int64(len(batch)))
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { close(l.stopCh); <-l.done }) }
	t.Cleanup(stop)
	l.stopFn = stop
	return l
}

// stop stops the producer goroutine and waits for its last send.
func (l *load) stop(t testing.TB) {
	t.Helper()
	l.stopFn()
	if n := l.errs.Load(); n > 0 {
		t.Logf("load: %d batches had send errors (last: %v); their records count as possibly written", n, l.lastEr.Load())
	}
}

// keysNamed returns n keys prefix-0000, prefix-0001, …
func keysNamed(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return keys
}

// probeKeys returns one key per partition: probe-p-<i>-<j>, with j the
// first that hashes to partition i.
func probeKeys(tag string) []string {
	keys := make([]string, numPartitions)
	for i := range keys {
		for j := 0; ; j++ {
			k := fmt.Sprintf("probe-%s-p-%d-%d", tag, i, j)
			if kafka.Partition([]byte(k), numPartitions) == int32(i) {
				keys[i] = k
				break
			}
		}
	}
	return keys
}

// changelogReport is what the changelog of the counts table says.
type changelogReport struct {
	records     map[int32]int64  // per partition
	last        map[string]int64 // last value of every key
	decreases   []string         // records whose value is below the key's previous one
	ofPartition map[string]int32
}

// readChangelog reads the whole counts changelog. A counter's changelog
// carries new values, so within a partition every key's values must never
// decrease: a decrease means a second writer (a zombie owner) wrote after
// the first.
func (c *cluster) readChangelog() changelogReport {
	c.t.Helper()
	client, _ := c.kafka()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		c.t.Fatalf("changelog consumer: %v", err)
	}
	defer consumer.Close()
	rep := changelogReport{records: map[int32]int64{}, last: map[string]int64{}, ofPartition: map[string]int32{}}
	changelogTopic := c.changelog
	end := c.endOffsets(changelogTopic)
	for p := int32(0); p < numPartitions; p++ {
		if end[p] == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(changelogTopic, p, sarama.OffsetOldest)
		if err != nil {
			c.t.Fatalf("consume %s/%d: %v", changelogTopic, p, err)
		}
		timeout := time.After(60 * time.Second)
	read:
		for {
			select {
			case m := <-pc.Messages():
				k := string(m.Key)
				if len(m.Value) != 8 {
					c.t.Fatalf("%s/%d@%d: value of %d bytes, want an int64", changelogTopic, p, m.Offset, len(m.Value))
				}
				v := int64(binary.BigEndian.Uint64(m.Value))
				if prev, ok := rep.last[k]; ok && v < prev {
					rep.decreases = append(rep.decreases, fmt.Sprintf("%s/%d@%d: %s = %d after %d", changelogTopic, p, m.Offset, k, v, prev))
				}
				rep.last[k], rep.ofPartition[k] = v, p
				rep.records[p]++
				if m.Offset >= end[p]-1 {
					break read
				}
			case err := <-pc.Errors():
				c.t.Fatalf("consume %s/%d: %v", changelogTopic, p, err)
			case <-timeout:
				c.t.Fatalf("reading %s/%d to offset %d timed out", changelogTopic, p, end[p])
			}
		}
		_ = pc.Close()
	}
	return rep
}

// checkChangelog requires the changelog never to go backwards for a key
// and to end with the value served for every key of served.
func (c *cluster) checkChangelog(served map[string]int64) {
	c.t.Helper()
	rep := c.readChangelog()
	var total int64
	for _, n := range rep.records {
		total += n
	}
	c.t.Logf("changelog %s: %d records, %d keys", c.changelog, total, len(rep.last))
	if len(rep.decreases) > 0 {
		c.t.Errorf("the changelog goes backwards for %d records (two writers for one partition?); first: %v",
			len(rep.decreases), rep.decreases[:min(10, len(rep.decreases))])
	}
	var bad []string
	for k, v := range served {
		if v == 0 {
			continue
		}
		if rep.last[k] != v {
			bad = append(bad, fmt.Sprintf("%s: served %d, changelog ends at %d", k, v, rep.last[k]))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		c.t.Errorf("%d keys are served with a value their changelog does not end with; first: %v", len(bad), bad[:min(10, len(bad))])
	}
}

// compare compares counts with the truth: it returns the keys below the
// truth and the total excess (sum of count - truth over keys at or above
// it).
func compare(counts, want map[string]int64) (below []string, excess int64, exact bool) {
	exact = true
	for k, w := range want {
		got := counts[k]
		switch {
		case got < w:
			below = append(below, fmt.Sprintf("%s: %d < %d", k, got, w))
			exact = false
		case got > w:
			excess += got - w
			exact = false
		}
	}
	sort.Strings(below)
	return below, excess, exact
}

// reader reads the counts of keys from the cluster one way.
type reader struct {
	name string
	read func(keys []string) (map[string]int64, error)
}

// via reads through w: keys of other nodes' partitions are proxied.
func via(w *worker) reader {
	return reader{name: "via " + w.id, read: w.readAll}
}

// viaOwners reads every key from the node active for its partition in
// the plan of ws[0], so that no proxying (and no gossip) is involved.
func viaOwners(ws []*worker) reader {
	return reader{name: "via each key's owner", read: func(keys []string) (map[string]int64, error) {
		v, err := ws[0].cluster()
		if err != nil {
			return nil, err
		}
		owner := v.Actives()
		byNode := map[string][]string{}
		for _, k := range keys {
			id := owner[kafka.Partition([]byte(k), numPartitions)]
			byNode[id] = append(byNode[id], k)
		}
		out := map[string]int64{}
		for id, ks := range byNode {
			var w *worker
			for _, x := range ws {
				if x.id == id {
					w = x
				}
			}
			if w == nil {
				return nil, fmt.Errorf("owner %q of %d keys is not running", id, len(ks))
			}
			got, err := w.readAll(ks)
			if err != nil {
				return nil, err
			}
			for k, n := range got {
				out[k] = n
			}
		}
		return out, nil
	}}
}

func viaEach(ws []*worker) []reader {
	out := make([]reader, len(ws))
	for i, w := range ws {
		out[i] = via(w)
	}
	return out
}

// waitAllProcessed waits until the group has committed every record of
// events and every key reads at least the truth, the same way through
// every reader, and returns what the first one reads then. The workers of
// running must stay up.
func (c *cluster) waitAllProcessed(timeout time.Duration, running []*worker, readers []reader, want map[string]int64) map[string]int64 {
	c.t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var served map[string]int64
	waitFor(c.t, timeout, fmt.Sprintf("every acknowledged record processed (%d keys) and read the same %d ways", len(keys), len(readers)), func() (bool, string) {
		c.running(running)
		if ok, why := c.caughtUp(); !ok {
			return false, why
		}
		served = nil
		for _, r := range readers {
			got, err := r.read(keys)
			if err != nil {
				return false, r.name + ": " + err.Error()
			}
			if below, _, _ := compare(got, want); len(below) > 0 {
				return false, fmt.Sprintf("%s: %d keys below the truth, e.g. %s", r.name, len(below), below[0])
			}
			if served == nil {
				served = got
				continue
			}
			for k, v := range got {
				if served[k] != v {
					return false, fmt.Sprintf("%s reads %d %s, %d %s", k, v, r.name, served[k], readers[0].name)
				}
			}
		}
		return true, ""
	})
	// Read once more: nothing may change once everything is committed.
	again, err := readers[0].read(keys)
	if err != nil {
		c.t.Fatalf("reading the table again %s: %v", readers[0].name, err)
	}
	for k, v := range again {
		if served[k] != v {
			c.t.Errorf("%s changed from %d to %d after the group caught up", k, served[k], v)
		}
	}
	return again
}

// ---------------------------------------------------------------------------
// Cutting one node's gossip with tc.

// gossipCut drops every packet to or from one loopback port (UDP and
// TCP) with tc, and undoes it.
type gossipCut struct {
	t      testing.TB
	port   int
	recipe string
	healed bool
}

// requireTC skips the test unless it can change the loopback device's
// qdisc: root and the tc binary.
func requireTC(t testing.TB) {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		t.Skipf("needs root to add a tc qdisc on the loopback device (to drop one node's gossip packets); running as uid %d", uid)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skipf("needs the tc binary (iproute2) to drop one node's gossip packets on the loopback device: %v", err)
	}
}

func tc(args ...string) error {
	out, err := exec.Command("tc", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cutPort drops packets to and from port on lo. It deletes any leftover
// root qdisc first. The first recipe is a prio qdisc with u32 filters and
// the gact drop action; kernels without sch_prio or act_gact get the
// second: an htb qdisc whose filters send the port's packets to a class
// whose pfifo holds 0 packets (so drops them all).
func cutPort(t testing.TB, port int) *gossipCut {
	t.Helper()
	_ = tc("qdisc", "del", "dev", "lo", "root")
	g := &gossipCut{t: t, port: port}
	t.Cleanup(func() { g.heal() })
	p := strconv.Itoa(port)
	recipes := []struct {
		name string
		cmds [][]string
	}{
		{"prio qdisc, u32 filters, action drop", [][]string{
			{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio"},
			{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dport", p, "0xffff", "action", "drop"},
			{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "sport", p, "0xffff", "action", "drop"},
		}},
		{"htb qdisc, u32 filters to a class with a 0-packet pfifo", [][]string{
			{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"},
			{"class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "1000mbit"},
			{"qdisc", "add", "dev", "lo", "parent", "1:1", "handle", "10:", "pfifo", "limit", "0"},
			{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dport", p, "0xffff", "flowid", "1:1"},
			{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "sport", p, "0xffff", "flowid", "1:1"},
		}},
	}
	var errs []string
	for _, r := range recipes {
		var err error
		for _, args := range r.cmds {
			if err = tc(args...); err != nil {
				break
			}
		}
		if err == nil {
			g.recipe = r.name
			t.Logf("cut gossip port %d on lo (%s)", port, r.name)
			return g
		}
		errs = append(errs, err.Error())
		_ = tc("qdisc", "del", "dev", "lo", "root")
	}
	t.Skipf("cannot drop packets on lo with tc, this kernel lacks the qdiscs/actions both recipes need: %s", strings.Join(errs, "; "))
	return nil
}

// heal removes the qdisc (and with it the filters).
func (g *gossipCut) heal() {
	if g.healed {
		return
	}
	g.healed = true
	if err := tc("qdisc", "del", "dev", "lo", "root"); err != nil {
		g.t.Errorf("heal the gossip cut: %v", err)
		return
	}
	g.t.Logf("healed: gossip port %d reachable again", g.port)
}

// reachable reports whether a TCP connection to port on loopback opens
// within timeout.
func reachable(port int, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}
