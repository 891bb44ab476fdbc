package harness

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/kafka"
)

// The exactly-once workloads (issue 12): count-eos and pass-eos are count
// and pass with the worker run under --processing-guarantee exactly_once
// (MEPHISTO_PROCESSING_GUARANTEE), each run next to the raw client and
// next to the same workload at_least_once, all on the same broker and the
// same preloaded input, interleaved run by run (at_least_once first in odd
// runs, exactly_once first in even ones), so that the ratio eos ÷ alo is
// taken in the same minutes of the same machine. Timed as count and pass:
// from the first /readyz 200 to the group's committed offsets reaching the
// input's high watermarks, which under exactly_once the partitions'
// transactions commit (an offset is committed once the transaction that
// holds it is). latency-eos is latency under exactly_once, its changelog
// read read_committed: an update counts once its transaction committed.
//
// The results are checked as the at-least-once ones are, and exactly:
// count-eos reads three keys of the table from the worker (exactly their
// count, not at least) and, once the worker stopped, the whole changelog
// read_committed (every key's last count exactly its count, no other key);
// pass-eos reads the output topic read_committed (every input key exactly
// as often as in the input, every value upper-cased, exactly N records).
// A transaction abort or a grain restart in a run is noted.

// eosEnv runs the bench app under exactly_once.
const eosEnv = "MEPHISTO_PROCESSING_GUARANTEE=exactly_once"

// guaranteeRun is one worker run of an eos workload's pair.
type guaranteeRun struct {
	s                         runStats
	commits, aborts, restarts float64 // the worker's metrics at the end
	wall                      float64 // seconds from ready to committed
	label                     string  // "exactly_once" or "at_least_once"
	// tableLag is how long after the group's commit was seen the worker's
	// table served the probed keys' final counts (count-eos).
	tableLag time.Duration
	// brokerCPU is the CPU the broker process used from the worker's
	// first /readyz 200 to the group's commit of the input (seconds).
	brokerCPU float64
}

// brokerCPU returns the CPU time the broker process has used so far.
func brokerCPU(b *broker) time.Duration { return readProcStats(b.Pid()).CPU }

// pollUntil calls f every interval until it reports true (then true), or
// until timeout (then false); f's error ends it.
func pollUntil(ctx context.Context, timeout, interval time.Duration, f func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil || ok {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if err := sleep(ctx, interval); err != nil {
			return false, err
		}
	}
}

// workerMetrics reads the worker's commit, abort and restart counters.
func workerMetrics(w *worker) (commits, aborts, restarts float64) {
	commits, _ = w.metric("mephisto_commits_total", nil)
	aborts, _ = w.metric("mephisto_transaction_aborts_total", nil)
	restarts, _ = w.metric("mephisto_grain_restarts_total", nil)
	return commits, aborts, restarts
}

// pairOrder is the order of a run's two guarantees: at_least_once first
// in odd runs.
func pairOrder(r int) []bool {
	if r%2 == 1 {
		return []bool{false, true}
	}
	return []bool{true, false}
}

func guaranteeName(eos bool) string {
	if eos {
		return "exactly_once"
	}
	return "at_least_once"
}

// eosCell renders an eos row's Mephisto cell: the exactly_once rates, the
// paired at_least_once rates and their ratio.
func eosCell(eos, alo []float64, unit string) string {
	mm := func(xs []float64) string {
		s := slices.Clone(xs)
		slices.Sort(s)
		return fmt.Sprintf("%s / **%s** / %s", num(s[0]), num(median(s)), num(s[len(s)-1]))
	}
	return fmt.Sprintf("%s %s; at_least_once in the same runs %s; eos ÷ alo **%.1f%%**",
		mm(eos), unit, mm(alo), 100*median(eos)/median(alo))
}

