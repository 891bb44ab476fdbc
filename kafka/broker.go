package kafka

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	// defaultListen is where the broker listens when BrokerConfig.Listen
	// is empty: loopback, on a port the kernel picks.
	defaultListen = "127.0.0.1:0"

	// minSessionTimeout is the smallest consumer-group session timeout the
	// broker accepts (kfake's default is 6s, like Kafka's
	// group.min.session.timeout.ms). 1s lets workers opt into fast
	// failure detection.
	minSessionTimeout = time.Second

	// compactionInterval is how often the broker runs kfake's log cleaner.
	//
	// kfake has its own cleaner ticker, whose period is the broker config
	// log.cleaner.backoff.ms (kfake's default: 1h). Each run compacts every
	// cleanup.policy=compact topic and applies retention.ms /
	// retention.bytes to every topic, batch by batch (we default
	// log.retention.ms to -1, see StartBroker). Compaction keeps the latest
	// record per key, but never touches a partition's last batch, drops
	// records with a nil key, removes tombstones older than
	// delete.retention.ms, and moves the log start offset past removed
	// heads. Unlike Kafka it does not stop at the last stable offset, so
	// records of a still-open transaction can supersede committed ones.
	//
	// kfake starts its ticker only when a topic is created, deleted or
	// reconfigured while the cluster runs and some topic is compacted or
	// has explicit retention; it does NOT start it after reloading topics
	// from DataDir, so a restarted broker would never compact its
	// changelogs. We therefore drive the same cleaner (Cluster.Compact)
	// from our own ticker, which also covers restarts.
	compactionInterval = time.Minute

	// metaFile is the file in which kfake persists the cluster id (as
	// {"version":N,"cluster_id":"..."}) in its DataDir. On NewCluster kfake
	// reloads it and the persisted id overrides the ClusterID option.
	metaFile = "meta.json"
)

// BrokerConfig configures an in-process Kafka-protocol broker (kfake).
type BrokerConfig struct {
	// Listen is the host:port to listen on; "" means 127.0.0.1:0 (a random
	// port). A wildcard host (0.0.0.0, ::) binds every interface but is
	// advertised to clients as 127.0.0.1; to be reachable from other hosts
	// listen on a specific address.
	Listen string
	// DataDir is where the broker persists topics, offsets and groups; ""
	// means in-memory only: nothing survives Close.
	DataDir string
	// Logger receives the broker's logs, kfake's included; nil discards
	// them.
	Logger *slog.Logger
	// SyncWrites fsyncs every produce (slower, survives power loss).
	// Without it writes go to the page cache and are synced on segment
	// roll and on Close.
	SyncWrites bool
	// TLS, when set, makes the broker accept TLS connections only, with
	// this server configuration: its certificate, and ClientCAs with
	// ClientAuth tls.RequireAndVerifyClientCert for mutual TLS.
	TLS *tls.Config
	// SASL lists the users clients must authenticate as; empty turns SASL
	// off. Every user is a superuser (the dev broker enforces no ACLs on
	// them).
	SASL []SASLUser
}

// SASLUser is a user of the embedded broker's SASL authentication.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512: the user can
	// authenticate with this mechanism only.
	Mechanism string
	User      string
	Password  Secret
}

// ParseSASLUser parses MECHANISM:USER:PASSWORD (the password may hold
// colons).
func ParseSASLUser(s string) (SASLUser, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return SASLUser{}, fmt.Errorf("want MECHANISM:USER:PASSWORD (MECHANISM one of %s)", strings.Join(SASLMechanisms, ", "))
	}
	u := SASLUser{Mechanism: strings.ToUpper(parts[0]), User: parts[1], Password: Secret(parts[2])}
	if !slices.Contains(SASLMechanisms, u.Mechanism) {
		return SASLUser{}, fmt.Errorf("SASL mechanism %q: want one of %s", parts[0], strings.Join(SASLMechanisms, ", "))
	}
	return u, nil
}

