package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/cluster"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
	"github.com/mephistohq/mephisto/web"
)

// Node is one running worker node.
type Node struct {
	spec Spec
	cfg  Config
	log  *slog.Logger
	// ctx bounds work that must finish on a clean stop (commits,
	// recovery): it is cancelled once the worker has stopped, or
	// drainGrace after a stop was requested if draining hangs (a broker
	// that went away for good).
	ctx     context.Context
	cancel  context.CancelFunc
	metrics *metrics
	dash    *dashboard // recent errors and rate samples (dashboard.go)

	// Set up by run before the consumer group starts, read-only after.
	broker  *kafka.Broker
	brokers []string
	// net secures every Kafka client of the node (cfg.Kafka, loaded):
	// every sarama.Config comes from it.
	net *kafka.Net
	// One client per independent reader: a broker answers the requests of
	// one connection in order, so a fetch long-polling for one reader would
	// delay the others.
	client    sarama.Client // consumer group, admin, metadata
	pclient   sarama.Client // the producer
	cclient   sarama.Client // changelog reader (recovery, standbys)
	rclient   sarama.Client // reply listener
	admin     sarama.ClusterAdmin
	producer  *kafka.Producer
	consumer  sarama.Consumer // changelogs
	rconsumer sarama.Consumer // replies
	member    *kafka.GroupMember
	store     *state.Store
	system    *actor.ActorSystem
	sup       *actors.Supervisor
	web       *web.Server
	tables    []*partition.Table // by index
	ids       []uint32           // Pebble table ids, by table index
	// AddAgent replaces these three under mu, with new copies: a copy
	// read is never modified.
	agents  []*partition.Agent // by index
	fanout  map[string][]int   // topic → agents
	sources []string           // topics the consumer group subscribes to

	members  *cluster.Membership // nil without --gossip
	strategy *cluster.Strategy
	remote   *actors.Remote
	requests *kafka.Requester

	mu         sync.Mutex // guards the fields below
	counts     map[string]int32
	plan       *cluster.Plan      // the latest assignment plan received
	lastActive []int32            // partitions active in the current/last session
	standbys   map[int32]*standby // standby shards being tailed
	globals    map[int32]*standby // global tables' copies being tailed (global.go)
	promoted   map[int32]bool     // standbys stopped because the partition became active here
	phase      string             // why the node is not ready, "" once consuming
	session    bool
	generation int32
	grains     map[int32]*grainState
	draining   map[int32]*grainState // grains a revoke or stop waits for

	tasks sync.WaitGroup // running App.Task functions
}

type grainState struct {
	pid     *actor.PID
	loaded  bool
	stopped error
	failing error // set while the grain waits to be restarted
}

// New returns a node that runs spec with cfg (defaults resolved) once Run
// is called.
func New(spec Spec, cfg Config) *Node {
	dash := newDashboard()
	log := withErrorRing(cfg.Logger.With("app", spec.App, "node", cfg.NodeID), dash)
	rt := &Node{
		spec: spec, cfg: cfg, log: log, dash: dash,
		metrics:  newMetrics(spec.App, cfg.NodeID),
		counts:   map[string]int32{},
		grains:   map[int32]*grainState{},
		standbys: map[int32]*standby{},
		globals:  map[int32]*standby{},
		promoted: map[int32]bool{},
		phase:    "starting",
		fanout:   map[string][]int{},
		tables:   spec.Tables,
		ids:      make([]uint32, len(spec.Tables)),
	}
	for _, d := range spec.Agents {
		if _, ok := rt.fanout[d.Topic]; !ok {
			rt.sources = append(rt.sources, d.Topic)
		}
		rt.fanout[d.Topic] = append(rt.fanout[d.Topic], len(rt.agents))
		rt.agents = append(rt.agents, d)
	}
	sort.Strings(rt.sources)
	return rt
}

// Logger returns the node's logger.
func (rt *Node) Logger() *slog.Logger { return rt.log }

func (rt *Node) setPhase(p string) {
	rt.mu.Lock()
	rt.phase = p
	rt.mu.Unlock()
}

// drainGrace bounds how long a stopping worker waits for its partitions to
// commit.
const drainGrace = 30 * time.Second

// drainProgress is how often a stopping worker says what it waits for.
const drainProgress = 5 * time.Second

