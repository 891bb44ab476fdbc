package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/kafka"
)

// Transactional pass-through (mode pass-txn, the exactly-once baseline of
// pass-eos): Mephisto's exactly-once commit done by hand with bare sarama.
// A consumer group (read_committed, as Mephisto's under exactly_once) reads
// the input; each claimed partition has a transactional producer of its
// own (Mephisto: one per partition grain) that sends every record
// upper-cased, and the partition commits its records and its next input
// offset (AddOffsetsToTxn + CommitTxn) in one transaction: every
// interval, after maxUncommitted records, and as soon as it has caught
// up with its input but not sooner than a tenth of the interval (at most
// eagerSpacing) after its last commit — Mephisto's commit policy. Unlike
// Mephisto's the commit is synchronous: the partition reads on once it
// returns (as a Kafka Streams task does). Done when transactions holding n
// records have committed.
const (
	maxUncommitted = 20_000
	eagerSpacing   = 50 * time.Millisecond
)

type txnPass struct {
	brokers       []string
	topic, out    string
	group         string
	n             int64
	interval      time.Duration
	sp            *span
	committed     atomic.Int64 // records whose transaction committed
	transactions  atomic.Int64
	done          chan struct{}
	doneOnce      sync.Once
	errc          chan error
	commitSeconds atomic.Int64 // total time in commits, ns
}

func (t *txnPass) fail(err error) {
	select {
	case t.errc <- err:
	default:
	}
}

func (t *txnPass) Setup(sarama.ConsumerGroupSession) error {
	t.sp.begin()
	return nil
}

func (t *txnPass) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (t *txnPass) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	p := c.Partition()
	cfg := kafka.TxnConfig(fmt.Sprintf("raw-%s-txn-%d", t.group, p), fmt.Sprintf("raw/%s/%d", t.group, p), 10*time.Second)
	prod, err := sarama.NewAsyncProducer(t.brokers, cfg)
	if err != nil {
		t.fail(err)
		return err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range prod.Successes() {
		}
	}()
	go func() {
		defer wg.Done()
		for e := range prod.Errors() {
			t.fail(e.Err)
		}
	}()
	defer func() {
		if prod.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
			_ = prod.AbortTxn()
		}
		prod.AsyncClose()
		wg.Wait()
	}()
	group := sarama.NewConsumerGroupMetadataFromSession(s, t.group, nil)
	var pending int64
	next := int64(-1)
	began := time.Now()
	commit := func() error {
		if pending == 0 {
			return nil
		}
		start := time.Now()
		began = start
		offsets := map[string][]*sarama.PartitionOffsetMetadata{c.Topic(): {{Partition: p, Offset: next, LeaderEpoch: -1}}}
		if err := prod.AddOffsetsToTxnWithGroupMetadata(offsets, group); err != nil {
			return fmt.Errorf("partition %d: add offsets: %w", p, err)
		}
		if err := prod.CommitTxn(); err != nil {
			return fmt.Errorf("partition %d: commit: %w", p, err)
		}
		t.commitSeconds.Add(int64(time.Since(start)))
		t.transactions.Add(1)
		if t.committed.Add(pending) >= t.n {
			t.sp.end()
			t.doneOnce.Do(func() { close(t.done) })
		}
		pending = 0
		return nil
	}
	eager := time.NewTicker(eagerSpacing)
	defer eager.Stop()
	caughtUp := false
	for {
		var err error
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil // revoked: the open transaction is aborted
			}
			if pending == 0 {
				if err := prod.BeginTxn(); err != nil {
					t.fail(err)
					return err
				}
			}
			v := upper(append([]byte(nil), m.Value...))
			prod.Input() <- &sarama.ProducerMessage{Topic: t.out, Partition: kafka.Partition(m.Key, partitionsOf(m)),
				Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(v)}
			pending++
			next = m.Offset + 1
			caughtUp = next >= c.HighWaterMarkOffset()
			since := time.Since(began)
			if pending >= maxUncommitted || since >= t.interval || caughtUp && since >= min(t.interval/10, eagerSpacing) {
				err = commit()
			}
		case <-eager.C:
			if since := time.Since(began); since >= t.interval || caughtUp && since >= min(t.interval/10, eagerSpacing) {
				err = commit()
			}
		case <-s.Context().Done():
			return nil
		}
		if err != nil {
			t.fail(err)
			return err
		}
	}
}

// passTxn runs the transactional pass-through until n records are
// committed.
func passTxn(ctx context.Context, brokers []string, topic, out, group string, n int64, interval time.Duration) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &txnPass{brokers: brokers, topic: topic, out: out, group: group, n: n, interval: interval,
		sp: &span{}, done: make(chan struct{}), errc: make(chan error, 1)}
	cfg := consumerConfig("raw-" + group)
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	g, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		return result{}, err
	}
	gerr := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, t); err != nil && ctx.Err() == nil {
				gerr <- err
				return
			}
		}
		gerr <- nil
	}()
	var consumeErr error
	consumed := false
	select {
	case <-t.done:
	case err = <-t.errc:
	case consumeErr = <-gerr:
		consumed = true
	case <-ctx.Done():
		err = fmt.Errorf("pass-txn: timed out after %d committed", t.committed.Load())
	}
	cancel()
	if !consumed {
		consumeErr = <-gerr
	}
	err = errors.Join(err, consumeErr, g.Close())
	return result{Records: n, Seconds: t.sp.seconds(), Transactions: t.transactions.Load(),
		CommitSeconds: time.Duration(t.commitSeconds.Load()).Seconds()}, err
}
