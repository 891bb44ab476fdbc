package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The three-node test: the example's binary as three worker processes,
// gossip joined, on the dev broker (`mephisto broker`, subtest kfake) and
// on Apache Kafka (subtest kafka).

const (
	partitions     = 8
	commitInterval = 100 * time.Millisecond
	sessionTimeout = 10 * time.Second
	waitLong       = 120 * time.Second
)

// sharedKafka is the package's Apache Kafka, stopped by TestMain.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "globalusers-kafka"}}

// kafkaRuns counts the kafka subtests of this process. The example's
// names are fixed (topic users, app globalusers), so a broker holds one
// run's state: the first run uses sharedKafka, a later one (-count > 1) a
// broker of its own.
var kafkaRuns atomic.Int32

// eachBroker runs f as subtest kfake, on a `mephisto broker` process of
// the test's own, and as subtest kafka, on Apache Kafka (skipped, saying
// why, where Java or Maven are missing or MEPHISTO_KAFKA_OFF is set). f
// gets the bootstrap address and the broker's process.
func eachBroker(t *testing.T, f func(t *testing.T, brokers string, broker *proctest.Proc)) {
	t.Run("kfake", func(t *testing.T) {
		listen := proctest.FreeAddrT(t, false)
		p := proctest.StartT(t, proctest.Spec{Name: "broker", Path: mephistoBin,
			Args:   []string{"broker", "--listen", listen, "--data-dir", t.TempDir()},
			Env:    proctest.Environ(nil, "MEPHISTO_"),
			LogDir: proctest.LogDir(t, "globalusers")})
		addr, _ := p.WaitListeningT(t, 30*time.Second, listen)
		f(t, addr, p)
	})
	t.Run("kafka", func(t *testing.T) {
		var k *proctest.Kafka
		if kafkaRuns.Add(1) == 1 {
			k = sharedKafka.Get(t)
		} else {
			k = proctest.StartKafkaT(t, proctest.KafkaSpec{Name: "globalusers-kafka", LogDir: proctest.LogDir(t, "globalusers")})
		}
		f(t, k.Bootstrap(), k.Proc(0))
	})
}

// node is one worker process of the example.
type node struct {
	id, web, gossip, join, dataDir string
	proc                           *proctest.Proc
}

// cluster is the broker and the example's nodes on it.
type cluster struct {
	t       *testing.T
	brokers string
	broker  *proctest.Proc
	nodes   []*node

	clientOnce sync.Once
	client     sarama.Client
	admin      sarama.ClusterAdmin
}

