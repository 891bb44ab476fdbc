// Package mephisto is Faust-style stateful stream processing for Go, built
// on actors.
//
// A program declares an App, its typed Topics, Tables and Agents, and calls
// App.Main. Every running copy of the program is a worker node: it consumes
// the agents' topics as a member of one Kafka consumer group, runs each
// assigned partition as a supervised actor (a grain) that owns that
// partition's shard of every table, keeps the shards in Pebble on local
// disk, and writes every table change to a compacted changelog topic from
// which a shard is rebuilt on any node.
//
//	app := mephisto.New("wordcount")
//	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
//	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())
//	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
//		return counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
//	})
//	app.Main()
package mephisto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/internal/node"
	"github.com/mephistohq/mephisto/timer"
)

// App is a Mephisto application: the declared topics, tables and agents
// (its topology), plus the configuration of the worker that runs them.
type App struct {
	name string
	cfg  Config

	mu     sync.Mutex // guards the fields below
	topics map[string]*topicDef
	tables map[string]*tableDef
	// globals names the tables NewGlobalTable declared.
	globals map[string]bool
	agents  map[string]*agentDef
	order   []string // agent names in declaration order
	tasks   []taskDef
	timers  []*timerDef
	// chanAgents are the channel-backed agents, started with the worker.
	chanAgents []chanDecl
	pages      []pageDef // HTTP pages (page.go), in declaration order
	node       runtime   // non-nil while a worker (or a test driver) runs
	errs       []error   // declaration errors, reported by Validate
}

