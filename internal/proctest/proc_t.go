package proctest

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The test layer over Proc: each function fails its test where its
// counterpart returns an error.

// StartT starts the process s describes for the test t (s.LogDir
// defaults to a directory of t's). When the test ends the process is
// killed if still running, and if the test failed the tails of its output
// are logged.
func StartT(t TB, s Spec) *Proc {
	t.Helper()
	if s.LogDir == "" {
		s.LogDir = t.TempDir()
	}
	p, err := Start(s)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("started %s (pid %d): %s", p.Name(), p.Pid(), p.describe())
	// Cleanups run last-registered first: kill, then dump.
	t.Cleanup(func() {
		if t.Failed() {
			p.dump(t)
		}
	})
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return p
}

// dump logs the tails of the process's stdout and stderr (all of them
// stay in their files).
func (p *Proc) dump(t TB) {
	const n = 8 << 10
	for _, f := range []struct{ what, file string }{{"stdout", p.stdoutF}, {"stderr", p.stderrF}} {
		if out := tail(f.file, n); out != "" {
			t.Logf("---- tail of %s's %s (%s; all of it in %s) ----\n%s", p.Name(), f.what, p.DescribeExit(), f.file, out)
		}
	}
}

// SignalT sends sig to the process.
func (p *Proc) SignalT(t TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Signal(sig); err != nil {
		t.Fatalf("%v", err)
	}
}

// WaitT waits for the process to exit and returns its exit code, or -1
// and the signal if a signal ended it.
func (p *Proc) WaitT(t TB, timeout time.Duration) (code int, sig syscall.Signal) {
	t.Helper()
	code, sig, err := p.Wait(timeout)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return code, sig
}

// StopT sends SIGTERM and requires a clean exit (status 0) within
// timeout.
func (p *Proc) StopT(t TB, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.Stop(timeout); err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s stopped cleanly in %v", p.Name(), time.Since(start).Round(time.Millisecond))
}

// KillT kills the process with SIGKILL, waits until it is gone and
// requires that SIGKILL is what ended it.
func (p *Proc) KillT(t TB) {
	t.Helper()
	p.SignalT(t, syscall.SIGKILL)
	if _, sig := p.WaitT(t, killWait); sig != syscall.SIGKILL {
		t.Fatalf("%s: %s, want killed by SIGKILL", p.Name(), p.DescribeExit())
	}
}

// RunT runs the process s describes to completion, within timeout, for
// the test t. A process ended by a signal fails the test; so does one
// still running after timeout.
func RunT(t TB, s Spec, timeout time.Duration) Result {
	t.Helper()
	if s.LogDir == "" {
		s.LogDir = t.TempDir()
	}
	r, err := Run(s, timeout)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return r
}

// logDirs holds each running test's LogDir.
var logDirs sync.Map // TB → string

// LogDir returns a directory for the output of the processes of test t:
// a fresh one (concurrent runs of a suite do not share it) under the
// system's temporary directory, in mephisto-<suite>-logs; calls for one
// test return the same directory. It is removed when the test passes,
// unless the environment variable <SUITE>_KEEP_LOGS is set; otherwise the
// test logs where it is.
func LogDir(t TB, suite string) string {
	t.Helper()
	if dir, ok := logDirs.Load(t); ok {
		return dir.(string)
	}
	parent := filepath.Join(os.TempDir(), "mephisto-"+suite+"-logs")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	dir, err := os.MkdirTemp(parent, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	logDirs.Store(t, dir)
	keep := strings.ToUpper(suite) + "_KEEP_LOGS"
	t.Cleanup(func() {
		logDirs.Delete(t)
		if !t.Failed() && os.Getenv(keep) == "" {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("logs of every process are in %s", dir)
		}
	})
	return dir
}
