package systest

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// The exactly-once suite: the worker runs with
// MEPHISTO_PROCESSING_GUARANTEE=exactly_once, so each partition commits its
// outputs, changelog records and input offsets in one Kafka transaction,
// writes Pebble after the transaction committed, and reads every topic
// read_committed. What at-least-once allows (counts above the truth after
// a crash, words sent twice) must not happen: everything ends exact.

// TestExactlyOnceCrashPoints crashes an exactly-once worker (a real
// SIGKILL, through MEPHISTO_FAULTPOINT) at each step of a transactional
// commit:
//
//	txn:produced   every record of the transaction acknowledged, not committed
//	commit:acked   transaction committed, Pebble batch not written
//	commit:stored  Pebble batch written
//	commit:marked  after the (no-op under exactly-once) group mark
//
// On the dead worker's disk and in Kafka (read committed) it checks that
// Pebble holds only what committed transactions wrote (its rows are the
// committed changelog up to its stored changelog offsets, and its source
// offsets match its rows), that the group's committed offsets are never
// behind Pebble's (the opposite of at-least-once), that the committed
// changelog agrees exactly with the committed offsets, and what the point
// implies: at txn:produced the open transaction's records are in the log
// but invisible read committed, at commit:acked the committed changelog
// holds the transaction's records beyond Pebble. A restarted worker then
// replays exactly the committed changelog tail (never a wipe) and ends
// with counts exactly equal to the truth.
func TestExactlyOnceCrashPoints(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"txn:produced", "commit:acked", "commit:stored", "commit:marked"} {
		t.Run(strings.ReplaceAll(point, ":", "-"), func(t *testing.T) {
			t.Parallel()
			eachBroker(t, false, func(t *testing.T, e *env) { testEOSCrashPoint(t, e, point) })
		})
	}
}

