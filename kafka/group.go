package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// GroupConfig returns the configuration of the client a GroupMember joins
// its group with: ConsumerConfig, plus the group's assignor, static
// membership under instanceID (a node that restarts quickly keeps its
// partitions) and sessionTimeout, with heartbeats frequent enough that
// members learn of a rebalance quickly. Plaintext: see Net.GroupConfig.
func GroupConfig(clientID, instanceID string, sessionTimeout time.Duration, assignor sarama.BalanceStrategy) *sarama.Config {
	return (*Net)(nil).GroupConfig(clientID, instanceID, sessionTimeout, assignor)
}

// GroupConfig is GroupConfig with n's TLS and SASL settings.
func (n *Net) GroupConfig(clientID, instanceID string, sessionTimeout time.Duration, assignor sarama.BalanceStrategy) *sarama.Config {
	cfg := n.ConsumerConfig(clientID)
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{assignor}
	cfg.Consumer.Group.InstanceId = instanceID
	cfg.Consumer.Group.Session.Timeout = sessionTimeout
	// Members learn of a rebalance at their next heartbeat.
	cfg.Consumer.Group.Heartbeat.Interval = min(sessionTimeout/10, 150*time.Millisecond)
	return cfg
}

// A GroupHandler is told what happens in a GroupMember's sessions. Assigned
// and Released run once per session, Claimed once per assigned topic
// partition, each on a goroutine of sarama's.
type GroupHandler interface {
	// Assigned runs when a session starts, before any batch is delivered.
	// An error ends the session.
	Assigned(s *Session) error
	// Claimed returns where the batches of one assigned topic partition go
	// during the session.
	Claimed(s *Session, topic string, p int32) Claim
	// Released runs when the session ends (revoke, rebalance, shutdown),
	// once no batch is being delivered any more. The member commits the
	// marked offsets when it returns: a handler that drains its partitions
	// here gets their last marks committed before the partitions are let
	// go.
	Released(s *Session)
}

// A Claim receives one topic partition's batches during a session.
type Claim interface {
	// Deliver hands b over without waiting for it to be processed.
	Deliver(b *Batch)
	// Processed is called for each batch, in order, once it is processed,
	// with the records of the partition beyond its last one (its lag).
	Processed(lag int64)
}

// A Batch is a run of fetched records of one topic partition, in offset
// order.
type Batch struct {
	Records Records
	// CaughtUp says the batch ends at the partition's high watermark as
	// last fetched.
	CaughtUp bool
	// Done receives nil once every record is processed, or the error that
	// stopped the partition: then nothing more of it is delivered in this
	// session.
	Done chan error
}

// A Session is one generation of the group as a member takes part in it.
type Session struct {
	s    sarama.ConsumerGroupSession
	kick chan struct{}
}

// Generation returns the group generation of the session.
func (s *Session) Generation() int32 { return s.s.GenerationID() }

// Partitions returns the partitions assigned in this session, each with the
// topics it is assigned for.
func (s *Session) Partitions() map[int32][]string {
	parts := map[int32][]string{}
	for topic, ps := range s.s.Claims() {
		for _, p := range ps {
			parts[p] = append(parts[p], topic)
		}
	}
	return parts
}

// Mark marks next as the offset to resume topic/p from. Marks made in a
// session are committed only to that session's generation: a member that
// lost the partition cannot move its offsets.
func (s *Session) Mark(topic string, p int32, next int64) { s.s.MarkOffset(topic, p, next, "") }

// Commit asks for the marked offsets to be committed to the group, soon and
// without waiting; requests made while a commit is due coalesce.
func (s *Session) Commit() {
	select {
	case s.kick <- struct{}{}:
	default: // a commit is already due
	}
}

// A GroupMember is one member of a consumer group: it joins with the
// topics it is given, hands each session's assigned partitions and
// fetched batches to its GroupHandler, rejoins with backoff when a session
// fails, and commits the offsets the handler marks.
//
// It is the one path that commits group offsets: Session.Commit kicks a
// goroutine that sends one OffsetCommit for whatever is marked, and the end
// of a session sends the last one. sarama's auto-commit is off
// (ClientConfig).
type GroupMember struct {
	group   sarama.ConsumerGroup
	name    string
	h       GroupHandler
	log     *slog.Logger
	backoff func(attempt int) time.Duration

	brokers string // for the operator's log lines
	client  sarama.Client
	closed  chan struct{}

	mu        sync.Mutex // guards the fields below
	end       context.CancelFunc
	lost      error     // why the group cannot reach Kafka; nil while it can
	lostSince time.Time // when lost was set
	repeats   int       // errors since lost, not logged one by one
	probing   bool      // a probe is checking whether Kafka answers again
}

