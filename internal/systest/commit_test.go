package systest

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCommitProtocolCrashPoints crashes a worker (a real SIGKILL, sent by
// the worker itself through MEPHISTO_FAULTPOINT) between the steps of the
// commit protocol (DESIGN §2.5):
//
//	commit:acked   changelog and outputs acknowledged, Pebble batch not written
//	commit:stored  synced Pebble batch written, consumer offsets not marked
//	commit:marked  consumer offsets marked
//
// For each point it checks, on the dead worker's disk, that Pebble's data
// and offsets agree exactly and that Kafka's committed offsets are not
// ahead of them; then that a restarted worker (without the fault point)
// loses nothing and ends exactly where the protocol says.
func TestCommitProtocolCrashPoints(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"commit:acked", "commit:stored", "commit:marked"} {
		t.Run(strings.TrimPrefix(point, "commit:"), func(t *testing.T) {
			t.Parallel()
			eachBroker(t, false, func(t *testing.T, e *env) { testCrashPoint(t, e, point) })
		})
	}
}

func testCrashPoint(t *testing.T, e *env, point string) {
	dataDir := t.TempDir()
	p := e.newProducer() // before any worker: the topics do not exist yet, the producer does not need them

	// A first run commits some history, so the crash happens on a data dir
	// with non-trivial rows and offsets.
	w1 := e.startWorker("worker-1", dataDir, nil)
	w1.waitReady(60 * time.Second)
	first := makeEvents(2000, 10)
	p.mustSend(e.topic("events"), first)
	w1.waitTable(60*time.Second, "counts", countKeys(first))
	w1.StopT(t, stopTimeout)
	before := readDisk(t, dataDir, "counts", e.topic("events"))

	// Input waits in Kafka; the faulty worker commits (and dies) only after
	// its first commit interval, by which time it has processed much of it.
	second := makeEvents(6000, 11)
	p.mustSend(e.topic("events"), second)
	all := append(append([]*record(nil), first...), second...)
	truth := countKeys(all)
	w2 := e.startWorker("worker-2", dataDir, []string{"MEPHISTO_FAULTPOINT=" + point}, "--commit-interval", "1s")
	code, sig := w2.WaitT(t, 60*time.Second)
	if sig != syscall.SIGKILL {
		t.Fatalf("worker-2 with MEPHISTO_FAULTPOINT=%s: exit code %d, signal %v; want killed by SIGKILL at the fault point", point, code, sig)
	}
	if log := w2.Stderr(); !strings.Contains(log, "MEPHISTO_FAULTPOINT reached") || !strings.Contains(log, "point="+point) {
		t.Fatalf("worker-2 was killed, but its log does not say it reached fault point %s", point)
	}

	after := readDisk(t, dataDir, "counts", e.topic("events"))
	checkDataMatchesOffsets(t, after, all)
	checkCommittedNotAhead(t, e.addr, e.app, e.topic("events"), after)
	var advanced int
	for p := range partitions {
		if after.parts[p].src < before.parts[p].src {
			t.Errorf("partition %d: stored source offset went back from %d to %d", p, before.parts[p].src, after.parts[p].src)
		}
		if after.parts[p].src > before.parts[p].src {
			advanced++
		}
	}
	tail := changelogTails(t, e.addr, e.changelog("counts"), after)
	switch point {
	case "commit:acked":
		// Every commit passes this point before it writes Pebble: the
		// first one to reach it kills the process, so nothing new is in
		// Pebble — but its changelog records are in Kafka.
		if advanced != 0 {
			t.Errorf("%d partitions stored new offsets although the process died before its first Pebble batch", advanced)
		}
		if len(tail) == 0 {
			t.Errorf("no changelog records beyond Pebble's offsets: the crash at %s happened with no commit in flight, so it proves nothing", point)
		}
	default:
		if advanced == 0 {
			t.Errorf("no partition stored new offsets although the process died after a Pebble batch (%s)", point)
		}
	}
	want := expectAfterRestart(after, tail, all)
	requireAtLeast(t, "expected counts after restart", want, truth)
	t.Logf("truth total %d; expected after restart %d (%d records counted twice)", sum(truth), sum(want), sum(want)-sum(truth))
	if t.Failed() {
		return
	}

	w3 := e.startWorker("worker-3", dataDir, nil)
	w3.waitReady(60 * time.Second)
	w3.waitTable(60*time.Second, "counts", want)
	e.waitCaughtUp("events")
	w3.waitTable(time.Second, "counts", want)
}
