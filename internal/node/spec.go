// Package node wires one Mephisto node together: it connects to Kafka,
// creates the topics, joins the consumer group, runs a partition grain per
// assigned partition, keeps standby shards, gossips, serves HTTP, and runs
// the timers, tasks and channel agents. The root package declares what an
// app is and hands it over as a Spec.
package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/timer"
	"github.com/mephistohq/mephisto/web"
)

// Spec is what an app declares, as the node runs it.
type Spec struct {
	App    string
	Topics []Topic
	Tables []*partition.Table // by Index
	// Global lists, by Index, the tables that are global: every node
	// keeps a copy of every partition (global.go), not only of the
	// partitions it is active or a standby for.
	Global []int
	Agents []*partition.Agent // in declaration order
	Timers []Timer
	Tasks  []Task
	// Channels are the channel agents declared before the node starts.
	Channels []*ChannelAgent
	// Topology renders the app's declarations (GET /topology).
	Topology func() any
	// Pages are the app's own HTTP routes, served after the built-in ones.
	Pages []web.Page
}

// Topic is a declared topic.
type Topic struct {
	Name string
}

// Timer is a declared timer or crontab.
type Timer struct {
	Name     string
	Schedule timer.Schedule
	Run      func(ctx context.Context) error
	OnLeader bool // run on the leader only
}

// Task is a declared background function.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
}

// Config is a node's configuration; see the root package's Config for
// each field's meaning and default.
type Config struct {
	Brokers []string
	// Kafka secures the connections to the brokers (TLS, SASL).
	Kafka             kafka.Security
	EmbeddedBroker    string
	DataDir           string // resolved: never empty
	WebAddr           string
	NodeID            string // resolved: never empty
	Partitions        int32
	ReplicationFactor int16
	CommitInterval    time.Duration
	MaxAttempts       int
	CacheBytes        int64
	TableCacheKeys    int
	Logger            *slog.Logger // never nil
	Gossip            string
	Join              []string
	Advertise         string
	GossipKey         string
	Standbys          int
	ActorAddr         string
	// ActorTLS secures the links between nodes' actor systems (mutual
	// TLS); zero is plaintext.
	ActorTLS       actors.RemoteTLS
	SessionTimeout time.Duration
	// ExactlyOnce commits each partition through one Kafka transaction
	// and reads every topic read_committed.
	ExactlyOnce bool
	// TxnTimeout is the transaction timeout under ExactlyOnce.
	TxnTimeout time.Duration
	// Clock drives timers and batch windows (nil: the wall clock).
	Clock timer.Clock
	// Crash, when set, is called at named points of the commit protocol
	// so that tests can kill the process there.
	Crash func(point string)
}
