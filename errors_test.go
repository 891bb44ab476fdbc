package mephisto_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
)

// produceRaw sends records with raw key/value bytes to the partition their
// key hashes to.
func produceRaw(t testing.TB, addr, topic string, kvs ...[2][]byte) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("test-raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, kv := range kvs {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(kv[0]), Value: sarama.ByteEncoder(kv[1]),
			Partition: kafka.Partition(kv[0], int32(len(parts)))}
		if _, _, err := p.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
}

// readTopic returns every record of topic, across partitions, waiting until
// there are at least n.
func readTopic(t testing.TB, addr, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("test-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var out []*sarama.ConsumerMessage
	waitFor(t, 30*time.Second, fmt.Sprintf("%d records in %s", n, topic), func() (bool, string) {
		out = out[:0]
		parts, err := client.Partitions(topic)
		if err != nil {
			return false, err.Error()
		}
		c, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		for _, p := range parts {
			oldest, hwm, err := kafka.Bounds(client, topic, p)
			if err != nil {
				return false, err.Error()
			}
			err = kafka.ReadRange(context.Background(), c, topic, p, oldest, hwm, func(m *sarama.ConsumerMessage) error {
				out = append(out, m)
				return nil
			})
			if err != nil {
				return false, err.Error()
			}
		}
		return len(out) >= n, fmt.Sprintf("have %d", len(out))
	})
	return out
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func metric(t testing.TB, web, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestPoisonAndUndecodableRecordsGoToDeadLetters: a record whose handler
// keeps failing and a record that cannot be decoded both land in the
// agent's dead-letter topic with their original bytes and headers naming
// the error and the source; processing goes on; a handler that panics once
// is restarted by the supervisor and its record is processed.
func TestPoisonAndUndecodableRecordsGoToDeadLetters(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("poison", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithMaxAttempts(2))
	nums := mephisto.NewTopic(app, "nums", codec.String(), codec.Int64())
	sums := mephisto.NewTable(app, "sums", codec.String(), codec.Int64())
	var panicked atomic.Bool
	mephisto.NewAgent(app, "sum", nums, func(ctx mephisto.Context, k string, v int64) error {
		switch {
		case v == 13:
			return errors.New("13 is unlucky")
		case v == 7 && panicked.CompareAndSwap(false, true):
			panic("seven panics once")
		}
		return sums.Update(ctx, k, func(s int64) int64 { return s + v })
	})
	runApp(t, app)

	i64 := func(v int64) []byte { b, _ := codec.Int64().Encode(v); return b }
	produceRaw(t, b.Addr(), "nums",
		[2][]byte{[]byte("a"), i64(1)},
		[2][]byte{[]byte("a"), i64(13)},        // fails every attempt
		[2][]byte{[]byte("a"), []byte("oops")}, // cannot be decoded as int64
		[2][]byte{[]byte("a"), i64(7)},         // panics on the first attempt
		[2][]byte{[]byte("a"), i64(100)},
	)
	waitFor(t, 30*time.Second, "sum of the good records", func() (bool, string) {
		return tableEquals(app.WebAddr(), "sums", map[string]int64{"a": 108})
	})
	dl := readTopic(t, b.Addr(), "poison-sum-dead-letters", 2)
	if len(dl) != 2 {
		t.Fatalf("dead letters: got %d records, want 2", len(dl))
	}
	byValue := map[string]*sarama.ConsumerMessage{}
	for _, m := range dl {
		byValue[string(m.Value)] = m
	}
	unlucky, undecodable := byValue[string(i64(13))], byValue["oops"]
	if unlucky == nil || undecodable == nil {
		t.Fatalf("dead letters do not carry the original values: %v", byValue)
	}
	for _, m := range []*sarama.ConsumerMessage{unlucky, undecodable} {
		if string(m.Key) != "a" || header(m, "mephisto.topic") != "nums" || header(m, "mephisto.agent") != "sum" ||
			header(m, "mephisto.partition") == "" || header(m, "mephisto.offset") == "" {
			t.Errorf("dead letter %q: key %q, headers %v", m.Value, m.Key, m.Headers)
		}
	}
	if e := header(unlucky, "mephisto.error"); !strings.Contains(e, "13 is unlucky") || !strings.Contains(e, "failed 2 times") {
		t.Errorf("error header of the failing record: %q", e)
	}
	if e := header(undecodable, "mephisto.error"); !strings.Contains(e, "decode") {
		t.Errorf("error header of the undecodable record: %q", e)
	}
	if header(unlucky, "mephisto.offset") != "1" || header(undecodable, "mephisto.offset") != "2" {
		t.Errorf("offsets: %q %q", header(unlucky, "mephisto.offset"), header(undecodable, "mephisto.offset"))
	}
	if m := metric(t, app.WebAddr(), "mephisto_dead_letters_total"); !strings.Contains(m, `agent="sum"`) || !strings.HasSuffix(m, " 2") {
		t.Errorf("dead-letter metric: %q", m)
	}
	if m := metric(t, app.WebAddr(), "mephisto_grain_restarts_total"); m == "" {
		t.Errorf("no grain restart counted after a panic and failures")
	}
	if ok, why := app.Ready(); !ok {
		t.Errorf("not ready after dead-lettering: %s", why)
	}
}

// TestErrorPolicies: Skip goes on without a dead letter; Stop parks the
// partition and makes the node not ready, saying why.
func TestErrorPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy    mephisto.ErrorPolicy
		wantReady bool
	}{
		{mephisto.Skip, true},
		{mephisto.Stop, false},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			b := startBroker(t)
			app := mephisto.New("policy", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
				mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
				mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithMaxAttempts(1))
			in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
			seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
			mephisto.NewAgent(app, "a", in, func(ctx mephisto.Context, k, v string) error {
				if v == "bad" {
					return errors.New("bad value")
				}
				return seen.Update(ctx, k, func(n int64) int64 { return n + 1 })
			}, mephisto.OnError(tc.policy))
			runApp(t, app)
			produce(t, b.Addr(), "in", [][2]string{{"k", "good"}, {"k", "bad"}, {"k", "good"}})
			if tc.wantReady {
				waitFor(t, 30*time.Second, "both good records", func() (bool, string) {
					return tableEquals(app.WebAddr(), "seen", map[string]int64{"k": 2})
				})
				if m := metric(t, app.WebAddr(), "mephisto_skipped_total"); !strings.HasSuffix(m, " 1") {
					t.Errorf("skipped metric: %q", m)
				}
				return
			}
			waitFor(t, 30*time.Second, "not ready, naming the stopped partition", func() (bool, string) {
				ok, why := app.Ready()
				return !ok && strings.Contains(why, "stopped") && strings.Contains(why, "bad value"), why
			})
			resp, err := http.Get("http://" + app.WebAddr() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Errorf("/readyz = %d, want 503", resp.StatusCode)
			}
			// The record before the bad one was processed and committed.
			if ok, why := tableEquals(app.WebAddr(), "seen", map[string]int64{"k": 1}); !ok {
				t.Errorf("records before the stop: %s", why)
			}
		})
	}
}
