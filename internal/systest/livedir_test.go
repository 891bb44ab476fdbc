package systest

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/state"
)

// TestLiveDataDir: while a worker runs, a second worker on its data dir
// refuses to start with exit status 1, saying another worker (that
// process) is running on it — not that the dir is corrupt, nor to run
// `reset`; and `reset` on the data dir refuses with exit status 1, naming
// the worker's process, and wipes nothing. The first worker goes on, its
// state intact.
func TestLiveDataDir(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	dataDir := t.TempDir()
	events := makeEvents(1000, 34)
	w := startWorker(t, "worker-1", b.addr, dataDir, nil)
	w.waitReady(60 * time.Second)
	p := newProducer(t, b.addr)
	p.mustSend("events", events)
	w.waitTable(60*time.Second, "counts", countKeys(events))
	pid := strconv.Itoa(w.Pid())
	const live = "another worker is running on this data dir"

	w2 := startWorker(t, "worker-2", b.addr, dataDir, nil)
	code, sig := w2.WaitT(t, 60*time.Second)
	if sig != 0 || code != 1 {
		t.Errorf("worker-2 on worker-1's data dir: %s, want exit status 1", w2.DescribeExit())
	}
	log := w2.Stderr()
	if !strings.Contains(log, live) || !strings.Contains(log, pid) {
		t.Errorf("worker-2 does not say that worker-1 (pid %s) is running on the dir:\n%s", pid, lastLines(log, 5))
	}
	if strings.Contains(log, "corrupt") || strings.Contains(log, "`reset`") {
		t.Errorf("worker-2 calls a live data dir corrupt, or points at reset:\n%s", lastLines(log, 5))
	}
	t.Logf("worker-2 refused to start (%s):\n%s", w2.DescribeExit(), lastLines(log, 1))

	r := runCmd(t, "reset", nil, testappBin, "reset", "--data-dir", dataDir)
	if r.Code != 1 {
		t.Errorf("reset of a live worker's data dir: exit status %d, want 1\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, live) || !strings.Contains(r.Stderr, pid) {
		t.Errorf("reset does not say that worker-1 (pid %s) is running on the dir:\n%s", pid, r.Stderr)
	}
	if !state.Exists(filepath.Join(dataDir, "state")) {
		t.Errorf("reset wiped the table state of a running worker")
	}
	t.Logf("reset refused: %s", strings.TrimSpace(r.Stderr))

	more := makeEvents(500, 35)
	p.mustSend("events", more)
	w.waitTable(60*time.Second, "counts", countKeys(events, more))
	w.StopT(t, stopTimeout)
}
