package systest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestBrokerUnreachableAtStart starts a worker before its broker: it must
// stay up, answer 503 on /readyz, say in its log which address it cannot
// reach, and become ready on its own once a broker listens there.
func TestBrokerUnreachableAtStart(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	w := startWorker(t, "worker", addr, t.TempDir(), nil)
	waitFor(t, 30*time.Second, "worker reports the broker unreachable", func() (bool, string) {
		if w.Exited() {
			t.Fatalf("worker exited while the broker was unreachable: %s", w.DescribeExit())
		}
		code, body, err := w.get("/readyz")
		if err != nil {
			return false, err.Error()
		}
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with no broker: HTTP %d %s, want 503", code, body)
		}
		log := w.Stderr()
		if !strings.Contains(log, "cannot reach Kafka") || !strings.Contains(log, addr) {
			return false, "the log does not (yet) say it cannot reach Kafka at " + addr
		}
		return true, ""
	})
	if code, body, _ := w.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting for the broker: HTTP %d %s, want 200 (the process is alive)", code, body)
	}
	_, why := w.ready()
	t.Logf("while the broker is down: %s", why)
	if !strings.Contains(why, addr) {
		t.Errorf("/readyz does not name the broker address %s: %s", addr, why)
	}

	b := startBroker(t, "broker", addr, t.TempDir())
	w.waitReady(60 * time.Second)
	p := newProducer(t, b.addr)
	events := makeEvents(3000, 20)
	lines, wordTruth := makeLines(500, 20)
	p.mustSend("events", events)
	p.mustSend("lines", lines)
	w.waitTable(60*time.Second, "counts", countKeys(events))
	w.waitTable(60*time.Second, "word_counts", wordTruth)
	waitCaughtUp(t, b.addr, appName, "events", "lines", "words")
	w.StopT(t, stopTimeout)
	checkDataMatchesOffsets(t, readDisk(t, w.dataDir, "counts", "events"), events)
}

// TestBrokerLostMidStream stops the broker (SIGTERM) while the worker works
// through a backlog, restarts it on the same port and data dir, and keeps
// producing: the worker must recover on its own and lose nothing, on both
// hops. "short": the broker comes back as soon as the worker has noticed it
// is gone; "session-lost": it stays away until the worker has lost its
// consumer-group session (/readyz turns 503 as it starts releasing its
// partitions), so that the worker also goes through a rebalance.
func TestBrokerLostMidStream(t *testing.T) {
	t.Parallel()
	for _, long := range []bool{false, true} {
		name := "short"
		if long {
			name = "session-lost"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			eachBroker(t, true, func(t *testing.T, e *env) { testBrokerLost(t, e, long) })
		})
	}
}

func testBrokerLost(t *testing.T, e *env, long bool) {
	dataDir := t.TempDir()

	// The input is complete in Kafka before the broker goes away, so that
	// the truth is exact: a first worker run creates the topics, then the
	// input is produced while no worker runs, so that the second run has a
	// backlog to work through when the broker stops.
	w0 := e.startWorker("worker-0", dataDir, nil)
	w0.waitReady(60 * time.Second)
	w0.StopT(t, stopTimeout)
	p := e.newProducer()
	events := makeEvents(400000, 21) // a backlog the worker cannot finish before the test sees it partway
	lines, wordTruth := makeLines(3000, 21)
	if err := p.send(e.topic("events"), events, 2000); err != nil {
		t.Fatal(err)
	}
	p.mustSend(e.topic("lines"), lines)
	p.close()
	truth := countKeys(events)

	w := e.startWorker("worker", dataDir, nil)
	waitPartway(t, w, truth)
	mark := len(w.Stderr())
	e.stopBroker()
	stopped := time.Now()
	waitFor(t, 30*time.Second, "worker notices the broker is gone", func() (bool, string) {
		log := w.Stderr()[mark:]
		return strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR"), "no warning logged since the broker stopped"
	})
	if long {
		// The worker reports not ready once its group session has ended
		// (it is then releasing its partitions).
		waitFor(t, 90*time.Second, "worker loses its consumer-group session", func() (bool, string) {
			if strings.Contains(w.Stderr()[mark:], "partitions released") {
				return true, ""
			}
			ok, why := w.ready()
			return !ok, why
		})
		_, why := w.ready()
		t.Logf("%v after the broker stopped: %s", time.Since(stopped).Round(time.Millisecond), why)
	}

	e.restartBroker()
	p2 := e.newProducer()
	more := makeEvents(5000, 22)
	waitMore := p2.sendAsync(e.topic("events"), more, 100)
	w.waitReady(90 * time.Second)
	waitMore()
	all := append(append([]*record(nil), events...), more...)
	truth = countKeys(all)
	checkLogHolds(t, e.addr, e.topic("events"), all)

	e.waitCaughtUp("events", "lines", "words")
	counts, err := w.table("counts", eventKeys)
	if err != nil {
		t.Fatal(err)
	}
	wordCounts, err := w.table("word_counts", keysOf(wordTruth))
	if err != nil {
		t.Fatal(err)
	}
	words := readTopic(t, e.addr, e.topic("words"))
	requireAtLeast(t, "counts", counts, truth)
	requireAtLeast(t, "word_counts", wordCounts, wordTruth)
	requireAtLeast(t, "word_counts against the records of topic words", wordCounts, words)
	t.Logf("counts: truth %d, got %d; topic words: %d records for %d words in lines; word_counts: %d",
		sum(truth), sum(counts), sum(words), sum(wordTruth), sum(wordCounts))
	if d := diff(counts, truth); d != "" {
		t.Logf("counts are not exact (allowed: at least once): %s", d)
	}
}

// checkLogHolds checks that topic holds exactly the records of sent, at the
// offsets the producer was told (so the truth the test counts is what the
// worker consumes, across the broker's restart).
func checkLogHolds(t testing.TB, addr, topic string, sent []*record) {
	t.Helper()
	want := map[[2]int64]*record{}
	for _, r := range sent {
		want[[2]int64{int64(r.partition), r.offset}] = r
	}
	n := 0
	scanTopic(t, addr, topic, func(int32, int64) int64 { return 0 }, func(p int32, m *sarama.ConsumerMessage) error {
		n++
		r := want[[2]int64{int64(p), m.Offset}]
		if r == nil || r.key != string(m.Key) || r.value != string(m.Value) {
			t.Errorf("%s/%d@%d holds %s=%s, which the producer did not send there", topic, p, m.Offset, m.Key, m.Value)
		}
		return nil
	})
	if n != len(sent) {
		t.Errorf("%s holds %d records, want %d", topic, n, len(sent))
	}
}
