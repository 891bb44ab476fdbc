package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/kafka"
)

// latency: end-to-end latency from produce to table update, at half of
// the count workload's measured throughput.
//
// The harness produces count events (10,000 keys) at a steady rate,
// remembering when it handed each to its producer, and reads the table's
// changelog <app>-counts-changelog as it is written. A changelog record
// (key, n) says the table holds the key's n-th update, committed (Mephisto
// produces changelog records in step (a) of its commit, and the record
// carries the running count), so each of the key's occurrences 1..n not
// yet seen gets latency = time the record was read − time that occurrence
// was produced. One clock, one process. In the same run the harness also
// reads the input topic itself: the raw column is the same produce → read
// latency without Mephisto, the floor Kafka and the dev broker set.
//
// latency-eos is the same under exactly_once (the worker runs with
// MEPHISTO_PROCESSING_GUARANTEE=exactly_once, eos.go) at the same rate,
// and the harness reads the changelog read_committed, as a consumer of an
// exactly-once app's outputs must: an update is seen once the transaction
// of its partition's commit has committed, so the latency includes the
// commit's transaction (its produce, AddOffsetsToTxn, TxnOffsetCommit and
// EndTxn) and the broker's writing of the commit markers.
func (h *harness) latency(ctx context.Context, name string, eos bool) (*Row, error) {
	o := h.opts
	row := &Row{Workload: name, Unit: "ms"}
	rate := o.LatencyRate
	if rate <= 0 {
		c := h.rows["count"]
		if c == nil || c.Failed != "" || len(c.Mephisto) == 0 {
			h.logf("latency needs count's throughput: measuring count once")
			saved := h.opts.Runs
			h.opts.Runs = 1
			var err error
			c, err = h.count(ctx, "count", o.Keys)
			h.opts.Runs = saved
			if err != nil {
				return row, fmt.Errorf("measure count for the latency rate: %w", err)
			}
			h.rows["count"] = c // latency-eos takes the same rate
		}
		rate = median(c.Mephisto) / 2
		row.note("rate = half of count's median, %s events/s", num(median(c.Mephisto)))
	}
	total := int64(rate * o.LatencyDuration.Seconds())
	row.N = fmt.Sprintf("%s events/s for %v (%s events, %s keys)", num(rate), o.LatencyDuration, group(fmt.Sprint(total)), group(fmt.Sprint(o.Keys)))
	var p50s, p99s, rawP50s, rawP99s []float64
	for r := 1; r <= o.LatencyRuns; r++ {
		m, raw, rss, use, err := h.latencyRun(ctx, name, r, rate, total, eos)
		if err != nil {
			return row, err
		}
		p50s, p99s = append(p50s, pct(m, 50)), append(p99s, pct(m, 99))
		rawP50s, rawP99s = append(rawP50s, pct(raw, 50)), append(rawP99s, pct(raw, 99))
		row.PeakRSS = append(row.PeakRSS, rss)
		h.logf("run %d: produce → table update p50 %.1f ms, p99 %.1f ms, max %.1f ms; produce → raw read p50 %.1f ms, p99 %.1f ms",
			r, pct(m, 50), pct(m, 99), pct(m, 100), pct(raw, 50), pct(raw, 99))
		row.note("run %d: p50 %.0f ms, p99 %.0f ms, max %.0f ms (raw p50 %.1f ms, p99 %.1f ms); from the first event sent to the last update seen: %.0f commits per second (%.1f per partition), worker %.2f cores, broker %.2f cores",
			r, pct(m, 50), pct(m, 99), pct(m, 100), pct(raw, 50), pct(raw, 99), use.commits, use.commits/partitions, use.worker, use.broker)
	}
	row.Cell = fmt.Sprintf("p50 %s ms, p99 %s ms", spread(p50s), spread(p99s))
	row.RawCell = fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", median(rawP50s), median(rawP99s))
	row.note("latency = harness reads the changelog record holding an event's update − harness handed the event to its producer; the table changes only at a commit: at once (at most every 50 ms) where a partition keeps up with its input, every commit interval (500 ms) where it is behind")
	if eos {
		row.note("under exactly_once (MEPHISTO_PROCESSING_GUARANTEE=exactly_once), the changelog read read_committed: an update is seen once its partition's transaction has committed (the commit's transaction and markers included)")
		if l := h.rows["latency"]; l != nil && l.Failed == "" && l.Cell != "" {
			row.note("at_least_once at the same rate in this run (latency): %s", l.Cell)
		}
	}
	row.note("raw: produce → the harness's own consumer reading the input topic, in the same run")
	return row, nil
}

// spread renders the median of xs with its range over runs.
func spread(xs []float64) string { return spreadPrec(xs, 0) }

// spreadPrec is spread with prec decimals.
func spreadPrec(xs []float64, prec int) string {
	if len(xs) == 1 {
		return fmt.Sprintf("**%.*f**", prec, xs[0])
	}
	return fmt.Sprintf("**%.*f** (%.*f–%.*f)", prec, median(xs), prec, slices.Min(xs), prec, slices.Max(xs))
}

// pct returns the p-th percentile of xs (nearest rank; 100 is the max).
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// latencyRun runs one latency measurement and returns the Mephisto and raw
// latencies in milliseconds and the worker's peak RSS.
// latencyUse is what a latency run's worker and broker used while the
// harness produced: commits per second and CPU cores.
type latencyUse struct{ commits, worker, broker float64 }