// Run runs the node until stop is done or a fatal error occurs. On stop it
// drains every partition — finishes the record in flight, commits — and
// returns nil.
func (rt *Node) Run(stop context.Context) (err error) {
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	defer rt.cancel()
	defer rt.shutdown()
	go func() {
		select {
		case <-stop.Done():
		case <-rt.ctx.Done():
			return
		}
		rt.log.Info("stopping: each partition finishes its record in flight and commits", "grace", drainGrace)
		began := time.Now()
		t := time.NewTimer(drainGrace)
		defer t.Stop()
		progress := time.NewTicker(drainProgress)
		defer progress.Stop()
		for {
			select {
			case <-t.C:
				rt.log.Error("partitions did not drain in time; stopping without their last commit (their records will be processed again)",
					"grace", drainGrace, "partitions", rt.undrained())
				rt.cancel()
				return
			case <-progress.C:
				rt.log.Warn("still stopping: partitions have not committed yet", "partitions", rt.undrained(), "gives_up_in", (drainGrace - time.Since(began)).Round(time.Second))
			case <-rt.ctx.Done():
				return
			}
		}
	}()

	if rt.net, err = rt.cfg.Kafka.Net(); err != nil {
		return fmt.Errorf("kafka security: %w", err)
	}
	rt.brokers = rt.cfg.Brokers
	if len(rt.brokers) == 0 {
		rt.broker, err = kafka.StartBroker(kafka.BrokerConfig{
			Listen: rt.cfg.EmbeddedBroker, DataDir: filepath.Join(rt.cfg.DataDir, "broker"), Logger: rt.log.With("component", "embedded-broker"),
		})
		if err != nil {
			return fmt.Errorf("no --brokers given and the embedded broker cannot start: %w", err)
		}
		rt.brokers = []string{rt.broker.Addr()}
	}

	if rt.cfg.WebAddr != "" {
		h, err := web.Handler(rt, rt.spec.Pages...)
		if err != nil {
			return err
		}
		if rt.web, err = web.Listen(rt.cfg.WebAddr, h, rt.log); err != nil {
			return err
		}
		rt.log.Info("HTTP server listening", "url", "http://"+rt.web.Addr(),
			"endpoints", "/ (dashboard) /healthz /readyz /metrics /tables/{table}/{key} /tables/{table}?key= /topology /cluster /dashboard.json", "pages", len(rt.spec.Pages))
	}

	rt.store, err = state.Open(state.Options{Dir: filepath.Join(rt.cfg.DataDir, "state"), Logger: rt.log, CacheBytes: rt.cfg.CacheBytes})
	if err != nil {
		return err
	}
	rt.log.Info("table state opened", "dir", rt.store.Dir())

	clusterID, err := rt.connect(stop)
	if err != nil {
		if stop.Err() != nil { // stopped while Kafka refused or did not answer: a clean stop
			rt.log.Info("stopped before Kafka answered")
			return nil
		}
		return err
	}
	if err := rt.store.CheckIdentity(state.Identity{App: rt.spec.App, ClusterID: clusterID}); err != nil {
		return err
	}
	rt.setPhase("creating topics")
	if err := rt.ensureTopics(); err != nil {
		return err
	}
	for _, d := range rt.tables {
		if rt.ids[d.Index], err = rt.store.TableID(d.Name); err != nil {
			return err
		}
	}
	// After a restart, claim the partitions this node had (sticky).
	if rt.lastActive, err = rt.store.Active(); err != nil {
		return err
	}
	if rt.producer, err = kafka.NewProducer(rt.pclient, rt.log); err != nil {
		return err
	}
	if rt.consumer, err = sarama.NewConsumerFromClient(rt.cclient); err != nil {
		return fmt.Errorf("start consumer: %w", err)
	}
	if rt.rconsumer, err = sarama.NewConsumerFromClient(rt.rclient); err != nil {
		return fmt.Errorf("start reply consumer: %w", err)
	}
	// Every partition's global copy catches up before the node is ready;
	// the first assignment stops the copies of the partitions it makes
	// active here.
	if err := rt.placeGlobals(nil); err != nil {
		return err
	}
	if rt.member, err = kafka.NewGroupMember(kafka.GroupMemberConfig{
		Group: rt.spec.App, Client: rt.client, Handler: rt, Log: rt.log, Backoff: kafkaBackoff,
		Brokers: rt.brokers,
	}); err != nil {
		return err
	}
	rt.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		// protoactor narrates every restart at Info; our supervisor already
		// logs failures with their cause, so keep only its warnings.
		return slog.New(minLevel{rt.log.Handler(), slog.LevelWarn}).With("component", "protoactor")
	}))
	rt.sup, err = actors.NewSupervisor(rt.system, "partitions", actors.SupervisorConfig{
		Log: rt.log,
		OnRestart: func(child *actor.PID, _ any) {
			rt.metrics.restarts.WithLabelValues(child.Id).Inc()
		},
	})
	if err != nil {
		return err
	}
	rt.remote = actors.NewRemote(rt.system)
	if addr := rt.cfg.ActorAddr; addr != "" {
		var sec *actors.RemoteTLS
		if rt.cfg.ActorTLS.Enabled() {
			sec = &rt.cfg.ActorTLS
		}
		if err := rt.remote.Listen(addr, rt.advertised, sec, rt.log); err != nil {
			return err
		}
		rt.log.Info("actor system reachable", "actor", rt.system.Address(), "tls", sec != nil)
	}
	if err := rt.startTableServer(); err != nil {
		return err
	}
	if rt.requests, err = kafka.NewRequester(kafka.RequesterConfig{
		Consumer: rt.rconsumer, Producer: rt.producer, App: rt.spec.App, ID: rt.cfg.NodeID, Partitions: rt.partitionCount,
	}); err != nil {
		return err
	}
	if err := rt.startGossip(stop); err != nil {
		return err
	}
	if err := rt.startChannelAgents(); err != nil {
		return err
	}
	rt.startTasks(stop)
	if err := rt.startTimers(stop); err != nil {
		return err
	}
	defer rt.tasks.Wait()
	rt.setPhase("joining consumer group")
	rt.log.Info("worker started", "brokers", strings.Join(rt.brokers, ","), "topics", rt.sources, "data_dir", rt.cfg.DataDir)
	if len(rt.sources) == 0 { // only channel agents, tasks and timers: nothing to consume
		rt.mu.Lock()
		rt.phase, rt.session = "", true
		rt.mu.Unlock()
		<-stop.Done()
		rt.log.Info("worker stopping")
		return nil
	}
	rt.member.Run(stop, rt.sourceTopics)
	rt.log.Info("worker stopping: draining partitions")
	return nil
}

