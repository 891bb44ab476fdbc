package mephisto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mephistohq/mephisto/internal/node"
	"github.com/mephistohq/mephisto/kafka"
)

// Exit codes of the app binary.
const (
	ExitOK    = 0 // success
	ExitError = 1 // the command failed (its error is printed)
	ExitUsage = 2 // bad flags or arguments (usage is printed)
)

// Main runs the app binary's command line (worker, send, agents, tables,
// reset) on os.Args and exits with its code.
func (a *App) Main() {
	os.Exit(a.Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Execute runs the command line args and returns the exit code. Main calls
// it; tests and embedding programs may call it directly.
func (a *App) Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := a.command(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.Contains(err.Error(), "accepts ") || strings.Contains(err.Error(), "arg(s)") {
		fmt.Fprintf(stderr, "Error: %v\n\n", err)
		cmd, _, ferr := root.Find(args)
		if ferr != nil || cmd == nil {
			cmd = root
		}
		fmt.Fprint(stderr, cmd.UsageString())
		return ExitUsage
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return ExitError
}

// cliFlags holds what the flags set.
type cliFlags struct {
	embeddedBroker string
	dataDir        string
	web            string
	nodeID         string
	partitions     int32
	replication    int16
	commitInterval time.Duration
	maxAttempts    int
	cacheBytes     int64
	tableCache     int
	logLevel       string
	logFormat      string
	key            string
	jsonOut        bool
	gossip         string
	actor          string
	actorTLS       [4]string // cert, key, CA, server name
	join           []string
	advertise      string
	gossipKey      string
	standbys       int
	sessionTimeout time.Duration
	guarantee      string
	txnTimeout     time.Duration
}

// kafkaFlags holds what the Kafka security flags of one command set.
type kafkaFlags struct {
	tls                           bool
	ca, cert, key, serverName     string
	saslMechanism, saslUser, sasl string
}

// define adds the Kafka security flags to fs, with cfg's values as
// defaults — all but the password's, whose default is never shown.
func (k *kafkaFlags) define(fs *pflag.FlagSet, cfg Config) {
	fs.BoolVar(&k.tls, "kafka-tls", cfg.KafkaTLS, "connect to Kafka over TLS (the brokers' SSL or SASL_SSL listener)")
	fs.StringVar(&k.ca, "kafka-tls-ca", cfg.KafkaTLSCA, "PEM file of the CAs that sign the brokers' certificates (default: the system's CAs)")
	fs.StringVar(&k.cert, "kafka-tls-cert", cfg.KafkaTLSCert, "PEM file of this client's certificate, for mutual TLS (with --kafka-tls-key)")
	fs.StringVar(&k.key, "kafka-tls-key", cfg.KafkaTLSKey, "PEM file of the key of --kafka-tls-cert")
	fs.StringVar(&k.serverName, "kafka-tls-server-name", cfg.KafkaTLSServerName, "name to verify the brokers' certificates against (default: the host dialed)")
	fs.StringVar(&k.saslMechanism, "kafka-sasl-mechanism", cfg.KafkaSASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: no SASL)")
	fs.StringVar(&k.saslUser, "kafka-sasl-user", cfg.KafkaSASLUser, "SASL user name")
	fs.StringVar(&k.sasl, "kafka-sasl-password", "", "SASL password; better set MEPHISTO_KAFKA_SASL_PASSWORD, a flag shows in the process list (never logged)")
}

// options returns the options the flags set.
func (k *kafkaFlags) options() []Option {
	opts := []Option{WithKafkaTLS(k.tls), WithKafkaTLSCA(k.ca), WithKafkaTLSCert(k.cert, k.key), WithKafkaTLSServerName(k.serverName),
		func(c *Config) { c.KafkaSASLMechanism, c.KafkaSASLUser = k.saslMechanism, k.saslUser }}
	if k.sasl != "" { // else the option's password, if any, stays
		opts = append(opts, func(c *Config) { c.KafkaSASLPassword = Secret(k.sasl) })
	}
	return opts
}

// security returns the Kafka security of a client command: cfg with the
// flags applied, checked (a bad combination is a usage error).
func (k *kafkaFlags) security(cfg Config) (kafka.Security, error) {
	for _, o := range k.options() {
		o(&cfg)
	}
	sec := cfg.kafkaSecurity()
	if err := sec.Check(); err != nil {
		return sec, usageError{err}
	}
	return sec, nil
}

func (a *App) command(stdout, stderr io.Writer) *cobra.Command {
	cfg := a.Config()
	var f cliFlags
	root := &cobra.Command{
		Use:           filepath.Base(os.Args[0]),
		Short:         fmt.Sprintf("%s: a Mephisto stream-processing app", a.name),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true

	// Each command gets its own brokers variable: pflag writes a flag's
	// default into its variable when the flag is defined, so a shared one
	// would end up with the default of the last command defined.
	var workerBrokers, sendBrokers, resetBrokers []string
	var workerKafka, sendKafka, askKafka kafkaFlags
	logFlags := func(fs *pflag.FlagSet) {
		fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
		fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	}

	worker := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker node: consume the agents' topics, keep the tables, serve HTTP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(stderr, f.logLevel, f.logFormat)
			if err != nil {
				return usageError{err}
			}
			opts := []Option{
				WithBrokers(workerBrokers...), WithEmbeddedBroker(f.embeddedBroker), WithDataDir(f.dataDir),
				WithWebAddr(f.web), WithNodeID(f.nodeID), WithPartitions(f.partitions),
				WithReplicationFactor(f.replication), WithCommitInterval(f.commitInterval),
				WithMaxAttempts(f.maxAttempts), WithCacheSize(f.cacheBytes), WithTableCache(f.tableCache),
				WithGossip(f.gossip), WithJoin(f.join...), WithAdvertise(f.advertise), WithGossipKey(f.gossipKey),
				WithStandbys(f.standbys), WithSessionTimeout(f.sessionTimeout), WithActorAddr(f.actor),
				ProcessingGuarantee(Guarantee(f.guarantee)), WithTransactionTimeout(f.txnTimeout),
				WithActorTLS(f.actorTLS[0], f.actorTLS[1], f.actorTLS[2]), WithActorTLSServerName(f.actorTLS[3]),
			}
			opts = append(opts, workerKafka.options()...)
			if cfg.Logger == nil || cmd.Flags().Changed("log-level") || cmd.Flags().Changed("log-format") {
				opts = append(opts, WithLogger(log))
			}
			a.Configure(opts...)
			if err := a.Config().Validate(); err != nil {
				return usageError{err}
			}
			if point := os.Getenv("MEPHISTO_FAULTPOINT"); point != "" {
				a.Configure(func(c *Config) { c.crash = crashAt(point, log) })
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	wf := worker.Flags()
	wf.StringSliceVar(&workerBrokers, "brokers", cfg.Brokers, "Kafka bootstrap brokers, comma-separated; empty runs the embedded broker")
	workerKafka.define(wf, cfg)
	wf.StringVar(&f.embeddedBroker, "embedded-broker", cfg.EmbeddedBroker, "listen address of the embedded broker (used when --brokers is empty)")
	wf.StringVar(&f.dataDir, "data-dir", cfg.DataDir, "directory for table state and the embedded broker's data (default ./"+a.name+"-data/<node-id>)")
	wf.StringVar(&f.web, "web", cfg.WebAddr, "HTTP listen address; empty disables it")
	wf.StringVar(&f.nodeID, "node-id", cfg.NodeID, "node id (default: the host name)")
	wf.Int32Var(&f.partitions, "partitions", cfg.Partitions, "partition count of topics the app creates")
	wf.Int16Var(&f.replication, "replication-factor", cfg.ReplicationFactor, "replication factor of topics the app creates; -1 uses the brokers' default")
	wf.DurationVar(&f.commitInterval, "commit-interval", cfg.CommitInterval, "how often each partition commits")
	wf.IntVar(&f.maxAttempts, "max-attempts", cfg.MaxAttempts, "attempts of a failing record before the agent's error policy applies")
	wf.Int64Var(&f.cacheBytes, "cache-size", cfg.CacheBytes, "Pebble block cache size in bytes")
	wf.IntVar(&f.tableCache, "table-cache", cfg.TableCacheKeys, "keys of each table shard kept decoded in memory between commits (0: only uncommitted writes)")
	actorDefault := cfg.ActorAddr
	if actorDefault == "" {
		actorDefault = "127.0.0.1:0"
	}
	wf.StringVar(&f.actor, "actor", actorDefault, "where this node's actors listen for other nodes (PIDs; port 0: a free port); empty keeps them local")
	wf.StringVar(&f.actorTLS[0], "actor-tls-cert", cfg.ActorTLSCert, "PEM file of this node's certificate: links between nodes' actors become mutual TLS (with --actor-tls-key, --actor-tls-ca)")
	wf.StringVar(&f.actorTLS[1], "actor-tls-key", cfg.ActorTLSKey, "PEM file of the key of --actor-tls-cert")
	wf.StringVar(&f.actorTLS[2], "actor-tls-ca", cfg.ActorTLSCA, "PEM file of the CA that signs every node's certificate: only its certificates are accepted")
	wf.StringVar(&f.actorTLS[3], "actor-tls-server-name", cfg.ActorTLSServerName, "name to verify other nodes' certificates against (default: the host dialed)")
	wf.StringVar(&f.gossip, "gossip", cfg.Gossip, "gossip (memberlist) listen address host:port; empty disables gossip")
	wf.StringSliceVar(&f.join, "join", cfg.Join, "gossip address of a node to join (repeatable)")
	wf.StringVar(&f.advertise, "advertise", cfg.Advertise, "host other nodes use to reach this one (default: the listen addresses)")
	wf.StringVar(&f.gossipKey, "gossip-key", cfg.GossipKey, "encrypt gossip with this key (16, 24 or 32 bytes; the same on every node)")
	wf.IntVar(&f.standbys, "standbys", cfg.Standbys, "standby copies of each table shard kept on other nodes (capped at nodes-1)")
	wf.DurationVar(&f.sessionTimeout, "session-timeout", cfg.SessionTimeout, "consumer group session timeout (how long Kafka waits for a silent node)")
	wf.StringVar(&f.guarantee, "processing-guarantee", string(cfg.ProcessingGuarantee), "at_least_once, or exactly_once: each partition commits through one Kafka transaction")
	wf.DurationVar(&f.txnTimeout, "transaction-timeout", cfg.TransactionTimeout, "how long the broker lets a partition's transaction stay open (exactly_once)")
	logFlags(wf)

	send := &cobra.Command{
		Use:   "send AGENT|TOPIC VALUE",
		Short: "Produce one record to a topic, or to an agent's topic (value and --key are parsed with the topic's codecs)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sec, err := sendKafka.security(a.Config())
			if err != nil {
				return err
			}
			return a.sendCmd(cmd.Context(), stdout, sendBrokers, sec, args[0], args[1], f.key, cmd.Flags().Changed("key"))
		},
	}
	send.Flags().StringSliceVar(&sendBrokers, "brokers", defaultClientBrokers(cfg), "Kafka bootstrap brokers, comma-separated")
	sendKafka.define(send.Flags(), cfg)
	send.Flags().StringVar(&f.key, "key", "", "record key (default: no key)")

	var askTimeout time.Duration
	var askBrokers []string
	ask := &cobra.Command{
		Use:   "ask AGENT VALUE",
		Short: "Ask a reply agent and print its reply (VALUE and --key are parsed with the agent's topic codecs)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sec, err := askKafka.security(a.Config())
			if err != nil {
				return err
			}
			return a.askCmd(cmd.Context(), stdout, askBrokers, sec, args[0], args[1], f.key, cmd.Flags().Changed("key"), askTimeout)
		},
	}
	ask.Flags().StringSliceVar(&askBrokers, "brokers", defaultClientBrokers(cfg), "Kafka bootstrap brokers, comma-separated")
	askKafka.define(ask.Flags(), cfg)
	ask.Flags().StringVar(&f.key, "key", "", "request key (default: none, spread over the partitions)")
	ask.Flags().DurationVar(&askTimeout, "timeout", 10*time.Second, "how long to wait for the reply")

	agents := &cobra.Command{
		Use:   "agents",
		Short: "List the app's agents",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			t := a.Topology()
			if f.jsonOut {
				return json.NewEncoder(stdout).Encode(t.Agents)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tTOPIC\tON ERROR\tSINKS")
			for _, ag := range t.Agents {
				onErr := ag.OnError
				if ag.DeadLetter != "" {
					onErr += " (" + ag.DeadLetter + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ag.Name, ag.Topic, onErr, strings.Join(ag.Sinks, ","))
			}
			return tw.Flush()
		},
	}
	agents.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON")

	tables := &cobra.Command{
		Use:   "tables",
		Short: "List the app's tables",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			t := a.Topology()
			if f.jsonOut {
				return json.NewEncoder(stdout).Encode(t.Tables)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TABLE\tCHANGELOG\tKEY\tVALUE\tWINDOWS")
			for _, tb := range t.Tables {
				win := tb.Window
				if win == "" {
					win = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tb.Name, tb.Changelog, tb.KeyCodec, tb.ValueCodec, win)
			}
			return tw.Flush()
		},
	}
	tables.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON")

	reset := &cobra.Command{
		Use:   "reset",
		Short: "Wipe this node's table state (it is rebuilt from the changelogs on the next start)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir := filepath.Join(Config{DataDir: f.dataDir, NodeID: f.nodeID}.dataDir(a.name), "state")
			if err := node.ResetState(dir); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wiped table state in %s; the next worker start rebuilds it from the changelogs\n", dir)
			return nil
		},
	}
	reset.Flags().StringVar(&f.dataDir, "data-dir", cfg.DataDir, "the worker's data directory (default ./"+a.name+"-data/<node-id>)")
	reset.Flags().StringVar(&f.nodeID, "node-id", cfg.NodeID, "the worker's node id, to find its default data directory")
	reset.Flags().StringSliceVar(&resetBrokers, "brokers", cfg.Brokers, "Kafka brokers (unused: state is local; accepted for symmetry)")

	root.AddCommand(worker, send, ask, agents, tables, reset)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return bindEnv(cmd) }
	return root
}

// bindEnv gives every flag of cmd not set on the command line the value of
// its environment variable MEPHISTO_<FLAG> (dashes become underscores).
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || err != nil {
			return
		}
		name := "MEPHISTO_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fl.Value.Set(v); serr != nil {
				err = usageError{fmt.Errorf("environment %s=%q: %w", name, v, serr)}
			}
		}
	})
	return err
}