func (h *harness) latencyRun(ctx context.Context, name string, r int, rate float64, total int64, eos bool) (meph, raw []float64, rss int64, use latencyUse, err error) {
	o := h.opts
	b, kc, err := h.newBroker(fmt.Sprintf("%s-%d", name, r))
	if err != nil {
		return nil, nil, 0, use, err
	}
	defer b.close()
	defer kc.close()
	if err := kc.createTopic("in", false); err != nil {
		return nil, nil, 0, use, err
	}
	const app = "lat"
	env := []string{"BENCH_MODE=count", "BENCH_APP=" + app}
	if eos {
		env = append(env, eosEnv)
	}
	w, err := h.startWorker(workerSpec{name: fmt.Sprintf("%s-%d", name, r), env: env, brokers: b.addr, nodeID: "b1"})
	if err != nil {
		return nil, nil, 0, use, err
	}
	defer func() { _ = w.Stop(time.Minute) }()
	if _, err := w.waitReady(ctx, 2*time.Minute, 10*time.Millisecond); err != nil {
		return nil, nil, 0, use, err
	}

	// What was sent when, and which occurrence of its key each event is.
	var mu sync.Mutex
	sentAt := make([]int64, total)
	occ := map[string][]int64{} // key → sequence numbers, in order
	done := map[string]int{}    // key → occurrences already attributed
	onSend := func(seq int64, key []byte) {
		mu.Lock()
		sentAt[seq] = time.Now().UnixNano()
		occ[string(key)] = append(occ[string(key)], seq)
		mu.Unlock()
	}

	cfg := kafka.ClientConfig("mephisto-bench-observer")
	cfg.Consumer.MaxWaitTime = 10 * time.Millisecond
	if eos {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	consumer, err := sarama.NewConsumer([]string{b.addr}, cfg)
	if err != nil {
		return nil, nil, 0, use, err
	}
	defer consumer.Close()
	var mephMu, rawMu sync.Mutex
	allMeph, allRaw := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	observe := func(topic string, fn func(m *sarama.ConsumerMessage, now int64)) error {
		for p := range int32(partitions) {
			pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetNewest)
			if err != nil {
				return fmt.Errorf("observe %s/%d: %w", topic, p, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer pc.AsyncClose()
				for {
					select {
					case <-stop:
						return
					case m := <-pc.Messages():
						fn(m, time.Now().UnixNano())
					}
				}
			}()
		}
		return nil
	}
	err = observe(app+"-counts-changelog", func(m *sarama.ConsumerMessage, now int64) {
		if len(m.Value) != 8 {
			return
		}
		n := int(binary.BigEndian.Uint64(m.Value))
		k := string(m.Key)
		mu.Lock()
		seqs := occ[k]
		var lats []float64
		for j := done[k]; j < min(n, len(seqs)); j++ {
			lats = append(lats, float64(now-sentAt[seqs[j]])/1e6)
		}
		done[k] = max(done[k], min(n, len(seqs)))
		mu.Unlock()
		mephMu.Lock()
		meph = append(meph, lats...)
		if int64(len(meph)) == total {
			close(allMeph)
		}
		mephMu.Unlock()
	})
	if err == nil {
		err = observe("in", func(m *sarama.ConsumerMessage, now int64) {
			if len(m.Value) < 8 {
				return
			}
			seq := int64(binary.BigEndian.Uint64(m.Value))
			if seq < 0 || seq >= total {
				return
			}
			mu.Lock()
			lat := float64(now-sentAt[seq]) / 1e6
			mu.Unlock()
			rawMu.Lock()
			raw = append(raw, lat)
			if int64(len(raw)) == total {
				close(allRaw)
			}
			rawMu.Unlock()
		})
	}
	if err != nil {
		return nil, nil, 0, use, err
	}
	// Let the observers' first fetches settle before the clock starts.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, nil, 0, use, err
	}
	commits0, _ := w.metric("mephisto_commits_total", nil)
	cpuW0, cpuB0, t0 := readProcStats(w.Pid()).CPU, brokerCPU(b), time.Now()
	l, err := startLoader([]string{b.addr}, "in", rate, o.Keys, o.ValueSize, total, onSend)
	if err != nil {
		return nil, nil, 0, use, err
	}
	timeout := time.After(o.LatencyDuration + 2*time.Minute)
	for _, c := range []chan struct{}{allMeph, allRaw} {
		select {
		case <-c:
		case <-timeout:
			err = errors.New("timed out waiting for every event's update")
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	commits1, _ := w.metric("mephisto_commits_total", nil)
	st, cpuB1, took := readProcStats(w.Pid()), brokerCPU(b), time.Since(t0).Seconds()
	use = latencyUse{commits: (commits1 - commits0) / took, worker: (st.CPU - cpuW0).Seconds() / took, broker: (cpuB1 - cpuB0).Seconds() / took}
	lerr := l.close()
	rss = st.PeakRSS
	mephMu.Lock()
	rawMu.Lock()
	defer mephMu.Unlock()
	defer rawMu.Unlock()
	if err != nil {
		return nil, nil, 0, use, fmt.Errorf("%w: %d of %d updates seen in the changelog, %d of %d events read raw", err, len(meph), total, len(raw), total)
	}
	return slices.Clone(meph), slices.Clone(raw), rss, use, errors.Join(lerr, w.Stop(time.Minute))
}
