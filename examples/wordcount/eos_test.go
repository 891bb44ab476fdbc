package main

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The exactly-once acceptance check: three wordcount worker processes,
// gossip joined, with MEPHISTO_PROCESSING_GUARANTEE=exactly_once, on the
// dev broker (`mephisto broker`, subtest kfake) and on Apache Kafka
// (subtest kafka). Lines arrive at a steady rate; one node is killed
// with SIGKILL in the middle, the survivors take its partitions over, it
// is restarted on its data dir and rejoins, more lines arrive. In the end
// every word's count is exact — not at least the truth, as at-least-once
// allows after a crash — over HTTP on every node, and in the word_counts
// changelog read read_committed; the words topic between the two agents
// holds each occurrence exactly once, read read_committed.

const (
	eosPartitions     = 6
	eosCommitInterval = 100 * time.Millisecond
	eosSessionTimeout = 6 * time.Second
	eosWait           = 120 * time.Second
	eosRate           = 200 // lines per second
	eosLinesPerPhase  = 400 // lines acknowledged before the kill, during the failover at least, after the restart
	wordsTopic        = "words"
	countsTable       = "word_counts"
	countsChangelog   = "wordcount-" + countsTable + "-changelog"
)

func TestExactlyOnceKill9(t *testing.T) {
	t.Parallel()
	// The nodes are built without -race, as in examples/globalusers:
	// three race-checked workers and a broker on two cores are slow to
	// form a group. The example's code is race-checked in-process by
	// TestWordCount.
	var bin, brokerBin string
	if err := proctest.Build(t.TempDir(),
		proctest.Binary{Pkg: ".", Name: "wordcount", Out: &bin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &brokerBin}); err != nil {
		t.Fatal(err)
	}
	t.Run("kfake", func(t *testing.T) {
		t.Parallel()
		listen := proctest.FreeAddrT(t, false)
		p := proctest.StartT(t, proctest.Spec{Name: "broker", Path: brokerBin,
			Args:   []string{"broker", "--listen", listen, "--data-dir", t.TempDir()},
			Env:    proctest.Environ(nil, "MEPHISTO_"),
			LogDir: proctest.LogDir(t, "wordcount")})
		addr, _ := p.WaitListeningT(t, 30*time.Second, listen)
		testExactlyOnceKill9(t, bin, addr, p)
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		k := proctest.StartKafkaT(t, proctest.KafkaSpec{Name: "wordcount-kafka", LogDir: proctest.LogDir(t, "wordcount")})
		testExactlyOnceKill9(t, bin, k.Bootstrap(), k.Proc(0))
	})
}

// eosNode is one worker process of the example.
type eosNode struct {
	id, web, gossip, dataDir string
	proc                     *proctest.Proc
	starts                   int
}

// eosCluster is the broker and the example's three nodes on it.
type eosCluster struct {
	t       *testing.T
	bin     string
	brokers string
	broker  *proctest.Proc
	logDir  string
	nodes   []*eosNode
}

// start starts n, joining gossip at join (its own address for the
// first node of a new cluster).
func (c *eosCluster) start(n *eosNode, join string) {
	n.starts++
	name := n.id
	if n.starts > 1 {
		name = fmt.Sprintf("%s-run%d", n.id, n.starts)
	}
	n.proc = proctest.StartT(c.t, proctest.Spec{Name: name, Path: c.bin,
		Args: []string{"worker", "--brokers", c.brokers, "--node-id", n.id, "--web", n.web,
			"--gossip", n.gossip, "--join", join, "--data-dir", n.dataDir,
			"--partitions", strconv.Itoa(eosPartitions), "--commit-interval", eosCommitInterval.String(),
			"--session-timeout", eosSessionTimeout.String()},
		Env:    proctest.Environ([]string{rateEnv + "=", "MEPHISTO_PROCESSING_GUARANTEE=exactly_once"}, "MEPHISTO_"),
		LogDir: c.logDir})
}

