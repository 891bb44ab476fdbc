package mephisto_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

func cliApp(opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New("cli", opts...)
	in := mephisto.NewTopic(app, "in", codec.String(), codec.Int64())
	tb := mephisto.NewTable(app, "totals", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "sum", in, func(ctx mephisto.Context, k string, v int64) error {
		return tb.Update(ctx, k, func(s int64) int64 { return s + v })
	}, mephisto.OnError(mephisto.Skip))
	return app
}

func run(app *mephisto.App, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := app.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLIUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"worker", "--bogus"},
		{"worker", "--partitions", "zero"},
		{"worker", "--partitions", "0"},
		{"worker", "--log-level", "loud"},
		{"worker", "extra-arg"},
		{"send", "only-topic"},
		{"nosuchcommand"},
	} {
		code, _, stderr := run(cliApp(), args...)
		if code != mephisto.ExitUsage || !strings.Contains(stderr, "Usage:") {
			t.Errorf("%v: exit %d, stderr %q; want %d with usage", args, code, stderr, mephisto.ExitUsage)
		}
	}
}

func TestCLIAgentsAndTables(t *testing.T) {
	code, out, _ := run(cliApp(), "agents")
	if code != 0 || !strings.Contains(out, "sum") || !strings.Contains(out, "in") || !strings.Contains(out, "skip") {
		t.Errorf("agents: %d %q", code, out)
	}
	code, out, _ = run(cliApp(), "tables", "--json")
	if code != 0 || !strings.Contains(out, `"changelog":"cli-totals-changelog"`) {
		t.Errorf("tables --json: %d %q", code, out)
	}
}

// TestCLISendDefaultsToEmbeddedBroker: without --brokers, send talks to the
// address a local worker's embedded broker listens on.
func TestCLISendDefaultsToEmbeddedBroker(t *testing.T) {
	b := startBroker(t)
	app := cliApp(mephisto.WithEmbeddedBroker(b.Addr()))
	// The topic must exist: a worker creates it.
	worker := cliApp(mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(2), mephisto.WithLogger(testLogger(t)))
	runApp(t, worker)
	code, out, stderr := run(app, "send", "in", "40", "--key", "k")
	if code != 0 || !strings.Contains(out, "sent to in partition") {
		t.Fatalf("send: exit %d, %q %q", code, out, stderr)
	}
	if code, _, _ := run(app, "send", "in", "2", "--key", "k", "--brokers", b.Addr()); code != 0 {
		t.Fatalf("send --brokers: exit %d", code)
	}
	waitFor(t, 30*time.Second, "sum of sent values", func() (bool, string) {
		return tableEquals(worker.WebAddr(), "totals", map[string]int64{"k": 42})
	})
	// A value the topic's codec cannot parse is a usage error.
	if code, _, stderr := run(app, "send", "in", "forty"); code != mephisto.ExitUsage || !strings.Contains(stderr, "int64") {
		t.Errorf("unparsable value: exit %d %q", code, stderr)
	}
}

// TestCLIReset wipes a data dir's state and refuses while a worker runs.
func TestCLIReset(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	worker := cliApp(mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(dir),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithLogger(testLogger(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx) }()
	waitFor(t, 30*time.Second, "worker ready", func() (bool, string) { return worker.Ready() })
	if code, _, stderr := run(cliApp(), "reset", "--data-dir", dir); code != mephisto.ExitError || !strings.Contains(stderr, "worker") {
		t.Errorf("reset under a running worker: exit %d %q", code, stderr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(cliApp(), "reset", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "wiped") {
		t.Fatalf("reset: exit %d %q %q", code, out, stderr)
	}
}
