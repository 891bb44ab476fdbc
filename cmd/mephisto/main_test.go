package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// mephistoBin is the binary built once by TestMain.
var mephistoBin string

// waitTimeout bounds every wait on a child process or broker.
const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mephisto-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	mephistoBin = filepath.Join(dir, "mephisto")
	build := exec.Command("go", "build", "-o", mephistoBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mephisto:", err)
		return 1
	}
	return m.Run()
}

// syncBuffer is a goroutine-safe buffer that can wait for a pattern.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// wait returns the first match of re in the buffer, waiting for it until
// done is closed or the deadline passes.
func (b *syncBuffer) wait(re *regexp.Regexp, done <-chan struct{}, deadline <-chan time.Time) ([]string, bool) {
	for {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.buf.String())
		changed := b.changed
		b.mu.Unlock()
		if m != nil {
			return m, true
		}
		select {
		case <-changed:
		case <-done:
			return re.FindStringSubmatch(b.String()), re.MatchString(b.String())
		case <-deadline:
			return nil, false
		}
	}
}

// proc is a mephisto child process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed once the process has been waited for
	waitErr        error
}

// start runs mephisto with args and extra environment, killing it at the end
// of the test if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{
		cmd:    exec.Command(mephistoBin, args...),
		stdout: newSyncBuffer(),
		stderr: newSyncBuffer(),
		done:   make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting mephisto %v: %v", args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("mephisto %v stdout:\n%s\nstderr:\n%s", args, p.stdout, p.stderr)
		}
	})
	return p
}

// exitCode waits for the process to exit and returns its exit code.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatalf("mephisto %v did not exit within %v", p.cmd.Args[1:], waitTimeout)
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		t.Fatalf("waiting for mephisto: %v", p.waitErr)
	}
	return p.cmd.ProcessState.ExitCode()
}

var listeningRE = regexp.MustCompile(`broker listening on (\S+) cluster-id (\S+)\n`)

// listening waits for the broker's "listening" line and returns its address
// and cluster id.
func (p *proc) listening(t *testing.T) (addr, clusterID string) {
	t.Helper()
	m, ok := p.stdout.wait(listeningRE, p.done, time.After(waitTimeout))
	if !ok {
		select {
		case <-p.done:
			t.Fatalf("broker exited (%v) without printing its listening line", p.cmd.ProcessState)
		default:
			t.Fatalf("broker did not print its listening line within %v", waitTimeout)
		}
	}
	return m[1], m[2]
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling mephisto: %v", err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
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
	deadline := time.After(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		client, err := sarama.NewClient([]string{addr}, saramaConfig())
		if err == nil {
			t.Cleanup(func() { _ = client.Close() })
			return client
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("no sarama client could connect to %s within %v: %v", addr, waitTimeout, err)
		}
	}
}

func TestBrokerProcessPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)

	p := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	addr, id := p.listening(t)
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

	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("broker exited with %d after SIGTERM, want 0", code)
	}

	// Restart on the same dir and port, configured through the environment
	// this time.
	p2 := start(t, []string{envListen + "=" + listen, envDataDir + "=" + dir}, "broker", "--log-level", "debug")
	addr2, id2 := p2.listening(t)
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

	p2.signal(t, os.Interrupt)
	if code := p2.exitCode(t); code != 0 {
		t.Fatalf("broker exited with %d after SIGINT, want 0", code)
	}
	if !strings.Contains(p2.stderr.String(), "level=DEBUG") {
		t.Errorf("--log-level debug logged nothing at debug level")
	}
}

func TestBrokerProcessPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, nil, "broker", "--listen", ln.Addr().String())
	if code := p.exitCode(t); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if msg := p.stderr.String(); !strings.Contains(msg, ln.Addr().String()) || !strings.Contains(msg, "already in use") {
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
			p := start(t, nil, tc.args...)
			if code := p.exitCode(t); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			stderr := p.stderr.String()
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr lacks %q and usage:\n%s", tc.want, stderr)
			}
		})
	}
}

func TestHelpListsSubcommands(t *testing.T) {
	p := start(t, nil, "--help")
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	out := p.stdout.String()
	for _, sub := range []string{"broker", "version"} {
		if !regexp.MustCompile(`(?m)^\s+` + sub + `\s`).MatchString(out) {
			t.Errorf("--help does not list %q:\n%s", sub, out)
		}
	}

	p = start(t, nil, "broker", "--help")
	if code := p.exitCode(t); code != 0 {
		t.Errorf("broker --help exit code %d, want 0", code)
	}
	for _, flag := range []string{"--listen", "--data-dir", "--sync-writes", "--log-level", envListen, envDataDir, "127.0.0.1:9092"} {
		if !strings.Contains(p.stdout.String(), flag) {
			t.Errorf("broker --help does not mention %s:\n%s", flag, p.stdout)
		}
	}
}

func TestVersion(t *testing.T) {
	p := start(t, nil, "version")
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	// Built from a work tree, the version is "(devel)" or a pseudo-version.
	if out := p.stdout.String(); !regexp.MustCompile(`^mephisto (\(devel\)|v\S+)\n$`).MatchString(out) {
		t.Errorf("version printed %q", out)
	}
}

// TestRunInProcess exercises run directly: a cancelled context stops the
// broker like a signal does.
func TestRunInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	done := make(chan struct{})
	var code int
	go func() {
		defer close(done)
		env := map[string]string{envListen: "127.0.0.1:0"}
		code = run(ctx, []string{"broker"}, func(k string) string { return env[k] }, stdout, stderr)
	}()
	m, ok := stdout.wait(listeningRE, done, time.After(waitTimeout))
	if !ok {
		cancel()
		<-done
		t.Fatalf("no listening line; stderr:\n%s", stderr)
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
	listen := freePort(t)
	p := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	addr, id := p.listening(t)
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

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.exitCode(t)

	p2 := start(t, nil, "broker", "--listen", listen, "--data-dir", dir)
	if _, id2 := p2.listening(t); id2 != id {
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
