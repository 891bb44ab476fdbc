package mephisto_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/node"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The failure behaviour of exactly-once, in process, on both brokers: each
// test makes one thing go wrong in the middle of a transaction and checks
// that the counts (in the changelog, read committed) and the echoes (one
// per input, read committed) end exact.

// echoApp declares app name: agent count adds 1 to counts[key] and echoes
// each event's value to topic echo; before it does, hook (if set) may fail
// or delay the event.
func echoApp(t testing.TB, name, addr string, hook func(key, value string) error, opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New(name, append([]mephisto.Option{mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.ProcessingGuarantee(mephisto.ExactlyOnce), mephisto.WithCommitInterval(50 * time.Millisecond)}, opts...)...)
	events := mephisto.NewTopic(app, "events", codec.String(), codec.String())
	echo := mephisto.NewTopic(app, "echo", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, key, value string) error {
		if hook != nil {
			if err := hook(key, value); err != nil {
				return err
			}
		}
		if err := counts.Update(ctx, key, func(n int64) int64 { return n + 1 }); err != nil {
			return err
		}
		return echo.Send(ctx, key, value)
	})
	return app
}

// numbered returns n events with values from..from+n-1 over 10 keys, and
// their counts added to truth.
func numbered(from, n int, truth map[string]int64) [][2]string {
	var recs [][2]string
	for i := from; i < from+n; i++ {
		k := fmt.Sprintf("k%d", i%10)
		recs = append(recs, [2]string{k, fmt.Sprint(i)})
		truth[k]++
	}
	return recs
}

// waitExact waits until the changelog of app's counts, read committed,
// holds truth and topic echo holds each of the n values 0..n-1 exactly
// once; it returns the echoes read uncommitted too, to show what aborted
// transactions left in the log.
func waitExact(t *testing.T, addr, app string, truth map[string]int64, n int) (uncommitted int) {
	t.Helper()
	waitFor(t, 60*time.Second, "counts in the changelog", func() (bool, string) {
		got := map[string]int64{}
		for _, m := range readCommitted(t, addr, app+"-counts-changelog") {
			got[string(m.Key)] = int64(binary.BigEndian.Uint64(m.Value))
		}
		for k, v := range truth {
			if got[k] != v {
				return false, fmt.Sprintf("%s = %d, want %d", k, got[k], v)
			}
		}
		return len(got) == len(truth), fmt.Sprintf("%d keys, want %d", len(got), len(truth))
	})
	waitFor(t, 30*time.Second, "every echo once", func() (bool, string) {
		seen := map[string]int{}
		for _, m := range readCommitted(t, addr, "echo") {
			seen[string(m.Value)]++
		}
		for i := range n {
			if c := seen[fmt.Sprint(i)]; c != 1 {
				return false, fmt.Sprintf("echo %d seen %d times", i, c)
			}
		}
		return len(seen) == n, fmt.Sprintf("%d distinct echoes, want %d", len(seen), n)
	})
	return len(readIsolated(t, addr, "echo", sarama.ReadUncommitted))
}

// createTopic creates topic with one partition before the app starts, so
// that records produced first arrive in the app's first fetch.
func createTopic(t *testing.T, addr, topic string) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kafka.EnsureTopics(admin, []kafka.TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: -1}}); err != nil {
		t.Fatal(err)
	}
}

// A handler that fails aborts the transaction: the echoes and table
// writes of the records before it in the same transaction are dropped
// with it, and the grain replays them from its last commit.
func TestExactlyOnceHandlerErrorAborts(t *testing.T) {
	t.Parallel()
	eosBrokers(t, nil, func(t *testing.T, addr string) {
		createTopic(t, addr, "events")
		truth := map[string]int64{}
		produce(t, addr, "events", numbered(0, 400, truth))
		var failed atomic.Bool
		// The 400 records wait in Kafka and are processed long before the
		// first tick, and only the last delivery is caught up: the first
		// transaction holds everything up to the failure.
		app := echoApp(t, "eos-fail", addr, func(_, value string) error {
			if value == "300" && failed.CompareAndSwap(false, true) {
				return fmt.Errorf("the first attempt at 300 fails")
			}
			return nil
		}, mephisto.WithCommitInterval(2*time.Second))
		runApp(t, app)
		uncommitted := waitExact(t, addr, "eos-fail", truth, 400)
		if !failed.Load() {
			t.Fatal("the handler never failed")
		}
		// The records before 300 were echoed into the transaction that the
		// failure aborted: a read_uncommitted consumer sees them twice.
		if uncommitted <= 400 {
			t.Errorf("%d echoes read uncommitted, want more than 400: the failure should have aborted a transaction holding echoes", uncommitted)
		}
		t.Logf("400 echoes committed; %d in the log read uncommitted (the aborted transaction's included)", uncommitted)
	})
}