func defaultClientBrokers(cfg Config) []string {
	if len(cfg.Brokers) > 0 {
		return cfg.Brokers
	}
	return []string{cfg.EmbeddedBroker}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// crashAt returns a crash hook that kills the process with SIGKILL at the
// named commit-protocol point: a real crash, for tests of the protocol.
func crashAt(point string, log *slog.Logger) func(string) {
	return func(p string) {
		if p == point {
			log.Warn("MEPHISTO_FAULTPOINT reached: killing the process", "point", p)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// sendCmd produces one record as a client (not a cluster member).
func (a *App) sendCmd(ctx context.Context, stdout io.Writer, brokers []string, sec kafka.Security, topic, value, key string, keyed bool) error {
	var kb, vb []byte = nil, []byte(value)
	a.mu.Lock()
	def := a.topics[topic]
	if ag, ok := a.agents[topic]; ok && def == nil {
		def, topic = ag.topic, ag.topic.name
	}
	a.mu.Unlock()
	var err error
	if def != nil {
		if vb, err = def.textValue(value); err != nil {
			return usageError{fmt.Errorf("value for topic %s (%s codec): %w", topic, def.valueCodec, err)}
		}
		if keyed {
			if kb, err = def.textKey(key); err != nil {
				return usageError{fmt.Errorf("key for topic %s (%s codec): %w", topic, def.keyCodec, err)}
			}
		}
	} else if keyed {
		kb = []byte(key)
	}
	p, off, err := node.ClientSend(ctx, brokers, sec, a.name+"-cli", topic, kb, vb)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent to %s partition %d offset %d\n", topic, p, off)
	return nil
}

// askCmd asks a reply agent as a client (not a cluster member) and prints
// the reply, which is JSON.
func (a *App) askCmd(ctx context.Context, stdout io.Writer, brokers []string, sec kafka.Security, agent, value, key string, keyed bool, timeout time.Duration) error {
	a.mu.Lock()
	ag, ok := a.agents[agent]
	a.mu.Unlock()
	if !ok {
		return usageError{fmt.Errorf("no agent %q (see the agents command)", agent)}
	}
	if !ag.spec.Replies {
		return usageError{fmt.Errorf("agent %s does not reply: %w", agent, ErrNotReplyAgent)}
	}
	vb, err := ag.topic.textValue(value)
	if err != nil {
		return usageError{fmt.Errorf("value for agent %s (%s codec): %w", agent, ag.topic.valueCodec, err)}
	}
	var kb []byte
	if keyed {
		if kb, err = ag.topic.textKey(key); err != nil {
			return usageError{fmt.Errorf("key for agent %s (%s codec): %w", agent, ag.topic.keyCodec, err)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reply, err := node.ClientAsk(ctx, brokers, sec, a.name, ag.topic.name, kb, vb, keyed)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(reply))
	return nil
}
