package eostest

import (
	"fmt"
	"math/rand/v2"
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

// The cluster of a run: three worker processes of the test app, and the
// driver producing the input.

const (
	numNodes       = 3
	numPartitions  = 6
	keysPerPart    = 8 // keys of each partition: numPartitions*keysPerPart keys
	commitInterval = 100 * time.Millisecond
	sessionTimeout = 10 * time.Second
)

// cluster is one run's workers on its broker.
type cluster struct {
	t         *testing.T
	b         *broker
	guarantee string
	logDir    string
	nodes     []*node

	// The topics' names on the broker.
	input, echo, aggregates, changelog string

	clientOnce sync.Once
	client     sarama.Client // read committed: offsets, admin, the verifier's reads
	admin      sarama.ClusterAdmin
}

// node is one worker; it keeps its id, ports and data dir across
// restarts.
type node struct {
	c       *cluster
	id      string
	web     string
	gossip  string
	dataDir string
	proc    *proctest.Proc
	procs   []*proctest.Proc // every incarnation, oldest first
}

func newCluster(t *testing.T, b *broker, guarantee, logDir string) *cluster {
	c := &cluster{t: t, b: b, guarantee: guarantee, logDir: logDir,
		input: b.topic + InputTopic, echo: b.topic + EchoTopic, aggregates: b.topic + AggregatesTopic,
		changelog: b.app + "-" + Table + "-changelog"}
	for i := range numNodes {
		c.nodes = append(c.nodes, &node{c: c, id: fmt.Sprintf("n%d", i+1), web: proctest.FreeAddrT(t, false),
			gossip: proctest.FreeAddrT(t, true), dataDir: t.TempDir()})
	}
	return c
}

// start starts the node's next incarnation on its data dir and ports.
// Every node joins through every other one, so that a restarted node
// finds the cluster through whichever is up.
func (n *node) start() {
	c := n.c
	c.t.Helper()
	name := n.id
	if len(n.procs) > 0 {
		name = fmt.Sprintf("%s.run%d", n.id, len(n.procs)+1)
	}
	var join []string
	for _, o := range c.nodes {
		if o != n {
			join = append(join, o.gossip)
		}
	}
	n.proc = proctest.StartT(c.t, proctest.Spec{Name: name, Path: testappBin, Args: []string{"worker",
		"--brokers", c.b.addr, "--node-id", n.id, "--web", n.web, "--gossip", n.gossip,
		"--join", strings.Join(join, ","), "--data-dir", n.dataDir,
		"--partitions", strconv.Itoa(numPartitions), "--commit-interval", commitInterval.String(),
		"--session-timeout", sessionTimeout.String(), "--processing-guarantee", c.guarantee},
		Env: proctest.Environ(c.b.env(), "MEPHISTO_", "EOSTEST_"), LogDir: c.logDir})
	n.procs = append(n.procs, n.proc)
}

// kill ends the node with SIGKILL, as kill -9 does.
func (n *node) kill() { n.proc.KillT(n.c.t) }

// running fails the test if the broker process (on kfake) or a worker
// has exited: only the test kills workers, and it restarts them at once.
func (c *cluster) running() {
	c.t.Helper()
	procs := []*proctest.Proc{}
	if c.b.proc != nil {
		procs = append(procs, c.b.proc)
	}
	for _, n := range c.nodes {
		procs = append(procs, n.proc)
	}
	if err := proctest.Running(procs...); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// waitFormed waits until the nodes are one cluster: each ready, in one
// generation, each seeing every node alive, every partition active on
// one of them.
func (c *cluster) waitFormed(timeout time.Duration) {
	c.t.Helper()
	nodes := make([]proctest.Node, len(c.nodes))
	for i, n := range c.nodes {
		nodes[i] = proctest.Node{ID: n.id, Web: n.web}
	}
	proctest.WaitForT(c.t, timeout, "cluster of 3 formed (all ready, one generation, all alive)", func() (bool, string) {
		c.running()
		_, why := proctest.Formed(nodes, numPartitions, true)
		return why == "", why
	})
}

// kafka returns the run's read-committed client and its admin.
func (c *cluster) kafka() (sarama.Client, sarama.ClusterAdmin) {
	c.clientOnce.Do(func() {
		cfg := kafka.ConsumerConfig("eostest-verifier")
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
		var err error
		if c.client, err = sarama.NewClient(strings.Split(c.b.addr, ","), cfg); err != nil {
			c.t.Fatalf("kafka client: %v", err)
		}
		if c.admin, err = sarama.NewClusterAdminFromClient(c.client); err != nil {
			c.t.Fatalf("kafka admin: %v", err)
		}
		c.t.Cleanup(func() { _ = c.admin.Close() }) // closes the client too
	})
	return c.client, c.admin
}

// lag is the group's lag on the input: its end offsets less the offsets
// the group committed, summed over the partitions.
func (c *cluster) lag() (int64, error) {
	client, admin := c.kafka()
	ps := make([]int32, numPartitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(c.b.app, map[string][]int32{c.input: ps})
	if err != nil {
		return 0, fmt.Errorf("committed offsets of group %s: %w", c.b.app, err)
	}
	var lag int64
	for _, p := range ps {
		end, err := client.GetOffset(c.input, p, sarama.OffsetNewest)
		if err != nil {
			return 0, fmt.Errorf("end of %s/%d: %w", c.input, p, err)
		}
		var done int64
		if b := resp.GetBlock(c.input, p); b != nil && b.Offset > 0 {
			done = b.Offset
		}
		lag += end - done
	}
	return lag, nil
}

// unsettled names the partitions of topics whose last stable offset is
// below their high watermark (a transaction is open, or its markers are
// not all written yet); "" when there is none.
func (c *cluster) unsettled(topics ...string) (string, error) {
	client, _ := c.kafka()
	var open []string
	for _, topic := range topics {
		for p := range int32(numPartitions) {
			_, stable, err := kafka.Bounds(client, topic, p)
			if err != nil {
				return "", err
			}
			hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return "", fmt.Errorf("end of %s/%d: %w", topic, p, err)
			}
			if stable < hwm {
				open = append(open, fmt.Sprintf("%s/%d (stable %d < end %d)", topic, p, stable, hwm))
			}
		}
	}
	return strings.Join(open, ", "), nil
}

// keysSpread returns numPartitions*keysPerPart keys, keysPerPart of them
// on each partition.
func keysSpread() []string {
	var keys []string
	per := make([]int, numPartitions)
	for i := 0; len(keys) < numPartitions*keysPerPart; i++ {
		k := fmt.Sprintf("key-%03d", i)
		if p := kafka.Partition([]byte(k), numPartitions); per[p] < keysPerPart {
			per[p]++
			keys = append(keys, k)
		}
	}
	return keys
}

// driver produces the numbered input at a steady rate: every tick, the
// records with the next sequence numbers, each for a key drawn at
// random. It does not wait for one batch's acknowledgement before the
// next (the producer is asynchronous, idempotent, one request in flight
// per broker: a partition's records stay in order), so that the rate
// holds on a broker that answers slowly.
type driver struct {
	prod    sarama.AsyncProducer
	topic   string
	keys    []string
	rng     *rand.Rand
	perTick int

	stopCh chan struct{}
	done   chan struct{} // closed once every record sent is answered

	// Written by the driver's goroutines; read after done is closed.
	acked   int64
	failed  map[int64]bool // records whose send failed: written or not
	lastErr error
	took    time.Duration // from the first tick to the last

	sent atomic.Int64 // records handed to the producer so far
}

// Input rate: inputPerTick records every inputTick.
const (
	inputTick    = 50 * time.Millisecond
	inputPerTick = 5 // 100 records/s
)

func (c *cluster) startDriver(keys []string, seed uint64) *driver {
	c.t.Helper()
	prod, err := sarama.NewAsyncProducer(strings.Split(c.b.addr, ","), kafka.ClientConfig("eostest-driver"))
	if err != nil {
		c.t.Fatalf("driver's producer: %v", err)
	}
	d := &driver{prod: prod, topic: c.input, keys: keys, rng: rand.New(rand.NewPCG(seed, 1)), perTick: inputPerTick,
		failed: map[int64]bool{}, stopCh: make(chan struct{}), done: make(chan struct{})}
	var answers sync.WaitGroup
	answers.Add(2)
	go func() {
		defer answers.Done()
		for range prod.Successes() {
			d.acked++
		}
	}()
	go func() {
		defer answers.Done()
		for pe := range prod.Errors() {
			d.failed[pe.Msg.Metadata.(int64)] = true
			d.lastErr = pe.Err
		}
	}()
	go func() {
		d.produce()
		prod.AsyncClose() // flushes, then closes Successes and Errors
		answers.Wait()
		close(d.done)
	}()
	c.t.Cleanup(d.stop)
	return d
}

// produce sends, every tick, the records due by then at the driver's
// rate, until the driver is stopped: a tick that comes late (a busy
// machine) sends more, so that the rate holds on average.
func (d *driver) produce() {
	tick := time.NewTicker(inputTick)
	defer tick.Stop()
	start := time.Now()
	defer func() { d.took = time.Since(start) }()
	var seq int64
	for {
		select {
		case <-d.stopCh:
			return
		case <-tick.C:
		}
		due := int64(time.Since(start)/inputTick) * int64(d.perTick)
		for ; seq < due; seq++ {
			k := d.keys[d.rng.IntN(len(d.keys))]
			m := &sarama.ProducerMessage{Topic: d.topic, Partition: kafka.Partition([]byte(k), numPartitions),
				Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(FormatInput(seq)), Metadata: seq}
			select {
			case d.prod.Input() <- m:
			case <-d.stopCh:
				return
			}
			d.sent.Add(1)
		}
	}
}

// stop stops the driver and waits until every record it sent is
// answered.
func (d *driver) stop() {
	select {
	case <-d.stopCh:
	default:
		close(d.stopCh)
	}
	<-d.done
}