// Config is a worker's configuration. Every field has a command-line flag
// and an environment variable (see the README); options set the defaults
// that flags then override.
type Config struct {
	// Brokers are the Kafka bootstrap addresses. Empty starts the embedded
	// broker (EmbeddedBroker). Flag --brokers, env MEPHISTO_BROKERS.
	Brokers []string
	// KafkaTLS encrypts the connections to the brokers with TLS. Default
	// off. Flag --kafka-tls (see WithKafkaTLS).
	KafkaTLS bool
	// KafkaTLSCA is a PEM file of the CAs that sign the brokers'
	// certificates; "" trusts the system's CAs. Flag --kafka-tls-ca.
	KafkaTLSCA string
	// KafkaTLSCert and KafkaTLSKey are the PEM files of a client
	// certificate and its key, for mutual TLS; both or neither. Flags
	// --kafka-tls-cert, --kafka-tls-key.
	KafkaTLSCert, KafkaTLSKey string
	// KafkaTLSServerName is the name the brokers' certificates are
	// verified against; "" uses each address's host. Flag
	// --kafka-tls-server-name.
	KafkaTLSServerName string
	// KafkaTLSConfig is a TLS configuration to start from
	// (WithKafkaTLSConfig); setting it turns TLS on. No flag.
	KafkaTLSConfig *tls.Config
	// KafkaSASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, or ""
	// for no SASL authentication. Flag --kafka-sasl-mechanism.
	KafkaSASLMechanism string
	// KafkaSASLUser is the SASL user. Flag --kafka-sasl-user.
	KafkaSASLUser string
	// KafkaSASLPassword is the SASL password, never printed or logged.
	// Flag --kafka-sasl-password, better its environment variable
	// MEPHISTO_KAFKA_SASL_PASSWORD (a flag shows in the process list).
	KafkaSASLPassword Secret
	// EmbeddedBroker is where the embedded broker listens when Brokers is
	// empty. Default 127.0.0.1:9092. Flag --embedded-broker.
	EmbeddedBroker string
	// DataDir holds the node's table state (and the embedded broker's
	// data). Default ./<app>-data/<node-id>, so that several nodes can run
	// from one directory. Flag --data-dir.
	DataDir string
	// WebAddr is where the HTTP server listens; "" disables it. Default
	// 127.0.0.1:6066. Flag --web.
	WebAddr string
	// NodeID names this node in logs, client ids and (later) the cluster.
	// Default: the host name. Flag --node-id.
	NodeID string
	// Partitions is the partition count of topics Mephisto creates. Default
	// 8. Flag --partitions.
	Partitions int32
	// ReplicationFactor of topics Mephisto creates; -1 uses the brokers'
	// default. Default -1. Flag --replication-factor.
	ReplicationFactor int16
	// CommitInterval is how often each partition commits (flushes its
	// changelog, writes Pebble, commits offsets) while it is behind its
	// input; a partition that has caught up commits at once, at most every
	// tenth of the interval (and at most every 50ms). Default 500ms. Flag
	// --commit-interval.
	CommitInterval time.Duration
	// MaxAttempts is how often a failing record is retried (with the
	// supervisor's backoff between attempts) before the agent's error
	// policy applies. Default 3. Flag --max-attempts.
	MaxAttempts int
	// CacheBytes sizes Pebble's block cache. Default 64 MiB. Flag
	// --cache-size.
	CacheBytes int64
	// TableCacheKeys is how many keys of each table shard stay decoded in
	// memory between commits, in front of Pebble (the least recently used
	// go first); uncommitted writes stay whatever the size. 0 keeps only
	// uncommitted writes. Default 10,000. Flag --table-cache.
	TableCacheKeys int
	// Logger receives the node's logs. Default: text to stderr at info.
	Logger *slog.Logger

	// Gossip is where this node's memberlist gossip listens (host:port);
	// "" disables gossip (a single node, or a cluster that waits for Kafka's
	// session timeout to notice a dead node). Flag --gossip.
	Gossip string
	// Join lists gossip addresses of nodes to join. Default
	// 127.0.0.1:7946 (the first local node's usual --gossip). Flag --join.
	Join []string
	// Advertise is the host other nodes use to reach this one (its gossip
	// and web ports stay); "" uses the listen addresses. Flag --advertise.
	Advertise string
	// GossipKey encrypts gossip (16, 24 or 32 bytes); all nodes need the
	// same. Flag --gossip-key.
	GossipKey string
	// Standbys is how many other nodes keep a warm copy of each table
	// shard (capped at nodes-1). Default 1. Flag --standbys.
	Standbys int
	// ActorAddr is where the node's actor system listens for messages from
	// other nodes (PIDs); "" keeps the actors local. The worker command's
	// default is 127.0.0.1:0 (a free port). Flag --actor.
	ActorAddr string
	// ActorTLSCert, ActorTLSKey and ActorTLSCA make the links between
	// nodes' actor systems mutual TLS: this node's certificate and key, and
	// the CA that signs every node's certificate (PEM files; all three or
	// none). A process without a certificate of that CA can neither
	// message this node's grains nor be messaged. Flags --actor-tls-cert,
	// --actor-tls-key, --actor-tls-ca (see WithActorTLS).
	ActorTLSCert, ActorTLSKey, ActorTLSCA string
	// ActorTLSServerName is the name nodes verify each other's
	// certificates against instead of the host dialed (one name in every
	// node's certificate). Flag --actor-tls-server-name.
	ActorTLSServerName string
	// SessionTimeout is the consumer group session timeout: how long Kafka
	// waits for a silent node when gossip does not report it dead first.
	// Default 10s. Flag --session-timeout.
	SessionTimeout time.Duration
	// ProcessingGuarantee is AtLeastOnce (the default) or ExactlyOnce: see
	// Guarantee. Flag --processing-guarantee, env
	// MEPHISTO_PROCESSING_GUARANTEE.
	ProcessingGuarantee Guarantee
	// TransactionTimeout is how long the broker lets one partition's
	// transaction stay open before it aborts it (ExactlyOnce only; at most
	// the broker's transaction.max.timeout.ms). Default 10s. Flag
	// --transaction-timeout.
	TransactionTimeout time.Duration

	// clock drives timers and batch windows; nil is the wall clock (see
	// WithClock).
	clock timer.Clock

	// crash, when set, is called at named points of the commit protocol so
	// tests can kill the process there (see MEPHISTO_FAULTPOINT).
	crash func(point string)
}

