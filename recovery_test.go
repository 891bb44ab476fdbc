package mephisto_test

import (
	"context"
	"os"
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
