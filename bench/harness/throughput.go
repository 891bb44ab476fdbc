package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// The throughput workloads (count, count-1m-keys, pass, wordcount) time a
// worker from its first /readyz 200 — its partitions are assigned and it
// starts consuming the preloaded input — to the moment the consumer group
// has committed the high watermark of every input partition: the honest
// end of at-least-once processing (every table write is in the changelog
// and in Pebble, every output acknowledged). events/s = N / that time. The
// raw client is timed from the moment its group assigned it the partitions
// (sarama's Setup, the same point as Mephisto's first /readyz) to its last
// record (read, or acknowledged), so its group join is not counted either.
// Not from its first record: sarama decodes a whole fetch response (up to
// 4 MiB per partition) before it hands out the first record, and that
// work would fall outside the raw client's window only.

// pollInterval is how often the harness asks Kafka for the group's
// committed offsets while a worker runs.
const pollInterval = 20 * time.Millisecond

// waitCommitted polls until group has committed hwm on every partition of
// topic and returns when that was first seen, and when the worker's
// mephisto_events_in_total for topic first reached n (zero if not seen).
func (h *harness) waitCommitted(ctx context.Context, w *worker, kc *kclient, group, topic string, hwm []int64, n int) (done, consumed time.Time, err error) {
	timeout := 2*time.Minute + time.Duration(n)*time.Second/2000
	i := 0
	_, err = proctest.Poll(ctx, pollInterval, timeout, fmt.Sprintf("group %s to commit %s", group, topic), func() (bool, string, error) {
		if consumed.IsZero() && i%5 == 0 {
			if v, err := w.metric("mephisto_events_in_total", map[string]string{"topic": topic}); err == nil && v >= float64(n) {
				consumed = time.Now()
			}
		}
		i++
		ok, err := kc.caughtUp(group, topic, hwm)
		if err != nil {
			return false, "", err
		}
		if ok {
			done = time.Now()
			return true, "", nil
		}
		if w.Exited() {
			return false, "", fmt.Errorf("%s exited: %s\n%s", w.Name(), w.DescribeExit(), w.Tail(3000))
		}
		return false, "not caught up", nil
	})
	if err != nil && !w.Exited() {
		c, _ := kc.committed(group, topic)
		err = fmt.Errorf("%s: %w: committed %v of %v", w.Name(), err, c, hwm)
	}
	return done, consumed, err
}

// runStats are one Mephisto run's measurements.
type runStats struct {
	rate, consumedRate float64
	rss                int64
	cpuPerEvent        float64
}

// throughputRun starts a worker, times it through the preloaded input of
// topic (n events, high watermarks hwm) and stops it. check, if set, runs
// before the worker stops (to verify its tables).
func (h *harness) throughputRun(ctx context.Context, kc *kclient, spec workerSpec, group, topic string, hwm []int64, n int, check func(*worker) error) (runStats, error) {
	return h.throughputRunHooked(ctx, kc, spec, group, topic, hwm, n, nil, check)
}

// throughputRunHooked is throughputRun with onReady, if set, called when
// the worker was first seen ready (the clock's start).
func (h *harness) throughputRunHooked(ctx context.Context, kc *kclient, spec workerSpec, group, topic string, hwm []int64, n int, onReady func(), check func(*worker) error) (runStats, error) {
	var s runStats
	w, err := h.startWorker(spec)
	if err != nil {
		return s, err
	}
	defer func() { _ = w.Stop(time.Minute) }()
	t0, err := w.waitReady(ctx, 2*time.Minute, 5*time.Millisecond)
	if err != nil {
		return s, err
	}
	if onReady != nil {
		onReady()
	}
	t1, tIn, err := h.waitCommitted(ctx, w, kc, group, topic, hwm, n)
	if err != nil {
		return s, err
	}
	st := readProcStats(w.Pid())
	s.rate = float64(n) / t1.Sub(t0).Seconds()
	if !tIn.IsZero() {
		s.consumedRate = float64(n) / tIn.Sub(t0).Seconds()
	}
	s.rss, s.cpuPerEvent = st.PeakRSS, st.CPU.Seconds()/float64(n)
	if check != nil {
		if err := check(w); err != nil {
			return s, err
		}
	}
	return s, w.Stop(time.Minute)
}