// dataDir returns the data dir, resolving the default.
func (c Config) dataDir(app string) string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return filepath.Join(".", app+"-data", c.nodeID())
}

// nodeID returns the node id, resolving the default.
func (c Config) nodeID() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	id, _ := os.Hostname()
	return id
}

// Validate reports every out-of-range setting, each with its allowed
// range, named by its flag (the options are named alike: --partitions is
// WithPartitions). App.Run and the worker command call it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Partitions < 1 {
		bad("--partitions must be at least 1, got %d", c.Partitions)
	}
	if c.ReplicationFactor < -1 || c.ReplicationFactor == 0 {
		bad("--replication-factor must be -1 (the brokers' default) or at least 1, got %d", c.ReplicationFactor)
	}
	if c.CommitInterval <= 0 {
		bad("--commit-interval must be positive, got %v", c.CommitInterval)
	}
	if c.MaxAttempts < 1 {
		bad("--max-attempts must be at least 1, got %d", c.MaxAttempts)
	}
	if c.CacheBytes < 0 {
		bad("--cache-size must be 0 or more bytes, got %d", c.CacheBytes)
	}
	if c.TableCacheKeys < 0 {
		bad("--table-cache must be 0 or more keys, got %d", c.TableCacheKeys)
	}
	if k := len(c.GossipKey); k != 0 && k != 16 && k != 24 && k != 32 {
		bad("--gossip-key must be 16, 24 or 32 bytes, got %d", k)
	}
	if c.Standbys < 0 {
		bad("--standbys must be 0 or more, got %d", c.Standbys)
	}
	if c.SessionTimeout <= 0 {
		bad("--session-timeout must be positive, got %v", c.SessionTimeout)
	}
	if c.ProcessingGuarantee != AtLeastOnce && c.ProcessingGuarantee != ExactlyOnce {
		bad("--processing-guarantee must be %s or %s, got %q", AtLeastOnce, ExactlyOnce, c.ProcessingGuarantee)
	}
	if c.TransactionTimeout <= 0 {
		bad("--transaction-timeout must be positive, got %v", c.TransactionTimeout)
	}
	if c.ProcessingGuarantee == ExactlyOnce && c.CommitInterval >= c.TransactionTimeout {
		// A partition's transaction stays open for up to a commit
		// interval: the broker would abort every one of them.
		bad("--commit-interval (%v) must be shorter than --transaction-timeout (%v) under exactly_once", c.CommitInterval, c.TransactionTimeout)
	}
	sec := c.kafkaSecurity()
	if err := sec.Check(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Brokers) == 0 && sec.Enabled() {
		bad("--kafka-tls and --kafka-sasl-* secure the connections to --brokers, and --brokers is empty: the embedded broker speaks plaintext (run `mephisto broker --tls-cert … --sasl …` and point --brokers at it)")
	}
	atls := c.actorTLS()
	if err := atls.Check(); err != nil {
		errs = append(errs, err)
	}
	if atls.Enabled() && c.ActorAddr == "" {
		bad("--actor-tls-* secure the links of --actor, and --actor is empty: give --actor an address (or drop --actor-tls-*)")
	}
	if len(c.Brokers) == 0 && c.EmbeddedBroker == "" {
		bad("--brokers is empty and --embedded-broker too: give brokers, or an address for the embedded broker")
	}
	return errors.Join(errs...)
}

// node returns the configuration as the node runs it, defaults resolved.
func (c Config) node(app string) node.Config {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return node.Config{
		Brokers: c.Brokers, Kafka: c.kafkaSecurity(), EmbeddedBroker: c.EmbeddedBroker, DataDir: c.dataDir(app), WebAddr: c.WebAddr,
		NodeID: c.nodeID(), Partitions: c.Partitions, ReplicationFactor: c.ReplicationFactor,
		CommitInterval: c.CommitInterval, MaxAttempts: c.MaxAttempts, CacheBytes: c.CacheBytes,
		TableCacheKeys: c.TableCacheKeys, Logger: log, Gossip: c.Gossip, Join: c.Join, Advertise: c.Advertise,
		GossipKey: c.GossipKey, Standbys: c.Standbys, ActorAddr: c.ActorAddr, ActorTLS: c.actorTLS(), SessionTimeout: c.SessionTimeout,
		ExactlyOnce: c.ProcessingGuarantee == ExactlyOnce, TxnTimeout: c.TransactionTimeout,
		Clock: c.clock, Crash: c.crash,
	}
}

