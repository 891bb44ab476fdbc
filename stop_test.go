package mephisto_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// TestStopNeverWaitsSilently (issue 16, defect 1): a worker asked to stop
// while a partition cannot finish (its handler is stuck) says that it
// drains, then every few seconds which partitions it still waits for, and
// stops once the partition is done.
func TestStopNeverWaitsSilently(t *testing.T) {
	addr := proctest.FreeAddrT(t, false)
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: addr, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var logs proctest.Buffer
	app := mephisto.New("stopping", mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1),
		mephisto.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), mephisto.WithCommitInterval(time.Hour))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
	stuck, release := make(chan struct{}), make(chan struct{})
	mephisto.NewAgent(app, "a", in, func(ctx mephisto.Context, _, v string) error {
		if v == "slow" {
			close(stuck)
			<-release
		}
		return seen.Update(ctx, v, func(n int64) int64 { return n + 1 })
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	waitFor(t, 60*time.Second, "ready", func() (bool, string) { return app.Ready() })
	t.Cleanup(func() { _ = b.Close() })
	produce(t, addr, "in", [][2]string{{"k", "slow"}})
	<-stuck
	cancel()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	waitFor(t, 20*time.Second, "the stop announced", func() (bool, string) {
		return strings.Contains(logs.String(), "stopping: each partition finishes its record in flight and commits"), ""
	})
	waitFor(t, 20*time.Second, "the partitions it waits for named", func() (bool, string) {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "still stopping: partitions have not committed yet") && strings.Contains(l, "partitions=[0]") {
				return true, ""
			}
		}
		return false, ""
	})
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return once the partition was done")
	}
}
