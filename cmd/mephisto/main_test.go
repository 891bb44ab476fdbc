package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// mephistoBin is the binary built once by TestMain.
var mephistoBin string

// waitTimeout bounds every wait on a child process or broker.
const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	os.Exit(proctest.BuildMain(m, "cli", proctest.Binary{Pkg: ".", Name: "mephisto", Out: &mephistoBin}))
}

// spec describes mephisto run with args and the extra environment env, in
// the test's environment without MEPHISTO_* variables.
func spec(env []string, args ...string) proctest.Spec {
	return proctest.Spec{Name: "mephisto", Path: mephistoBin, Args: args, Env: proctest.Environ(env, "MEPHISTO_")}
}

// start starts mephisto with args and extra environment; it is killed at
// the end of the test if still running.
func start(t *testing.T, env []string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartT(t, spec(env, args...))
}

// runBin runs mephisto with args to completion.
func runBin(t *testing.T, args ...string) proctest.Result {
	t.Helper()
	return proctest.RunT(t, spec(nil, args...), waitTimeout)
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_3_1_0
	cfg.ClientID = "mephisto-cli-test"
	cfg.Net.DialTimeout = time.Second
	cfg.Metadata.Retry.Max = 0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

// connect polls until a sarama client can bootstrap from addr.
func connect(t *testing.T, addr string) sarama.Client {
	t.Helper()
	var client sarama.Client
	proctest.WaitForT(t, waitTimeout, "a sarama client connected to "+addr, func() (bool, string) {
		var err error
		if client, err = sarama.NewClient([]string{addr}, saramaConfig()); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestBrokerProcessPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	listen := proctest.FreeAddrT(t, false)

	p := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	addr, id := p.WaitListeningT(t, waitTimeout, "")
	if addr != listen {
		t.Errorf("broker listens on %s, want %s", addr, listen)
	}
	client := connect(t, addr)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("greetings", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	part, off, err := producer.SendMessage(&sarama.ProducerMessage{
		Topic: "greetings", Partition: 1,
		Key: sarama.StringEncoder("who"), Value: sarama.StringEncoder("hello"),
	})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	_ = producer.Close()
	_ = admin.Close() // also closes client

	p.SignalT(t, syscall.SIGTERM)
	if code, _ := p.WaitT(t, waitTimeout); code != 0 {
		t.Fatalf("broker exited with %d after SIGTERM, want 0", code)
	}

	// Restart on the same dir and port, configured through the environment
	// this time.
	p2 := start(t, []string{envListen + "=" + listen, envDataDir + "=" + dir}, "broker", "--log-level", "debug")
	addr2, id2 := p2.WaitListeningT(t, waitTimeout, "")
	if addr2 != listen {
		t.Errorf("restarted broker listens on %s, want %s", addr2, listen)
	}
	if id2 != id {
		t.Errorf("restarted broker cluster id %s, want persisted %s", id2, id)
	}
	client2 := connect(t, addr2)
	consumer, err := sarama.NewConsumerFromClient(client2)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := consumer.ConsumePartition("greetings", part, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("ConsumePartition: %v", err)
	}
	select {
	case m := <-pc.Messages():
		if m.Offset != off || string(m.Key) != "who" || string(m.Value) != "hello" {
			t.Errorf("read back %d %s=%s, want %d who=hello", m.Offset, m.Key, m.Value, off)
		}
	case err := <-pc.Errors():
		t.Fatalf("consuming: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("timed out reading the record back")
	}
	_ = pc.Close()
	_ = consumer.Close()

	p2.SignalT(t, syscall.SIGINT)
	if code, _ := p2.WaitT(t, waitTimeout); code != 0 {
		t.Fatalf("broker exited with %d after SIGINT, want 0", code)
	}
	if !strings.Contains(p2.Stderr(), "level=DEBUG") {
		t.Errorf("--log-level debug logged nothing at debug level")
	}
}

func TestBrokerProcessPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := runBin(t, "broker", "--listen", ln.Addr().String())
	if r.Code != 1 {
		t.Errorf("exit code %d, want 1", r.Code)
	}
	if msg := r.Stderr; !strings.Contains(msg, ln.Addr().String()) || !strings.Contains(msg, "already in use") {
		t.Errorf("stderr does not say the address is in use:\n%s", msg)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"broker", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"broker", "extra"}, `unknown command "extra"`},
		{[]string{"broker", "--log-level", "loud"}, `unknown log level "loud"`},
		{[]string{"broker", "--listen", "no-port"}, "invalid --listen"},
		{[]string{"bogus"}, `unknown command "bogus" for "mephisto"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runBin(t, tc.args...)
			if r.Code != 2 {
				t.Errorf("exit code %d, want 2", r.Code)
			}
			stderr := r.Stderr
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr lacks %q and usage:\n%s", tc.want, stderr)
			}
		})
	}
}

func TestHelpListsSubcommands(t *testing.T) {
	r := runBin(t, "--help")
	if r.Code != 0 {
		t.Errorf("exit code %d, want 0", r.Code)
	}
	out := r.Stdout
	for _, sub := range []string{"broker", "version"} {
		if !regexp.MustCompile(`(?m)^\s+` + sub + `\s`).MatchString(out) {
			t.Errorf("--help does not list %q:\n%s", sub, out)
		}
	}

	r = runBin(t, "broker", "--help")
	if r.Code != 0 {
		t.Errorf("broker --help exit code %d, want 0", r.Code)
	}
	for _, flag := range []string{"--listen", "--data-dir", "--sync-writes", "--log-level", envListen, envDataDir, "127.0.0.1:9092"} {
		if !strings.Contains(r.Stdout, flag) {
			t.Errorf("broker --help does not mention %s:\n%s", flag, r.Stdout)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runBin(t, "version")
	if r.Code != 0 {
		t.Errorf("exit code %d, want 0", r.Code)
	}
	// Built from a work tree, the version is "(devel)" or a pseudo-version.
	if out := r.Stdout; !regexp.MustCompile(`^mephisto (\(devel\)|v\S+)\n$`).MatchString(out) {
		t.Errorf("version printed %q", out)
	}
}

// TestRunInProcess exercises run directly: a cancelled context stops the
// broker like a signal does.
func TestRunInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr := &proctest.Buffer{}, &proctest.Buffer{}
	done := make(chan struct{})
	var code int
	go func() {
		defer close(done)
		env := map[string]string{envListen: "127.0.0.1:0"}
		code = run(ctx, []string{"broker"}, func(k string) string { return env[k] }, stdout, stderr)
	}()
	var m []string
	_, err := proctest.Poll(ctx, proctest.PollEvery, waitTimeout, "the listening line", func() (bool, string, error) {
		select {
		case <-done:
			return false, "", errors.New("run returned")
		default:
		}
		m = proctest.ListeningRE.FindStringSubmatch(stdout.String())
		return m != nil, "not printed yet", nil
	})
	if m == nil { // the line may have come just before run returned
		m = proctest.ListeningRE.FindStringSubmatch(stdout.String())
	}
	if m == nil {
		cancel()
		<-done
		t.Fatalf("no listening line (%v); stderr:\n%s", err, stderr)
	}
	if strings.HasSuffix(m[1], ":0") || strings.HasSuffix(m[1], ":9092") {
		t.Errorf("MEPHISTO_LISTEN=127.0.0.1:0 gave address %s", m[1])
	}
	connect(t, m[1]).Close()
	cancel()
	<-done
	if code != 0 {
		t.Errorf("run returned %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "IN MEMORY") {
		t.Errorf("in-memory broker did not say so:\n%s", stderr)
	}
}

// TestBrokerProcessSurvivesKill checks that acknowledged records, topic
// configs, committed offsets and the cluster id survive SIGKILL (kfake
// writes segments and state logs as it goes; Close only adds snapshots).
func TestBrokerProcessSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	listen := proctest.FreeAddrT(t, false)
	p := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	addr, id := p.WaitListeningT(t, waitTimeout, "")
	client := connect(t, addr)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	compact := "compact"
	if err := admin.CreateTopic("changelog", &sarama.TopicDetail{
		NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"cleanup.policy": &compact},
	}, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: "changelog", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(fmt.Sprint(i)),
		}); err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
	}
	coord, err := client.Coordinator("grp")
	if err != nil {
		t.Fatalf("Coordinator: %v", err)
	}
	commit := &sarama.OffsetCommitRequest{Version: 2, ConsumerGroup: "grp", ConsumerGroupGeneration: -1, RetentionTime: -1}
	commit.AddBlock("changelog", 0, 2, 0, "")
	if resp, err := coord.CommitOffset(commit); err != nil || resp.Errors["changelog"][0] != sarama.ErrNoError {
		t.Fatalf("CommitOffset: %v %v", resp, err)
	}
	_ = producer.Close()
	_ = admin.Close()

	p.KillT(t)

	p2 := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	if _, id2 := p2.WaitListeningT(t, waitTimeout, ""); id2 != id {
		t.Errorf("cluster id after kill = %s, want %s", id2, id)
	}
	client2 := connect(t, listen)
	if hwm, err := client2.GetOffset("changelog", 0, sarama.OffsetNewest); err != nil || hwm != 3 {
		t.Errorf("high watermark after kill = %d (%v), want 3", hwm, err)
	}
	admin2, err := sarama.NewClusterAdminFromClient(client2)
	if err != nil {
		t.Fatal(err)
	}
	offs, err := admin2.ListConsumerGroupOffsets("grp", map[string][]int32{"changelog": {0}})
	if err != nil || offs.GetBlock("changelog", 0) == nil || offs.GetBlock("changelog", 0).Offset != 2 {
		t.Errorf("committed offset after kill: %+v %v, want 2", offs, err)
	}
	topics, err := admin2.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if v := topics["changelog"].ConfigEntries["cleanup.policy"]; v == nil || *v != "compact" {
		t.Errorf("cleanup.policy after kill = %v, want compact", v)
	}
}