// Option configures an App.
type Option func(*Config)

// WithBrokers sets the Kafka bootstrap brokers (default: embedded broker).
func WithBrokers(addrs ...string) Option { return func(c *Config) { c.Brokers = addrs } }

// WithEmbeddedBroker sets where the embedded broker listens (default
// 127.0.0.1:9092; use 127.0.0.1:0 for a random port).
func WithEmbeddedBroker(addr string) Option { return func(c *Config) { c.EmbeddedBroker = addr } }

// WithDataDir sets the node's data directory (default
// ./<app>-data/<node-id>).
func WithDataDir(dir string) Option { return func(c *Config) { c.DataDir = dir } }

// WithWebAddr sets the HTTP listen address (default 127.0.0.1:6066; ""
// disables the server).
func WithWebAddr(addr string) Option { return func(c *Config) { c.WebAddr = addr } }

// WithNodeID sets the node id (default: the host name).
func WithNodeID(id string) Option { return func(c *Config) { c.NodeID = id } }

// WithPartitions sets the partition count of topics the app creates
// (default 8).
func WithPartitions(n int32) Option { return func(c *Config) { c.Partitions = n } }

// WithReplicationFactor sets the replication factor of topics the app
// creates (default -1: the brokers' default).
func WithReplicationFactor(n int16) Option { return func(c *Config) { c.ReplicationFactor = n } }

// WithCommitInterval sets how often partitions commit (default 500ms).
func WithCommitInterval(d time.Duration) Option { return func(c *Config) { c.CommitInterval = d } }

// WithMaxAttempts sets how often a failing record is tried before the
// error policy applies (default 3).
func WithMaxAttempts(n int) Option { return func(c *Config) { c.MaxAttempts = n } }

// WithCacheSize sets the Pebble block cache size in bytes (default 64 MiB).
func WithCacheSize(n int64) Option { return func(c *Config) { c.CacheBytes = n } }

// WithTableCache sets how many keys of each table shard stay decoded in
// memory between commits (default 10,000; 0 keeps only uncommitted writes).
func WithTableCache(keys int) Option { return func(c *Config) { c.TableCacheKeys = keys } }

// WithLogger sets the logger (default: text to stderr at info).
func WithLogger(l *slog.Logger) Option { return func(c *Config) { c.Logger = l } }

// WithGossip sets the gossip listen address (default "": no gossip).
func WithGossip(addr string) Option { return func(c *Config) { c.Gossip = addr } }

// WithJoin sets the gossip seeds (default 127.0.0.1:7946).
func WithJoin(addrs ...string) Option { return func(c *Config) { c.Join = addrs } }

// WithAdvertise sets the host other nodes use to reach this one.
func WithAdvertise(host string) Option { return func(c *Config) { c.Advertise = host } }

// WithGossipKey sets the gossip encryption key (16, 24 or 32 bytes).
func WithGossipKey(key string) Option { return func(c *Config) { c.GossipKey = key } }

// WithStandbys sets how many standby copies of each table shard the
// cluster keeps (default 1).
func WithStandbys(n int) Option { return func(c *Config) { c.Standbys = n } }

// WithSessionTimeout sets the consumer group session timeout (default 10s).
func WithSessionTimeout(d time.Duration) Option { return func(c *Config) { c.SessionTimeout = d } }

// Guarantee is what a worker promises about the effects of each input
// record: its table writes, the records its handler sends, its replies and
// its dead letters.
type Guarantee string

