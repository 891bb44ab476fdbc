package proctest

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts a shell script as a child process of the test.
func sh(t *testing.T, name, script string) *Proc {
	t.Helper()
	return StartT(t, Spec{Name: name, Path: "/bin/sh", Args: []string{"-c", script}})
}

func TestProcStopAndOutput(t *testing.T) {
	p := sh(t, "trapper", `trap 'echo bye >&2; exit 0' TERM; echo "listening on 127.0.0.1:1234"; while :; do sleep 0.05; done`)
	m, err := p.WaitStdout(regexp.MustCompile(`listening on (\S+)`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "127.0.0.1:1234" {
		t.Errorf("submatch %q", m[1])
	}
	if p.Exited() || p.DescribeExit() != "running" {
		t.Errorf("exited before it was stopped: %s", p.DescribeExit())
	}
	p.StopT(t, 10*time.Second)
	if !strings.Contains(p.Stderr(), "bye") {
		t.Errorf("stderr %q, want the trap's line", p.Stderr())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("Stop of a process that exited cleanly: %v", err)
	}
}

func TestProcKill(t *testing.T) {
	p := sh(t, "sleeper", `exec sleep 60`)
	p.KillT(t)
	code, sig := p.WaitT(t, time.Second)
	if code != -1 || sig != syscall.SIGKILL {
		t.Errorf("after KillT: code %d sig %v", code, sig)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill of a dead process: %v", err)
	}
}

func TestProcStopUnclean(t *testing.T) {
	p, err := Start(Spec{Name: "unclean", Path: "/bin/sh", Args: []string{"-c", "trap 'exit 3' TERM; echo trapped; while :; do sleep 0.05; done"}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if _, err := p.WaitStdout(regexp.MustCompile(`trapped`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Stop: %v, want an error naming exit status 3", err)
	}
}

func TestRun(t *testing.T) {
	r := RunT(t, Spec{Name: "exit3", Path: "/bin/sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}}, 10*time.Second)
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("got %+v", r)
	}
	if _, err := Run(Spec{Name: "killed", Path: "/bin/sh", Args: []string{"-c", "kill -9 $$"}, LogDir: t.TempDir()}, 10*time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("a process ended by a signal: %v, want an error", err)
	}
}

func TestWaitStdoutExited(t *testing.T) {
	p, err := Start(Spec{Name: "quiet", Path: "/bin/sh", Args: []string{"-c", "echo nothing; echo oops >&2; exit 1"}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.WaitStdout(regexp.MustCompile(`listening`), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "oops") {
		t.Errorf("WaitStdout on a process that exited: %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("WaitStdout waited %v for a process that had exited", time.Since(start))
	}
}

func TestPoll(t *testing.T) {
	n := 0
	d, err := Poll(context.Background(), time.Millisecond, time.Minute, "three calls", func() (bool, string, error) {
		n++
		return n == 3, "", nil
	})
	if err != nil || n != 3 || d <= 0 {
		t.Errorf("Poll: %v after %d calls, %v", err, n, d)
	}
	_, err = Poll(context.Background(), time.Millisecond, time.Millisecond, "never", func() (bool, string, error) { return false, "the reason", nil })
	if err == nil || !strings.Contains(err.Error(), "never") || !strings.Contains(err.Error(), "the reason") {
		t.Errorf("timeout: %v", err)
	}
	stop := errors.New("gone")
	if _, err = Poll(context.Background(), time.Millisecond, time.Minute, "x", func() (bool, string, error) { return false, "", stop }); !errors.Is(err, stop) {
		t.Errorf("cond's error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = Poll(ctx, time.Millisecond, time.Minute, "x", func() (bool, string, error) { return false, "", nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ctx ended: %v", err)
	}
}

func TestFreeAddrNeverTwice(t *testing.T) {
	seen := map[string]bool{}
	for i := range 50 {
		a := FreeAddrT(t, i%2 == 0)
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("MEPHISTO_PROCTEST_X", "1")
	t.Setenv("PROCTEST_KEEP", "2")
	env := strings.Join(Environ([]string{"A=b"}, "MEPHISTO_"), "\n")
	if strings.Contains(env, "MEPHISTO_PROCTEST_X") || !strings.Contains(env, "PROCTEST_KEEP=2") || !strings.HasSuffix(env, "\nA=b") {
		t.Errorf("Environ:\n%s", env)
	}
}

func TestSumMetric(t *testing.T) {
	body := []byte(`# HELP mephisto_events_in_total Records received from Kafka.
# TYPE mephisto_events_in_total counter
mephisto_events_in_total{app="a",node="n",topic="in"} 1500
mephisto_events_in_total{app="a",node="n",topic="other"} 7
mephisto_events_in_total_extra 99
mephisto_recovery_last_records{app="a",node="n",partition="3",table="counts"} 1.2e+06
mephisto_label_with_comma{k="x,y"} 5
`)
	for _, tc := range []struct {
		name  string
		match map[string]string
		sum   float64
		n     int
	}{
		{"mephisto_events_in_total", nil, 1507, 2},
		{"mephisto_events_in_total", map[string]string{"topic": "in"}, 1500, 1},
		{"mephisto_recovery_last_records", map[string]string{"partition": "3"}, 1.2e6, 1},
		{"mephisto_label_with_comma", map[string]string{"k": "x,y"}, 5, 1},
		{"mephisto_events_in_total", map[string]string{"topic": "none"}, 0, 0},
	} {
		if sum, n := sumMetric(body, tc.name, tc.match); sum != tc.sum || n != tc.n {
			t.Errorf("%s %v: sum %v of %d samples, want %v of %d", tc.name, tc.match, sum, n, tc.sum, tc.n)
		}
	}
}

func TestSameNameKeepsBothOutputs(t *testing.T) {
	dir := t.TempDir()
	var ps []*Proc
	for _, word := range []string{"first", "second"} {
		ps = append(ps, echoIn(t, dir, word))
	}
	if ps[0].Stdout() != "first\n" || ps[1].Stdout() != "second\n" || ps[0].StderrFile() == ps[1].StderrFile() {
		t.Errorf("two processes named alike: %q (%s), %q (%s)", ps[0].Stdout(), ps[0].StderrFile(), ps[1].Stdout(), ps[1].StderrFile())
	}
}

// echoIn runs `echo word` named "echo" with its output in dir.
func echoIn(t *testing.T, dir, word string) *Proc {
	p := StartT(t, Spec{Name: "echo", Path: "/bin/sh", Args: []string{"-c", "echo " + word}, LogDir: dir})
	p.WaitT(t, 10*time.Second)
	return p
}

func TestLogDir(t *testing.T) {
	var dir string
	t.Run("passes", func(t *testing.T) {
		dir = LogDir(t, "proctest")
		if again := LogDir(t, "proctest"); again != dir {
			t.Errorf("second call: %s, first %s", again, dir)
		}
		if !strings.Contains(dir, "mephisto-proctest-logs") || !strings.Contains(dir, "TestLogDir_passes-") {
			t.Errorf("dir %s", dir)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the log dir of a test that passed is still there: %v", err)
	}
}

func TestRunning(t *testing.T) {
	long := sh(t, "long", "exec sleep 60")
	short := sh(t, "short", "exit 0")
	short.WaitT(t, 10*time.Second)
	if err := Running(long); err != nil {
		t.Errorf("a running process: %v", err)
	}
	if err := Running(long, short); err == nil || !strings.Contains(err.Error(), "short exited") {
		t.Errorf("one exited: %v", err)
	}
}

// TestNewClusterID: a KRaft cluster id is 22 URL-safe base64 characters
// and never starts with '-' (kafka-storage would read it as an option).
func TestNewClusterID(t *testing.T) {
	for range 2000 {
		id := newClusterID()
		if len(id) != 22 || id[0] == '-' {
			t.Fatalf("cluster id %q", id)
		}
	}
}