func testEOSCrashPoint(t *testing.T, e *env, point string) {
	dataDir := t.TempDir()
	p := e.newProducer()
	events, changelog := e.topic("events"), e.changelog("counts")

	// A first run commits some history, cleanly stopped: Pebble and Kafka
	// then agree exactly.
	w1 := e.eosWorker("worker-1", dataDir, nil)
	w1.waitReady(60 * time.Second)
	first := makeEvents(2000, 30)
	p.mustSend(events, first)
	w1.waitTable(60*time.Second, "counts", countKeys(first))
	w1.StopT(t, stopTimeout)
	before := readDisk(t, dataDir, "counts", events)
	checkDataMatchesOffsets(t, before, first)
	if c := committedOffsets(t, e.addr, e.app, events); c != srcNext(before) {
		t.Errorf("after a clean stop the group's committed offsets are %v, want Pebble's source offsets + 1 %v", c, srcNext(before))
	}

	// A backlog waits in Kafka; the faulty worker dies at its first commit
	// that reaches the point.
	second := makeEvents(6000, 31)
	p.mustSend(events, second)
	all := append(append([]*record(nil), first...), second...)
	truth := countKeys(all)
	w2 := e.eosWorker("worker-2", dataDir, []string{"MEPHISTO_FAULTPOINT=" + point}, "--commit-interval", "1s")
	code, sig := w2.WaitT(t, 60*time.Second)
	if sig != syscall.SIGKILL {
		t.Fatalf("worker-2 with MEPHISTO_FAULTPOINT=%s: exit code %d, signal %v; want killed by SIGKILL at the fault point", point, code, sig)
	}
	if log := w2.Stderr(); !strings.Contains(log, "MEPHISTO_FAULTPOINT reached") || !strings.Contains(log, "point="+point) {
		t.Fatalf("worker-2 was killed, but its log does not say it reached fault point %s", point)
	}

	crashed := readDisk(t, dataDir, "counts", events)
	checkDataMatchesOffsets(t, crashed, all)
	committedCL := readChangelog(t, e.addr, changelog, sarama.ReadCommitted)
	checkPebbleIsCommitted(t, crashed, committedCL)
	group := checkCommittedNotBehind(t, e.addr, e.app, events, crashed)
	checkKafkaConsistent(t, committedCL, group, all)

	var advanced, groupAhead, committedTail int
	for p := range partitions {
		if crashed.parts[p].src < before.parts[p].src {
			t.Errorf("partition %d: stored source offset went back from %d to %d", p, before.parts[p].src, crashed.parts[p].src)
		}
		if crashed.parts[p].src > before.parts[p].src {
			advanced++
		}
		if group[p] > crashed.parts[p].src+1 {
			groupAhead++
		}
		committedTail += len(after(committedCL[p], crashed.parts[p].chg))
	}
	uncommittedCL := readChangelog(t, e.addr, changelog, sarama.ReadUncommitted)
	var uncommittedTail int
	for p := range partitions {
		uncommittedTail += len(after(uncommittedCL[p], crashed.parts[p].chg))
	}
	t.Logf("%s: %d partitions advanced in Pebble, %d with the group ahead of Pebble; changelog records beyond Pebble: %d committed, %d in the log",
		point, advanced, groupAhead, committedTail, uncommittedTail)
	switch point {
	case "txn:produced":
		// Every transaction passes this point before it commits: the
		// first one to reach it kills the process, so no transaction of
		// worker-2 committed — but its records are in the log.
		if advanced != 0 || groupAhead != 0 || committedTail != 0 {
			t.Errorf("something committed although the process died before its first transaction commit")
		}
		if committedOffsets(t, e.addr, e.app, events) != srcNext(before) {
			t.Errorf("the group's committed offsets moved although no transaction committed")
		}
		if uncommittedTail == 0 {
			t.Errorf("no changelog record beyond Pebble's offsets even read uncommitted: the crash at %s happened with no transaction open, so it proves nothing", point)
		}
	case "commit:acked":
		// Every commit passes this point before it writes Pebble: nothing
		// new is in Pebble, but at least one transaction committed.
		if advanced != 0 {
			t.Errorf("%d partitions stored new offsets although the process died before its first Pebble batch", advanced)
		}
		if groupAhead == 0 || committedTail == 0 {
			t.Errorf("no committed transaction beyond Pebble (group ahead in %d partitions, %d committed changelog records beyond Pebble): the crash at %s proves nothing",
				groupAhead, committedTail, point)
		}
	default:
		if advanced == 0 {
			t.Errorf("no partition stored new offsets although the process died after a Pebble batch (%s)", point)
		}
	}
	if t.Failed() {
		return
	}

	w3 := e.eosWorker("worker-3", dataDir, nil)
	w3.waitReady(60 * time.Second)
	w3.waitTable(60*time.Second, "counts", truth)
	e.waitCaughtUp("events")
	w3.waitTable(time.Second, "counts", truth)
	checkReplays(t, w3.Stderr(), "counts", crashed, committedCL)
	w3.StopT(t, stopTimeout)

	// After a clean stop Pebble agrees with Kafka again: its source
	// offsets are the ones the transactions committed, and its rows match
	// them — it must not depend on the group's offsets, which expire
	// (offsets.retention.minutes) or can be deleted.
	final := readDisk(t, dataDir, "counts", events)
	checkStoredIsGroup(t, e, final)
	checkPebbleIsCommitted(t, final, readChangelog(t, e.addr, changelog, sarama.ReadCommitted))
	if !t.Failed() {
		checkDataMatchesOffsets(t, final, all)
	}
}

// checkStoredIsGroup checks that Pebble's source offsets are exactly the
// group's committed offsets (after a clean stop, both are the last
// transaction's).
func checkStoredIsGroup(t testing.TB, e *env, d diskState) {
	t.Helper()
	c := committedOffsets(t, e.addr, e.app, e.topic("events"))
	for p := range partitions {
		if c[p] != d.parts[p].src+1 {
			t.Errorf("partition %d: after a clean stop Pebble's source offset is %d but the group's committed offset is %d: "+
				"Pebble's rows reflect the committed changelog, which counts the input up to %d, so the store's offset is stale "+
				"(a restart without the group's offsets would process input offsets %d..%d again on top of rows that count them)",
				p, d.parts[p].src, c[p], c[p]-1, d.parts[p].src+1, c[p]-1)
		}
	}
}

