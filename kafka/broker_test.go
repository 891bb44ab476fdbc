package kafka

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// saramaVersion is the protocol version Mephisto's sarama clients use.
// Every sarama version from V2_0_0_0 up to sarama's MaxVersion (V4_3_1_0 in
// sarama v1.61) works against kfake; sarama clamps each request to the
// versions the broker advertises in ApiVersions.
var saramaVersion = sarama.V4_3_1_0

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 15 * time.Second

// syncBuffer is a goroutine-safe log sink; tests dump it on failure.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a debug logger writing to a buffer that is printed if
// the test fails.
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker logs:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func startTestBroker(t *testing.T, cfg BrokerConfig) *Broker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	b, err := StartBroker(cfg)
	if err != nil {
		t.Fatalf("StartBroker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = saramaVersion
	cfg.ClientID = "mephisto-test"
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	// Closing a consumer waits out its in-flight long-poll fetch.
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

func newAdmin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	adm, err := sarama.NewClusterAdmin([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatalf("NewClusterAdmin(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = adm.Close() })
	return adm
}

type rec struct {
	partition int32
	offset    int64
	key       string
	value     string
}

func (r rec) String() string {
	return fmt.Sprintf("p%d@%d %s=%s", r.partition, r.offset, r.key, r.value)
}

// produce sends each message synchronously (one batch per message) and
// returns where each landed.
func produce(t *testing.T, addr string, msgs ...*sarama.ProducerMessage) []rec {
	t.Helper()
	p, err := sarama.NewSyncProducer([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	defer func() { _ = p.Close() }()
	var out []rec
	for _, m := range msgs {
		part, off, err := p.SendMessage(m)
		if err != nil {
			t.Fatalf("SendMessage to %s/%d: %v", m.Topic, m.Partition, err)
		}
		out = append(out, rec{part, off, encString(m.Key), encString(m.Value)})
	}
	return out
}

func encString(e sarama.Encoder) string {
	if e == nil {
		return "<nil>"
	}
	b, _ := e.Encode()
	return string(b)
}

func msg(topic string, partition int32, key, value string) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic, Partition: partition, Value: sarama.StringEncoder(value)}
	if key != "" {
		m.Key = sarama.StringEncoder(key)
	}
	return m
}

// consume reads a partition from its oldest offset up to (excluding) the
// high watermark at the time of the call.
func consume(t *testing.T, addr, topic string, partition int32) []rec {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer func() { _ = client.Close() }()
	hwm, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		t.Fatalf("GetOffset(%s/%d, newest): %v", topic, partition, err)
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("NewConsumerFromClient: %v", err)
	}
	defer func() { _ = c.Close() }()
	pc, err := c.ConsumePartition(topic, partition, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("ConsumePartition(%s/%d): %v", topic, partition, err)
	}
	defer func() { _ = pc.Close() }()
	var out []rec
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for len(out) == 0 || out[len(out)-1].offset < hwm-1 {
		if hwm == 0 {
			break
		}
		select {
		case m := <-pc.Messages():
			key := "<nil>"
			if m.Key != nil {
				key = string(m.Key)
			}
			out = append(out, rec{m.Partition, m.Offset, key, string(m.Value)})
		case err := <-pc.Errors():
			t.Fatalf("consuming %s/%d: %v", topic, partition, err)
		case <-deadline.C:
			t.Fatalf("timed out consuming %s/%d up to offset %d; got %v", topic, partition, hwm, out)
		}
	}
	return out
}

// wireMetadata asks the broker at addr for metadata directly, as a client
// bootstrapping from it would.
func wireMetadata(t *testing.T, addr string) *sarama.MetadataResponse {
	t.Helper()
	br := sarama.NewBroker(addr)
	if err := br.Open(saramaConfig()); err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	defer func() { _ = br.Close() }()
	md, err := br.GetMetadata(sarama.NewMetadataRequest(saramaVersion, nil))
	if err != nil {
		t.Fatalf("metadata from %s: %v", addr, err)
	}
	return md
}

func checkWireIdentity(t *testing.T, b *Broker) {
	t.Helper()
	md := wireMetadata(t, b.Addr())
	if md.ClusterID == nil || *md.ClusterID != b.ClusterID() {
		t.Errorf("metadata cluster id = %v, want %q", md.ClusterID, b.ClusterID())
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Addr() != b.Addr() {
		var addrs []string
		for _, br := range md.Brokers {
			addrs = append(addrs, br.Addr())
		}
		t.Errorf("metadata advertises brokers %v, want exactly [%s]", addrs, b.Addr())
	}
}

func createTopics(t *testing.T, adm sarama.ClusterAdmin) {
	t.Helper()
	if err := adm.CreateTopic("orders", &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("create orders: %v", err)
	}
	compact := "compact"
	if err := adm.CreateTopic("table-changelog", &sarama.TopicDetail{
		NumPartitions:     1,
		ReplicationFactor: 1,
		ConfigEntries:     map[string]*string{"cleanup.policy": &compact},
	}, false); err != nil {
		t.Fatalf("create table-changelog: %v", err)
	}
}

func checkTopics(t *testing.T, adm sarama.ClusterAdmin) {
	t.Helper()
	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if got := topics["orders"].NumPartitions; got != 4 {
		t.Errorf("orders has %d partitions, want 4 (topics: %v)", got, topics)
	}
	if got := topics["table-changelog"].NumPartitions; got != 1 {
		t.Errorf("table-changelog has %d partitions, want 1", got)
	}
	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "table-changelog"})
	if err != nil {
		t.Fatalf("DescribeConfig(table-changelog): %v", err)
	}
	policy := ""
	for _, e := range entries {
		if e.Name == "cleanup.policy" {
			policy = e.Value
		}
	}
	if policy != "compact" {
		t.Errorf("table-changelog cleanup.policy = %q, want compact", policy)
	}
}

func equalRecs(t *testing.T, what string, got, want []rec) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestBrokerProduceConsumeAndRestart(t *testing.T) {
	dir := t.TempDir()
	logger, logs := testLogger(t)
	b := startTestBroker(t, BrokerConfig{DataDir: dir, Logger: logger})
	addr, id := b.Addr(), b.ClusterID()
	if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(id) != 22 || len(raw) != 16 {
		t.Errorf("cluster id %q is not 22-char base64url of 16 bytes (err %v)", id, err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Errorf("Addr() = %q, want 127.0.0.1:<random port>", addr)
	}
	checkWireIdentity(t, b)

	adm := newAdmin(t, addr)
	createTopics(t, adm)
	checkTopics(t, adm)

	var orders []*sarama.ProducerMessage
	for i := range 8 {
		orders = append(orders, msg("orders", int32(i%4), fmt.Sprintf("order-%d", i), fmt.Sprintf("v%d", i)))
	}
	produced := produce(t, addr, orders...)
	changelog := produce(t, addr,
		msg("table-changelog", 0, "k1", "a"),
		msg("table-changelog", 0, "k1", "b"),
		msg("table-changelog", 0, "k2", "x"),
	)
	wantPart := func(p int32) []rec {
		var out []rec
		for _, r := range produced {
			if r.partition == p {
				out = append(out, r)
			}
		}
		return out
	}
	for p := range int32(4) {
		equalRecs(t, fmt.Sprintf("orders/%d before restart", p), consume(t, addr, "orders", p), wantPart(p))
	}
	equalRecs(t, "changelog before restart", consume(t, addr, "table-changelog", 0), changelog)
	_ = adm.Close()

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if first := strings.SplitN(logs.String(), "\n", 2)[0]; !strings.Contains(first, "embedded development Kafka broker") ||
		!strings.Contains(first, "data_dir="+dir) || !strings.Contains(first, "--brokers") {
		t.Errorf("first log line does not say what the broker is and where its data is: %q", first)
	}

	// Same dir, same port.
	b2 := startTestBroker(t, BrokerConfig{Listen: addr, DataDir: dir})
	if b2.Addr() != addr {
		t.Errorf("restarted Addr() = %q, want %q", b2.Addr(), addr)
	}
	if b2.ClusterID() != id {
		t.Errorf("restarted ClusterID() = %q, want persisted %q", b2.ClusterID(), id)
	}
	checkWireIdentity(t, b2)
	checkTopics(t, newAdmin(t, addr))
	for p := range int32(4) {
		equalRecs(t, fmt.Sprintf("orders/%d after restart", p), consume(t, addr, "orders", p), wantPart(p))
	}
	equalRecs(t, "changelog after restart", consume(t, addr, "table-changelog", 0), changelog)

	// Appends continue at the persisted offsets.
	more := produce(t, addr, msg("orders", 0, "order-8", "v8"))
	if want := wantPart(0)[len(wantPart(0))-1].offset + 1; more[0].offset != want {
		t.Errorf("first offset after restart = %d, want %d", more[0].offset, want)
	}
}

// TestBrokerCompaction documents kfake's cleaner as driven by our ticker
// (Cluster.Compact), on data reloaded from disk: the latest record per key
// survives, except that the partition's last batch is never cleaned; nil
// keys are dropped; the log start offset moves past removed heads; and the
// compacted log is what a restart reloads.
func TestBrokerCompaction(t *testing.T) {
	dir := t.TempDir()
	b := startTestBroker(t, BrokerConfig{DataDir: dir})
	addr := b.Addr()
	createTopics(t, newAdmin(t, addr))
	recs := produce(t, addr,
		msg("table-changelog", 0, "k1", "a"),   // superseded by k1=b
		msg("table-changelog", 0, "", "nokey"), // nil key: dropped by kfake's cleaner
		msg("table-changelog", 0, "k1", "b"),   // survives: the last batch is not looked at
		msg("table-changelog", 0, "k2", "x"),
		msg("table-changelog", 0, "k1", "c"), // last batch: never cleaned
	)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := startTestBroker(t, BrokerConfig{Listen: addr, DataDir: dir})
	b2.cluster.Compact()
	want := []rec{recs[2], recs[3], recs[4]}
	equalRecs(t, "compacted changelog", consume(t, addr, "table-changelog", 0), want)
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	startTestBroker(t, BrokerConfig{Listen: addr, DataDir: dir})
	equalRecs(t, "compacted changelog after restart", consume(t, addr, "table-changelog", 0), want)
}

// TestBrokerKeepsOldRecords checks that the periodic cleaner does not
// delete records whose timestamps are older than Kafka's default 7-day
// retention (kfake applies retention per batch, active "segment" included,
// so replayed historical events would vanish within a tick).
func TestBrokerKeepsOldRecords(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	if err := newAdmin(t, b.Addr()).CreateTopic("events", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	old := msg("events", 0, "k", "2020")
	old.Timestamp = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := produce(t, b.Addr(), old, msg("events", 0, "k", "now"))
	b.cluster.Compact()
	equalRecs(t, "events after a cleaner run", consume(t, b.Addr(), "events", 0), recs)
}

func TestBrokerFreshDataDirsGetDistinctClusterIDs(t *testing.T) {
	b1 := startTestBroker(t, BrokerConfig{DataDir: t.TempDir()})
	b2 := startTestBroker(t, BrokerConfig{DataDir: t.TempDir()})
	mem := startTestBroker(t, BrokerConfig{})
	ids := map[string]bool{b1.ClusterID(): true, b2.ClusterID(): true, mem.ClusterID(): true}
	if len(ids) != 3 {
		t.Errorf("cluster ids not distinct: %q %q %q", b1.ClusterID(), b2.ClusterID(), mem.ClusterID())
	}
	for id := range ids {
		if id == "kfake" || len(id) != 22 {
			t.Errorf("cluster id %q is not a fresh random id", id)
		}
	}
	checkWireIdentity(t, b1)
	checkWireIdentity(t, b2)
	checkWireIdentity(t, mem)
}

func TestBrokerPortInUse(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	_, err := StartBroker(BrokerConfig{Listen: b.Addr()})
	if err == nil {
		t.Fatalf("second broker on %s started", b.Addr())
	}
	if !strings.Contains(err.Error(), b.Addr()) || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("error does not name the address and say it is in use: %v", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error does not wrap EADDRINUSE: %v", err)
	}
	// The first broker is unaffected.
	checkWireIdentity(t, b)
}

func TestBrokerBadListen(t *testing.T) {
	for _, listen := range []string{"127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"} {
		if b, err := StartBroker(BrokerConfig{Listen: listen}); err == nil {
			_ = b.Close()
			t.Errorf("StartBroker(Listen %q) succeeded", listen)
		} else if !strings.Contains(err.Error(), listen) {
			t.Errorf("StartBroker(Listen %q) error does not name it: %v", listen, err)
		}
	}
}

// TestBrokerListenForms checks the address clients are told to dial for
// each form of Listen; in particular a broker bound to every interface must
// not advertise the undialable 0.0.0.0 or ::.
func TestBrokerListenForms(t *testing.T) {
	for _, tc := range []struct{ listen, host string }{
		{"0.0.0.0:0", "127.0.0.1"},
		{":0", "127.0.0.1"},
		{"[::]:0", "127.0.0.1"},
		{"localhost:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			if strings.Contains(tc.listen, "::") {
				ln, err := net.Listen("tcp", tc.listen)
				if err != nil {
					t.Skipf("no IPv6 here: %v", err)
				}
				_ = ln.Close()
			}
			b := startTestBroker(t, BrokerConfig{Listen: tc.listen})
			host, _, err := net.SplitHostPort(b.Addr())
			if err != nil || host != tc.host {
				t.Fatalf("Addr() = %q, want %s:<port>", b.Addr(), tc.host)
			}
			checkWireIdentity(t, b)
			adm := newAdmin(t, b.Addr())
			if err := adm.CreateTopic("t", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			got := produce(t, b.Addr(), msg("t", 0, "k", "v"))
			equalRecs(t, "t/0", consume(t, b.Addr(), "t", 0), got)
		})
	}
}

func TestBrokerNoAutoTopicCreation(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	cfg := saramaConfig()
	cfg.Metadata.AllowAutoTopicCreation = true
	cfg.Producer.Retry.Max = 1
	p, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if _, _, err := p.SendMessage(msg("nope", 0, "k", "v")); !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Errorf("produce to missing topic: err = %v, want %v", err, sarama.ErrUnknownTopicOrPartition)
	}
	topics, err := newAdmin(t, b.Addr()).ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := topics["nope"]; ok {
		t.Errorf("topic was auto-created")
	}
}

// TestBrokerShortSessionTimeout checks that a consumer group may use a 1s
// session timeout (kfake's default minimum is 6s).
func TestBrokerShortSessionTimeout(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{})
	if err := newAdmin(t, b.Addr()).CreateTopic("t", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig()
	cfg.Consumer.Group.Session.Timeout = time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	g, err := sarama.NewConsumerGroup([]string{b.Addr()}, "g", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Close() }()
	h := &groupHandler{setup: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- g.Consume(t.Context(), []string{"t"}, h) }()
	select {
	case <-h.setup:
	case err := <-errc:
		t.Fatalf("joining group with 1s session timeout: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("timed out joining group")
	}
}

type groupHandler struct {
	once  sync.Once
	setup chan struct{}
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error {
	h.once.Do(func() { close(h.setup) })
	return nil
}
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
	}
	return nil
}

func TestKfakeLoggerLevels(t *testing.T) {
	buf := &syncBuffer{}
	l := &kfakeLogger{log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Logf(kfake.LogLevelDebug, "d %d", 1)
	l.Logf(kfake.LogLevelInfo, "i %d", 2)
	l.Logf(kfake.LogLevelWarn, "w %d", 3)
	l.Logf(kfake.LogLevelError, "e %d", 4)
	l.Logf(kfake.LogLevelNone, "n %d", 5)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"level=DEBUG msg=\"d 1\"", "level=INFO msg=\"i 2\"", "level=WARN msg=\"w 3\"", "level=ERROR msg=\"e 4\""}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}

	l.startCapture()
	l.Logf(kfake.LogLevelError, "persist to disk: %v", errors.New("disk full"))
	l.Logf(kfake.LogLevelWarn, "not an error")
	if errs := l.stopCapture(); len(errs) != 1 || errs[0].Error() != "persist to disk: disk full" {
		t.Errorf("captured %v, want the one error", errs)
	}
}
