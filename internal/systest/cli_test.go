package systest

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFlags: bad flags, arguments, subcommands or flag values from the
// environment print an error and usage and exit with status 2, before
// anything starts (the worker is given an unused data dir and no broker: if
// it started, it would run an embedded broker instead of exiting).
func TestBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	safe := []string{"--data-dir", filepath.Join(dir, "data"), "--embedded-broker", "127.0.0.1:0", "--web", ""}
	worker := func(args ...string) []string { return append(append([]string{"worker"}, safe...), args...) }
	cases := []struct {
		name    string
		bin     string
		env     []string
		args    []string
		wantErr string // in stderr
	}{
		{"worker unknown flag", testappBin, nil, worker("--no-such-flag"), "unknown flag: --no-such-flag"},
		{"worker bad int", testappBin, nil, worker("--partitions", "many"), "--partitions"},
		{"worker zero partitions", testappBin, nil, worker("--partitions", "0"), "--partitions must be at least 1"},
		{"worker bad duration", testappBin, nil, worker("--commit-interval", "soon"), "--commit-interval"},
		// Out of range (Config.Validate): each names the flag, the allowed
		// range and the value given.
		{"worker zero commit interval", testappBin, nil, worker("--commit-interval", "0"), "--commit-interval must be positive, got 0s"},
		{"worker negative commit interval", testappBin, nil, worker("--commit-interval", "-1s"), "--commit-interval must be positive, got -1s"},
		{"worker zero max attempts", testappBin, nil, worker("--max-attempts", "0"), "--max-attempts must be at least 1, got 0"},
		{"worker negative max attempts", testappBin, nil, worker("--max-attempts", "-5"), "--max-attempts must be at least 1, got -5"},
		{"worker zero session timeout", testappBin, nil, worker("--session-timeout", "0"), "--session-timeout must be positive, got 0s"},
		{"worker zero replication factor", testappBin, nil, worker("--replication-factor", "0"), "--replication-factor must be -1 (the brokers' default) or at least 1, got 0"},
		{"worker negative table cache", testappBin, nil, worker("--table-cache", "-1"), "--table-cache must be 0 or more keys, got -1"},
		{"worker out of range from env", testappBin, []string{"MEPHISTO_COMMIT_INTERVAL=0s"}, worker(), "--commit-interval must be positive, got 0s"},
		{"worker unknown guarantee", testappBin, nil, worker("--processing-guarantee", "exactly_twice"), `--processing-guarantee must be at_least_once or exactly_once, got "exactly_twice"`},
		{"worker unknown guarantee from env", testappBin, []string{"MEPHISTO_PROCESSING_GUARANTEE=exactlyonce"}, worker(), `--processing-guarantee must be at_least_once or exactly_once, got "exactlyonce"`},
		{"worker bad log level", testappBin, nil, worker("--log-level", "loud"), "--log-level"},
		{"worker stray argument", testappBin, nil, worker("stray"), "stray"},
		{"worker bad env", testappBin, []string{"MEPHISTO_PARTITIONS=many"}, worker(), "MEPHISTO_PARTITIONS"},
		{"unknown command", testappBin, nil, []string{"frobnicate"}, "frobnicate"},
		{"send missing argument", testappBin, nil, []string{"send", "events"}, "accepts 2 arg(s)"},
		{"reset unknown flag", testappBin, nil, []string{"reset", "--data-dir", dir, "--force"}, "unknown flag: --force"},
		{"broker unknown flag", mephistoBin, nil, []string{"broker", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"broker bad listen", mephistoBin, nil, []string{"broker", "--listen", "nowhere"}, "--listen"},
		{"broker stray argument", mephistoBin, nil, []string{"broker", "stray"}, "stray"},
		{"mephisto unknown command", mephistoBin, nil, []string{"frobnicate"}, "frobnicate"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, filepath.Base(tc.bin), tc.env, tc.bin, tc.args...)
			code, stdout, stderr := r.Code, r.Stdout, r.Stderr
			if code != 2 {
				t.Errorf("%s %s: exit status %d, want 2\nstdout: %s\nstderr: %s", filepath.Base(tc.bin), strings.Join(tc.args, " "), code, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.wantErr, stderr)
			}
			if !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr shows no usage:\n%s", stderr)
			}
		})
	}
}
