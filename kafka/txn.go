package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// TxnConfig returns the configuration of a transactional producer's
// client: ClientConfig with the transactional id (which fences any older
// producer that used it, and aborts its open transaction, when the
// producer starts) and the transaction timeout (how long the broker lets
// one transaction stay open before aborting it). Plaintext: see
// Net.TxnConfig.
func TxnConfig(clientID, txnID string, timeout time.Duration) *sarama.Config {
	return (*Net)(nil).TxnConfig(clientID, txnID, timeout)
}

// TxnConfig is TxnConfig with n's TLS and SASL settings.
func (n *Net) TxnConfig(clientID, txnID string, timeout time.Duration) *sarama.Config {
	cfg := n.ClientConfig(clientID)
	cfg.Producer.Transaction.ID = txnID
	cfg.Producer.Transaction.Timeout = timeout
	// EndTxn and AddPartitionsToTxn answer CONCURRENT_TRANSACTIONS while
	// the coordinator finishes the previous transaction: retry for about
	// as long as a broker takes to move a coordinator.
	cfg.Producer.Transaction.Retry.Max = 100
	cfg.Producer.Transaction.Retry.Backoff = 50 * time.Millisecond
	// A send that fails aborts the transaction, and the partition replays
	// from its last commit: nothing is lost, so a few retries are enough
	// to ride out a leader change. sarama retries a batch it could not add
	// to the transaction as if the connection had failed, so with the
	// plain producer's thousand retries a fenced producer would retry for
	// half an hour.
	cfg.Producer.Retry.Max = 5
	return cfg
}

// TxnProducer is the transactional producer of one partition: everything
// it sends between two commits, and the input offsets given to Commit,
// become visible to read_committed consumers together or not at all.
//
// Its transactions follow the partition's commits: the first send after a
// commit begins one; Seal closes it to further sends (which wait, in
// order, for the next one); Commit adds the offsets and commits it, then
// begins the next one with the sends that waited. It is safe for use by
// one sender and one committer at once.
type TxnProducer struct {
	*Producer
	client sarama.Client
	id     string

	mu     sync.Mutex  // guards the fields below
	open   atomic.Bool // a transaction is begun (written by one goroutine at a time, see begin; read by Close)
	sealed bool        // the open transaction takes no more sends
	broken error       // a commit failed: the producer must be replaced
	// committing is set while Commit talks to the broker, closed once
	// Close was called.
	committing, closed bool
	waiting            []waitingSend
}

// waitingSend is a send made while a commit is in progress.
type waitingSend struct {
	t      *Tracker
	msg    *sarama.ProducerMessage
	origin any
	from   bool
}

// NewTxnProducer starts a transactional producer on a client of its own
// (cfg from TxnConfig). Starting it fences the previous producer of the
// same transactional id: that one's open transaction is aborted, and its
// later sends and commits fail.
func NewTxnProducer(brokers []string, cfg *sarama.Config, log *slog.Logger) (*TxnProducer, error) {
	id := cfg.Producer.Transaction.ID
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("transactional producer %s: %w", id, err)
	}
	p, err := NewProducer(client, log)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("transactional producer %s: %w", id, err)
	}
	return &TxnProducer{Producer: p, client: client, id: id}, nil
}

// ID returns the transactional id.
func (p *TxnProducer) ID() string { return p.id }

// Send queues msg under t in the open transaction, beginning one if need
// be, or, while a commit is in progress, for the next transaction.
func (p *TxnProducer) Send(t *Tracker, msg *sarama.ProducerMessage) { p.send(t, msg, nil, false) }

// SendFrom is Send with an origin, as Producer.SendFrom.
func (p *TxnProducer) SendFrom(t *Tracker, msg *sarama.ProducerMessage, origin any) {
	p.send(t, msg, origin, true)
}

func (p *TxnProducer) send(t *Tracker, msg *sarama.ProducerMessage, origin any, from bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		t.add()
		t.ack(msg.Topic, msg.Partition, -1, fmt.Errorf("transactional producer %s: %w", p.id, p.broken), origin)
		return
	}
	if p.sealed {
		p.waiting = append(p.waiting, waitingSend{t, msg, origin, from})
		return
	}
	if err := p.begin(); err != nil {
		p.broken = err
		t.add()
		t.ack(msg.Topic, msg.Partition, -1, err, origin)
		return
	}
	p.queue(waitingSend{t, msg, origin, from})
}

func (p *TxnProducer) queue(s waitingSend) {
	if s.from {
		p.Producer.SendFrom(s.t, s.msg, s.origin)
	} else {
		p.Producer.Send(s.t, s.msg)
	}
}

// begin begins a transaction unless one is open. Only one goroutine
// touches the transaction at a time: a sender while it is not sealed
// (holding p.mu), the committer while it is.
func (p *TxnProducer) begin() error {
	if p.open.Load() {
		return nil
	}
	if err := p.Producer.ap.BeginTxn(); err != nil {
		return fmt.Errorf("begin transaction %s: %w", p.id, err)
	}
	p.open.Store(true)
	return nil
}

// errTxnFatal is the state of a producer that can never commit again.
var errTxnFatal = errors.New("the transactional producer can no longer commit: fenced by a newer producer of its transactional id, or its transaction was aborted by the broker")

// Wait waits until every record sent under t is acknowledged, as
// Tracker.Wait, or until the producer's transaction fails (a failed
// send, a fenced producer): sarama keeps retrying the records of a
// failed transaction for a while, and nothing it does then can commit.
func (p *TxnProducer) Wait(ctx context.Context, t *Tracker) (map[TopicPartition]int64, error) {
	tick := time.NewTicker(txnPoll)
	defer tick.Stop()
	for {
		select {
		case <-t.Idle():
			return t.Wait(ctx)
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for produce acknowledgements: %w", ctx.Err())
		case <-tick.C:
			if err := p.failed(); err != nil {
				return nil, err
			}
		}
	}
}