// addRaw appends a raw client result to the row.
func (r *Row) addRaw(res rawResult, n int) {
	r.Raw = append(r.Raw, float64(n)/res.Seconds)
	r.RawPeakRSS = append(r.RawPeakRSS, res.PeakRSS)
	r.RawCPUPerEvent = append(r.RawCPUPerEvent, res.CPUSeconds/float64(n))
}

// addRun appends a Mephisto run to the row.
func (r *Row) addRun(s runStats) {
	r.Mephisto = append(r.Mephisto, s.rate)
	r.PeakRSS = append(r.PeakRSS, s.rss)
	r.CPUPerEvent = append(r.CPUPerEvent, s.cpuPerEvent)
}

// preloadedInput starts a broker for workload name and preloads topic "in"
// with N events over keys keys; it returns the input's high watermarks.
// The caller closes the broker and the client.
func (h *harness) preloadedInput(name string, keys int) (*broker, *kclient, []int64, error) {
	b, kc, err := h.newBroker(name)
	if err != nil {
		return nil, nil, nil, err
	}
	n, vs := h.opts.N, h.opts.ValueSize
	start := time.Now()
	err = kc.createTopic("in", false)
	if err == nil {
		err = kc.preload("in", n, func(i int) record { return record{key: keyOf(i, keys), value: valueOf(i, vs)} })
	}
	var hwm []int64
	if err == nil {
		h.logf("preloaded %d events in %v", n, time.Since(start).Round(time.Millisecond))
		hwm, err = kc.highWatermarks("in")
	}
	if err != nil {
		kc.close()
		b.close()
		return nil, nil, nil, err
	}
	return b, kc, hwm, nil
}