// Another producer taking the partition's transactional id (a zombie's
// successor) fences the app's producer: its next transaction fails, the
// grain restarts with a new producer (which fences the intruder in turn)
// and replays from its last commit.
func TestExactlyOnceFencedProducer(t *testing.T) {
	t.Parallel()
	eosBrokers(t, nil, func(t *testing.T, addr string) {
		app := echoApp(t, "eos-fenced", addr, nil)
		runApp(t, app)
		truth := map[string]int64{}
		produce(t, addr, "events", numbered(0, 200, truth))
		waitExact(t, addr, "eos-fenced", truth, 200)

		cfg := kafka.TxnConfig("test-intruder", node.TxnID("eos-fenced", 0), 10*time.Second)
		intruder, err := kafka.NewTxnProducer([]string{addr}, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer intruder.Close()
		produce(t, addr, "events", numbered(200, 200, truth))
		waitExact(t, addr, "eos-fenced", truth, 400)
		if n := metricSum(t, app.WebAddr(), "mephisto_transaction_aborts_total"); n < 1 {
			t.Errorf("mephisto_transaction_aborts_total = %v, want at least 1: the fenced producer's transaction must have failed", n)
		}
	})
}

// A transaction open longer than --transaction-timeout is aborted by the
// broker; the grain learns it when it commits, restarts with a new
// producer and replays.
func TestExactlyOnceTransactionTimeout(t *testing.T) {
	t.Parallel()
	// Apache Kafka looks for timed-out transactions every 10 s by default.
	config := map[string]string{"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"}
	eosBrokers(t, config, func(t *testing.T, addr string) {
		createTopic(t, addr, "events")
		truth := map[string]int64{}
		produce(t, addr, "events", numbered(0, 100, truth))
		var slowed atomic.Bool
		// The first commit stalls between its last record and its commit
		// for four transaction timeouts.
		app := echoApp(t, "eos-timeout", addr, nil, mephisto.WithTransactionTimeout(time.Second),
			mephisto.WithFaultHook(func(point string) {
				if point == "txn:produced" && slowed.CompareAndSwap(false, true) {
					time.Sleep(4 * time.Second) // the stimulus, not a wait
				}
			}))
		runApp(t, app)
		waitExact(t, addr, "eos-timeout", truth, 100)
		if n := metricSum(t, app.WebAddr(), "mephisto_transaction_aborts_total"); n < 1 {
			t.Errorf("mephisto_transaction_aborts_total = %v, want at least 1: the broker should have aborted the slow transaction", n)
		}
	})
}

// A rebalance while a commit is in flight: node 1 is held at the point
// where its transaction's records are all written and the transaction not
// yet committed, until node 2's joining has ended node 1's session; the
// commit then completes (or is fenced) during the rebalance, and nothing
// is lost or doubled either way.
func TestExactlyOnceRebalanceMidCommit(t *testing.T) {
	t.Parallel()
	eosBrokers(t, nil, func(t *testing.T, addr string) {
		var app1 *mephisto.App
		var once sync.Once
		joined := make(chan struct{})
		released := make(chan struct{})
		hook := func(point string) {
			if point != "txn:produced" {
				return
			}
			once.Do(func() {
				close(joined) // the test starts node 2
				// Hold the commit until node 1's session has ended (the
				// test fails below if it never does).
				_, _ = proctest.Poll(context.Background(), 5*time.Millisecond, 30*time.Second, "node 1's session ended", func() (bool, string, error) {
					ok, why := app1.Ready()
					return !ok && strings.Contains(why, "assignment"), why, nil
				})
				close(released)
			})
		}
		opts := []mephisto.Option{mephisto.WithPartitions(2), mephisto.WithSessionTimeout(3 * time.Second)}
		app1 = echoApp(t, "eos-rebalance", addr, nil, append(opts, mephisto.WithNodeID("n1"), mephisto.WithFaultHook(hook))...)
		runApp(t, app1)
		truth := map[string]int64{}
		produce(t, addr, "events", numbered(0, 300, truth))
		select {
		case <-joined:
		case <-time.After(60 * time.Second):
			t.Fatal("node 1 never reached a commit")
		}
		app2 := echoApp(t, "eos-rebalance", addr, nil, append(opts, mephisto.WithNodeID("n2"))...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app2.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node 2: %v", err)
			}
		})
		select {
		case <-released:
		case <-time.After(60 * time.Second):
			t.Fatal("node 1's held commit was never released")
		}
		produce(t, addr, "events", numbered(300, 300, truth))
		waitExact(t, addr, "eos-rebalance", truth, 600)
	})
}