// txnPoll is how often Wait looks at the transaction's state: sarama
// tells nobody when a transaction fails.
const txnPoll = 20 * time.Millisecond

// failed returns why the producer's transaction can no longer commit, or
// nil.
func (p *TxnProducer) failed() error {
	st := p.Producer.ap.TxnStatus()
	switch {
	case st&sarama.ProducerTxnFlagFatalError != 0:
		return fmt.Errorf("transaction %s (%s): %w", p.id, st, errTxnFatal)
	case st&sarama.ProducerTxnFlagAbortableError != 0:
		return fmt.Errorf("transaction %s failed and must be aborted (%s)", p.id, st)
	}
	return nil
}

// Seal closes the open transaction to sends: sends made from now on wait
// for the next transaction, which Commit begins.
func (p *TxnProducer) Seal() {
	p.mu.Lock()
	p.sealed = true
	p.mu.Unlock()
}

// Commit commits the sealed transaction with next, the input offsets to
// resume from (topic → partition → offset), committed to group's offsets
// as part of it (group's generation and member fence a member that has
// lost the partition), and then begins the next transaction with the
// sends that waited. The caller must have waited for every record of the
// transaction to be acknowledged (Wait). Sends do not wait for the commit.
// After an error the producer is broken: every later send fails, and the
// caller must close it and start another.
func (p *TxnProducer) Commit(next map[string]map[int32]int64, group *sarama.ConsumerGroupMetadata) error {
	p.mu.Lock()
	broken := p.broken
	p.committing = broken == nil
	p.mu.Unlock()
	if broken != nil {
		return broken
	}
	err := p.commit(next, group) // sealed: no sender touches the transaction meanwhile
	p.mu.Lock()
	defer p.mu.Unlock()
	p.committing = false
	if p.closed {
		// Close came during the commit and left the producer to us.
		go func() { _ = p.stop() }()
		if err == nil {
			err = errors.New("transactional producer closed")
		}
		for _, s := range p.waiting {
			s.t.add()
			s.t.ack(s.msg.Topic, s.msg.Partition, -1, err, s.origin)
		}
		p.waiting = nil
		return err
	}
	p.sealed = false
	waiting := p.waiting
	p.waiting = nil
	if err == nil && len(waiting) > 0 {
		err = p.begin()
	}
	if err != nil {
		p.broken = err
		for _, s := range waiting {
			s.t.add()
			s.t.ack(s.msg.Topic, s.msg.Partition, -1, err, s.origin)
		}
		return err
	}
	for _, s := range waiting {
		p.queue(s)
	}
	return nil
}

// commit commits the open transaction (beginning one if only offsets are
// to be committed).
func (p *TxnProducer) commit(next map[string]map[int32]int64, group *sarama.ConsumerGroupMetadata) error {
	if len(next) > 0 {
		if err := p.begin(); err != nil {
			return err
		}
		offsets := make(map[string][]*sarama.PartitionOffsetMetadata, len(next))
		for topic, ps := range next {
			for part, off := range ps {
				offsets[topic] = append(offsets[topic], &sarama.PartitionOffsetMetadata{Partition: part, Offset: off, LeaderEpoch: -1})
			}
		}
		if err := p.Producer.ap.AddOffsetsToTxnWithGroupMetadata(offsets, group); err != nil {
			return fmt.Errorf("add offsets to transaction %s: %w", p.id, err)
		}
	}
	if !p.open.Load() {
		return nil // nothing was sent and no offset moved
	}
	if err := p.Producer.ap.CommitTxn(); err != nil {
		return fmt.Errorf("commit transaction %s: %w", p.id, err)
	}
	p.open.Store(false)
	return nil
}

// Close aborts the open transaction, if the producer can still do so
// (else the next producer of its id aborts it when it starts), and stops
// the producer. A producer whose transaction failed is stopped in the
// background: sarama may still be retrying its records, and nothing it
// does can commit.
func (p *TxnProducer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.committing {
		// sarama's producer must not be closed while it commits: the
		// committer stops it when the commit returns (the next producer
		// of the id completes or aborts that transaction anyway).
		p.broken = errors.New("closed")
		p.mu.Unlock()
		return nil
	}
	failed := p.broken != nil || p.failed() != nil
	if p.open.Load() && !failed && p.Producer.ap.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
		failed = p.Producer.ap.AbortTxn() != nil
	}
	for _, s := range p.waiting {
		s.t.add()
		s.t.ack(s.msg.Topic, s.msg.Partition, -1, errors.New("transactional producer closed"), s.origin)
	}
	p.open.Store(false)
	p.waiting, p.broken = nil, errors.New("closed")
	p.mu.Unlock()
	if failed {
		go func() { _ = p.stop() }()
		return nil
	}
	return p.stop()
}

// stop stops the sarama producer and its client.
func (p *TxnProducer) stop() error {
	err := p.Producer.Close()
	if cerr := p.client.Close(); err == nil {
		err = cerr
	}
	return err
}

// Fenced reports whether err says that another producer took over the
// transactional id (the partition moved, or this one was presumed dead)
// or that the broker aborted the transaction for taking too long: the
// producer can never commit again.
func Fenced(err error) bool {
	if errors.Is(err, errTxnFatal) {
		return true
	}
	for _, e := range []error{sarama.ErrProducerFenced, sarama.ErrInvalidProducerEpoch,
		sarama.ErrInvalidTxnState, sarama.ErrInvalidProducerIDMapping} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