// connect dials the brokers until they answer, so that a worker started
// before Kafka (or cut off from it) waits instead of exiting, and returns
// the cluster id.
func (rt *Node) connect(stop context.Context) (string, error) {
	rt.strategy = cluster.NewStrategy(rt.localMember, rt.onPlan)
	cfg := rt.isolated(rt.net.GroupConfig(rt.spec.App+"-"+rt.cfg.NodeID, rt.cfg.NodeID, rt.cfg.SessionTimeout, rt.strategy))
	if rt.net.Security().Enabled() {
		rt.log.Info("connecting to Kafka", "brokers", strings.Join(rt.brokers, ","), "security", rt.net)
	}
	var logged string // the last misconfiguration logged at Error
	for attempt := 1; ; attempt++ {
		if attempt == 1 { // later, /readyz keeps saying why the last attempt failed
			rt.setPhase("connecting to Kafka at " + strings.Join(rt.brokers, ","))
		}
		// One connection per broker first: a TLS or SASL failure is told
		// apart here, once, instead of inside sarama's metadata retries.
		err := kafka.Probe(rt.brokers, cfg)
		var client sarama.Client
		if err == nil {
			client, err = sarama.NewClient(rt.brokers, cfg)
		}
		var id string
		if err == nil {
			if id, err = kafka.ClusterID(client); err != nil {
				_ = client.Close()
			}
		}
		if err == nil {
			rt.client = client
			if rt.admin, err = sarama.NewClusterAdminFromClient(client); err != nil {
				return "", fmt.Errorf("kafka admin: %w", err)
			}
			prefix := rt.spec.App + "-" + rt.cfg.NodeID
			if rt.pclient, err = sarama.NewClient(rt.brokers, rt.net.ClientConfig(prefix+"-producer")); err != nil {
				return "", fmt.Errorf("kafka producer client: %w", err)
			}
			if rt.cclient, err = sarama.NewClient(rt.brokers, rt.isolated(rt.net.ChangelogConfig(prefix+"-changelogs"))); err != nil {
				return "", fmt.Errorf("kafka changelog client: %w", err)
			}
			if rt.rclient, err = sarama.NewClient(rt.brokers, rt.isolated(rt.net.ConsumerConfig(prefix+"-replies"))); err != nil {
				return "", fmt.Errorf("kafka reply client: %w", err)
			}
			rt.log.Info("connected to Kafka", "brokers", strings.Join(rt.brokers, ","), "cluster_id", id)
			return id, nil
		}
		d := kafkaBackoff(attempt)
		switch {
		case kafka.Misconfigured(err):
			// A wrong password or an untrusted certificate: said once, with
			// what to do; retried slowly, for the brokers' side may change
			// (a user created, a certificate renewed).
			d = misconfiguredBackoff(attempt)
			rt.setPhase(fmt.Sprintf("cannot connect to Kafka at %s: %v", strings.Join(rt.brokers, ","), err))
			if msg := kafka.Summary(err); msg != logged {
				logged = msg
				rt.log.Error("cannot connect to Kafka: the brokers refuse this node's TLS or SASL settings; retrying with backoff, but only a change of settings (here or on the brokers) mends it",
					"brokers", strings.Join(rt.brokers, ","), "security", rt.net, "err", err, "retry_in", d)
			} else {
				rt.log.Debug("still cannot connect to Kafka (same cause)", "brokers", strings.Join(rt.brokers, ","), "attempt", attempt, "retry_in", d)
			}
		default:
			logged = ""
			rt.setPhase(fmt.Sprintf("cannot reach Kafka at %s: %v", strings.Join(rt.brokers, ","), err))
			rt.log.Warn("cannot reach Kafka; retrying (check --brokers and that the brokers are up)",
				"brokers", strings.Join(rt.brokers, ","), "err", err, "retry_in", d)
		}
		select {
		case <-stop.Done():
			return "", stop.Err()
		case <-time.After(d):
		}
	}
}

