package mephisto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The process harness's logger (to t.Log until the test's cleanups run)
// and condition wait.
var (
	testLogger = proctest.Logger
	waitFor    = proctest.WaitForT
)

func startBroker(t testing.TB) *kafka.Broker {
	t.Helper()
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// runApp runs app until the test ends and waits until it is ready.
func runApp(t testing.TB, app *mephisto.App) {
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
		case <-time.After(60 * time.Second):
			t.Errorf("app did not stop")
		}
	})
	waitFor(t, 60*time.Second, "app ready", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("app.Run returned early: %v", err)
		default:
		}
		return app.Ready()
	})
}

func produce(t testing.TB, addr, topic string, recs [][2]string) {
	t.Helper()
	cfg := kafka.ClientConfig("test-producer")
	client, err := sarama.NewClient([]string{addr}, cfg)
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
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(r[1])}
		if r[0] != "" {
			m.Key = sarama.StringEncoder(r[0])
			m.Partition = kafka.Partition([]byte(r[0]), int32(len(parts)))
		} else {
			m.Partition = int32(i % len(parts))
		}
		msgs[i] = m
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}

func getJSON(url string) (int, map[string]any, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, nil
}

// tableEquals reports whether the worker at web serves exactly want for table.
func tableEquals(web, table string, want map[string]int64) (bool, string) {
	for k, v := range want {
		code, body, err := getJSON(fmt.Sprintf("http://%s/tables/%s/%s", web, table, k))
		if err != nil {
			return false, err.Error()
		}
		if code != 200 {
			return false, fmt.Sprintf("%s: HTTP %d %v", k, code, body)
		}
		if got, _ := body["value"].(float64); int64(got) != v {
			return false, fmt.Sprintf("%s = %v, want %d", k, body["value"], v)
		}
	}
	return true, ""
}

func wordCountApp(t testing.TB, broker, dataDir string) *mephisto.App {
	app := mephisto.New("wc", mephisto.WithBrokers(broker), mephisto.WithDataDir(dataDir),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	lines := mephisto.NewTopic(app, "lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _ string, line string) error {
		for _, w := range strings.Fields(strings.ToLower(line)) {
			if err := words.Send(ctx, w, w); err != nil {
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		return counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	})
	return app
}

func corpus(n int) ([][2]string, map[string]int64) {
	vocab := strings.Fields("the quick brown fox jumps over the lazy dog while seven wizards quietly hex jolly bugs")
	var recs [][2]string
	truth := map[string]int64{}
	for i := 0; i < n; i++ {
		var line []string
		for j := 0; j < 1+i%7; j++ {
			w := vocab[(i*7+j*3)%len(vocab)]
			line = append(line, strings.ToUpper(w[:1])+w[1:])
			truth[w]++
		}
		recs = append(recs, [2]string{"", strings.Join(line, " ")})
	}
	return recs, truth
}

func TestWordCountEndToEnd(t *testing.T) {
	b := startBroker(t)
	app := wordCountApp(t, b.Addr(), t.TempDir())
	runApp(t, app)
	recs, truth := corpus(500)
	produce(t, b.Addr(), "lines", recs)
	waitFor(t, 60*time.Second, "counts equal the truth", func() (bool, string) {
		return tableEquals(app.WebAddr(), "word_counts", truth)
	})
	code, _, _ := getJSON("http://" + app.WebAddr() + "/tables/word_counts/neverwritten")
	if code != 404 {
		t.Errorf("unwritten key: HTTP %d, want 404", code)
	}
}
