package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// TestEmptyKeyOverHTTP runs a node against an embedded broker and reads,
// over HTTP, table keys the path cannot spell: the empty key (what a JSON
// null field becomes after GroupBy) and one with a slash, a space and a
// question mark (issue 16, defect 7).
func TestEmptyKeyOverHTTP(t *testing.T) {
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	app := mephisto.New("keys", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(proctest.Logger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", in, func(ctx mephisto.Context, key, _ string) error {
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})
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
		case <-time.After(60 * time.Second):
			t.Errorf("app did not stop")
		}
	})
	proctest.WaitForT(t, 60*time.Second, "app ready", func() (bool, string) { return app.Ready() })

	odd := "a/b c?d"
	produce(t, b.Addr(), "in", []string{"", "", "", odd, odd})
	want := map[string]float64{"": 3, odd: 2}
	proctest.WaitForT(t, 60*time.Second, "both keys readable by ?key=", func() (bool, string) {
		for k, n := range want {
			code, body := get(t, "http://"+app.WebAddr()+"/tables/counts?key="+url.QueryEscape(k))
			if code != 200 || body["key"] != k || body["value"] != n {
				return false, fmt.Sprintf("key %q: HTTP %d %v, want value %v", k, code, body, n)
			}
		}
		return true, ""
	})
	if code, body := get(t, "http://"+app.WebAddr()+"/tables/counts?key=never"); code != 404 {
		t.Errorf("an unwritten key: HTTP %d %v, want 404", code, body)
	}
}

func produce(t *testing.T, addr, topic string, keys []string) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("test-producer"))
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
	var msgs []*sarama.ProducerMessage
	for _, k := range keys {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder("x"),
			Partition: kafka.Partition([]byte(k), int32(len(parts)))})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}