// isolated sets the isolation level of a consuming client: under
// exactly-once every topic is read read_committed (inputs, changelogs for
// restores, standbys and global copies, replies), so that nothing of an
// aborted transaction is ever applied.
func (rt *Node) isolated(cfg *sarama.Config) *sarama.Config {
	if rt.cfg.ExactlyOnce {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	return cfg
}

func kafkaBackoff(attempt int) time.Duration {
	return actors.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
}

// misconfiguredBackoff is the wait before connecting again after the
// brokers refused the node's TLS or SASL settings: 1s doubling to a
// minute, one connection per broker each time (managed services throttle
// clients that fail authentication often).
func misconfiguredBackoff(attempt int) time.Duration {
	return actors.Backoff{Min: time.Second, Max: time.Minute}.Delay(attempt)
}

// ensureTopics creates what is missing and checks co-partitioning: with
// tables, every agent's topic and every changelog must have the same
// partition count, since partition p of each is processed by grain p.
func (rt *Node) ensureTopics() error {
	n := rt.cfg.Partitions
	var specs []kafka.TopicSpec
	seen := map[string]bool{}
	add := func(s kafka.TopicSpec) {
		if !seen[s.Name] {
			seen[s.Name] = true
			s.ReplicationFactor = rt.cfg.ReplicationFactor
			specs = append(specs, s)
		}
	}
	for _, t := range rt.spec.Topics {
		add(kafka.TopicSpec{Name: t.Name, Partitions: n})
	}
	for _, d := range rt.tables {
		add(kafka.TopicSpec{Name: d.Changelog, Partitions: n, Compact: true})
	}
	for _, a := range rt.agents {
		if a.Policy == partition.DeadLetter {
			add(kafka.TopicSpec{Name: a.DeadLetterTopic, Partitions: n})
		}
	}
	add(kafka.TopicSpec{Name: kafka.RepliesTopic(rt.spec.App), Partitions: n})
	counts, err := kafka.EnsureTopics(rt.admin, specs)
	if err != nil {
		return err
	}
	rt.mu.Lock()
	for k, v := range counts {
		rt.counts[k] = v
	}
	rt.mu.Unlock()
	if len(rt.tables) == 0 {
		return nil
	}
	copart := append([]string(nil), rt.sources...)
	for _, d := range rt.tables {
		copart = append(copart, d.Changelog)
	}
	sort.Strings(copart)
	want := counts[rt.tables[0].Changelog]
	var bad bool
	desc := make([]string, len(copart))
	for i, t := range copart {
		desc[i] = fmt.Sprintf("%s=%d", t, counts[t])
		bad = bad || counts[t] != want
	}
	if bad {
		return fmt.Errorf("topics are not co-partitioned (%s): agents' topics and table changelogs must have the same partition count, "+
			"because partition p of each is processed together; recreate the odd topics with the same count, or consume them through GroupBy",
			strings.Join(desc, ", "))
	}
	return nil
}

func (rt *Node) partitionCount(topic string) (int32, error) {
	rt.mu.Lock()
	n, ok := rt.counts[topic]
	rt.mu.Unlock()
	if ok {
		return n, nil
	}
	ps, err := rt.client.Partitions(topic)
	if err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	rt.mu.Lock()
	rt.counts[topic] = int32(len(ps))
	rt.mu.Unlock()
	return int32(len(ps)), nil
}

func (rt *Node) crashPoint(name string) {
	if rt.cfg.Crash != nil {
		rt.cfg.Crash(name)
	}
}

var _ kafka.GroupHandler = (*Node)(nil)

// Assigned starts one grain per partition assigned in the session (a
// kafka.GroupHandler, called after each rebalance, before any batch).
func (rt *Node) Assigned(sess *kafka.Session) error {
	parts := sess.Partitions()
	active := map[int32]bool{}
	var actives []int32
	for p := range parts {
		active[p] = true
		actives = append(actives, p)
	}
	sort.Slice(actives, func(i, j int) bool { return actives[i] < actives[j] })
	rt.mu.Lock()
	rt.lastActive = actives
	rt.mu.Unlock()
	if err := rt.store.SetActive(actives); err != nil {
		rt.log.Warn("remember active partitions", "err", err)
	}
	rt.placeStandbys(active)
	if err := rt.placeGlobals(active); err != nil {
		return err
	}
	for p, topics := range parts {
		// Pebble may be ahead of the group's committed offsets (a crash
		// between commit steps b and c): resume after what the tables hold.
		// Under exactly-once it never is (Pebble is written after the
		// transaction commits), and the offsets are the transactions'.
		if !rt.cfg.ExactlyOnce {
			for _, topic := range topics {
				if off, ok, err := rt.store.SourceOffset(topic, p); err == nil && ok {
					sess.Mark(topic, p, off+1)
				}
			}
		}
		// Grains mark offsets as their commits reach Pebble and ask for
		// them to be committed to the group at once.
		if err := rt.spawnGrain(p, sess.Mark, sess.Commit, sess.TxnGroup(rt.spec.App, rt.cfg.NodeID)); err != nil {
			return err
		}
	}
	rt.mu.Lock()
	rt.session, rt.generation, rt.phase = true, sess.Generation(), ""
	rt.mu.Unlock()
	return nil
}

// Claimed returns the grain of partition p as the receiver of topic's
// batches (a kafka.GroupHandler).
func (rt *Node) Claimed(_ *kafka.Session, topic string, p int32) kafka.Claim {
	rt.mu.Lock()
	gs := rt.grains[p]
	rt.mu.Unlock()
	return &grainClaim{
		system:   rt.system,
		pid:      gs.pid,
		eventsIn: rt.metrics.eventsIn.WithLabelValues(topic),
		lag:      rt.metrics.lag.WithLabelValues(topic, strconv.Itoa(int(p))),
	}
}

// grainClaim hands one topic partition's batches to its grain, one actor
// message per batch.
type grainClaim struct {
	system   *actor.ActorSystem
	pid      *actor.PID
	eventsIn prometheus.Counter
	lag      prometheus.Gauge
}

func (c *grainClaim) Deliver(b *kafka.Batch) {
	c.system.Root.Send(c.pid, &actors.Deliver{Records: b.Records, Done: b.Done, CaughtUp: b.CaughtUp})
	c.eventsIn.Add(float64(len(b.Records)))
}

func (c *grainClaim) Processed(lag int64) { c.lag.Set(float64(lag)) }

// Released runs when the session ends (revoke, rebalance, shutdown): each
// grain finishes its record in flight and commits, then stops, and only
// then is the partition let go (DESIGN decision 5, STYLE 8). The group
// member commits the last marks when it returns.
func (rt *Node) Released(*kafka.Session) {
	rt.mu.Lock()
	grains := rt.grains
	rt.grains = map[int32]*grainState{}
	rt.session = false
	rt.draining = maps.Clone(grains) // emptied as they drain; grains is ranged over below
	rt.mu.Unlock()
	defer func() {
		rt.mu.Lock()
		rt.draining = nil
		rt.mu.Unlock()
	}()
	var wg sync.WaitGroup
	for p, gs := range grains {
		if gs.pid == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rt.system.Root.RequestFuture(gs.pid, &actors.Drain{}, 30*time.Second).Result()
			if err == nil {
				err, _ = res.(error)
			}
			if err != nil {
				rt.log.Warn("partition could not commit on revoke; its uncommitted records will be processed again", "partition", p, "err", err)
			}
			_ = rt.system.Root.StopFuture(gs.pid).Wait()
			rt.mu.Lock()
			delete(rt.draining, p)
			rt.mu.Unlock()
		}()
	}
	wg.Wait()
}

