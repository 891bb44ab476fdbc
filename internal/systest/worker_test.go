package systest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/kafka"
)

// waitPartway polls the worker's committed counts until some, but far from
// all, of the events behind truth are reflected: the moment to stop or kill
// it "mid-stream". It returns the total it saw.
func waitPartway(t testing.TB, w *workerProc, truth map[string]int64) int64 {
	t.Helper()
	total := sum(truth)
	lo, hi := total/20, total*9/10
	var seen int64
	waitFor(t, 60*time.Second, w.Name()+" partway through the input", func() (bool, string) {
		if w.Exited() {
			t.Fatalf("%s exited: %s", w.Name(), w.DescribeExit())
		}
		got, err := w.table("counts", eventKeys)
		if err != nil {
			return false, err.Error()
		}
		seen = sum(got)
		if seen >= hi {
			t.Fatalf("%s processed %d of %d events before it could be stopped mid-stream: make the input bigger", w.Name(), seen, total)
		}
		return seen >= lo, "counts total " + strconv.FormatInt(seen, 10)
	})
	t.Logf("%s has committed %d of %d events", w.Name(), seen, total)
	return seen
}

// TestWorkerCleanStopMidStream stops a worker with SIGTERM while input
// streams in, then restarts it: a clean stop commits everything it
// processed (Pebble and the group's offsets agree exactly), and the
// restarted worker ends with exact counts in both the one-hop table and the
// two-hop one (whose intermediate topic the worker produces itself).
func TestWorkerCleanStopMidStream(t *testing.T) {
	t.Parallel()
	eachBroker(t, false, func(t *testing.T, e *env) {
		dataDir := t.TempDir()
		w1 := e.startWorker("worker-1", dataDir, nil)
		w1.waitReady(60 * time.Second)

		p := e.newProducer()
		events := makeEvents(20000, 1)
		lines, wordTruth := makeLines(3000, 1)
		truth := countKeys(events)
		waitEvents := p.sendAsync(e.topic("events"), events, 100)
		waitLines := p.sendAsync(e.topic("lines"), lines, 20)
		waitPartway(t, w1, truth)
		w1.StopT(t, stopTimeout)
		waitEvents()
		waitLines()

		d := readDisk(t, dataDir, "counts", e.topic("events"))
		checkDataMatchesOffsets(t, d, events)
		if n := sum(d.rows); n == 0 || n >= int64(len(events)) {
			t.Errorf("the stopped worker had processed %d of %d events: not mid-stream", n, len(events))
		}
		committed := checkCommittedNotAhead(t, e.addr, e.app, e.topic("events"), d)
		for p := range partitions {
			if d.parts[p].src >= 0 && committed[p] != d.parts[p].src+1 {
				t.Errorf("partition %d: after a clean stop the group's committed offset is %d, want %d (Pebble's source offset + 1)",
					p, committed[p], d.parts[p].src+1)
			}
		}
		if t.Failed() {
			return
		}

		w2 := e.startWorker("worker-2", dataDir, nil)
		w2.waitReady(60 * time.Second)
		w2.waitTable(60*time.Second, "counts", truth)
		w2.waitTable(60*time.Second, "word_counts", wordTruth)
		e.waitCaughtUp("events", "lines", "words")
		w2.waitTable(time.Second, "counts", truth)
		w2.waitTable(time.Second, "word_counts", wordTruth)
		// A clean stop re-sends nothing: the intermediate topic holds each
		// word of the lines exactly once.
		if d := diff(readTopic(t, e.addr, e.topic("words")), wordTruth); d != "" {
			t.Errorf("topic words: %s", d)
		}
	})
}

// TestWorkerKill9MidStream kills a worker with SIGKILL while input streams
// in. What it left in Pebble must be self-consistent (rows == the input up
// to the stored source offset, Kafka's committed offsets not ahead), and
// after a restart nothing is lost: the counts end exactly at what the
// at-least-once protocol implies — the changelog records acknowledged but
// not yet in Pebble are replayed, then every record after Pebble's source
// offset is processed again — which is >= the truth for every key.
func TestWorkerKill9MidStream(t *testing.T) {
	t.Parallel()
	eachBroker(t, false, func(t *testing.T, e *env) {
		dataDir := t.TempDir()
		w1 := e.startWorker("worker-1", dataDir, nil)
		w1.waitReady(60 * time.Second)

		p := e.newProducer()
		events := makeEvents(20000, 2)
		lines, wordTruth := makeLines(3000, 2)
		truth := countKeys(events)
		waitEvents := p.sendAsync(e.topic("events"), events, 100)
		waitLines := p.sendAsync(e.topic("lines"), lines, 20)
		waitPartway(t, w1, truth)
		w1.KillT(t)
		waitEvents()
		waitLines()

		d := readDisk(t, dataDir, "counts", e.topic("events"))
		checkDataMatchesOffsets(t, d, events)
		checkCommittedNotAhead(t, e.addr, e.app, e.topic("events"), d)
		if n := sum(d.rows); n == 0 || n >= int64(len(events)) {
			t.Errorf("the killed worker had processed %d of %d events: not mid-stream", n, len(events))
		}
		tail := changelogTails(t, e.addr, e.changelog("counts"), d)
		want := expectAfterRestart(d, tail, events)
		requireAtLeast(t, "expected counts after restart", want, truth)
		t.Logf("truth total %d; expected after restart %d (%d records counted twice)", sum(truth), sum(want), sum(want)-sum(truth))
		if t.Failed() {
			return
		}

		w2 := e.startWorker("worker-2", dataDir, nil)
		w2.waitReady(60 * time.Second)
		w2.waitTable(60*time.Second, "counts", want)
		w2.waitTableAtLeast(60*time.Second, "word_counts", wordTruth)
		e.waitCaughtUp("events", "lines", "words")
		w2.waitTable(time.Second, "counts", want)
		// Two hops, at least once: every word of the lines is in topic words
		// (maybe more than once), and every record of topic words is counted.
		words := readTopic(t, e.addr, e.topic("words"))
		requireAtLeast(t, "topic words", words, wordTruth)
		got, err := w2.table("word_counts", keysOf(wordTruth))
		if err != nil {
			t.Fatal(err)
		}
		requireAtLeast(t, "word_counts against the records of topic words", got, words)
		t.Logf("word_counts: %d words in lines, %d records in topic words, counted %d", sum(wordTruth), sum(words), sum(got))
	})
}