// GroupMemberConfig configures a GroupMember.
type GroupMemberConfig struct {
	// Group is the consumer group's name.
	Group string
	// Client is the member's client, configured by GroupConfig. The member
	// does not close it.
	Client sarama.Client
	// Handler is told what happens in the member's sessions.
	Handler GroupHandler
	// Log receives the member's lines.
	Log *slog.Logger
	// Backoff returns the wait before rejoining after the attempt-th
	// consecutive failed session.
	Backoff func(attempt int) time.Duration
	// Brokers name the cluster in the operator's log lines.
	Brokers []string
}

// NewGroupMember prepares a member of cfg.Group; Run joins.
func NewGroupMember(cfg GroupMemberConfig) (*GroupMember, error) {
	g, err := sarama.NewConsumerGroupFromClient(cfg.Group, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("join consumer group %s: %w", cfg.Group, err)
	}
	m := &GroupMember{group: g, name: cfg.Group, h: cfg.Handler, log: cfg.Log, backoff: cfg.Backoff, brokers: strings.Join(cfg.Brokers, ","),
		client: cfg.Client, closed: make(chan struct{})}
	go func() {
		for err := range g.Errors() {
			m.trouble(err)
		}
	}()
	return m, nil
}

// trouble records an error of the group: the first since the group last
// worked is logged, with what it means and what to check; the repeats only
// at debug level (a broker that is away makes one every few hundred ms).
func (m *GroupMember) trouble(err error) {
	m.mu.Lock()
	first := m.lost == nil
	if first {
		m.lost, m.lostSince = err, time.Now()
	} else {
		m.lost = err
		m.repeats++
	}
	probe := !m.probing
	m.probing = true
	m.mu.Unlock()
	if probe {
		go m.probe()
	}
	if first {
		m.log.Warn("consumer group lost contact with Kafka: retrying with backoff; partitions that cannot commit restart and process their records again once Kafka is back (check the brokers and the network)",
			"brokers", m.brokers, "err", err)
		return
	}
	m.log.Debug("consumer group error", "brokers", m.brokers, "err", err)
}

// probe asks Kafka for metadata, with backoff, until it answers, and
// then clears the trouble: sarama reports a fetch or commit error but
// keeps the session until its heartbeats give up, and a session that
// lives through a short outage never starts again to say Kafka is back.
func (m *GroupMember) probe() {
	defer func() {
		m.mu.Lock()
		m.probing = false
		m.mu.Unlock()
	}()
	for attempt := 1; ; attempt++ {
		select {
		case <-m.closed:
			return
		case <-time.After(m.backoff(attempt)):
		}
		if err := m.client.RefreshMetadata(); err == nil {
			m.recovered()
			return
		}
	}
}

// recovered records that a session started: the group reaches Kafka.
func (m *GroupMember) recovered() {
	m.mu.Lock()
	lost, since, repeats := m.lost, m.lostSince, m.repeats
	m.lost, m.repeats = nil, 0
	m.mu.Unlock()
	if lost != nil {
		m.log.Info("consumer group reaches Kafka again", "brokers", m.brokers,
			"down_for", time.Since(since).Round(time.Millisecond), "errors", repeats+1, "last_err", lost)
	}
}

// Trouble returns why the group cannot reach Kafka, or nil while it can
// (also during a session: see probe).
func (m *GroupMember) Trouble() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lost
}

// Run takes part in the group until stop is done, subscribed to the topics
// returns when each session starts. A failed session is logged and
// rejoined after the backoff.
func (m *GroupMember) Run(stop context.Context, topics func() []string) {
	for attempt := 1; stop.Err() == nil; attempt++ {
		sess, cancel := context.WithCancel(stop)
		// Set before reading the topics: a Rejoin after a change of topics
		// either ends this session or came before it read them.
		m.mu.Lock()
		m.end = cancel
		m.mu.Unlock()
		err := m.group.Consume(sess, topics(), &session{m: m})
		cancel()
		if stop.Err() != nil {
			break
		}
		if err != nil {
			d := m.backoff(attempt)
			m.trouble(fmt.Errorf("session failed (rejoining in %v): %w", d, err))
			select {
			case <-stop.Done():
			case <-time.After(d):
			}
			continue
		}
		attempt = 0
	}
}

// Rejoin ends the current session, if any, so that Run rejoins with the
// topics as they are now.
func (m *GroupMember) Rejoin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.end != nil {
		m.end()
	}
}

// Close leaves the group.
func (m *GroupMember) Close() error {
	select {
	case <-m.closed:
	default:
		close(m.closed)
	}
	return m.group.Close()
}

// session is a GroupMember as sarama calls it during one session (one
// Consume).
type session struct {
	m *GroupMember
	s *Session // set by Setup, before sarama starts any ConsumeClaim
}