// Broker is a running embedded broker.
type Broker struct {
	cluster   *kfake.Cluster
	klog      *kfakeLogger
	log       *slog.Logger
	addr      string
	clusterID string

	stopCompaction chan struct{}
	compactionDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// StartBroker starts an embedded Kafka-protocol broker (a single kfake
// node) and returns once it accepts connections. Topic auto-creation is
// off. It fails if the listen address is taken, naming the address.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = defaultListen
	}
	host, port, err := splitListen(listen)
	if err != nil {
		return nil, err
	}

	clusterID, persisted, err := loadOrNewClusterID(cfg.DataDir)
	if err != nil {
		return nil, err
	}

	// Say what this is before kfake logs anything of its own.
	const prodHint = "point --brokers at a real Kafka or Redpanda cluster in production"
	if cfg.DataDir == "" {
		log.Warn("starting Mephisto's embedded development Kafka broker IN MEMORY: it keeps nothing, topics, records and offsets are lost when it stops",
			"listen", listen, "data_dir", "", "hint", prodHint)
	} else {
		dataDir := cfg.DataDir
		if abs, err := filepath.Abs(dataDir); err == nil {
			dataDir = abs
		}
		log.Info("starting Mephisto's embedded development Kafka broker",
			"listen", listen, "data_dir", dataDir, "sync_writes", cfg.SyncWrites, "hint", prodHint)
	}

	klog := &kfakeLogger{log: log.With("component", "kfake")}
	opts := []kfake.Opt{
		kfake.Ports(port), // one port means one broker (kfake defaults to 3)
		kfake.ClusterID(clusterID),
		kfake.WithLogger(klog),
		kfake.GroupMinSessionTimeout(minSessionTimeout),
		// Only used for CreateTopics with NumPartitions -1, as Kafka's
		// num.partitions (default 1); kfake's own default is 10.
		kfake.DefaultNumPartitions(1),
		// kfake.AllowAutoTopicCreation is deliberately not passed:
		// Mephisto creates its topics explicitly.
		kfake.BrokerConfigs(map[string]string{
			// Keep records forever unless a topic sets retention.ms or
			// retention.bytes. Kafka's default is 7 days, but Kafka
			// only deletes whole closed segments, whereas kfake's
			// cleaner drops every batch older than retention.ms: with
			// the default, records carrying old event timestamps
			// (replays, tests) would vanish on the next cleaner run.
			"log.retention.ms": "-1",
		}),
	}
	if len(cfg.SASL) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.SASL {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, string(u.Password)))
		}
	}
	fn := listenFn(host)
	if cfg.TLS != nil || len(cfg.SASL) > 0 {
		// TLS is done here rather than by kfake.TLS: see saslcompat.go.
		inner := fn
		if inner == nil {
			inner = net.Listen
		}
		fn = func(network, address string) (net.Listener, error) {
			ln, err := inner(network, address)
			if err != nil {
				return nil, err
			}
			return saslCompatListener{Listener: ln, tls: cfg.TLS}, nil
		}
	}
	if fn != nil {
		opts = append(opts, kfake.ListenFn(fn))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}

	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("kafka: embedded broker cannot listen on %s: address already in use (is another broker running there?): %w", listen, err)
		}
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "listen" {
			return nil, fmt.Errorf("kafka: embedded broker cannot listen on %s: %w", listen, err)
		}
		if cfg.DataDir != "" {
			return nil, fmt.Errorf("kafka: starting embedded broker with data dir %s: %w", cfg.DataDir, err)
		}
		return nil, fmt.Errorf("kafka: starting embedded broker: %w", err)
	}
	// ListenAddrs goes through the cluster's run loop and would block
	// forever after Close, so read it once now.
	addrs := cluster.ListenAddrs()
	if len(addrs) != 1 {
		cluster.Close()
		return nil, fmt.Errorf("kafka: embedded broker listens on %d addresses, want 1", len(addrs))
	}

	b := &Broker{
		cluster:        cluster,
		klog:           klog,
		log:            log,
		addr:           addrs[0],
		clusterID:      clusterID,
		stopCompaction: make(chan struct{}),
		compactionDone: make(chan struct{}),
	}
	go b.compactLoop()

	state := "in-memory"
	switch {
	case persisted:
		state = "reloaded from data dir"
	case cfg.DataDir != "":
		state = "new data dir"
	}
	var users []string
	for _, u := range cfg.SASL {
		users = append(users, u.Mechanism+":"+u.User)
	}
	log.Info("embedded development Kafka broker listening",
		"addr", b.addr, "cluster_id", clusterID, "state", state, "tls", cfg.TLS != nil, "sasl_users", strings.Join(users, ","))
	return b, nil
}

// Addr returns the host:port clients should dial. It is also the address
// the broker advertises in metadata responses.
func (b *Broker) Addr() string { return b.addr }

// ClusterID returns the broker's cluster id: random for a fresh or
// in-memory broker, the persisted one for a reused data dir.
func (b *Broker) ClusterID() string { return b.clusterID }