// Everything stateful follows the guarantee: a global table's merges (an
// update record to the key's grain, then its table write), a batch agent's
// sends and an ask's replies, each through a transaction that a failure
// aborts once.
func TestExactlyOnceStatefulFeatures(t *testing.T) {
	t.Parallel()
	eosBrokers(t, nil, func(t *testing.T, addr string) {
		app := mephisto.New("eos-state", mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
			mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)),
			mephisto.ProcessingGuarantee(mephisto.ExactlyOnce), mephisto.WithCommitInterval(50*time.Millisecond))
		events := mephisto.NewTopic(app, "events", codec.String(), codec.String())
		total := mephisto.NewGlobalTable(app, "total", codec.String(), codec.Int64(), mephisto.MergeWith(mephisto.Sum[int64]))
		var mergeFailed atomic.Bool
		mephisto.NewAgent(app, "merge", events, func(ctx mephisto.Context, _, value string) error {
			if err := total.Merge(ctx, "n", 1); err != nil {
				return err
			}
			if value == "150" && mergeFailed.CompareAndSwap(false, true) {
				return fmt.Errorf("fails once after its merge")
			}
			return nil
		})
		items := mephisto.NewTopic(app, "items", codec.String(), codec.String())
		batches := mephisto.NewTopic(app, "batches", codec.String(), codec.String())
		var batchFailed atomic.Bool
		mephisto.NewBatchAgent(app, "batch", items, 10, time.Second, func(ctx mephisto.Context, batch []mephisto.KV[string, string]) error {
			for _, kv := range batch {
				if err := batches.Send(ctx, kv.Key, kv.Value); err != nil {
					return err
				}
			}
			if batchFailed.CompareAndSwap(false, true) {
				return fmt.Errorf("the first batch fails once after its sends")
			}
			return nil
		})
		asks := mephisto.NewTopic(app, "asks", codec.String(), codec.Int64())
		double := mephisto.NewReplyAgent(app, "double", asks, func(_ mephisto.Context, _ string, v int64) (int64, error) {
			return 2 * v, nil
		})
		runApp(t, app)

		produce(t, addr, "events", numbered(0, 300, map[string]int64{}))
		produce(t, addr, "items", numbered(0, 100, map[string]int64{}))
		for i := range int64(20) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			got, err := double.Ask(ctx, fmt.Sprint("k", i), i)
			cancel()
			if err != nil || got != 2*i {
				t.Fatalf("Ask(%d) = %d, %v; want %d", i, got, err, 2*i)
			}
		}
		waitFor(t, 60*time.Second, "the global total", func() (bool, string) {
			n, err := total.Get(context.Background(), "n")
			return err == nil && n == 300, fmt.Sprintf("total %d (%v), want 300", n, err)
		})
		waitFor(t, 30*time.Second, "every item batched once", func() (bool, string) {
			seen := map[string]int{}
			for _, m := range readCommitted(t, addr, "batches") {
				seen[string(m.Value)]++
			}
			for i := range 100 {
				if c := seen[fmt.Sprint(i)]; c != 1 {
					return false, fmt.Sprintf("item %d sent %d times", i, c)
				}
			}
			return true, ""
		})
		if !mergeFailed.Load() || !batchFailed.Load() {
			t.Fatalf("the failures were not injected (merge %v, batch %v)", mergeFailed.Load(), batchFailed.Load())
		}
		// The aborted attempts left their records in the log: read
		// uncommitted, the global table's update topic holds more than 300.
		if n := len(readIsolated(t, addr, "eos-state-total-updates", sarama.ReadUncommitted)); n <= 300 {
			t.Logf("update records read uncommitted: %d (the failure's transaction held none)", n)
		}
	})
}
