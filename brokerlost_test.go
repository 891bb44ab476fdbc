package mephisto_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// TestBrokerLostIsSaidOnce (issue 16, defect 7): while the broker is away
// the worker says so once, naming the brokers (not a line per group error),
// /readyz names Kafka and the cause, and when the broker is back the worker
// says so and is ready again.
func TestBrokerLostIsSaidOnce(t *testing.T) {
	addr := proctest.FreeAddrT(t, false)
	dir := t.TempDir()
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: addr, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var logs proctest.Buffer
	app := mephisto.New("lost", mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithSessionTimeout(2*time.Second))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "a", in, func(ctx mephisto.Context, _, v string) error {
		return seen.Update(ctx, v, func(n int64) int64 { return n + 1 })
	})
	runApp(t, app)
	produce(t, addr, "in", [][2]string{{"k", "x"}})
	waitFor(t, 30*time.Second, "the first record", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", map[string]int64{"x": 1})
	})

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/readyz naming Kafka and its address", func() (bool, string) {
		ok, why := app.Ready()
		return !ok && strings.Contains(why, "cannot reach Kafka at "+addr), why
	})
	// Let the group fail a while longer: its errors come every few hundred ms.
	waitFor(t, 60*time.Second, "more group errors", func() (bool, string) {
		n := strings.Count(logs.String(), "consumer group error")
		return n >= 3, "debug lines so far: " + strings.Repeat("|", n)
	})

	b, err = kafka.StartBroker(kafka.BrokerConfig{Listen: addr, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	waitFor(t, 60*time.Second, "ready again", func() (bool, string) { return app.Ready() })
	produce(t, addr, "in", [][2]string{{"k", "y"}})
	waitFor(t, 30*time.Second, "a record after the outage", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", map[string]int64{"x": 1, "y": 1})
	})
	out := logs.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(out)
		}
	})
	if n := strings.Count(out, "consumer group lost contact with Kafka"); n != 1 {
		t.Errorf("the loss of Kafka was logged %d times, want once", n)
	}
	if !strings.Contains(out, "consumer group reaches Kafka again") {
		t.Errorf("the return of Kafka was not logged")
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "consumer group error") && !strings.Contains(l, "level=DEBUG") {
			t.Errorf("a group error above debug level: %s", l)
		}
	}
}
