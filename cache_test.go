package mephisto_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// metricSum adds up the samples of a metric family on the node at web.
func metricSum(t testing.TB, web, name string) float64 {
	t.Helper()
	var sum float64
	for _, l := range strings.Split(metric(t, web, name), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], name+"{") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			sum += v
		}
	}
	return sum
}

// countingApp declares an app counting the events of topic "events" per
// key in table "counts", on 2 partitions.
func countingApp(t testing.TB, name, broker string, opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New(name, append([]mephisto.Option{mephisto.WithBrokers(broker), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t))}, opts...)...)
	events := mephisto.NewTopic(app, "events", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, key, _ string) error {
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})
	return app
}

// TestTableCacheSmallerThanTheKeys counts many keys through a table cache
// of three keys per shard: entries are evicted and read back from Pebble
// all the time (misses), hot keys are served from memory (hits), and the
// counts stay exact across two rounds.
func TestTableCacheSmallerThanTheKeys(t *testing.T) {
	b := startBroker(t)
	app := countingApp(t, "cache", b.Addr(), mephisto.WithCommitInterval(20*time.Millisecond), mephisto.WithTableCache(3))
	runApp(t, app)
	truth := map[string]int64{}
	for round := 1; round <= 2; round++ {
		var recs [][2]string
		for i := range 400 {
			k := fmt.Sprintf("k%03d", i%100) // each key 4 times a round, interleaved
			recs = append(recs, [2]string{k, "x"})
			truth[k]++
		}
		// A hot key, many times in a row: served from the cache.
		for range 50 {
			recs = append(recs, [2]string{"hot", "x"})
			truth["hot"]++
		}
		produce(t, b.Addr(), "events", recs)
		waitFor(t, 60*time.Second, fmt.Sprintf("round %d counts", round), func() (bool, string) {
			return tableEquals(app.WebAddr(), "counts", truth)
		})
	}
	if misses := metricSum(t, app.WebAddr(), "mephisto_table_cache_misses_total"); misses < 100 {
		t.Errorf("table cache misses %v: want at least one per key (100 keys, 3 cached per shard)", misses)
	}
	if hits := metricSum(t, app.WebAddr(), "mephisto_table_cache_hits_total"); hits < 49 {
		t.Errorf("table cache hits %v: want the hot key's repeats served from memory", hits)
	}
}

// TestTableValuesAreTheHandlersOwn: a handler that changes a map it read
// from a table, without Set, changes nothing the table serves, before or
// after a commit.
func TestTableValuesAreTheHandlersOwn(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("copies", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(20*time.Millisecond))
	cmds := mephisto.NewTopic(app, "cmds", codec.String(), codec.String())
	docs := mephisto.NewTable(app, "docs", codec.String(), codec.JSON[map[string]int64]())
	seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "docs", cmds, func(ctx mephisto.Context, key, cmd string) error {
		switch cmd {
		case "set":
			return docs.Set(ctx, key, map[string]int64{"a": 1})
		case "mutate":
			m, err := docs.Get(ctx, key)
			if err != nil {
				return err
			}
			m["a"] = 99 // no Set
			return nil
		case "check":
			m, err := docs.Get(ctx, key)
			if err != nil {
				return err
			}
			return seen.Set(ctx, key, m["a"])
		}
		return fmt.Errorf("unknown command %q", cmd)
	})
	runApp(t, app)
	// Within one commit (a batch) and across commits.
	produce(t, b.Addr(), "cmds", [][2]string{{"x", "set"}, {"x", "mutate"}, {"x", "check"}})
	waitFor(t, 60*time.Second, "x checked", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", map[string]int64{"x": 1})
	})
	produce(t, b.Addr(), "cmds", [][2]string{{"x", "mutate"}})
	produce(t, b.Addr(), "cmds", [][2]string{{"y", "set"}})
	produce(t, b.Addr(), "cmds", [][2]string{{"x", "check"}, {"y", "mutate"}, {"y", "check"}})
	waitFor(t, 60*time.Second, "x and y checked", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", map[string]int64{"x": 1, "y": 1})
	})
}

// TestCaughtUpPartitionCommitsWithoutWaitingForTheTick: with a commit
// interval of an hour, an event still reaches the table (which serves
// committed values only) as soon as its partition has caught up with its
// input; only a partition behind its input waits for the interval.
func TestCaughtUpPartitionCommitsWithoutWaitingForTheTick(t *testing.T) {
	b := startBroker(t)
	app := countingApp(t, "eager", b.Addr(), mephisto.WithCommitInterval(time.Hour))
	runApp(t, app)
	truth := map[string]int64{}
	for i := range 3 { // three separate commits: each waits for the one before
		produce(t, b.Addr(), "events", [][2]string{{"a", "x"}, {"b", "x"}})
		truth["a"], truth["b"] = int64(i+1), int64(i+1)
		waitFor(t, 60*time.Second, fmt.Sprintf("counts after event %d", i+1), func() (bool, string) {
			return tableEquals(app.WebAddr(), "counts", truth)
		})
	}
}