// Setup starts the session's commit goroutine and hands the session to the
// handler (sarama calls it after each rebalance, before any ConsumeClaim).
func (h *session) Setup(ss sarama.ConsumerGroupSession) error {
	s := &Session{s: ss, kick: make(chan struct{}, 1)}
	h.s = s
	h.m.recovered()
	h.m.log.Info("partitions assigned", "generation", ss.GenerationID(), "partitions", len(s.Partitions()))
	// Committing as soon as a commit is asked for keeps the group's view,
	// and so a successor's replay after a crash, one commit interval
	// behind at most.
	go func() {
		for {
			select {
			case <-ss.Context().Done():
				return
			case <-s.kick:
				ss.Commit()
			}
		}
	}()
	return h.m.h.Assigned(s)
}

// Cleanup lets the handler release the session's partitions, then commits
// what they marked.
func (h *session) Cleanup(ss sarama.ConsumerGroupSession) error {
	s := h.s
	h.m.h.Released(s)
	ss.Commit()
	h.m.log.Info("partitions released", "generation", ss.GenerationID(), "partitions", len(s.Partitions()))
	return nil
}

// ConsumeClaim feeds one topic partition to its Claim, one Batch per run of
// the records the claim has buffered. Up to maxInflight batches are handed
// over and not yet processed at once: enough that the consumer never waits
// for this goroutine, and few enough to bound the memory of records
// received but not processed. Waiting for every batch instead would stall
// sarama's fetch loop, which serves all partitions of a broker and sends
// the next fetch only once every partition has taken its records.
func (h *session) ConsumeClaim(ss sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.m.h.Claimed(h.s, claim.Topic(), claim.Partition())
	const (
		maxBatch    = 1024
		maxInflight = 8
	)
	var inflight []inflightBatch
	// settle takes the result of the oldest batch; false means consume
	// nothing more (the partition stopped).
	settle := func(err error) bool {
		if err != nil {
			<-ss.Context().Done()
			return false
		}
		c.Processed(claim.HighWaterMarkOffset() - inflight[0].last - 1)
		inflight = inflight[1:]
		return true
	}
	for {
		var oldest chan error // nil (never ready) when nothing is in flight
		if len(inflight) > 0 {
			oldest = inflight[0].done
		}
		var first *sarama.ConsumerMessage
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			first = m
		case err := <-oldest:
			if !settle(err) {
				return nil
			}
			continue
		case <-ss.Context().Done():
			return nil
		}
		batch := make([]*sarama.ConsumerMessage, 1, min(maxBatch, 1+len(claim.Messages())))
		batch[0] = first
	fill:
		for len(batch) < maxBatch {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		last := batch[len(batch)-1].Offset
		// A transactional producer's records are followed by a marker,
		// which takes an offset no consumer is given: one record short of
		// the high watermark with nothing buffered counts as caught up too
		// (committing early costs a commit, never a record).
		hwm := claim.HighWaterMarkOffset()
		caught := last+1 >= hwm || last+2 >= hwm && len(claim.Messages()) == 0
		b := &Batch{Records: batch, Done: make(chan error, 1), CaughtUp: caught}
		c.Deliver(b)
		inflight = append(inflight, inflightBatch{done: b.Done, last: last})
		if len(inflight) < maxInflight {
			continue
		}
		select {
		case err := <-inflight[0].done:
			if !settle(err) {
				return nil
			}
		case <-ss.Context().Done():
			return nil
		}
	}
}

// inflightBatch is a batch handed over and not yet processed.
type inflightBatch struct {
	done chan error
	last int64 // offset of its last record
}

// Records are fetched messages as a partition reads them
// (partition.Input): each becomes a partition.Record when the partition
// takes it, in place, so a batch costs no copy of its records before.
type Records []*sarama.ConsumerMessage

// Len returns the number of messages.
func (ms Records) Len() int { return len(ms) }

// Read converts message i into r.
func (ms Records) Read(i int, r *partition.Record) {
	m := ms[i]
	// Field by field: assigning a whole Record would copy it through a
	// temporary and a bulk write barrier.
	r.Topic, r.Partition, r.Offset, r.Timestamp, r.Key, r.Value, r.Headers = m.Topic, m.Partition, m.Offset, m.Timestamp, m.Key, m.Value, nil
	if len(m.Headers) > 0 {
		r.Headers = make([]partition.Header, len(m.Headers))
		for j, h := range m.Headers {
			r.Headers[j] = partition.Header{Key: string(h.Key), Value: h.Value}
		}
	}
}

var _ partition.Input = Records(nil)

// TxnGroup returns the group membership a transaction that commits this
// session's offsets names: the group fences the commit if the member has
// lost its generation meanwhile.
func (s *Session) TxnGroup(group, instanceID string) *sarama.ConsumerGroupMetadata {
	md := sarama.NewConsumerGroupMetadata(group)
	md.GenerationID, md.MemberID = s.s.GenerationID(), s.s.MemberID()
	if instanceID != "" {
		md.GroupInstanceID = &instanceID
	}
	return md
}
