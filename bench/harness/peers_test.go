package harness

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The peers' pieces that need no Java, Python or broker: reading their
// event lines, decoding and checking what they left in Kafka, and the
// report. The peers themselves run in make bench, not here.

func TestParsePeerEvents(t *testing.T) {
	out := strings.Join([]string{
		`{"event":"config","time_ns":1,"cpu_ns":2,"mode":"count","threads":2}`,
		`+ƒaµS† v0.15.3+-------+`,                                                                 // Faust's banner
		"\x1b[?25l" + `{"event": "running", "time_ns": 1796180867109611124, "cpu_ns": 571150192}`, // after a terminal escape
		`{"event":"restore_end","time_ns":5,"cpu_ns":6,"store":"counts","partition":7,"records":1250}`,
		`{"not":"an event"}`,
		`{"event":"store","keys":10000,"sum":1000000`, // cut off: skipped
		`{"event":"error","time_ns":9,"cpu_ns":9,"message":"boom"}`,
	}, "\n")
	evs := parsePeerEvents(out)
	var names []string
	for _, e := range evs {
		names = append(names, e.Event)
	}
	if got, want := strings.Join(names, ","), "config,running,restore_end,error"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	if r := evs[1]; r.TimeNs != 1796180867109611124 || r.cpu().Nanoseconds() != 571150192 || r.time().UnixNano() != r.TimeNs {
		t.Errorf("running: %+v", r)
	}
	if e := evs[2]; e.Partition != 7 || e.Records != 1250 {
		t.Errorf("restore_end: %+v", e)
	}
	if evs[3].Message != "boom" {
		t.Errorf("error: %+v", evs[3])
	}
}

func TestDecodeCount(t *testing.T) {
	for _, c := range []struct {
		enc  countEncoding
		v    []byte
		want int64
		err  string
	}{
		{int64BE, int64Value(1), 1, ""},
		{int64BE, int64Value(1_000_000), 1_000_000, ""},
		{int64BE, []byte{0, 1}, 0, "2 bytes"},
		{int64BE, nil, 0, "tombstone"},
		{decimalText, []byte("123"), 123, ""},
		{decimalText, []byte(" 7\n"), 7, ""},
		{decimalText, []byte(`"7"`), 0, "not a decimal"},
		{decimalText, nil, 0, "tombstone"},
	} {
		got, err := decodeCount(c.enc, c.v)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("decode(%d, %q) = %d, %v: want an error with %q", c.enc, c.v, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("decode(%d, %q) = %d, %v: want %d", c.enc, c.v, got, err, c.want)
		}
	}
}

// changelog folds count records the way a peer's changelog holds them:
// several per key (one per commit), the last one final.
func changelog(t *testing.T, enc countEncoding, n, keys int) *lastCounts {
	t.Helper()
	c := newLastCounts(enc)
	encode := func(v int64) []byte {
		if enc == decimalText {
			return fmt.Appendf(nil, "%d", v)
		}
		return int64Value(v)
	}
	for j := range min(keys, n) {
		k := keyOf(j, keys)
		want := expectedCount(j, n, keys)
		c.add(k, encode(want/2)) // an earlier commit's value
		c.add(k, encode(want))
	}
	return c
}

func TestVerifyCounts(t *testing.T) {
	const n, keys = 1005, 100
	for _, enc := range []countEncoding{int64BE, decimalText} {
		c := changelog(t, enc, n, keys)
		if c.err != nil {
			t.Fatal(c.err)
		}
		if extra, err := verifyCounts(c.last, n, keys); err != nil || extra != 0 {
			t.Errorf("enc %d: exact table: extra %d, %v", enc, extra, err)
		}
	}
	c := changelog(t, int64BE, n, keys)
	c.add(keyOf(3, keys), int64Value(expectedCount(3, n, keys)+2)) // replayed twice
	if extra, err := verifyCounts(c.last, n, keys); err != nil || extra != 2 {
		t.Errorf("replay: extra %d, %v; want 2, nil", extra, err)
	}
	c.add(keyOf(4, keys), int64Value(expectedCount(4, n, keys)-1)) // a lost update
	if _, err := verifyCounts(c.last, n, keys); err == nil || !strings.Contains(err.Error(), "lost updates") {
		t.Errorf("lost update: %v", err)
	}
	c = changelog(t, int64BE, n, keys)
	delete(c.last, string(keyOf(99, keys)))
	if _, err := verifyCounts(c.last, n, keys); err == nil || !strings.Contains(err.Error(), "k000000000000099") {
		t.Errorf("missing key: %v", err)
	}
	c = changelog(t, int64BE, n, keys)
	c.add([]byte("stranger"), int64Value(1))
	if _, err := verifyCounts(c.last, n, keys); err == nil || !strings.Contains(err.Error(), "101 keys") {
		t.Errorf("a key not in the input: %v", err)
	}
	c = changelog(t, int64BE, n, keys)
	c.add(keyOf(1, keys), []byte("12"))
	if c.err == nil {
		t.Error("an undecodable value: no error")
	}
	// Fewer events than keys: only the keys that occur.
	c = changelog(t, int64BE, 10, keys)
	if extra, err := verifyCounts(c.last, 10, keys); err != nil || extra != 0 {
		t.Errorf("n < keys: extra %d, %v", extra, err)
	}
}

