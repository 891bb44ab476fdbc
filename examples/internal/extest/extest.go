// Package extest holds what the examples' end-to-end tests share on top of
// internal/proctest (which runs the child processes, waits and logs): an
// embedded broker, an in-process worker, a real producer, table reads over
// HTTP, and an example's binary built and run as a child process.
//
// Everything waits on conditions with deadlines; nothing sleeps blindly.
package extest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// Timeout bounds every wait of these helpers.
const Timeout = 90 * time.Second

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
		mephisto.WithCommitInterval(50 * time.Millisecond), mephisto.WithLogger(proctest.Logger(t)),
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
	proctest.WaitForT(t, Timeout, "app ready", func() (bool, string) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("app.Run returned early: %v", err)
		default:
		}
		return app.Ready()
	})
}

// Record is a record to produce. A nil Key produces a record without a
// key; a zero Timestamp lets the producer stamp it.
type Record struct {
	Key       []byte
	Value     []byte
	Timestamp time.Time
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
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(r.Value), Timestamp: r.Timestamp}
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

// Build builds the main package in the current directory (the example
// under test) into a temporary directory and returns the binary's path.
// Under -race the binary is race-checked too.
func Build(t testing.TB, name string) string {
	t.Helper()
	var bin string
	if err := proctest.Build(t.TempDir(), proctest.Binary{Pkg: ".", Name: name, Out: &bin, Race: true}); err != nil {
		t.Fatal(err)
	}
	return bin
}

// spec describes bin run with args, in the test's environment without
// MEPHISTO_* settings (they would override the flags under test), plus
// extraEnv.
func spec(bin string, extraEnv []string, args ...string) proctest.Spec {
	return proctest.Spec{Name: filepath.Base(bin), Path: bin, Args: args, Env: proctest.Environ(extraEnv, "MEPHISTO_")}
}

// Exec runs bin with args to completion (within Timeout) and returns its
// output and exit code.
func Exec(t testing.TB, bin string, extraEnv []string, args ...string) proctest.Result {
	t.Helper()
	return proctest.RunT(t, spec(bin, extraEnv, args...), Timeout)
}

// Start starts bin with args. When the test ends the process is killed if
// still running, and its output is logged if the test failed.
func Start(t testing.TB, bin string, extraEnv []string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartT(t, spec(bin, extraEnv, args...))
}

// StartWorker starts bin's worker process against the broker at brokers,
// with a fresh data dir, a free web port, 4 partitions, a 50ms commit
// interval and the extra environment extraEnv, and waits until it is
// ready. It returns the process and its web address.
func StartWorker(t testing.TB, bin, brokers string, extraEnv []string) (*proctest.Proc, string) {
	t.Helper()
	web := proctest.FreeAddrT(t, false)
	w := Start(t, bin, extraEnv, "worker", "--brokers", brokers, "--data-dir", t.TempDir(),
		"--web", web, "--partitions", "4", "--commit-interval", "50ms")
	WaitReady(t, w, web)
	return w, web
}

// CheckCommands runs bin's agents and tables commands and requires that
// they list agents and tables, in order, and that `worker --bogus` is
// refused with exit status 2 and an error naming the flag.
func CheckCommands(t testing.TB, bin string, agents, tables []string) {
	t.Helper()
	for _, c := range []struct {
		cmd  string
		want []string
	}{{"agents", agents}, {"tables", tables}} {
		r := Exec(t, bin, nil, c.cmd)
		if got := Column(r.Stdout); r.Code != 0 || !slices.Equal(got, c.want) {
			t.Errorf("%s: exit %d, %s %q, want 0, %q\n%s%s", c.cmd, r.Code, c.cmd, got, c.want, r.Stdout, r.Stderr)
		}
	}
	r := Exec(t, bin, nil, "worker", "--bogus")
	if r.Code != 2 || !strings.Contains(r.Stderr, "--bogus") {
		t.Errorf("worker --bogus: exit %d, want 2 and an error naming the flag\n%s", r.Code, r.Stderr)
	}
}

// WaitReady waits until the worker process p serving HTTP on web answers
// 200 on /readyz, failing the test if it exits first.
func WaitReady(t testing.TB, p *proctest.Proc, web string) {
	t.Helper()
	proctest.WaitForT(t, Timeout, "worker ready on http://"+web+"/readyz", func() (bool, string) {
		if p.Exited() {
			t.Fatalf("worker exited (%s) before it was ready", p.DescribeExit())
		}
		return proctest.Ready(web)
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

// ReadTopic returns every record of topic a consumer at isolation level
// iso is given, partition by partition, up to each partition's end as
// that consumer sees it now.
func ReadTopic(t testing.TB, brokers, topic string, iso sarama.IsolationLevel) [][]*sarama.ConsumerMessage {
	t.Helper()
	cfg := kafka.ConsumerConfig("extest-reader")
	cfg.Consumer.IsolationLevel = iso
	client, err := sarama.NewClient(strings.Split(brokers, ","), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	out := make([][]*sarama.ConsumerMessage, len(parts))
	for i, p := range parts {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		err := kafka.ReadToEnd(ctx, client, consumer, topic, p, func(m *sarama.ConsumerMessage) error {
			out[i] = append(out[i], m)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("read %s/%d: %v", topic, p, err)
		}
	}
	return out
}