// TestWorkerDataDirDeleted deletes a cleanly stopped worker's whole data dir:
// the restarted worker rebuilds both tables from their changelogs, exactly,
// and goes on counting from there. On Apache Kafka the counts changelog is
// compacted first (its cleaner runs during the test), so the rebuild reads
// a log with gaps.
func TestWorkerDataDirDeleted(t *testing.T) {
	t.Parallel()
	eachBroker(t, false, func(t *testing.T, e *env) {
		dataDir := t.TempDir()
		w1 := e.startWorker("worker-1", dataDir, nil)
		w1.waitReady(60 * time.Second)

		p := e.newProducer()
		events := makeEvents(5000, 3)
		lines, wordTruth := makeLines(1000, 3)
		p.mustSend(e.topic("events"), events)
		p.mustSend(e.topic("lines"), lines)
		truth := countKeys(events)
		w1.waitTable(60*time.Second, "counts", truth)
		w1.waitTable(60*time.Second, "word_counts", wordTruth)
		if e.kind == "kafka" {
			// A real broker compacts: the shard must be rebuilt exactly from
			// a changelog with offsets the cleaner removed.
			events = append(events, compactChangelog(t, e, w1, p)...)
			truth = countKeys(events)
		}
		w1.StopT(t, stopTimeout)

		if err := os.RemoveAll(dataDir); err != nil {
			t.Fatal(err)
		}
		w2 := e.startWorker("worker-2", dataDir, nil)
		w2.waitReady(60 * time.Second)
		w2.waitTable(30*time.Second, "counts", truth)
		w2.waitTable(30*time.Second, "word_counts", wordTruth)
		if !strings.Contains(w2.Stderr(), "recovering table shard from changelog") {
			t.Errorf("worker-2 does not log that it recovers its tables from the changelogs")
		}

		more := makeEvents(2000, 4)
		p.mustSend(e.topic("events"), more)
		truth = countKeys(events, more)
		w2.waitTable(60*time.Second, "counts", truth)
		all := append(append([]*record(nil), events...), more...)
		e.waitCaughtUp("events")
		w2.StopT(t, stopTimeout)
		checkDataMatchesOffsets(t, readDisk(t, dataDir, "counts", e.topic("events")), all)
	})
}

// compactChangelog makes the broker's log cleaner compact the counts
// changelog while w counts: it sets the topic to roll a segment every
// 100 ms and clean at the least dirt, then produces rounds of events until
// some partition's log has offsets the cleaner removed (fewer records than
// its offset range). It returns the events it produced.
func compactChangelog(t *testing.T, e *env, w *workerProc, p *producer) []*record {
	t.Helper()
	topic := e.changelog("counts")
	admin, err := sarama.NewClusterAdmin(addrs(e.addr), kafka.ClientConfig("systest-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ms := func(s string) sarama.IncrementalAlterConfigsEntry {
		return sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &s}
	}
	if err := admin.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"segment.ms": ms("100"), "min.cleanable.dirty.ratio": ms("0.01"), "min.compaction.lag.ms": ms("0"),
		"delete.retention.ms": ms("0"),
	}, false); err != nil {
		t.Fatalf("set compaction settings of %s: %v", topic, err)
	}
	var sent []*record
	var removed string
	seed := uint64(100)
	waitFor(t, 90*time.Second, topic+" compacted by the broker", func() (bool, string) {
		more := makeEvents(200, seed)
		seed++
		p.mustSend(e.topic("events"), more)
		sent = append(sent, more...)
		if removed = compactedAway(t, e.addr, topic); removed != "" {
			return true, ""
		}
		return false, "every offset of the changelog is still there"
	})
	t.Logf("compaction: %s", removed)
	return sent
}

// compactedAway describes the offsets topic's log no longer holds ("" if
// none): the records between its log start and end that compaction removed.
func compactedAway(t *testing.T, addr, topic string) string {
	t.Helper()
	var held [partitions]int64
	starts, ends := scanTopic(t, addr, topic, fromOldest, func(p int32, _ *sarama.ConsumerMessage) error {
		held[p]++
		return nil
	})
	var out []string
	for p := range partitions {
		if gone := ends[p] - starts[p] - held[p]; gone > 0 {
			out = append(out, fmt.Sprintf("partition %d holds %d records of offsets %d..%d (%d removed)", p, held[p], starts[p], ends[p]-1, gone))
		}
	}
	return strings.Join(out, "; ")
}
