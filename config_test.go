package mephisto_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// TestRunRejectsOutOfRangeConfig: App.Run checks the configuration before
// it starts anything, and returns every out-of-range setting with its
// allowed range. The app is pointed at a broker that is not there: had it
// started, Run would retry the connection until the test's deadline, and
// it would have created its data dir and bound its web address first.
func TestRunRejectsOutOfRangeConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  mephisto.Option
		want string
	}{
		{"zero commit interval", mephisto.WithCommitInterval(0), "--commit-interval must be positive, got 0s"},
		{"negative commit interval", mephisto.WithCommitInterval(-time.Second), "--commit-interval must be positive, got -1s"},
		{"zero max attempts", mephisto.WithMaxAttempts(0), "--max-attempts must be at least 1, got 0"},
		{"negative max attempts", mephisto.WithMaxAttempts(-5), "--max-attempts must be at least 1, got -5"},
		{"zero session timeout", mephisto.WithSessionTimeout(0), "--session-timeout must be positive, got 0s"},
		{"zero replication factor", mephisto.WithReplicationFactor(0), "--replication-factor must be -1 (the brokers' default) or at least 1, got 0"},
		{"negative table cache", mephisto.WithTableCache(-1), "--table-cache must be 0 or more keys, got -1"},
		{"unknown guarantee", mephisto.ProcessingGuarantee("exactly_twice"), `--processing-guarantee must be at_least_once or exactly_once, got "exactly_twice"`},
		{"zero transaction timeout", mephisto.WithTransactionTimeout(0), "--transaction-timeout must be positive, got 0s"},
		{"commits slower than transactions time out", func(c *mephisto.Config) {
			mephisto.ProcessingGuarantee(mephisto.ExactlyOnce)(c)
			mephisto.WithCommitInterval(20 * time.Second)(c)
		}, "--commit-interval (20s) must be shorter than --transaction-timeout (10s) under exactly_once"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			web := proctest.FreeAddrT(t, false)
			app := cliApp(mephisto.WithBrokers("127.0.0.1:1"), mephisto.WithDataDir(dataDir),
				mephisto.WithWebAddr(web), mephisto.WithGossip(""), tc.opt)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := app.Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("Run started the app (it ran until the deadline): %v", err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v; want an error saying %q", err, tc.want)
			}
			if _, serr := os.Stat(dataDir); !os.IsNotExist(serr) {
				t.Errorf("Run created the data dir %s before refusing the configuration (stat: %v)", dataDir, serr)
			}
		})
	}
}