func TestVerifyWords(t *testing.T) {
	lines, truth := makeLines(500, 100, 3)
	if len(lines) == 0 {
		t.Fatal("no lines")
	}
	last := map[string]int64{}
	for w, c := range truth {
		last[w] = c
	}
	if extra, err := verifyWords(last, truth); err != nil || extra != 0 {
		t.Errorf("exact: %d, %v", extra, err)
	}
	last["the"]++
	if extra, err := verifyWords(last, truth); err != nil || extra != 1 {
		t.Errorf("a replay: %d, %v", extra, err)
	}
	last["fox"] = truth["fox"] - 1
	if _, err := verifyWords(last, truth); err == nil || !strings.Contains(err.Error(), "word_counts[fox]") {
		t.Errorf("a lost word: %v", err)
	}
}

func TestPassOutput(t *testing.T) {
	const n, keys, vs = 300, 50, 20
	fill := func(o *passOutput, n int) {
		for i := range n {
			v := bytes.ToUpper(valueOf(i, vs))
			o.add(keyOf(i, keys), v)
		}
	}
	o := newPassOutput()
	fill(o, n)
	if extra, err := o.verify(n, keys, vs); err != nil || extra != 0 {
		t.Errorf("exact: %d, %v", extra, err)
	}
	o.add(keyOf(7, keys), bytes.ToUpper(valueOf(7, vs)))
	if extra, err := o.verify(n, keys, vs); err != nil || extra != 1 {
		t.Errorf("a replay: %d, %v", extra, err)
	}
	short := newPassOutput()
	fill(short, n-1)
	if _, err := short.verify(n, keys, vs); err == nil || !strings.Contains(err.Error(), "299 records") {
		t.Errorf("one short: %v", err)
	}
	lower := newPassOutput()
	fill(lower, n)
	lower.add(keyOf(0, keys), valueOf(0, vs)) // not upper-cased
	if _, err := lower.verify(n, keys, vs); err == nil || !strings.Contains(err.Error(), "not upper-cased") {
		t.Errorf("a lower-case value: %v", err)
	}
	// The right count, but one key's record went to another key.
	moved := newPassOutput()
	for i := range n {
		k := keyOf(i, keys)
		if i == 3 {
			k = keyOf(4, keys)
		}
		moved.add(k, bytes.ToUpper(valueOf(i, vs)))
	}
	if _, err := moved.verify(n, keys, vs); err == nil || !strings.Contains(err.Error(), "key k000000000000003") {
		t.Errorf("a key's record lost: %v", err)
	}
}

func TestPeerReport(t *testing.T) {
	count := &Row{Workload: "count", Broker: brokerKfake, Unit: "events/s", HigherIsBetter: true, N: "1,000 events",
		Mephisto: []float64{300, 200, 100}, Raw: []float64{400}, PeakRSS: []int64{50 << 20}, CPUPerEvent: []float64{2e-6}}
	st := count.peer(peerStreams)
	st.add(runStats{rate: 100, rss: 200 << 20, cpuPerEvent: 10e-6})
	st.add(runStats{rate: 50, rss: 210 << 20, cpuPerEvent: 12e-6})
	count.peer(peerFaust).Failed = "faust-count-1 exited: exit status 1\ntraceback…"
	pass := &Row{Workload: "pass", Broker: brokerKfake, Unit: "events/s", HigherIsBetter: true, Mephisto: []float64{90}}
	pass.peer(peerStreams).Skipped = "mvn is not on PATH"
	onKafka := &Row{Workload: "count", Broker: brokerKafka, Unit: "events/s", HigherIsBetter: true, Mephisto: []float64{80}}
	rep := &Report{Rows: []*Row{count, pass, onKafka}}
	rep.Options.defaults()
	var b bytes.Buffer
	rep.Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"**On the dev broker (`mephisto broker`, kfake)**",
		"**On Apache Kafka",
		"| count | 200 events/s | 400 events/s | 50.0% | 50.0 / **75.0** / 100 events/s | 2.67× | FAILED (see the notes) | — | 50 MiB / 210 MiB / — | 2.0 / 11.0 / — |",
		"| pass | 90.0 events/s | — | — | skipped: mvn is not on PATH | — |",
		"Faust: FAILED: `faust-count-1 exited: exit status 1 traceback…`.",
		"Kafka Streams: skipped: mvn is not on PATH.",
		"count on kafka 0.0",
		"num.stream.threads 2, commit.interval.ms 500",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "Mephisto ÷ Kafka Streams") != 1 {
		t.Errorf("want one side-by-side table (the Kafka rows have no peers):\n%s", md)
	}
	if f := factor(100, 0, true); f != "—" {
		t.Errorf("factor over nothing: %s", f)
	}
	if f := factor(2, 4, false); f != "2.00×" {
		t.Errorf("lower is better: %s", f)
	}
}

// TestReportOneBroker: a run on kfake without peers reads as before
// issue 10: one table, no broker heading, no peers' table.
func TestReportOneBroker(t *testing.T) {
	rep := &Report{Rows: []*Row{{Workload: "count", Broker: brokerKfake, Unit: "events/s", HigherIsBetter: true, Mephisto: []float64{1}}}}
	rep.Options.defaults()
	var b bytes.Buffer
	rep.Markdown(&b)
	md := b.String()
	if strings.Contains(md, "**On ") || strings.Contains(md, "Kafka Streams") || !strings.HasPrefix(md, "| workload | N |") {
		t.Errorf("one broker, no peers:\n%s", md)
	}
}