// undrained describes the partitions a revoke or stop still waits for,
// with why each is failing, if it is.
func (rt *Node) undrained() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []string
	for p, gs := range rt.draining {
		d := strconv.Itoa(int(p))
		if gs.failing != nil {
			d += " (failing: " + gs.failing.Error() + ")"
		}
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (rt *Node) shutdown() {
	if rt.members != nil {
		if err := rt.members.Leave(time.Second); err != nil {
			rt.log.Warn("leave gossip", "err", err)
		}
	}
	if rt.requests != nil {
		rt.requests.Close()
	}
	if rt.member != nil {
		if err := rt.member.Close(); err != nil {
			rt.log.Warn("leave consumer group", "err", err)
		}
	}
	if rt.sup != nil {
		rt.sup.Stop()
	}
	if rt.remote != nil {
		rt.remote.Shutdown()
	}
	if rt.system != nil {
		rt.system.Shutdown()
	}
	if rt.producer != nil {
		_ = rt.producer.Close()
	}
	rt.stopStandbys()
	rt.stopGlobals()
	if rt.consumer != nil {
		_ = rt.consumer.Close()
	}
	if rt.rconsumer != nil {
		_ = rt.rconsumer.Close()
	}
	for _, c := range []sarama.Client{rt.pclient, rt.cclient, rt.rclient} {
		if c != nil {
			_ = c.Close()
		}
	}
	if rt.admin != nil {
		_ = rt.admin.Close() // closes rt.client too
	} else if rt.client != nil {
		_ = rt.client.Close()
	}
	if rt.web != nil { // before the store: pages read it
		_ = rt.web.Close()
	}
	if rt.store != nil {
		if err := rt.store.Close(); err != nil {
			rt.log.Warn("close table state", "err", err)
		}
	}
	if rt.broker != nil {
		_ = rt.broker.Close()
	}
	rt.log.Info("worker stopped")
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

// partitionFor picks the partition of a record for topic (a
// partition.Router).
func (rt *Node) partitionFor(topic string, key []byte, keyed bool, fallback int32) (int32, error) {
	n, err := rt.partitionCount(topic)
	if err != nil {
		return 0, err
	}
	if keyed && key != nil {
		return kafka.Partition(key, n), nil
	}
	return fallback % n, nil
}

// route is partitionFor as the partitions' handlers call it.
func (rt *Node) route(topic string, key []byte, keyed bool, fallback int32) (int32, error) {
	return rt.partitionFor(topic, key, keyed, fallback)
}

// SendSync produces a record to topic (by key when keyed, else to
// partition 0) and waits for the acknowledgement; it returns the offset.
func (rt *Node) SendSync(ctx context.Context, topic string, key, value []byte, keyed bool, headers ...partition.Header) (int64, error) {
	if rt.producer == nil {
		return -1, fmt.Errorf("send to %s: the node is still starting", topic)
	}
	p, err := rt.partitionFor(topic, key, keyed, 0)
	if err != nil {
		return -1, err
	}
	return rt.producer.SendSync(ctx, kafka.Message(partition.Output{Topic: topic, Partition: p, Key: key, Value: value, Headers: headers}))
}
