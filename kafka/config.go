// Package kafka holds Mephisto's Kafka plumbing: client configuration, the
// consumer group member (GroupMember) that hands fetched batches to a
// GroupHandler and commits the offsets it marks, topic administration, the
// acknowledged producer, request/reply (Requester), changelog reading and
// tailing, and the embedded development broker used when a worker is given
// no --brokers.
package kafka

import (
	"time"

	"github.com/IBM/sarama"
)

// Version is the Kafka protocol version Mephisto speaks. Kafka 3.x brokers,
// Redpanda and the embedded broker all support it.
var Version = sarama.V3_6_0_0

// ClientConfig returns the sarama configuration every Mephisto client starts
// from: idempotent producer with acks=all (required by the commit protocol),
// manual partitioning (Mephisto computes partitions itself, see Partition),
// and retries that never give up while a broker is away, backing off up to
// maxBackoff. Its connections are plaintext and unauthenticated: a
// product client takes its config from the process's Net
// (Net.ClientConfig and the others), so that every client connects alike.
func ClientConfig(clientID string) *sarama.Config { return (*Net)(nil).ClientConfig(clientID) }

// ClientConfig is the package's ClientConfig with n's TLS and SASL
// settings; every config constructor of the package has this form, and
// every sarama.Config of a running Mephisto comes from one of them.
func (n *Net) ClientConfig(clientID string) *sarama.Config {
	cfg := n.Apply(sarama.NewConfig())
	cfg.ClientID = clientID
	cfg.Version = Version

	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1 // idempotence requires it
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	// sarama allocates per-partition retry state sized by Retry.Max, so it
	// must stay modest. Retries ride out leader changes and short blips;
	// when a broker is gone, sarama's circuit breaker fails sends within
	// seconds anyway. A failed send fails the commit: the grain restarts
	// with backoff and re-sends everything since its last commit, so
	// nothing is lost (outputs may be duplicated: at-least-once).
	cfg.Producer.Retry.Max = 1000
	cfg.Producer.Retry.BackoffFunc = backoff
	// Send as soon as the connection is free (like linger.ms=0): with one
	// request in flight (idempotence), records that arrive meanwhile batch
	// by themselves. A 1 ms linger put a floor of 1 ms (the timer's
	// resolution on a VM) under every produce: 3 ms per Ask round trip
	// instead of 0.4, and no throughput gained.
	cfg.Producer.Flush.Frequency = 0
	cfg.Producer.Compression = sarama.CompressionNone
	// A commit hands the producer a record per key written since the last
	// one, thousands at once: with sarama's default input buffer (256) the
	// partition's grain would wait for the producer's pipeline to take each.
	cfg.ChannelBufferSize = 4096

	// Bounded so that a call fails (and the caller logs and backs off) rather
	// than hiding an unreachable cluster in endless internal retries.
	cfg.Metadata.Retry.Max = 5
	cfg.Metadata.Retry.BackoffFunc = func(retries, _ int) time.Duration { return backoff(retries, 0) }

	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Group offsets are committed by their owner only, explicitly: a node
	// commits after each partition commit and once more when its session
	// ends (see docs/design-notes.md, "One path commits group offsets").
	// sarama's timer would be a second path that commits whatever is
	// marked at its own moments.
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	// Per partition fetched. Each partition's grain keeps a fetch or two of
	// records alive (received, or waiting for their commit), so this bounds
	// a node's memory; larger fetches read no faster while a grain
	// processes. Restores read changelogs with ChangelogConfig.
	cfg.Consumer.Fetch.Default = 1 << 20
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Retry.Max = 1000
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	cfg.Consumer.IsolationLevel = sarama.ReadUncommitted

	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Admin.Retry.Max = 5
	cfg.Admin.Timeout = 10 * time.Second
	return cfg
}

// ConsumerConfig returns the configuration of a client that consumes and
// administers but does not produce. A node keeps its producer on a client of
// its own: idempotence allows one request in flight per connection, and a
// shared connection would make every produce wait behind a fetch's
// long-poll. Plaintext: see Net.ConsumerConfig.
func ConsumerConfig(clientID string) *sarama.Config { return (*Net)(nil).ConsumerConfig(clientID) }

// ConsumerConfig is ConsumerConfig with n's TLS and SASL settings.
func (n *Net) ConsumerConfig(clientID string) *sarama.Config {
	cfg := n.ClientConfig(clientID)
	cfg.Producer.Idempotent = false
	cfg.Net.MaxOpenRequests = 5
	cfg.ChannelBufferSize = 256 // per partition consumed: records buffered ahead of the grain
	return cfg
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// backoff doubles from minBackoff up to maxBackoff.
func backoff(retries, _ int) time.Duration {
	d := minBackoff
	for i := 0; i < retries && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// ChangelogConfig returns the configuration of the client that reads
// changelogs: restoring a shard reads as fast as Pebble takes the records,
// and on this path a larger fetch halves the round trips per record.
// Plaintext: see Net.ChangelogConfig.
func ChangelogConfig(clientID string) *sarama.Config { return (*Net)(nil).ChangelogConfig(clientID) }

// ChangelogConfig is ChangelogConfig with n's TLS and SASL settings.
func (n *Net) ChangelogConfig(clientID string) *sarama.Config {
	cfg := n.ConsumerConfig(clientID)
	cfg.Consumer.Fetch.Default = 4 << 20
	return cfg
}