// Close stops the broker, closing client connections, and persists its
// state to the data dir, if any. It is safe to call more than once; later
// calls return the first call's result.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		// Cluster.Compact blocks forever on a closed cluster, so stop
		// the compaction loop first.
		close(b.stopCompaction)
		<-b.compactionDone

		b.klog.startCapture()
		b.cluster.Close()
		if errs := b.klog.stopCapture(); len(errs) > 0 {
			b.closeErr = fmt.Errorf("kafka: closing embedded broker: %w", errors.Join(errs...))
		}
		b.log.Info("embedded Kafka broker stopped", "addr", b.addr)
	})
	return b.closeErr
}

func (b *Broker) compactLoop() {
	defer close(b.compactionDone)
	t := time.NewTicker(compactionInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopCompaction:
			return
		case <-t.C:
			b.cluster.Compact()
		}
	}
}

// splitListen parses a host:port listen address.
func splitListen(listen string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("kafka: invalid broker listen address %q: %w", listen, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("kafka: invalid port in broker listen address %q: %w", listen, err)
	}
	return host, int(port), nil
}

// listenFn returns the kfake listen function for host, or nil if kfake's
// default (bind 127.0.0.1) is right.
//
// kfake always asks to listen on 127.0.0.1:PORT and advertises, in metadata,
// find-coordinator and produce/fetch leader hints, whatever the listener's
// Addr returns. Clients dial those advertised addresses after bootstrapping,
// so for a wildcard bind we advertise 127.0.0.1 rather than the undialable
// 0.0.0.0 / ::.
func listenFn(host string) func(network, address string) (net.Listener, error) {
	switch host {
	case "127.0.0.1", "localhost":
		return nil
	}
	wildcard := host == "" || host == "0.0.0.0" || host == "::"
	return func(network, address string) (net.Listener, error) {
		_, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen(network, net.JoinHostPort(host, port))
		if err != nil || !wildcard {
			return ln, err
		}
		tcp, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return ln, nil
		}
		return advertisedListener{ln, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcp.Port}}, nil
	}
}

// advertisedListener is a listener whose Addr, which kfake advertises to
// clients, differs from the address it is bound to.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

// Addr returns the advertised address.
func (l advertisedListener) Addr() net.Addr { return l.addr }

// loadOrNewClusterID returns the cluster id persisted by kfake in dir, or a
// new random one (and persisted=false) if dir is "" or holds no state yet.
//
// Passing the persisted id back as kfake.ClusterID is harmless (kfake
// overrides the option with meta.json on reload); reading it here is how we
// learn it, as kfake has no accessor for it.
func loadOrNewClusterID(dir string) (id string, persisted bool, err error) {
	if dir != "" {
		path := filepath.Join(dir, metaFile)
		raw, err := os.ReadFile(path)
		switch {
		case err == nil:
			var meta struct {
				ClusterID string `json:"cluster_id"`
			}
			if err := json.Unmarshal(raw, &meta); err != nil {
				return "", false, fmt.Errorf("kafka: reading broker cluster id from %s: %w", path, err)
			}
			if meta.ClusterID == "" {
				return "", false, fmt.Errorf("kafka: broker data dir %s has no cluster id in %s", dir, path)
			}
			return meta.ClusterID, true, nil
		case errors.Is(err, fs.ErrNotExist):
		default:
			return "", false, fmt.Errorf("kafka: reading broker cluster id: %w", err)
		}
	}
	id, err = newClusterID()
	return id, false, err
}

// newClusterID returns a random cluster id shaped like Kafka's: 16 random
// bytes, unpadded base64url (22 characters).
func newClusterID() (string, error) {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", fmt.Errorf("kafka: generating cluster id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(buf[:]), nil
}

// kfakeLogger routes kfake's logs to slog at the matching level. While
// capturing (during Close) it also collects error-level messages so Close
// can report a failed persist, which kfake only logs.
type kfakeLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	capturing bool
	captured  []error
}

// Logf implements kfake.Logger.
func (l *kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo:
		sl = slog.LevelInfo
	case kfake.LogLevelDebug:
		sl = slog.LevelDebug
	default:
		return
	}
	if level == kfake.LogLevelError {
		l.mu.Lock()
		if l.capturing {
			l.captured = append(l.captured, fmt.Errorf(format, args...))
		}
		l.mu.Unlock()
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, sl) {
		return
	}
	l.log.Log(ctx, sl, fmt.Sprintf(format, args...))
}

func (l *kfakeLogger) startCapture() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.capturing = true
}

func (l *kfakeLogger) stopCapture() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.capturing = false
	errs := l.captured
	l.captured = nil
	return errs
}
