// Command txnprobe times the steps of a Kafka transaction as Mephisto's
// exactly-once partitions make them (issue 12, see BENCHMARKS.md): each of
// -p producers (one per partition, transactional ids of their own,
// kafka.TxnConfig as Mephisto's grains use) runs -txns transactions, -gap
// apart, each holding -records records to its own partition of topic t and
// the partition's next offset of topic in for group g; a read_committed
// consumer per partition waits for each transaction's records. It prints,
// per producer, the medians of: BeginTxn to the last acknowledgement
// (AddPartitionsToTxn and the produce round trip), AddOffsetsToTxn (local
// in sarama), CommitTxn (AddOffsetsToTxn and TxnOffsetCommit requests,
// then EndTxn) and the further wait until the records are delivered
// read_committed (the markers written, the last stable offset moved), and
// how many retries sarama logged (CONCURRENT_TRANSACTIONS: a transaction
// begun while the coordinator still completes the previous one). The
// first ten transactions are not counted.
//
//	go run ./bench/txnprobe -broker kfake -p 8 -gap 50ms
//	go run ./bench/txnprobe -broker kafka -p 8 -gap 0
//
// The broker is started for the run: the dev broker in process, or Apache
// Kafka (one broker, KRaft) as the harness starts it.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// retries counts sarama's "retrying" log lines.
type retries struct{ n atomic.Int64 }

func (l *retries) Print(v ...any)            { l.check(fmt.Sprint(v...)) }
func (l *retries) Printf(f string, v ...any) { l.check(fmt.Sprintf(f, v...)) }
func (l *retries) Println(v ...any)          { l.check(fmt.Sprintln(v...)) }
func (l *retries) check(s string) {
	if strings.Contains(s, "retrying") {
		l.n.Add(1)
	}
}

func main() {
	kind := flag.String("broker", "kfake", "kfake (the dev broker, in process) or kafka (Apache Kafka, KRaft)")
	producers := flag.Int("p", 8, "producers, one per partition, all at once")
	gap := flag.Duration("gap", 50*time.Millisecond, "pause between a commit and the next transaction")
	txns := flag.Int("txns", 60, "transactions per producer (the first ten are not counted)")
	records := flag.Int("records", 100, "records per transaction")
	flag.Parse()
	if err := run(*kind, *producers, *gap, *txns, *records); err != nil {
		fmt.Fprintln(os.Stderr, "txnprobe:", err)
		os.Exit(1)
	}
}

func run(kind string, producers int, gap time.Duration, txns, records int) error {
	var addr string
	switch kind {
	case "kafka":
		dir, err := os.MkdirTemp("", "txnprobe-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		k, err := proctest.StartKafka(proctest.KafkaSpec{Name: "txnprobe", Dir: dir})
		if err != nil {
			return err
		}
		defer func() { _ = k.KillBroker(0) }()
		addr = k.Bootstrap()
	case "kfake":
		b, err := kafka.StartBroker(kafka.BrokerConfig{})
		if err != nil {
			return err
		}
		defer b.Close()
		addr = b.Addr()
	default:
		return fmt.Errorf("unknown broker %q", kind)
	}
	rl := &retries{}
	sarama.Logger = rl
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("txnprobe-admin"))
	if err != nil {
		return err
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return err
	}
	for _, t := range []string{"t", "in"} {
		if err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: int32(producers), ReplicationFactor: 1}, false); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // the metadata settles
	out := make(chan string, producers)
	for q := range int32(producers) {
		go func() {
			line, err := probe(addr, q, gap, txns, records)
			if err != nil {
				line = fmt.Sprintf("producer %d: %v", q, err)
			}
			out <- line
		}()
	}
	for range producers {
		fmt.Println(<-out)
	}
	fmt.Printf("%s, %d producers at once, %d transactions of %d records each, %v apart: sarama logged %d retries\n",
		kind, producers, txns, records, gap, rl.n.Load())
	return nil
}

// probe runs one producer's transactions on partition q.
func probe(addr string, q int32, gap time.Duration, txns, records int) (string, error) {
	cfg := kafka.TxnConfig(fmt.Sprint("txnprobe-", q), fmt.Sprint("txnprobe/", q), 10*time.Second)
	p, err := sarama.NewAsyncProducer([]string{addr}, cfg)
	if err != nil {
		return "", err
	}
	defer p.Close()
	failed := make(chan error, 1)
	go func() {
		for e := range p.Errors() {
			select {
			case failed <- e.Err:
			default:
			}
		}
	}()
	ccfg := kafka.ConsumerConfig(fmt.Sprint("txnprobe-read-", q))
	ccfg.Consumer.IsolationLevel = sarama.ReadCommitted
	ccfg.Consumer.MaxWaitTime = 10 * time.Millisecond
	cons, err := sarama.NewConsumer([]string{addr}, ccfg)
	if err != nil {
		return "", err
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition("t", q, sarama.OffsetNewest)
	if err != nil {
		return "", err
	}
	defer pc.AsyncClose()
	var produce, offsets, commit, visible []float64
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	for i := range txns {
		t0 := time.Now()
		if err := p.BeginTxn(); err != nil {
			return "", err
		}
		for j := range records {
			p.Input() <- &sarama.ProducerMessage{Topic: "t", Partition: q, Value: sarama.StringEncoder(fmt.Sprint(i, "/", j))}
		}
		for range records {
			select {
			case <-p.Successes():
			case err := <-failed:
				return "", err
			}
		}
		t1 := time.Now()
		next := map[string][]*sarama.PartitionOffsetMetadata{"in": {{Partition: q, Offset: int64(i + 1), LeaderEpoch: -1}}}
		if err := p.AddOffsetsToTxn(next, "g"); err != nil {
			return "", err
		}
		t2 := time.Now()
		if err := p.CommitTxn(); err != nil {
			return "", err
		}
		t3 := time.Now()
		for range records {
			select {
			case <-pc.Messages():
			case <-time.After(30 * time.Second):
				return "", fmt.Errorf("transaction %d: not delivered read_committed after 30s", i)
			}
		}
		t4 := time.Now()
		if i >= 10 {
			produce, offsets = append(produce, ms(t1.Sub(t0))), append(offsets, ms(t2.Sub(t1)))
			commit, visible = append(commit, ms(t3.Sub(t2))), append(visible, ms(t4.Sub(t3)))
		}
		time.Sleep(gap)
	}
	med := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	return fmt.Sprintf("producer %d, medians: BeginTxn to the last ack %.1f ms, AddOffsetsToTxn %.1f ms, CommitTxn %.1f ms, then delivered read_committed +%.1f ms",
		q, med(produce), med(offsets), med(commit), med(visible)), nil
}
