package mephisto_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// TestSinksAndTasks: an agent yields results to a function sink and a topic
// sink; another agent consumes the topic; a task sends input from outside
// any handler.
func TestSinksAndTasks(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("sinks", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	nums := mephisto.NewTopic(app, "nums", codec.String(), codec.String())
	doubled := mephisto.NewTopic(app, "doubled", codec.String(), codec.Int64())
	yielded := mephisto.NewTable(app, "yielded", codec.String(), codec.Int64())
	totals := mephisto.NewTable(app, "totals", codec.String(), codec.Int64())

	mephisto.NewAgentWithSinks(app, "double", nums,
		func(ctx mephisto.Context, k, v string, yield func(int64) error) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("not a number: %w", err)
			}
			if err := yield(2 * n); err != nil { // two results per event
				return err
			}
			return yield(0)
		},
		[]mephisto.Sink[int64]{
			mephisto.SinkFunc("count", func(ctx mephisto.Context, r int64) error {
				return yielded.Update(ctx, "results", func(c int64) int64 { return c + 1 })
			}),
			mephisto.SinkTopic(doubled),
		})
	mephisto.NewAgent(app, "total", doubled, func(ctx mephisto.Context, _ string, v int64) error {
		return totals.Update(ctx, "sum", func(s int64) int64 { return s + v })
	})
	var sendErr error
	sent := make(chan struct{})
	app.Task("feed", func(ctx context.Context) error {
		defer close(sent)
		for i := 1; i <= 10; i++ {
			if err := nums.Send(ctx, strconv.Itoa(i), strconv.Itoa(i)); err != nil {
				sendErr = err
				return err
			}
		}
		return nil
	})
	runApp(t, app)
	<-sent
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	// One partition: table writes follow the event's partition (as in
	// Faust), so with more partitions "sum" would be split across shards.
	waitFor(t, 30*time.Second, "sum of doubled values", func() (bool, string) {
		return tableEquals(app.WebAddr(), "totals", map[string]int64{"sum": 110})
	})
	waitFor(t, 30*time.Second, "two yields per event reached the function sink", func() (bool, string) {
		return tableEquals(app.WebAddr(), "yielded", map[string]int64{"results": 20})
	})
	if err := nums.Send(context.Background(), "x", "1"); err != nil {
		t.Fatalf("Send outside a handler on a running app: %v", err)
	}
}

func TestSendNeedsARunningApp(t *testing.T) {
	app := mephisto.New("idle")
	topic := mephisto.NewTopic(app, "t", codec.String(), codec.String())
	if err := topic.Send(context.Background(), "k", "v"); !errors.Is(err, mephisto.ErrNotRunning) {
		t.Fatalf("Send on an idle app: %v, want ErrNotRunning", err)
	}
	table := mephisto.NewTable(app, "tb", codec.String(), codec.Int64())
	if _, err := table.Get(context.Background(), "k"); !errors.Is(err, mephisto.ErrNotRunning) {
		t.Fatalf("Get on an idle app: %v, want ErrNotRunning", err)
	}
	if err := table.Set(context.Background(), "k", 1); !errors.Is(err, mephisto.ErrNotInAgent) {
		t.Fatalf("Set outside a handler: %v, want ErrNotInAgent", err)
	}
}