// count: keyed input, one table incrementing a counter per key, one node.
func (h *harness) count(ctx context.Context, name string, keys int) (*Row, error) {
	n := h.opts.N
	row := &Row{Workload: name, Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events, %s keys", group(fmt.Sprint(n)), group(fmt.Sprint(keys)))}
	b, kc, hwm, err := h.preloadedInput(name, keys)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	var consumed []float64
	for r := 1; r <= h.opts.Runs; r++ {
		raw, err := h.runRaw(ctx, fmt.Sprintf("raw-%s-%d", name, r), "read", "--brokers", b.addr, "--topic", "in",
			"--group", fmt.Sprintf("raw-%d", r), "--n", fmt.Sprint(n))
		if err != nil {
			return row, err
		}
		row.addRaw(raw, n)
		app := fmt.Sprintf("%s-%d", name, r)
		check := func(w *worker) error {
			used := min(keys, n) // keys that occur at all
			for _, j := range []int{0, used / 2, used - 1} {
				k := string(keyOf(j, keys))
				got, ok, err := w.tableValue("counts", k)
				if err != nil {
					return err
				}
				if want := expectedCount(j, n, keys); !ok || got < want {
					return fmt.Errorf("counts[%s] = %d (found %v), want %d: the table lost updates", k, got, ok, want)
				} else if got > want {
					row.note("run %d: counts[%s] = %d > %d (at-least-once replay)", r, k, got, want)
				}
			}
			return nil
		}
		s, err := h.throughputRun(ctx, kc, workerSpec{name: app, env: []string{"BENCH_MODE=count", "BENCH_APP=" + app},
			brokers: b.addr, nodeID: "b1"}, app, "in", hwm, n, check)
		if err != nil {
			return row, err
		}
		row.addRun(s)
		consumed = append(consumed, s.consumedRate)
		h.logf("run %d: raw %s events/s; mephisto %s events/s (all consumed: %s events/s), peak RSS %s", r,
			num(row.Raw[r-1]), num(s.rate), num(s.consumedRate), mib(s.rss))
		if name == "count" {
			h.countPeers(ctx, row, b, kc, r, hwm, n, keys)
		}
	}
	row.note("Mephisto is timed from its first /readyz 200 to the group's committed offsets reaching the high watermarks; "+
		"counting only until every event was consumed (mephisto_events_in_total = N, polled every 100 ms) gives a median %s events/s — the rest is the last commit and the group's offset commit", num(median(consumed)))
	row.note("raw: a sarama consumer group reading the same topic (Mephisto's client config with 4 MiB fetches, no commits), from its partitions' assignment to the last record")
	return row, nil
}

// pass: stateless consume → transform → produce.
func (h *harness) pass(ctx context.Context) (*Row, error) {
	n, keys := h.opts.N, h.opts.Keys
	row := &Row{Workload: "pass", Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events", group(fmt.Sprint(n)))}
	b, kc, hwm, err := h.preloadedInput("pass", keys)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	for r := 1; r <= h.opts.Runs; r++ {
		rawOut, out := fmt.Sprintf("raw-out-%d", r), fmt.Sprintf("out-%d", r)
		for _, t := range []string{rawOut, out} {
			if err := kc.createTopic(t, false); err != nil {
				return row, err
			}
		}
		raw, err := h.runRaw(ctx, fmt.Sprintf("raw-pass-%d", r), "pass", "--brokers", b.addr, "--topic", "in", "--out", rawOut,
			"--group", fmt.Sprintf("raw-%d", r), "--n", fmt.Sprint(n))
		if err != nil {
			return row, err
		}
		row.addRaw(raw, n)
		app := fmt.Sprintf("pass-%d", r)
		check := func(*worker) error {
			hw, err := kc.highWatermarks(out)
			if err != nil {
				return err
			}
			if got := sum(hw); got < int64(n) {
				return fmt.Errorf("%s holds %d records, want at least %d", out, got, n)
			}
			return nil
		}
		s, err := h.throughputRun(ctx, kc, workerSpec{name: app, env: []string{"BENCH_MODE=pass", "BENCH_APP=" + app, "BENCH_OUT=" + out},
			brokers: b.addr, nodeID: "b1"}, app, "in", hwm, n, check)
		if err != nil {
			return row, err
		}
		row.addRun(s)
		h.logf("run %d: raw %s events/s; mephisto %s events/s (all consumed: %s events/s), peak RSS %s", r,
			num(row.Raw[r-1]), num(s.rate), num(s.consumedRate), mib(s.rss))
		h.passPeers(ctx, row, b, kc, r, hwm, n, keys)
	}
	row.note("values upper-cased and sent on, same key; Mephisto's end is the input's committed offsets, which follow the acknowledgement of every output")
	row.note("raw: a sarama consumer group feeding a sarama async producer (Mephisto's idempotent acks=all config), from its partitions' assignment to the last acknowledgement")
	return row, nil
}

// wordcount: the example, end to end: lines → split → words (keyed by
// word) → count → table.
func (h *harness) wordcount(ctx context.Context) (*Row, error) {
	n, vs := h.opts.N, h.opts.ValueSize
	lines, truth := makeLines(n, vs, 1)
	var words int64
	for _, c := range truth {
		words += c
	}
	row := &Row{Workload: "wordcount", Unit: "words/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s lines, %s words", group(fmt.Sprint(len(lines))), group(fmt.Sprint(words)))}
	var lineRates []float64
	for r := 1; r <= h.opts.Runs; r++ {
		// The example's names are fixed (group "wordcount", topics lines
		// and words): a fresh broker per run.
		rate, lineRate, err := h.wordcountRun(ctx, row, r, lines, truth, words)
		if err != nil {
			return row, err
		}
		lineRates = append(lineRates, lineRate)
		h.logf("run %d: raw %s words/s; mephisto %s words/s (%s lines/s), peak RSS %s", r,
			num(row.Raw[r-1]), num(rate), num(lineRate), mib(row.PeakRSS[r-1]))
	}
	row.note("examples/wordcount as built, ~%d-byte lines of the example's vocabulary; rate = words counted per second, timed until the group has committed both lines and words (median %s lines/s)",
		vs, num(median(lineRates)))
	row.note("raw: one sarama process doing both hops — a group splits lines and an async producer sends the words keyed by word, a second group counts them in a map — from the first group's assignment to the last word counted")
	return row, nil
}

func (h *harness) wordcountRun(ctx context.Context, row *Row, r int, lines []string, truth map[string]int64, words int64) (rate, lineRate float64, err error) {
	b, kc, err := h.newBroker(fmt.Sprintf("wordcount-%d", r))
	if err != nil {
		return 0, 0, err
	}
	defer b.close()
	defer kc.close()
	for _, t := range []string{"lines", "words", "raw-words"} {
		if err := kc.createTopic(t, false); err != nil {
			return 0, 0, err
		}
	}
	if err := kc.preload("lines", len(lines), func(i int) record {
		return record{key: keyOf(i, 1<<30), value: []byte(lines[i])}
	}); err != nil {
		return 0, 0, err
	}
	hwmLines, err := kc.highWatermarks("lines")
	if err != nil {
		return 0, 0, err
	}
	raw, err := h.runRaw(ctx, fmt.Sprintf("raw-wordcount-%d", r), "wordcount", "--brokers", b.addr, "--topic", "lines", "--out", "raw-words",
		"--group", "raw-wc", "--n", fmt.Sprint(words))
	if err != nil {
		return 0, 0, err
	}
	row.addRaw(raw, int(words))

	w, err := h.startWorker(workerSpec{name: fmt.Sprintf("wordcount-%d", r), bin: h.bins.wordcount, brokers: b.addr, nodeID: "b1"})
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = w.Stop(time.Minute) }()
	t0, err := w.waitReady(ctx, 2*time.Minute, 5*time.Millisecond)
	if err != nil {
		return 0, 0, err
	}
	// Lines first: once the group has committed every line, every word is
	// in Kafka (split commits a line only after its words are
	// acknowledged), so the words' high watermarks read after that are
	// final.
	if _, _, err := h.waitCommitted(ctx, w, kc, "wordcount", "lines", hwmLines, len(lines)); err != nil {
		return 0, 0, err
	}
	hwmWords, err := kc.highWatermarks("words")
	if err != nil {
		return 0, 0, err
	}
	if got := sum(hwmWords); got < words {
		return 0, 0, fmt.Errorf("words holds %d records after every line was committed, want %d", got, words)
	}
	t1, _, err := h.waitCommitted(ctx, w, kc, "wordcount", "words", hwmWords, int(sum(hwmWords)))
	if err != nil {
		return 0, 0, err
	}
	st := readProcStats(w.Pid())
	for _, word := range []string{"the", "fox", "times"} {
		got, ok, err := w.tableValue("word_counts", word)
		if err != nil {
			return 0, 0, err
		}
		if !ok || got < truth[word] {
			return 0, 0, fmt.Errorf("word_counts[%s] = %d (found %v), want %d", word, got, ok, truth[word])
		}
	}
	elapsed := t1.Sub(t0).Seconds()
	row.Mephisto = append(row.Mephisto, float64(words)/elapsed)
	row.PeakRSS = append(row.PeakRSS, st.PeakRSS)
	row.CPUPerEvent = append(row.CPUPerEvent, st.CPU.Seconds()/float64(words))
	if err := w.Stop(time.Minute); err != nil {
		return 0, 0, err
	}
	h.wordcountPeers(ctx, row, b, kc, r, hwmLines, len(lines), truth, words)
	return float64(words) / elapsed, float64(len(lines)) / elapsed, nil
}

