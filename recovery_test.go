package mephisto_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
)

// TestWipedDataDirIsRebuiltFromChangelog: stop a worker, delete its data
// dir, start it again: the table is rebuilt from the changelog, exactly,
// before any new input is processed, and /metrics shows the recovery.
func TestWipedDataDirIsRebuiltFromChangelog(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	recs, truth := corpus(300)

	first := wordCountApp(t, b.Addr(), dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	waitFor(t, 30*time.Second, "first worker ready", func() (bool, string) { return first.Ready() })
	produce(t, b.Addr(), "lines", recs)
	waitFor(t, 60*time.Second, "first worker's counts", func() (bool, string) {
		return tableEquals(first.WebAddr(), "word_counts", truth)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	second := wordCountApp(t, b.Addr(), dir)
	runApp(t, second)
	if ok, why := tableEquals(second.WebAddr(), "word_counts", truth); !ok {
		t.Fatalf("table not rebuilt when ready: %s", why)
	}
	if m := metric(t, second.WebAddr(), "mephisto_recovery_records_total"); !strings.Contains(m, `table="word_counts"`) || strings.HasSuffix(m, " 0") {
		t.Errorf("recovery not visible in metrics: %q", m)
	}
	// New input continues from the committed offsets: counts stay exact.
	produce(t, b.Addr(), "lines", [][2]string{{"", "Fox fox"}})
	truth["fox"] += 2
	waitFor(t, 30*time.Second, "counts after more input", func() (bool, string) {
		return tableEquals(second.WebAddr(), "word_counts", truth)
	})
}

// TestCopartitioningIsChecked: an existing topic whose partition count
// differs from the tables' stops the worker with an error naming the
// topics and their counts.
func TestCopartitioningIsChecked(t *testing.T) {
	b := startBroker(t)
	client, err := sarama.NewClient([]string{b.Addr()}, kafka.ClientConfig("test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic("words", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	app := wordCountApp(t, b.Addr(), t.TempDir()) // 4 partitions
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = app.Run(ctx)
	if err == nil {
		t.Fatal("worker started with topics that are not co-partitioned")
	}
	for _, want := range []string{"not co-partitioned", "words=3", "lines=4", "wc-word_counts-changelog=4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestDeclarationErrors: mistakes in the declarations are reported together
// before anything connects.
func TestDeclarationErrors(t *testing.T) {
	app := mephisto.New("bad name!")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	mephisto.NewTopic(app, "in", codec.String(), codec.Int64())
	mephisto.NewTable(app, "t", codec.String(), codec.Int64())
	mephisto.NewTable(app, "t", codec.String(), codec.Int64())
	h := func(mephisto.Context, string, string) error { return nil }
	mephisto.NewAgent(app, "a", in, h)
	mephisto.NewAgent(app, "a", in, h)
	err := app.Run(context.Background())
	if err == nil {
		t.Fatal("bad declarations accepted")
	}
	for _, want := range []string{"app name", "topic in declared twice", "table t declared twice", "agent a declared twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestLargeShardsRestoredAsTableFiles: shards of thousands of keys are
// restored by ingesting sorted table files (state.Ingest) rather than
// through batches; after a wiped data dir the table is exact: values set,
// overwritten and deleted come back as the changelog's last record says.
func TestLargeShardsRestoredAsTableFiles(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	newApp := func() *mephisto.App {
		app := mephisto.New("bulk", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(dir),
			mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)),
			mephisto.WithCommitInterval(50*time.Millisecond))
		cmds := mephisto.NewTopic(app, "cmds", codec.String(), codec.String())
		vals := mephisto.NewTable(app, "vals", codec.String(), codec.Int64())
		mephisto.NewAgent(app, "apply", cmds, func(ctx mephisto.Context, key, cmd string) error {
			if cmd == "del" {
				return vals.Delete(ctx, key)
			}
			n, err := strconv.ParseInt(cmd, 10, 64)
			if err != nil {
				return err
			}
			return vals.Set(ctx, key, n)
		})
		return app
	}
	const keys = 12_000 // about 6,000 per shard: more than a batch window takes
	truth := map[string]int64{}
	var recs [][2]string
	for i := range keys {
		k := fmt.Sprintf("k%05d", i)
		recs = append(recs, [2]string{k, strconv.Itoa(i)})
		truth[k] = int64(i)
	}
	for i := 0; i < keys; i += 5 {
		k := fmt.Sprintf("k%05d", i)
		recs = append(recs, [2]string{k, strconv.Itoa(-i)})
		truth[k] = int64(-i)
	}
	deleted := map[string]bool{}
	for i := 3; i < keys; i += 7 {
		k := fmt.Sprintf("k%05d", i)
		recs = append(recs, [2]string{k, "del"})
		delete(truth, k)
		deleted[k] = true
	}

	first := newApp()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	waitFor(t, 30*time.Second, "first worker ready", func() (bool, string) { return first.Ready() })
	produce(t, b.Addr(), "cmds", recs)
	last := fmt.Sprintf("k%05d", keys-1)
	waitFor(t, 60*time.Second, "first worker applied every command", func() (bool, string) {
		return tableEquals(first.WebAddr(), "vals", map[string]int64{last: truth[last], "k00000": 0, "k00005": -5})
	})
	checkTableSample(t, first.WebAddr(), "vals", truth, deleted)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	second := newApp()
	runApp(t, second)
	checkTableSample(t, second.WebAddr(), "vals", truth, deleted)
	// Writes coalesce per key and commit, so the changelog holds at least
	// one record per key, not one per command.
	if m := metricSum(t, second.WebAddr(), "mephisto_recovery_records_total"); m < keys {
		t.Errorf("restored %v changelog records, want at least %d (one per key)", m, keys)
	}
}

// checkTableSample waits until a sample of the keys in truth hold their
// values, then checks that a sample of the deleted keys are gone.
func checkTableSample(t *testing.T, web, table string, truth map[string]int64, deleted map[string]bool) {
	t.Helper()
	sample := map[string]int64{}
	var gone []string
	i := 0
	for k, v := range truth {
		if i++; i%40 == 0 {
			sample[k] = v
		}
	}
	i = 0
	for k := range deleted {
		if i++; i%20 == 0 {
			gone = append(gone, k)
		}
	}
	waitFor(t, 60*time.Second, "sampled values", func() (bool, string) { return tableEquals(web, table, sample) })
	for _, k := range gone {
		code, body, err := getJSON(fmt.Sprintf("http://%s/tables/%s/%s", web, table, k))
		if err != nil {
			t.Fatal(err)
		}
		if code != 404 {
			t.Errorf("deleted key %s: HTTP %d %v, want 404", k, code, body)
		}
	}
}
