package mephisto_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// readCommitted returns every record of topic a read_committed consumer
// is given, partition by partition.
func readCommitted(t testing.TB, addr, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	return readIsolated(t, addr, topic, sarama.ReadCommitted)
}

// readIsolated returns every record of topic a consumer at iso is given.
func readIsolated(t testing.TB, addr, topic string, iso sarama.IsolationLevel) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := kafka.ConsumerConfig("test-read")
	cfg.Consumer.IsolationLevel = iso
	client, err := sarama.NewClient([]string{addr}, cfg)
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
		t.Fatal(err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range parts {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := kafka.ReadToEnd(ctx, client, consumer, topic, p, func(m *sarama.ConsumerMessage) error {
			out = append(out, m)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// eosBrokers runs f on the embedded broker and on Apache Kafka (a broker
// of the test's own, with config's settings; skipped where the real-Kafka
// tier cannot run).
func eosBrokers(t *testing.T, config map[string]string, f func(t *testing.T, addr string)) {
	t.Run("kfake", func(t *testing.T) {
		t.Parallel()
		f(t, startBroker(t).Addr())
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		f(t, proctest.StartKafkaT(t, proctest.KafkaSpec{LogDir: proctest.LogDir(t, "root"), Config: config}).Bootstrap())
	})
}

func TestExactlyOnceCountsAndEchoes(t *testing.T) {
	t.Parallel()
	eosBrokers(t, nil, testExactlyOnceCountsAndEchoes)
}

func testExactlyOnceCountsAndEchoes(t *testing.T, addr string) {
	app := mephisto.New("eos", mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)),
		mephisto.ProcessingGuarantee(mephisto.ExactlyOnce), mephisto.WithCommitInterval(50*time.Millisecond))
	events := mephisto.NewTopic(app, "events", codec.String(), codec.String())
	echo := mephisto.NewTopic(app, "echo", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, key, value string) error {
		if err := counts.Update(ctx, key, func(n int64) int64 { return n + 1 }); err != nil {
			return err
		}
		return echo.Send(ctx, key, value)
	})
	runApp(t, app)
	truth := map[string]int64{}
	var recs [][2]string
	for i := range 2000 {
		k := fmt.Sprintf("k%02d", i%50)
		recs = append(recs, [2]string{k, fmt.Sprint(i)})
		truth[k]++
	}
	produce(t, addr, "events", recs)
	waitFor(t, 60*time.Second, "counts", func() (bool, string) { return tableEquals(app.WebAddr(), "counts", truth) })
	waitFor(t, 30*time.Second, "echoes", func() (bool, string) {
		got := readCommitted(t, addr, "echo")
		return len(got) == len(recs), fmt.Sprintf("%d echoes of %d", len(got), len(recs))
	})
	seen := map[string]bool{}
	for _, m := range readCommitted(t, addr, "echo") {
		if seen[string(m.Value)] {
			t.Errorf("echo %s twice", m.Value)
		}
		seen[string(m.Value)] = true
	}
}