// recover: rebuild a table from records changelog records over keys
// distinct keys into an empty data dir.
func (h *harness) recover(ctx context.Context, name string, keys int) (*Row, error) {
	records := h.opts.RecoverRecords
	row := &Row{Workload: name, Unit: "records/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s changelog records, %s keys", group(fmt.Sprint(records)), group(fmt.Sprint(keys)))}
	b, kc, err := h.newBroker(name)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	const app = "rec"
	changelog := app + "-counts-changelog"
	// The changelog is written directly: a count run's changelog holds one
	// record per key per commit, so it cannot be sized exactly. It is
	// created without cleanup.policy=compact so that the dev broker's
	// once-a-minute cleaner cannot shrink it between runs (what a real
	// Kafka would also not do to an active segment).
	for _, t := range []string{"in", changelog} {
		if err := kc.createTopic(t, false); err != nil {
			return row, err
		}
	}
	start := time.Now()
	if err := kc.preload(changelog, records, func(i int) record {
		return record{key: keyOf(i, keys), value: int64Value(int64(i/keys + 1))}
	}); err != nil {
		return row, err
	}
	h.logf("wrote %d changelog records in %v", records, time.Since(start).Round(time.Millisecond))
	var walls []float64
	for r := 1; r <= h.opts.Runs; r++ {
		raw, err := h.runRaw(ctx, fmt.Sprintf("raw-%s-%d", name, r), "changelog", "--brokers", b.addr, "--topic", changelog)
		if err != nil {
			return row, err
		}
		if raw.Records != int64(records) {
			return row, fmt.Errorf("raw client read %d changelog records, want %d", raw.Records, records)
		}
		row.addRaw(raw, records)

		// A fresh (wiped) data dir every run; the same node id, so that
		// the static member of the previous run is replaced at once.
		w, err := h.startWorker(workerSpec{name: fmt.Sprintf("%s-%d", name, r), env: []string{"BENCH_MODE=count", "BENCH_APP=" + app},
			brokers: b.addr, nodeID: "b1"})
		if err != nil {
			return row, err
		}
		tReady, err := w.waitReady(ctx, 10*time.Minute, 5*time.Millisecond)
		if err != nil {
			_ = w.Stop(time.Minute)
			return row, err
		}
		st := readProcStats(w.Pid())
		replayed, _ := w.metric("mephisto_recovery_records_total", nil)
		evs, err := w.logEvents("recovering table shard from changelog", "recovered table shard")
		_ = w.Stop(time.Minute)
		if err != nil {
			return row, err
		}
		var first, last time.Time
		for _, e := range evs {
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
			if e.Time.After(last) {
				last = e.Time
			}
		}
		if int(replayed) != records || first.IsZero() {
			return row, fmt.Errorf("the worker replayed %v changelog records, want %d", replayed, records)
		}
		replay := last.Sub(first).Seconds()
		row.Mephisto = append(row.Mephisto, float64(records)/replay)
		row.PeakRSS = append(row.PeakRSS, st.PeakRSS)
		row.CPUPerEvent = append(row.CPUPerEvent, st.CPU.Seconds()/float64(records))
		walls = append(walls, tReady.Sub(w.StartedAt()).Seconds())
		h.logf("run %d: raw %s records/s; mephisto replay %s records/s (%.2fs), process start to ready %.2fs, peak RSS %s", r,
			num(row.Raw[r-1]), num(float64(records)/replay), replay, tReady.Sub(w.StartedAt()).Seconds(), mib(st.PeakRSS))
		h.restorePeer(ctx, row, b, kc, r, records, keys)
	}
	row.note("changelog written directly with %s records (value = the key's running count), uncompacted; each run starts a worker on an empty data dir and all %s records are replayed (checked: mephisto_recovery_records_total)",
		group(fmt.Sprint(records)), group(fmt.Sprint(records)))
	row.note("rate = records / replay time, from the first 'recovering table shard' to the last 'recovered table shard' log line (8 partitions replay in parallel); process start to /readyz 200 took a median %.2f s", median(walls))
	row.note("raw: a sarama consumer reading the 8 changelog partitions from oldest to the high watermark with 4 MiB fetches, from the start of reading (after the same offset lookups Mephisto makes) to the last record")
	return row, nil
}

// int64Value encodes n as codec.Int64 does (8 bytes, big-endian).
func int64Value(n int64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b
}