// warnings returns the lines of a worker's log at level WARN or ERROR.
func warnings(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// srcNext is the next input offset per partition that d's source offsets
// imply.
func srcNext(d diskState) [partitions]int64 {
	var out [partitions]int64
	for p := range out {
		out[p] = d.parts[p].src + 1
	}
	return out
}

// TestExactlyOnceKill9MidStream kills an exactly-once worker with SIGKILL
// while both pipelines stream in (events → counts; lines → words →
// word_counts, whose middle topic the worker produces in its
// transactions). What it left must be what committed transactions wrote,
// and Kafka must agree with itself: the committed changelog counts exactly
// the input below the group's offsets, and topic words holds, read
// committed, exactly the words of the lines below the group's offsets.
// After a restart both tables and topic words end exact: no record lost,
// none counted or sent twice.
func TestExactlyOnceKill9MidStream(t *testing.T) {
	t.Parallel()
	eachBroker(t, false, func(t *testing.T, e *env) {
		dataDir := t.TempDir()
		w1 := e.eosWorker("worker-1", dataDir, nil)
		w1.waitReady(60 * time.Second)

		p := e.newProducer()
		events := makeEvents(20000, 32)
		lines, wordTruth := makeLines(3000, 32)
		truth := countKeys(events)
		waitEvents := p.sendAsync(e.topic("events"), events, 100)
		waitLines := p.sendAsync(e.topic("lines"), lines, 20)
		waitPartway(t, w1, truth)
		w1.KillT(t)
		waitEvents()
		waitLines()

		d := readDisk(t, dataDir, "counts", e.topic("events"))
		checkDataMatchesOffsets(t, d, events)
		if n := sum(d.rows); n == 0 || n >= int64(len(events)) {
			t.Errorf("the killed worker had processed %d of %d events: not mid-stream", n, len(events))
		}
		committedCL := readChangelog(t, e.addr, e.changelog("counts"), sarama.ReadCommitted)
		checkPebbleIsCommitted(t, d, committedCL)
		group := checkCommittedNotBehind(t, e.addr, e.app, e.topic("events"), d)
		checkKafkaConsistent(t, committedCL, group, events)
		// Topic words is written by every partition's transactions: the
		// ones the kill left open hide the records committed after them
		// until the broker aborts them.
		waitDecided(t, e.addr, e.topic("words"))
		checkWordsMatchLines(t, e, lines)
		if t.Failed() {
			return
		}

		w2 := e.eosWorker("worker-2", dataDir, nil)
		w2.waitReady(60 * time.Second)
		w2.waitTable(60*time.Second, "counts", truth)
		w2.waitTable(60*time.Second, "word_counts", wordTruth)
		waitCaughtUpEOS(t, e.addr, e.app, e.topic("events"), e.topic("lines"), e.topic("words"))
		w2.waitTable(time.Second, "counts", truth)
		w2.waitTable(time.Second, "word_counts", wordTruth)
		checkReplays(t, w2.Stderr(), "counts", d, committedCL)
		checkWordsExact(t, e, wordTruth)
	})
}

// checkWordsMatchLines checks topic words against topic lines in Kafka
// (read committed): it holds exactly the words of the lines below the
// group's committed offsets of lines, which the same transactions
// committed.
func checkWordsMatchLines(t testing.TB, e *env, lines []*record) {
	t.Helper()
	next := committedOffsets(t, e.addr, e.app, e.topic("lines"))
	want := map[string]int64{}
	for _, r := range lines {
		if r.offset < 0 {
			t.Fatalf("line %q was not acknowledged", r.key)
		}
		if r.offset < next[r.partition] {
			for _, w := range strings.Fields(r.value) {
				want[w]++
			}
		}
	}
	got := countCommitted(t, e.addr, e.topic("words"))
	if d := diffRows(got, want); d != "" {
		t.Errorf("topic words (read committed) does not hold exactly the words of the lines below the group's offsets %v: %s", next, d)
	}
	t.Logf("topic words: %d committed records, %d in the log (aborted included), for lines below %v", sum(got), sum(countUncommitted(t, e.addr, e.topic("words"))), next)
}

// checkWordsExact checks that topic words holds, read committed, each word
// of the lines exactly once.
func checkWordsExact(t testing.TB, e *env, wordTruth map[string]int64) {
	t.Helper()
	want := map[string]int64{}
	for k, v := range wordTruth {
		if v > 0 {
			want[k] = v
		}
	}
	got := countCommitted(t, e.addr, e.topic("words"))
	if d := diffRows(got, want); d != "" {
		t.Errorf("topic words (read committed): %s", d)
	}
	t.Logf("topic words: %d records read committed (%d words in the lines), %d in the log (aborted included)",
		sum(got), sum(want), sum(countUncommitted(t, e.addr, e.topic("words"))))
}

// TestExactlyOnceBrokerLost stops the broker (SIGTERM) while an
// exactly-once worker works through a backlog on both pipelines, and
// restarts it on the same port and data. While the broker is away no
// partition can commit: /readyz must say not ready, and the log what is
// wrong. Once it is back the worker recovers on its own, and the counts,
// the word counts and topic words (read committed) end exact.
func TestExactlyOnceBrokerLost(t *testing.T) {
	t.Parallel()
	eachBroker(t, true, testEOSBrokerLost)
}

// readyLag is how long /readyz may lag behind the node's own log saying
// that it lost contact with Kafka (the test polls every 25ms).
const readyLag = 3 * time.Second

func testEOSBrokerLost(t *testing.T, e *env) {
	dataDir := t.TempDir()

	// The input is in Kafka before the broker goes away (a first run
	// creates the topics), so that the second run has a backlog to work
	// through when the broker stops.
	w0 := e.eosWorker("worker-0", dataDir, nil)
	w0.waitReady(60 * time.Second)
	w0.StopT(t, stopTimeout)
	p := e.newProducer()
	events := makeEvents(400000, 33) // a backlog the worker cannot finish before the test sees it partway
	lines, wordTruth := makeLines(3000, 33)
	if err := p.send(e.topic("events"), events, 2000); err != nil {
		t.Fatal(err)
	}
	p.mustSend(e.topic("lines"), lines)
	p.close()
	truth := countKeys(events)

	w := e.eosWorker("worker", dataDir, nil)
	waitPartway(t, w, truth)
	mark := len(w.Stderr())
	stopping := time.Now()
	e.stopBroker()
	stopped := time.Now()
	t.Logf("the broker took %v to stop", stopped.Sub(stopping).Round(time.Millisecond))
	// No partition can commit a transaction without the broker, so the
	// node must not say it is ready, and its log must say what is wrong.
	// The node cannot tell a blip from an outage at once; but once its
	// own log says it lost contact with Kafka, /readyz must agree within
	// a few polls.
	var warned, unready time.Duration
	var hasWarned bool
	var why string
	waitFor(t, 90*time.Second, "worker reports not ready while the broker is away", func() (bool, string) {
		if w.Exited() {
			t.Fatalf("worker exited while the broker was away: %s", w.DescribeExit())
		}
		if !hasWarned {
			if log := w.Stderr()[mark:]; strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
				warned, hasWarned = time.Since(stopped), true
			}
		}
		var ok bool
		ok, why = w.ready()
		return !ok, why
	})
	unready = time.Since(stopped)
	if !hasWarned {
		// The warning may be written as /readyz turns: wait for it.
		warned = unready
		waitFor(t, 30*time.Second, "worker logs a warning about the broker", func() (bool, string) {
			log := w.Stderr()[mark:]
			return strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR"), "no warning logged since the broker stopped"
		})
	}
	log := w.Stderr()[mark:]
	t.Logf("broker stopped; the worker logged a warning after %v, /readyz said not ready after %v: %s",
		warned.Round(time.Millisecond), unready.Round(time.Millisecond), why)
	t.Logf("the worker's warnings and errors since:\n%s", warnings(log))
	if late := unready - warned; hasWarned && late > readyLag {
		t.Errorf("/readyz kept answering 200 for %v after the worker logged that it lost contact with Kafka (%v after the broker stopped): "+
			"no partition can commit meanwhile, so the node must report not ready (allowed: %v)",
			late.Round(time.Millisecond), warned.Round(time.Millisecond), readyLag)
	}
	// /readyz names the broker or the partitions' failing commits; the
	// log must say which broker it cannot reach.
	if ws := warnings(log); !strings.Contains(ws, "Kafka") || !strings.Contains(ws, e.addr) {
		t.Errorf("the worker's warnings while the broker is away do not say it cannot reach Kafka at %s", e.addr)
	}

	e.restartBroker()
	p2 := e.newProducer()
	more := makeEvents(5000, 34)
	waitMore := p2.sendAsync(e.topic("events"), more, 100)
	w.waitReady(90 * time.Second)
	waitMore()
	all := append(append([]*record(nil), events...), more...)
	truth = countKeys(all)
	checkLogHolds(t, e.addr, e.topic("events"), all)

	w.waitTable(90*time.Second, "counts", truth)
	w.waitTable(60*time.Second, "word_counts", wordTruth)
	waitCaughtUpEOS(t, e.addr, e.app, e.topic("events"), e.topic("lines"), e.topic("words"))
	w.waitTable(time.Second, "counts", truth)
	w.waitTable(time.Second, "word_counts", wordTruth)
	checkWordsExact(t, e, wordTruth)
	if log := w.Stderr(); strings.Contains(log, "wiping the shard") {
		t.Errorf("the worker wiped a shard: %s", grepLines(log, "wiping the shard"))
	}
	w.StopT(t, stopTimeout)
	d := readDisk(t, dataDir, "counts", e.topic("events"))
	checkDataMatchesOffsets(t, d, all)
	checkPebbleIsCommitted(t, d, readChangelog(t, e.addr, e.changelog("counts"), sarama.ReadCommitted))
}