// startCluster starts three nodes on brokers and waits until they form
// one cluster: all ready (so every copy of globalusers caught up), one
// generation, every node alive in every node's view.
func startCluster(t *testing.T, brokers string, broker *proctest.Proc) *cluster {
	c := &cluster{t: t, brokers: brokers, broker: broker}
	logDir := proctest.LogDir(t, "globalusers")
	for i := range 3 {
		n := &node{id: fmt.Sprintf("n%d", i+1), web: proctest.FreeAddrT(t, false),
			gossip: proctest.FreeAddrT(t, true), dataDir: t.TempDir()}
		n.join = n.gossip
		if i > 0 {
			n.join = c.nodes[0].gossip
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.proc = proctest.StartT(t, proctest.Spec{Name: n.id, Path: exampleBin,
			Args: []string{"worker", "--brokers", brokers, "--node-id", n.id, "--web", n.web,
				"--gossip", n.gossip, "--join", n.join, "--data-dir", n.dataDir,
				"--partitions", strconv.Itoa(partitions), "--commit-interval", commitInterval.String(),
				"--session-timeout", sessionTimeout.String()},
			Env:    proctest.Environ([]string{rateEnv + "="}, "MEPHISTO_"),
			LogDir: logDir})
	}
	c.waitFormed(c.nodes)
	return c
}

// running fails the test if the broker or a node of ns has exited.
func (c *cluster) running(ns []*node) {
	c.t.Helper()
	procs := []*proctest.Proc{c.broker}
	for _, n := range ns {
		procs = append(procs, n.proc)
	}
	if err := proctest.Running(procs...); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// waitFormed waits until ns are exactly the cluster (see startCluster).
func (c *cluster) waitFormed(ns []*node) proctest.ClusterView {
	c.t.Helper()
	pn := make([]proctest.Node, len(ns))
	ids := make([]string, len(ns))
	for i, n := range ns {
		pn[i], ids[i] = proctest.Node{ID: n.id, Web: n.web}, n.id
	}
	var v proctest.ClusterView
	proctest.WaitForT(c.t, waitLong, fmt.Sprintf("cluster of %v formed (all ready, one generation, all alive)", ids), func() (bool, string) {
		c.running(ns)
		var why string
		v, why = proctest.Formed(pn, partitions, true)
		return why == "", why
	})
	return v
}

// consumed are the topics the app's group consumes: the input, the
// topic between processor and result_processor, and the internal topic
// that carries writes to globalusers' grains.
var consumed = []string{usersTopic, resultTopic, appName + "-" + globalName + "-updates"}

// caughtUp says why the app's group has not (yet) committed every record
// of the topics it consumes ("" once it has). The committed offsets are
// read first, in one request, then the ends: a record of the updates
// topic produced after that request comes from a users record not
// committed in it, so a lag of 0 means everything was processed and is
// in the owners' stores (a partition commits its table writes before
// its offsets).
func (c *cluster) caughtUp() string {
	c.t.Helper()
	c.clientOnce.Do(func() {
		var err error
		if c.client, err = sarama.NewClient(strings.Split(c.brokers, ","), kafka.ClientConfig("globalusers-test-inspect")); err != nil {
			c.t.Fatalf("kafka client: %v", err)
		}
		if c.admin, err = sarama.NewClusterAdminFromClient(c.client); err != nil {
			c.t.Fatalf("kafka admin: %v", err)
		}
		c.t.Cleanup(func() { _ = c.admin.Close() })
	})
	req := map[string][]int32{}
	for _, topic := range consumed {
		for p := range int32(partitions) {
			req[topic] = append(req[topic], p)
		}
	}
	resp, err := c.admin.ListConsumerGroupOffsets(appName, req)
	if err != nil {
		return "committed offsets: " + err.Error()
	}
	var lags []string
	for _, topic := range consumed {
		var lag int64
		for p := range int32(partitions) {
			end, err := c.client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return fmt.Sprintf("end of %s/%d: %v", topic, p, err)
			}
			committed := int64(0)
			if b := resp.GetBlock(topic, p); b != nil && b.Offset > 0 {
				committed = b.Offset
			}
			lag += end - committed
		}
		if lag > 0 {
			lags = append(lags, fmt.Sprintf("%s %d", topic, lag))
		}
	}
	if len(lags) > 0 {
		return "group lag: " + strings.Join(lags, ", ")
	}
	return ""
}

// copiesCaughtUp says why a node of ns does not (yet) show its copy of
// globalusers caught up in GET /cluster's global_tables ("" once all do).
func copiesCaughtUp(ns []*node) string {
	for _, n := range ns {
		code, body, err := proctest.Get(n.web, "/cluster")
		if err != nil {
			return n.id + ": " + err.Error()
		}
		if code != http.StatusOK {
			return fmt.Sprintf("%s: GET /cluster: HTTP %d", n.id, code)
		}
		var v struct {
			GlobalTables map[string]struct {
				Lag    int64   `json:"lag"`
				Copied []int32 `json:"copied"`
			} `json:"global_tables"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Sprintf("%s: GET /cluster: %v", n.id, err)
		}
		g, ok := v.GlobalTables[globalName]
		switch {
		case !ok:
			return fmt.Sprintf("%s: no %s in global_tables: %s", n.id, globalName, body)
		case g.Lag != 0:
			return fmt.Sprintf("%s: its copy of %s is %d records behind", n.id, globalName, g.Lag)
		}
	}
	return ""
}

// counts reads /user_count/ on every node of ns.
func counts(ns []*node) ([]int64, error) {
	out := make([]int64, len(ns))
	for i, n := range ns {
		v, err := userCount(n.web)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.id, err)
		}
		out[i] = v
	}
	return out, nil
}

// waitAgreed waits until the group has processed everything and every
// node of ns serves the same /user_count/, and returns that count: the
// owner of the count's partition reads its own store, which holds every
// increment once the group has caught up, so the others agreeing means
// their copies have caught up too. It fails the test if the count is
// below atLeast then, or changes when read again.
func (c *cluster) waitAgreed(ns []*node, atLeast int64) int64 {
	c.t.Helper()
	var agreed []int64
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.id
	}
	proctest.WaitForT(c.t, waitLong, fmt.Sprintf("everything processed and %v agree on %s", ids, countPage), func() (bool, string) {
		c.running(ns)
		if why := c.caughtUp(); why != "" {
			return false, why
		}
		got, err := counts(ns)
		if err != nil {
			return false, err.Error()
		}
		agreed = got
		return slices.Min(got) == slices.Max(got), fmt.Sprintf("user counts %v differ", got)
	})
	if agreed[0] < atLeast {
		c.t.Fatalf("every record processed and user_count %d < %d events acknowledged: an increment was lost", agreed[0], atLeast)
	}
	proctest.WaitForT(c.t, waitLong, fmt.Sprintf("%v's copies of %s caught up in /cluster", ids, globalName), func() (bool, string) {
		c.running(ns)
		why := copiesCaughtUp(ns)
		return why == "", why
	})
	again, err := counts(ns)
	if err != nil {
		c.t.Fatal(err)
	}
	if !slices.Equal(again, agreed) {
		c.t.Errorf("user counts changed from %v to %v after everything was processed", agreed, again)
	}
	return agreed[0]
}

// truth counts the events Kafka acknowledged, per user id, and the
// events whose send failed (they may or may not be in the topic).
type truth struct {
	mu     sync.Mutex
	perID  map[string]int64
	total  int64
	failed int64
}

func (tr *truth) snapshot() (perID map[string]int64, total, failed int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := make(map[string]int64, len(tr.perID))
	for k, v := range tr.perID {
		m[k] = v
	}
	return m, tr.total, tr.failed
}

// producer sends user events, JSON keyed by user id, with sarama, to the
// partition Mephisto computes for the key.
type producer struct {
	sarama.SyncProducer
	tr  *truth
	rng *rand.Rand
	ids int
}

func newProducer(t *testing.T, brokers string, tr *truth, ids int) *producer {
	prod, err := sarama.NewSyncProducer(strings.Split(brokers, ","), kafka.ClientConfig("globalusers-test-producer"))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return &producer{SyncProducer: prod, tr: tr, rng: rand.New(rand.NewPCG(5, 8)), ids: ids}
}

// send produces n events of random users, in one batch, and adds what
// was acknowledged to the truth. Only one goroutine sends at a time.
func (p *producer) send(n int) error {
	recs, _ := userEvents(p.rng, n, p.ids)
	msgs := make([]*sarama.ProducerMessage, n)
	for i, r := range recs {
		msgs[i] = &sarama.ProducerMessage{Topic: usersTopic, Partition: kafka.Partition(r.Key, partitions),
			Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value)}
	}
	err := p.SendMessages(msgs)
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
	p.tr.mu.Lock()
	defer p.tr.mu.Unlock()
	for i, m := range msgs {
		if failed[m] {
			p.tr.failed++
			continue
		}
		p.tr.perID[string(recs[i].Key)]++
		p.tr.total++
	}
	return err
}

// load sends batches of events from a goroutine at a steady rate until
// stopped.
type load struct {
	stopCh, done chan struct{}
	sent         atomic.Int64
	errs         atomic.Int64
	lastErr      atomic.Value
	once         sync.Once
}

const loadTick = 20 * time.Millisecond

func startLoad(t *testing.T, p *producer, perSecond int) *load {
	l := &load{stopCh: make(chan struct{}), done: make(chan struct{})}
	perTick := max(1, perSecond*int(loadTick)/int(time.Second))
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
			if err := p.send(perTick); err != nil {
				l.errs.Add(1)
				l.lastErr.Store(err.Error())
			}
			l.sent.Add(int64(perTick))
		}
	}()
	t.Cleanup(l.stop)
	return l
}

// stop stops the goroutine and waits for its last send.
func (l *load) stop() { l.once.Do(func() { close(l.stopCh); <-l.done }) }

// checkSeen requires every node of ns to read results_seen[id] for each
// of a few ids as want[id] (exact) or at least it (!exact), the same on
// every node.
func checkSeen(t *testing.T, ns []*node, want map[string]int64, exact bool) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = ids[:min(5, len(ids))]
	for _, id := range ids {
		var first string
		for _, n := range ns {
			code, v, err := extest.TableValue(n.web, seenTable, id)
			if err != nil || code != http.StatusOK {
				t.Errorf("%s: %s/%s: HTTP %d %v", n.id, seenTable, id, code, err)
				continue
			}
			got, err := strconv.ParseInt(string(v), 10, 64)
			switch {
			case err != nil:
				t.Errorf("%s: %s/%s = %s, not a count", n.id, seenTable, id, v)
			case exact && got != want[id], got < want[id]:
				t.Errorf("%s: %s/%s = %d, want %d (exact: %v)", n.id, seenTable, id, got, want[id], exact)
			}
			if first == "" {
				first = string(v)
			} else if string(v) != first {
				t.Errorf("%s/%s reads %s via %s, %s via %s", seenTable, id, v, n.id, first, ns[0].id)
			}
		}
	}
	t.Logf("%s of %v read the same on %d nodes", seenTable, ids, len(ns))
}

// TestThreeNodes runs the example as three worker processes. After a
// preload every node's /user_count/ is exactly the number of events (the
// increments of every partition, on every node, reach the one grain that
// owns the count); then the node that owns the count's partition is
// killed with SIGKILL while more events arrive, and the survivors agree
// on a count never below the events acknowledged (at least once: what the
// victim had not committed is processed again, and its increments may
// count twice: the excess is logged).
func TestThreeNodes(t *testing.T) {
	eachBroker(t, func(t *testing.T, brokers string, broker *proctest.Proc) {
		start := time.Now()
		c := startCluster(t, brokers, broker)
		tr := &truth{perID: map[string]int64{}}
		prod := newProducer(t, brokers, tr, 200)

		const preload = 2000
		for sent := 0; sent < preload; sent += 500 {
			if err := prod.send(500); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
		perID, total, _ := tr.snapshot()
		for _, n := range c.nodes {
			proctest.WaitForT(t, waitLong, fmt.Sprintf("%s's %s says %d", n.id, countPage, total), func() (bool, string) {
				c.running(c.nodes)
				got, err := userCount(n.web)
				if err != nil {
					return false, err.Error()
				}
				if got > total {
					t.Fatalf("%s: user_count %d > %d events, and no node failed", n.id, got, total)
				}
				return got == total, fmt.Sprintf("user_count %d", got)
			})
		}
		if got := c.waitAgreed(c.nodes, total); got != total {
			t.Fatalf("after every record was processed, user_count %d, want exactly %d", got, total)
		}
		checkSeen(t, c.nodes, perID, true)
		t.Logf("%d events: every node's %s exact after %v", total, countPage, time.Since(start).Round(time.Millisecond))

		// The victim: the node active for the partition of the count's
		// key, whose grain applies every increment.
		v, err := proctest.Cluster(c.nodes[0].web)
		if err != nil {
			t.Fatal(err)
		}
		countPartition := kafka.Partition([]byte(countKey), partitions)
		victimID := v.Actives()[countPartition]
		var victim *node
		var survivors []*node
		for _, n := range c.nodes {
			if n.id == victimID {
				victim = n
			} else {
				survivors = append(survivors, n)
			}
		}
		if victim == nil {
			t.Fatalf("partition %d active on %q, not one of the nodes", countPartition, victimID)
		}

		const rate = 400
		ld := startLoad(t, prod, rate)
		proctest.WaitForT(t, waitLong, "the load counted on every node", func() (bool, string) {
			c.running(c.nodes)
			got, err := counts(c.nodes)
			if err != nil {
				return false, err.Error()
			}
			return slices.Min(got) > total+rate/4, fmt.Sprintf("user counts %v", got)
		})
		t.Logf("killing %s (active for partition %d, the count's) under %d events/s", victim.id, countPartition, rate)
		victim.proc.KillT(t)
		killed := time.Now()
		c.waitFormed(survivors)
		t.Logf("survivors %s and %s formed the cluster %v after the kill", survivors[0].id, survivors[1].id, time.Since(killed).Round(time.Millisecond))
		// More events after the failover, then stop.
		after := ld.sent.Load()
		proctest.WaitForT(t, waitLong, "500 more events sent after the failover", func() (bool, string) {
			c.running(survivors)
			n := ld.sent.Load() - after
			return n >= 500, fmt.Sprintf("%d sent", n)
		})
		ld.stop()
		if n := ld.errs.Load(); n > 0 {
			t.Logf("load: %d batches had send errors (last: %v); their events count as possibly written", n, ld.lastErr.Load())
		}

		perID, total, failed := tr.snapshot()
		got := c.waitAgreed(survivors, total)
		t.Logf("kill -9 of %s: %d events acknowledged (%d more possibly written), survivors agree on user_count %d: excess %d (counted twice after the kill, at least once)",
			victim.id, total, failed, got, got-total)
		checkSeen(t, survivors, perID, false)
		t.Logf("run on this broker took %v", time.Since(start).Round(time.Millisecond))
	})
}