// running fails the test if the broker or a node of ns has exited.
func (c *eosCluster) running(ns []*eosNode) {
	c.t.Helper()
	procs := []*proctest.Proc{c.broker}
	for _, n := range ns {
		procs = append(procs, n.proc)
	}
	if err := proctest.Running(procs...); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// waitFormed waits until ns are exactly the cluster: all ready, one
// generation, every partition active on one of them, all alive in every
// view. It returns the view and how long that took.
func (c *eosCluster) waitFormed(ns []*eosNode) (proctest.ClusterView, time.Duration) {
	c.t.Helper()
	pn := make([]proctest.Node, len(ns))
	ids := make([]string, len(ns))
	for i, n := range ns {
		pn[i], ids[i] = proctest.Node{ID: n.id, Web: n.web}, n.id
	}
	var v proctest.ClusterView
	d := proctest.WaitForT(c.t, eosWait, fmt.Sprintf("cluster of %v formed", ids), func() (bool, string) {
		c.running(ns)
		var why string
		v, why = proctest.Formed(pn, eosPartitions, true)
		return why == "", why
	})
	return v, d
}

// eosVocab is the words the lines are made of; eosLine draws the first
// ones more often, so some counts are large and some small.
var eosVocab = strings.Fields(`the quick brown fox jumps over lazy dog while seven wizards quietly hex jolly bugs
	a journey of thousand miles begins with single step all that glitters is not gold to be or
	question early bird catches worm cats sleep in sun it was best times worst kafka exactly once`)

// eosLine returns a line of 1 to 8 words of eosVocab in mixed case with
// irregular whitespace (what the split agent lower-cases and splits).
func eosLine(rng *rand.Rand) string {
	seps := []string{" ", "  ", "\t", " \t "}
	var b strings.Builder
	for j := range 1 + rng.IntN(8) {
		w := eosVocab[rng.IntN(1+rng.IntN(len(eosVocab)))]
		switch rng.IntN(3) {
		case 1:
			w = strings.ToUpper(w)
		case 2:
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		if j > 0 || rng.IntN(4) == 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		b.WriteString(w)
	}
	return b.String()
}

// wordsOf counts the words of lines as the split agent sees them.
func wordsOf(lines []string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range lines {
		for _, w := range strings.Fields(strings.ToLower(l)) {
			out[w]++
		}
	}
	return out
}

// lineLoad sends lines to the lines topic from a goroutine, a batch
// every tick, at a steady rate, until stopped. Only acknowledged lines
// count in acked; lines of a batch whose send failed count in failed
// (they may or may not be in the topic).
type lineLoad struct {
	stopCh, done  chan struct{}
	once          sync.Once
	acked, failed atomic.Int64
	errs          atomic.Int64
	lastErr       atomic.Value
}

const loadTick = 20 * time.Millisecond

func startLineLoad(t *testing.T, brokers string, perSecond int) *lineLoad {
	client, err := sarama.NewClient(strings.Split(brokers, ","), kafka.ClientConfig("wordcount-eos-test-producer"))
	if err != nil {
		t.Fatalf("producer client: %v", err)
	}
	parts, err := client.Partitions("lines")
	if err != nil {
		_ = client.Close()
		t.Fatalf("partitions of lines: %v", err)
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		t.Fatalf("producer: %v", err)
	}
	l := &lineLoad{stopCh: make(chan struct{}), done: make(chan struct{})}
	perTick := max(1, perSecond*int(loadTick)/int(time.Second))
	rng := rand.New(rand.NewPCG(9, 1))
	go func() {
		defer close(l.done)
		defer client.Close()
		defer prod.Close()
		tick := time.NewTicker(loadTick)
		defer tick.Stop()
		next := 0
		for {
			select {
			case <-l.stopCh:
				return
			case <-tick.C:
			}
			msgs := make([]*sarama.ProducerMessage, perTick)
			for i := range msgs {
				msgs[i] = &sarama.ProducerMessage{Topic: "lines", Partition: parts[next%len(parts)],
					Value: sarama.StringEncoder(eosLine(rng))}
				next++
			}
			err := prod.SendMessages(msgs)
			failed := int64(0)
			var perrs sarama.ProducerErrors
			switch {
			case errors.As(err, &perrs):
				failed = int64(len(perrs))
			case err != nil:
				failed = int64(len(msgs))
			}
			if err != nil {
				l.errs.Add(1)
				l.lastErr.Store(err.Error())
			}
			l.failed.Add(failed)
			l.acked.Add(int64(len(msgs)) - failed)
		}
	}()
	t.Cleanup(l.stop)
	return l
}

// stop stops the goroutine and waits for its last send.
func (l *lineLoad) stop() { l.once.Do(func() { close(l.stopCh); <-l.done }) }

// waitAcked waits until n more lines than from were acknowledged.
func (l *lineLoad) waitAcked(c *eosCluster, ns []*eosNode, from, n int64, what string) {
	c.t.Helper()
	proctest.WaitForT(c.t, eosWait, fmt.Sprintf("%d lines acknowledged %s", n, what), func() (bool, string) {
		c.running(ns)
		got := l.acked.Load() - from
		return got >= n, fmt.Sprintf("%d acknowledged", got)
	})
}

// readIsolated returns every record of topic a consumer at iso is given,
// partition by partition, up to the topic's end as that consumer sees it.
func readIsolated(t testing.TB, brokers, topic string, iso sarama.IsolationLevel) [][]*sarama.ConsumerMessage {
	return extest.ReadTopic(t, brokers, topic, iso)
}

func countRecords(parts [][]*sarama.ConsumerMessage) int {
	n := 0
	for _, recs := range parts {
		n += len(recs)
	}
	return n
}

// countsOver reads every word of truth from the node at web and says
// what differs ("" if nothing). A count above the truth fails the test
// at once: the load has stopped, every line is in truth, so a larger
// count means an occurrence counted twice.
func countsOver(t *testing.T, n *eosNode, truth map[string]int64) string {
	t.Helper()
	for _, w := range slices.Sorted(maps.Keys(truth)) {
		code, v, err := extest.TableValue(n.web, countsTable, w)
		if err != nil {
			return fmt.Sprintf("%s: %s/%s: HTTP %d %v", n.id, countsTable, w, code, err)
		}
		got, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			t.Fatalf("%s: %s/%s = %s, not a count", n.id, countsTable, w, v)
		}
		if got > truth[w] {
			t.Fatalf("%s: %s/%s = %d over HTTP, above the truth %d: an occurrence counted twice under exactly_once", n.id, countsTable, w, got, truth[w])
		}
		if got != truth[w] {
			return fmt.Sprintf("%s: %s/%s = %d, want %d", n.id, countsTable, w, got, truth[w])
		}
	}
	return ""
}

func testExactlyOnceKill9(t *testing.T, bin, brokers string, broker *proctest.Proc) {
	start := time.Now()
	c := &eosCluster{t: t, bin: bin, brokers: brokers, broker: broker, logDir: proctest.LogDir(t, "wordcount")}
	for i := range 3 {
		c.nodes = append(c.nodes, &eosNode{id: fmt.Sprintf("n%d", i+1), web: proctest.FreeAddrT(t, false),
			gossip: proctest.FreeAddrT(t, true), dataDir: t.TempDir()})
	}
	for _, n := range c.nodes {
		c.start(n, c.nodes[0].gossip)
	}
	c.waitFormed(c.nodes)
	t.Logf("three exactly_once nodes formed after %v", time.Since(start).Round(time.Millisecond))

	ld := startLineLoad(t, brokers, eosRate)
	ld.waitAcked(c, c.nodes, 0, eosLinesPerPhase, "before the kill")
	// Processed, not just sent: "the" (the likeliest word) is counted on
	// the node that owns it, before that node dies.
	proctest.WaitForT(t, eosWait, "the counted before the kill", func() (bool, string) {
		c.running(c.nodes)
		code, v, err := extest.TableValue(c.nodes[0].web, countsTable, "the")
		return err == nil && code == 200 && string(v) != "0", fmt.Sprintf("HTTP %d %s %v", code, v, err)
	})

	// The victim: the node active for the partition of "the".
	v, err := proctest.Cluster(c.nodes[0].web)
	if err != nil {
		t.Fatal(err)
	}
	thePartition := kafka.Partition([]byte("the"), eosPartitions)
	victimID := v.Actives()[thePartition]
	var victim *eosNode
	var survivors []*eosNode
	for _, n := range c.nodes {
		if n.id == victimID {
			victim = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if victim == nil {
		t.Fatalf("partition %d active on %q, not one of the nodes", thePartition, victimID)
	}
	var owned []int32
	for p, id := range v.Actives() {
		if id == victimID {
			owned = append(owned, p)
		}
	}
	slices.Sort(owned)
	atKill := ld.acked.Load()
	t.Logf("kill -9 of %s (active for partitions %v, %d of them) after %d lines acknowledged, under %d lines/s",
		victim.id, owned, len(owned), atKill, eosRate)
	victim.proc.KillT(t)
	kills := 1
	_, failover := c.waitFormed(survivors)
	t.Logf("survivors %s and %s took every partition over %v after the kill", survivors[0].id, survivors[1].id, failover.Round(time.Millisecond))
	ld.waitAcked(c, survivors, atKill, eosLinesPerPhase/2, "after the kill")

	// The victim comes back on its data dir (what it committed before
	// the kill is there; what it had not is in no committed transaction),
	// joining gossip through a survivor.
	c.start(victim, survivors[0].gossip)
	_, rejoin := c.waitFormed(c.nodes)
	t.Logf("%s restarted on its data dir and rejoined after %v", victim.id, rejoin.Round(time.Millisecond))
	ld.waitAcked(c, c.nodes, ld.acked.Load(), eosLinesPerPhase, "after the restart")
	ld.stop()
	if n := ld.errs.Load(); n > 0 {
		t.Logf("load: %d batches had send errors (last: %v)", n, ld.lastErr.Load())
	}

	// The truth is the lines topic itself (plain records, every one
	// visible read committed): what was acknowledged, and perhaps some
	// of a batch whose acknowledgement failed.
	var lines []string
	for _, recs := range readIsolated(t, brokers, "lines", sarama.ReadCommitted) {
		for _, m := range recs {
			lines = append(lines, string(m.Value))
		}
	}
	acked, failed := ld.acked.Load(), ld.failed.Load()
	if n := int64(len(lines)); n < acked || n > acked+failed {
		t.Fatalf("the lines topic holds %d lines, want %d acknowledged (+ up to %d whose send failed)", n, acked, failed)
	}
	truth := wordsOf(lines)
	var words int64
	for _, n := range truth {
		words += n
	}

	// Over HTTP, on every node: every word exactly.
	took := proctest.WaitForT(t, eosWait, "every count exact over HTTP on every node", func() (bool, string) {
		c.running(c.nodes)
		for _, n := range c.nodes {
			if why := countsOver(t, n, truth); why != "" {
				return false, why
			}
		}
		return true, ""
	})
	for _, n := range c.nodes {
		if code, _, _ := extest.TableValue(n.web, countsTable, "neverwritten"); code != 404 {
			t.Errorf("%s: a word never sent: HTTP %d, want 404", n.id, code)
		}
	}

	// The changelog, read committed: the last record of each key is its
	// count, no other key, and each key's counts only grow (a committed
	// record below an earlier one would be a count that went back).
	var clRecords int
	proctest.WaitForT(t, eosWait, countsChangelog+" read committed ends with exactly the truth", func() (bool, string) {
		c.running(c.nodes)
		last := map[string]int64{}
		clRecords = 0
		for p, recs := range readIsolated(t, brokers, countsChangelog, sarama.ReadCommitted) {
			prev := map[string]int64{}
			for _, m := range recs {
				clRecords++
				n, err := codec.Int64().Decode(m.Value)
				if err != nil {
					t.Fatalf("%s/%d@%d: key %q: %v", countsChangelog, p, m.Offset, m.Key, err)
				}
				k := string(m.Key)
				if n < prev[k] {
					t.Fatalf("%s/%d@%d: %q = %d after %d, read committed: a count went back", countsChangelog, p, m.Offset, k, n, prev[k])
				}
				prev[k], last[k] = n, n
			}
		}
		for k, n := range last {
			if _, ok := truth[k]; !ok {
				t.Fatalf("%s holds key %q = %d, a word never sent", countsChangelog, k, n)
			}
		}
		for k, want := range truth {
			if got, ok := last[k]; !ok || got != want {
				if got > want {
					t.Fatalf("%s: %q ends with %d read committed, above the truth %d", countsChangelog, k, got, want)
				}
				return false, fmt.Sprintf("%q ends with %d (present %v), want %d", k, got, ok, want)
			}
		}
		return true, ""
	})

	// The words topic between split and count, read committed: each
	// occurrence once, none lost, none from a transaction the kill cut
	// short. Read uncommitted it may hold more: the aborted ones.
	committedWords := readIsolated(t, brokers, wordsTopic, sarama.ReadCommitted)
	perWord := map[string]int64{}
	for _, recs := range committedWords {
		for _, m := range recs {
			perWord[string(m.Key)]++
		}
	}
	for k, want := range truth {
		if perWord[k] != want {
			t.Errorf("%s read committed holds %d records of %q, want exactly %d", wordsTopic, perWord[k], k, want)
		}
	}
	for k, n := range perWord {
		if _, ok := truth[k]; !ok {
			t.Errorf("%s read committed holds %d records of %q, a word never sent", wordsTopic, n, k)
		}
	}
	inLog := countRecords(readIsolated(t, brokers, wordsTopic, sarama.ReadUncommitted))

	// Nothing moves afterwards.
	for _, n := range c.nodes {
		if why := countsOver(t, n, truth); why != "" {
			t.Errorf("after the changelog check: %s", why)
		}
	}
	t.Logf("%d lines (%d send errors), %d words (%d distinct), %d kill(s) of %s: every count exact over HTTP on 3 nodes %v after the load stopped; %s: %d committed records; %s: %d records read committed, %d in the log read uncommitted (%d from aborted transactions); run took %v",
		len(lines), ld.errs.Load(), words, len(truth), kills, victim.id, took.Round(time.Millisecond),
		countsChangelog, clRecords, wordsTopic, countRecords(committedWords), inLog, inLog-countRecords(committedWords),
		time.Since(start).Round(time.Millisecond))
}
