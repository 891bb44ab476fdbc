// Package extest holds what the examples' end-to-end tests share: an
// embedded broker, an in-process worker, a real producer, table reads over
// HTTP, and an example's binary built and run as a child process.
//
// Everything waits on conditions with deadlines; nothing sleeps blindly.
package extest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/kafka"
)

// Timeout bounds every wait of these helpers.
const Timeout = 90 * time.Second

// Logger returns a logger that writes to t.Log, and to also if given.
func Logger(t testing.TB, also ...io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t, also}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter writes each log record to t.Log and to also.
type tWriter struct {
	t    testing.TB
	also []io.Writer
}

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	for _, a := range w.also {
		if _, err := a.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Buffer is an io.Writer safe for concurrent use whose contents can be
// read while it is written.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartBroker starts an embedded broker on a random port, stopped when the
// test ends.
func StartBroker(t testing.TB) *kafka.Broker {
	t.Helper()
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

// Options returns the options that point an example app at broker, a
// fresh data dir, a random web port, 4 partitions, a 50ms commit interval
// and the test's log.
func Options(t testing.TB, broker string) []mephisto.Option {
	return []mephisto.Option{
		mephisto.WithBrokers(broker), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4),
		mephisto.WithCommitInterval(50 * time.Millisecond), mephisto.WithLogger(Logger(t)),
	}
}

// RunApp runs app until the test ends (then stops it and checks that Run
// returned nil) and waits until it is ready.
func RunApp(t testing.TB, app *mephisto.App) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		case <-time.After(Timeout):
			t.Errorf("app did not stop within %v", Timeout)
		}
	})
	WaitFor(t, Timeout, "app ready", func() (bool, string) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("app.Run returned early: %v", err)
		default:
		}
		return app.Ready()
	})
}

// WaitFor polls cond until it holds, failing the test with cond's last
// explanation if timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Record is a record to produce. A nil Key produces a record without a key.
type Record struct {
	Key   []byte
	Value []byte
}

// Produce sends recs to topic with a real sarama producer and waits for
// their acknowledgement. Keyed records go to the partition the key hashes
// to (kafka.Partition, as Mephisto computes it); records without a key are
// spread round-robin.
func Produce(t testing.TB, addr, topic string, recs []Record) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("extest-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	n := int32(len(parts))
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(r.Value)}
		if r.Key != nil {
			m.Key = sarama.ByteEncoder(r.Key)
			m.Partition = kafka.Partition(r.Key, n)
		} else {
			m.Partition = int32(i) % n
		}
		msgs[i] = m
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// TableValue GETs http://web/tables/table/key and returns the status code
// and the "value" field of the answer (nil unless 200).
func TableValue(web, table, key string) (int, json.RawMessage, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/tables/%s/%s", web, table, key))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer %q: %w", b, err)
	}
	return resp.StatusCode, body.Value, nil
}

// TableEquals reports whether the worker at web serves exactly want for
// table (each value compared as its JSON text), and if not, the first
// difference.
func TableEquals(web, table string, want map[string]int64) (bool, string) {
	for k, v := range want {
		_, got, err := TableValue(web, table, k)
		if err != nil {
			return false, fmt.Sprintf("%s/%s: %v", table, k, err)
		}
		if string(got) != fmt.Sprint(v) {
			return false, fmt.Sprintf("%s/%s = %s, want %d", table, k, got, v)
		}
	}
	return true, ""
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Build builds the main package in the current directory (the example
// under test) into a temporary directory and returns the binary's path.
// Under -race the binary is race-checked too.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// env is the environment of child processes: ours, without MEPHISTO_*
// settings that would override the flags under test, plus extra.
func env(extra []string) []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEPHISTO_") {
			e = append(e, kv)
		}
	}
	return append(e, extra...)
}

// Result is how a finished command ended.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Exec runs bin with args to completion (within Timeout) and returns its
// output and exit code.
func Exec(t testing.TB, bin string, extraEnv []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env(extraEnv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
	default:
		t.Fatalf("%s %s: %v\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// Process is a child process started by Start.
type Process struct {
	cmd    *exec.Cmd
	Stderr *Buffer // what it wrote to stderr (and stdout)
	done   chan struct{}
	err    error // cmd.Wait's result, once done is closed
}

// Start starts bin with args. When the test ends the process is killed if
// still running, and its output is logged if the test failed.
func Start(t testing.TB, bin string, extraEnv []string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(bin, args...), Stderr: &Buffer{}, done: make(chan struct{})}
	p.cmd.Env = env(extraEnv)
	p.cmd.Stdout, p.cmd.Stderr = p.Stderr, p.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
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
			t.Logf("output of %s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), p.Stderr.String())
		}
	})
	return p
}

// Exited reports whether the process has exited, and if so, how.
func (p *Process) Exited() (bool, string) {
	select {
	case <-p.done:
		return true, fmt.Sprintf("exited: %v", p.err)
	default:
		return false, ""
	}
}

// Stop sends SIGTERM and returns the exit code, failing the test if the
// process does not exit within Timeout.
func (p *Process) Stop(t testing.TB) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(Timeout):
		t.Fatalf("process did not exit within %v of SIGTERM", Timeout)
		return -1
	}
}

// WaitReady waits until the worker process serving HTTP on web answers 200
// on /readyz, failing the test if it exits first.
func (p *Process) WaitReady(t testing.TB, web string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	WaitFor(t, Timeout, "worker ready on http://"+web+"/readyz", func() (bool, string) {
		if exited, how := p.Exited(); exited {
			t.Fatalf("worker %s before it was ready", how)
		}
		resp, err := client.Get("http://" + web + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	})
}

// Column returns the first column of each line of a table printed by an
// app's agents or tables command, header excluded.
func Column(out string) []string {
	var col []string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			col = append(col, f[0])
		}
	}
	return col
}