// noteRun notes one worker run of a pair.
func (row *Row) noteRun(r int, g guaranteeRun, n int) {
	extra := ""
	if g.aborts+g.restarts > 0 {
		extra += fmt.Sprintf(", %.0f transaction aborts, %.0f grain restarts", g.aborts, g.restarts)
	}
	if g.tableLag > 0 {
		extra += fmt.Sprintf(", the table served the final counts %.0f ms after the group's commit was seen", float64(g.tableLag)/1e6)
	}
	consumed := "not seen"
	if g.s.consumedRate > 0 {
		consumed = num(g.s.consumedRate) + " events/s"
	}
	// Cores busy over the timed window: the worker's CPU is its whole
	// process's (start-up included), the broker's is the window's.
	row.note("run %d %s: %s events/s (all consumed: %s), %.0f commits (%.1f per partition per second), CPU per event worker %.1f µs, broker %.1f µs (about %.2f + %.2f cores busy)%s",
		r, g.label, num(g.s.rate), consumed, g.commits, g.commits/partitions/g.wall, g.s.cpuPerEvent*1e6, g.brokerCPU/float64(n)*1e6,
		g.s.cpuPerEvent*g.s.rate, g.brokerCPU/g.wall, extra)
}

// countEOS: count under exactly_once, paired with count at_least_once.
func (h *harness) countEOS(ctx context.Context) (*Row, error) {
	const name = "count-eos"
	n, keys := h.opts.N, h.opts.Keys
	row := &Row{Workload: name, Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events, %s keys", group(fmt.Sprint(n)), group(fmt.Sprint(keys)))}
	b, kc, hwm, err := h.preloadedInput(name, keys)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	var alo, aloCPU []float64
	for r := 1; r <= h.opts.Runs; r++ {
		raw, err := h.runRaw(ctx, fmt.Sprintf("raw-%s-%d", name, r), "read", "--brokers", b.addr, "--topic", "in",
			"--group", fmt.Sprintf("raw-%d", r), "--n", fmt.Sprint(n))
		if err != nil {
			return row, err
		}
		row.addRaw(raw, n)
		for _, eos := range pairOrder(r) {
			g, err := h.countGuaranteeRun(ctx, row, kc, b, r, eos, hwm)
			if err != nil {
				return row, err
			}
			if eos {
				row.addRun(g.s)
			} else {
				alo, aloCPU = append(alo, g.s.rate), append(aloCPU, g.s.cpuPerEvent)
			}
			row.noteRun(r, g, n)
		}
		h.logf("run %d: raw %s events/s; at_least_once %s events/s; exactly_once %s events/s (%.1f%%)", r,
			num(row.Raw[r-1]), num(alo[r-1]), num(row.Mephisto[r-1]), 100*row.Mephisto[r-1]/alo[r-1])
	}
	row.Cell = eosCell(row.Mephisto, alo, row.Unit)
	row.note("at_least_once CPU per event %.1f µs (median), exactly_once %.1f µs", median(aloCPU)*1e6, median(row.CPUPerEvent)*1e6)
	row.note("count with MEPHISTO_PROCESSING_GUARANTEE=exactly_once, default commit interval (500 ms): each partition's changelog records and input offsets in one transaction per commit; " +
		"timed as count, from the first /readyz 200 to the group's committed offsets (committed by the transactions) reaching the high watermarks; " +
		"at_least_once = count, run in the same workload on the same input, interleaved run by run; ratio = exactly_once over the raw client")
	row.note("checked: three keys of the table exactly their count (not at least), then the changelog read read_committed: every key's last count exactly its count, no other key")
	row.note("raw: the count baseline (a sarama consumer group reading the topic, no commits)")
	return row, nil
}

func (h *harness) countGuaranteeRun(ctx context.Context, row *Row, kc *kclient, b *broker, r int, eos bool, hwm []int64) (guaranteeRun, error) {
	n, keys := h.opts.N, h.opts.Keys
	g := guaranteeRun{label: guaranteeName(eos)}
	app := fmt.Sprintf("count-%s-%d", map[bool]string{true: "eos", false: "alo"}[eos], r)
	env := []string{"BENCH_MODE=count", "BENCH_APP=" + app}
	if eos {
		env = append(env, eosEnv)
	}
	var cpu0 time.Duration
	onReady := func() { cpu0 = brokerCPU(b) }
	check := func(w *worker) error {
		g.brokerCPU = (brokerCPU(b) - cpu0).Seconds()
		used := min(keys, n)
		probe := []int{0, used / 2, used - 1}
		if eos {
			// Under exactly_once the group's offsets are committed by the
			// partition's transaction, before the commit's rows are
			// written to Pebble, whose values GET /tables serves: the
			// table may show the last commit a moment after the group.
			start := time.Now()
			shown, err := pollUntil(ctx, 10*time.Second, 5*time.Millisecond, func() (bool, error) {
				for _, j := range probe {
					got, ok, err := w.tableValue("counts", string(keyOf(j, keys)))
					if err != nil || !ok || got < expectedCount(j, n, keys) {
						return false, err
					}
				}
				return true, nil
			})
			if err != nil {
				return err
			}
			if shown {
				g.tableLag = time.Since(start)
			}
		}
		g.commits, g.aborts, g.restarts = workerMetrics(w)
		for _, j := range probe {
			k := string(keyOf(j, keys))
			got, ok, err := w.tableValue("counts", k)
			if err != nil {
				return err
			}
			want := expectedCount(j, n, keys)
			switch {
			case !ok || got < want:
				return fmt.Errorf("%s: counts[%s] = %d (found %v), want %d: the table lost updates", g.label, k, got, ok, want)
			case got > want && eos:
				return fmt.Errorf("exactly_once: counts[%s] = %d, want exactly %d: an event was counted twice", k, got, want)
			case got > want:
				row.note("run %d at_least_once: counts[%s] = %d > %d (at-least-once replay)", r, k, got, want)
			}
		}
		return nil
	}
	s, err := h.throughputRunHooked(ctx, kc, workerSpec{name: app, env: env, brokers: b.addr, nodeID: "b1"}, app, "in", hwm, n, onReady, check)
	if err != nil {
		return g, fmt.Errorf("%s: %w", g.label, err)
	}
	g.s = s
	g.wall = float64(n) / s.rate
	if eos {
		changelog := app + "-counts-changelog"
		c := newLastCounts(int64BE)
		if _, err := kc.readCommitted(changelog, c.add); err != nil {
			return g, fmt.Errorf("exactly_once: read %s read_committed: %w", changelog, err)
		}
		if c.err != nil {
			return g, fmt.Errorf("exactly_once: %s: %w", changelog, c.err)
		}
		extra, err := verifyCounts(c.last, n, keys)
		if err != nil {
			return g, fmt.Errorf("exactly_once: %s read_committed: %w", changelog, err)
		}
		if extra != 0 {
			return g, fmt.Errorf("exactly_once: %s read_committed: the counts sum to %d more than N: events counted twice", changelog, extra)
		}
	}
	return g, nil
}

// passEOS: pass under exactly_once, paired with pass at_least_once, next
// to the raw pipe and the raw transactional pipe (bench/raw pass-txn).
func (h *harness) passEOS(ctx context.Context) (*Row, error) {
	const name = "pass-eos"
	n, keys := h.opts.N, h.opts.Keys
	row := &Row{Workload: name, Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events", group(fmt.Sprint(n)))}
	b, kc, hwm, err := h.preloadedInput(name, keys)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	var alo, aloCPU, rawTxn, rawTxnCommit []float64
	for r := 1; r <= h.opts.Runs; r++ {
		rawOut, rawTxnOut := fmt.Sprintf("raw-out-%d", r), fmt.Sprintf("raw-txn-out-%d", r)
		for _, t := range []string{rawOut, rawTxnOut} {
			if err := kc.createTopic(t, false); err != nil {
				return row, err
			}
		}
		raw, err := h.runRaw(ctx, fmt.Sprintf("raw-%s-%d", name, r), "pass", "--brokers", b.addr, "--topic", "in", "--out", rawOut,
			"--group", fmt.Sprintf("raw-%d", r), "--n", fmt.Sprint(n))
		if err != nil {
			return row, err
		}
		row.addRaw(raw, n)
		txn, err := h.runRaw(ctx, fmt.Sprintf("raw-txn-%s-%d", name, r), "pass-txn", "--brokers", b.addr, "--topic", "in", "--out", rawTxnOut,
			"--group", fmt.Sprintf("raw-txn-%d", r), "--n", fmt.Sprint(n))
		if err != nil {
			return row, err
		}
		if err := h.verifyExactPass(kc, rawTxnOut); err != nil {
			return row, fmt.Errorf("raw pass-txn: %w", err)
		}
		rawTxn = append(rawTxn, float64(n)/txn.Seconds)
		rawTxnCommit = append(rawTxnCommit, 1000*txn.CommitSeconds/float64(max(txn.Transactions, 1)))
		row.note("run %d raw pass-txn: %s events/s, %d transactions (%.1f per partition per second), %.1f ms per commit (AddOffsetsToTxn + CommitTxn, mean)",
			r, num(rawTxn[r-1]), txn.Transactions, float64(txn.Transactions)/partitions/txn.Seconds, rawTxnCommit[r-1])
		for _, eos := range pairOrder(r) {
			g, err := h.passGuaranteeRun(ctx, row, kc, b, r, eos, hwm)
			if err != nil {
				return row, err
			}
			if eos {
				row.addRun(g.s)
			} else {
				alo, aloCPU = append(alo, g.s.rate), append(aloCPU, g.s.cpuPerEvent)
			}
			row.noteRun(r, g, n)
		}
		h.logf("run %d: raw %s events/s, raw transactional %s events/s; at_least_once %s events/s; exactly_once %s events/s (%.1f%%)", r,
			num(row.Raw[r-1]), num(rawTxn[r-1]), num(alo[r-1]), num(row.Mephisto[r-1]), 100*row.Mephisto[r-1]/alo[r-1])
	}
	row.Cell = eosCell(row.Mephisto, alo, row.Unit)
	row.RawCell = fmt.Sprintf("%s events/s; transactional %s events/s", num(median(row.Raw)), num(median(rawTxn)))
	row.note("exactly_once ÷ raw transactional pipe: %.1f%%; raw transactional ÷ raw pipe: %.1f%%",
		100*median(row.Mephisto)/median(rawTxn), 100*median(rawTxn)/median(row.Raw))
	row.note("at_least_once CPU per event %.1f µs (median), exactly_once %.1f µs", median(aloCPU)*1e6, median(row.CPUPerEvent)*1e6)
	row.note("pass with MEPHISTO_PROCESSING_GUARANTEE=exactly_once, default commit interval (500 ms): each partition's outputs and input offsets in one transaction per commit; " +
		"timed as pass, to the group's committed offsets (committed by the transactions) reaching the high watermarks; " +
		"at_least_once = pass, run in the same workload on the same input, interleaved run by run; ratio = exactly_once over the raw pipe")
	row.note("checked: the output topic read read_committed holds exactly N records, every input key exactly as often as in the input, every value upper-cased (so does the raw transactional pipe's)")
	row.note("raw: the pass baseline (a sarama consumer group feeding an async idempotent producer); transactional: bench/raw pass-txn, the same with a transactional producer per input partition committing its records and input offset every 500 ms (at once, at most every 50 ms, once caught up; after 20,000 records), synchronously; timed to its last commit")
	return row, nil
}

func (h *harness) passGuaranteeRun(ctx context.Context, row *Row, kc *kclient, b *broker, r int, eos bool, hwm []int64) (guaranteeRun, error) {
	n := h.opts.N
	g := guaranteeRun{label: guaranteeName(eos)}
	tag := map[bool]string{true: "eos", false: "alo"}[eos]
	app, out := fmt.Sprintf("pass-%s-%d", tag, r), fmt.Sprintf("out-%s-%d", tag, r)
	if err := kc.createTopic(out, false); err != nil {
		return g, err
	}
	env := []string{"BENCH_MODE=pass", "BENCH_APP=" + app, "BENCH_OUT=" + out}
	if eos {
		env = append(env, eosEnv)
	}
	var cpu0 time.Duration
	onReady := func() { cpu0 = brokerCPU(b) }
	check := func(w *worker) error {
		g.brokerCPU = (brokerCPU(b) - cpu0).Seconds()
		g.commits, g.aborts, g.restarts = workerMetrics(w)
		if eos {
			return nil // read read_committed once the worker stopped
		}
		hw, err := kc.highWatermarks(out)
		if err != nil {
			return err
		}
		if got := sum(hw); got < int64(n) {
			return fmt.Errorf("at_least_once: %s holds %d records, want at least %d", out, got, n)
		}
		return nil
	}
	s, err := h.throughputRunHooked(ctx, kc, workerSpec{name: app, env: env, brokers: b.addr, nodeID: "b1"}, app, "in", hwm, n, onReady, check)
	if err != nil {
		return g, fmt.Errorf("%s: %w", g.label, err)
	}
	g.s = s
	g.wall = float64(n) / s.rate
	if eos {
		if err := h.verifyExactPass(kc, out); err != nil {
			return g, fmt.Errorf("exactly_once: %w", err)
		}
		if hw, err := kc.highWatermarks(out); err == nil {
			row.note("run %d exactly_once: the output's offsets end %d past N: the commit markers of the transactions that wrote to it", r, sum(hw)-int64(n))
		}
	}
	return g, nil
}

// verifyExactPass reads a pass-through's output topic read_committed and
// checks that it holds every input record exactly once, upper-cased.
func (h *harness) verifyExactPass(kc *kclient, out string) error {
	o := newPassOutput()
	if _, err := kc.readCommitted(out, o.add); err != nil {
		return fmt.Errorf("read %s read_committed: %w", out, err)
	}
	extra, err := o.verify(h.opts.N, h.opts.Keys, h.opts.ValueSize)
	if err != nil {
		return fmt.Errorf("%s read_committed: %w", out, err)
	}
	if extra != 0 {
		return fmt.Errorf("%s read_committed holds %d records beyond N: duplicates", out, extra)
	}
	return nil
}

// readCommitted reads every partition of topic as a read_committed
// consumer sees it once every transaction on it is decided, from its
// oldest offset to the last record before its last stable offset
// (transaction markers and aborted records take offsets but are never
// delivered: kafka.DataEnd), and calls fn with each record; it returns how
// many it read. Nothing may be writing to topic: it first waits until the
// last stable offset of every partition is its high watermark (a
// transaction's EndTxn returns before the broker has written its markers,
// and until they are written the last stable offset stays at the
// transaction's first record).
func (k *kclient) readCommitted(topic string, fn func(key, value []byte)) (int64, error) {
	cfg := kafka.ConsumerConfig("mephisto-bench-read-committed")
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(k.brokers, cfg)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	var records int64
	for p := range int32(partitions) {
		var oldest, end, hwm int64
		stable, err := pollUntil(context.Background(), 30*time.Second, 10*time.Millisecond, func() (bool, error) {
			var err error
			if oldest, end, err = kafka.Bounds(client, topic, p); err != nil {
				return false, err
			}
			hwm, err = k.client.GetOffset(topic, p, sarama.OffsetNewest)
			return end >= hwm, err
		})
		if err != nil {
			return records, err
		}
		if !stable {
			return records, fmt.Errorf("%s/%d: the last stable offset stayed at %d, below the high watermark %d, for 30s: a transaction was left open", topic, p, end, hwm)
		}
		if end, err = kafka.DataEnd(client, topic, p, oldest, end); err != nil {
			return records, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err = kafka.ReadRange(ctx, consumer, topic, p, oldest, end, func(m *sarama.ConsumerMessage) error {
			records++
			fn(m.Key, m.Value)
			return nil
		})
		cancel()
		if err != nil {
			return records, fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
	}
	return records, nil
}