const (
	// AtLeastOnce: nothing is lost; after a crash or a rebalance the
	// records since the partition's last commit are processed again, so
	// their sends can be duplicated, and so can their table updates: a
	// crash after a commit's changelog records are written but before its
	// offsets are leaves the changelog ahead of the input, and an update
	// such as a count is then applied twice.
	AtLeastOnce Guarantee = "at_least_once"
	// ExactlyOnce: each partition commits its sends, its changelog records
	// and its input offsets in one Kafka transaction, and every topic is
	// read read_committed, so every effect happens once as seen by a
	// read_committed consumer, whatever crashes. It needs brokers with
	// transactions (see docs/exactly-once.md).
	ExactlyOnce Guarantee = "exactly_once"
)

// ProcessingGuarantee sets the processing guarantee (default AtLeastOnce).
func ProcessingGuarantee(g Guarantee) Option { return func(c *Config) { c.ProcessingGuarantee = g } }

// WithTransactionTimeout sets the transaction timeout under ExactlyOnce
// (default 10s).
func WithTransactionTimeout(d time.Duration) Option {
	return func(c *Config) { c.TransactionTimeout = d }
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// New declares an app. name is the Kafka consumer group id and prefixes
// every internal topic, so it must be unique per application on a cluster
// and use only letters, digits, '.', '_' and '-'.
func New(name string, opts ...Option) *App {
	a := &App{
		name:   name,
		topics: map[string]*topicDef{},
		tables: map[string]*tableDef{},
		agents: map[string]*agentDef{},
	}
	if !nameRE.MatchString(name) {
		a.errs = append(a.errs, fmt.Errorf("app name %q: use only letters, digits, '.', '_' and '-'", name))
	}
	a.cfg = Config{
		EmbeddedBroker:    "127.0.0.1:9092",
		WebAddr:           "127.0.0.1:6066",
		Partitions:        8,
		ReplicationFactor: -1,
		CommitInterval:    500 * time.Millisecond,
		MaxAttempts:       3,
		CacheBytes:        64 << 20,
		TableCacheKeys:    10_000,
		Join:              []string{"127.0.0.1:7946"},
		Standbys:          1,
		SessionTimeout:    10 * time.Second,

		ProcessingGuarantee: AtLeastOnce,
		TransactionTimeout:  10 * time.Second,
	}
	for _, o := range opts {
		o(&a.cfg)
	}
	return a
}

// Name returns the app's name.
func (a *App) Name() string { return a.name }

// Config returns a copy of the app's configuration.
func (a *App) Config() Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Configure applies options; it must be called before Run.
func (a *App) Configure(opts ...Option) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range opts {
		o(&a.cfg)
	}
}

func (a *App) declErr(err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// Validate reports every problem found in the declarations.
func (a *App) Validate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := append([]error(nil), a.errs...)
	if len(a.agents) == 0 && len(a.tasks) == 0 && len(a.timers) == 0 && len(a.chanAgents) == 0 {
		errs = append(errs, errors.New("the app declares no agents, tasks or timers: nothing to run"))
	}
	return errors.Join(errs...)
}

// running returns the running node, or nil.
func (a *App) running() runtime {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node
}

// Run runs a worker node until ctx is cancelled or a fatal error occurs
// (an invalid configuration, a data dir of another app or cluster, topics
// that break co-partitioning, a web address in use). On cancellation it
// drains every partition — finishes the record in flight, commits — and
// returns nil.
func (a *App) Run(ctx context.Context) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("app %s: %w", a.name, err)
	}
	cfg := a.Config()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("app %s: %w", a.name, err)
	}
	spec := a.spec()
	a.mu.Lock()
	if a.node != nil {
		a.mu.Unlock()
		return errors.New("mephisto: the app is already running")
	}
	n := node.New(spec, cfg.node(a.name))
	a.node = n
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.node = nil
		a.mu.Unlock()
	}()
	return n.Run(ctx)
}

// spec is the declarations as the node runs them.
func (a *App) spec() node.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := node.Spec{App: a.name, Tables: make([]*partition.Table, len(a.tables)), Topology: func() any { return a.Topology() }}
	names := make([]string, 0, len(a.topics))
	for name := range a.topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s.Topics = append(s.Topics, node.Topic{Name: name})
	}
	for name, d := range a.tables {
		s.Tables[d.spec.Index] = d.spec
		if a.globals[name] {
			s.Global = append(s.Global, d.spec.Index)
		}
	}
	sort.Ints(s.Global)
	for _, name := range a.order {
		s.Agents = append(s.Agents, a.agents[name].spec)
	}
	for _, t := range a.timers {
		s.Timers = append(s.Timers, node.Timer{Name: t.name, Schedule: t.sched, Run: t.fn, OnLeader: t.onLeader})
	}
	for _, t := range a.tasks {
		s.Tasks = append(s.Tasks, node.Task{Name: t.name, Run: t.fn})
	}
	for _, c := range a.chanAgents {
		s.Channels = append(s.Channels, c.spec)
	}
	s.Pages = a.webPagesLocked()
	return s
}

// Topology describes what an app declares. It is data: printed by the
// `agents` and `tables` commands and served on /topology.
type Topology struct {
	App    string      `json:"app"`
	Topics []TopicInfo `json:"topics"`
	Tables []TableInfo `json:"tables"`
	Agents []AgentInfo `json:"agents"`
	Pages  []PageInfo  `json:"pages"`
}

// TopicInfo describes a declared topic.
type TopicInfo struct {
	Name       string `json:"name"`
	KeyCodec   string `json:"key_codec"`
	ValueCodec string `json:"value_codec"`
	Internal   bool   `json:"internal"`
}

// TableInfo describes a declared table.
type TableInfo struct {
	Name       string `json:"name"`
	Changelog  string `json:"changelog"`
	KeyCodec   string `json:"key_codec"`
	ValueCodec string `json:"value_codec"`
	// Global is set for a global table (NewGlobalTable).
	Global bool `json:"global,omitempty"`
	// Window describes a windowed table's windows (NewWindowedTable),
	// e.g. "tumbling 1m0s grace 10s expires 1h0m0s".
	Window string `json:"window,omitempty"`
}

// AgentInfo describes a declared agent.
type AgentInfo struct {
	Name       string   `json:"name"`
	Topic      string   `json:"topic"`
	OnError    string   `json:"on_error"`
	DeadLetter string   `json:"dead_letter_topic,omitempty"`
	Sinks      []string `json:"sinks,omitempty"`
	Internal   bool     `json:"internal,omitempty"`
}

// Topology returns what the app declares, sorted by name.
func (a *App) Topology() Topology {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := Topology{App: a.name, Topics: []TopicInfo{}, Tables: []TableInfo{}, Agents: []AgentInfo{}, Pages: a.pageInfosLocked()}
	for _, d := range a.topics {
		t.Topics = append(t.Topics, TopicInfo{Name: d.name, KeyCodec: d.keyCodec, ValueCodec: d.valueCodec, Internal: d.internal})
	}
	for _, d := range a.tables {
		info := TableInfo{Name: d.spec.Name, Changelog: d.spec.Changelog, KeyCodec: d.spec.KeyCodec, ValueCodec: d.spec.ValueCodec,
			Global: a.globals[d.spec.Name]}
		if w := d.spec.Window; w != nil {
			info.Window = w.String()
		}
		t.Tables = append(t.Tables, info)
	}
	for _, name := range a.order {
		d := a.agents[name]
		info := AgentInfo{Name: d.spec.Name, Topic: d.topic.name, OnError: d.policy().String(), Sinks: d.sinks, Internal: d.internal}
		if d.policy() == DeadLetter {
			info.DeadLetter = d.spec.DeadLetterTopic
		}
		t.Agents = append(t.Agents, info)
	}
	sort.Slice(t.Topics, func(i, j int) bool { return t.Topics[i].Name < t.Topics[j].Name })
	sort.Slice(t.Tables, func(i, j int) bool { return t.Tables[i].Name < t.Tables[j].Name })
	return t
}
