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
func (h *harness) latency(ctx context.Context) (*Row, error) {
	o := h.opts
	row := &Row{Workload: "latency", Unit: "ms"}
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
		}
		rate = median(c.Mephisto) / 2
		row.note("rate = half of count's median, %s events/s", num(median(c.Mephisto)))
	}
	total := int64(rate * o.LatencyDuration.Seconds())
	row.N = fmt.Sprintf("%s events/s for %v (%s events, %s keys)", num(rate), o.LatencyDuration, group(fmt.Sprint(total)), group(fmt.Sprint(o.Keys)))
	var p50s, p99s, rawP50s, rawP99s []float64
	for r := 1; r <= o.LatencyRuns; r++ {
		m, raw, rss, err := h.latencyRun(ctx, r, rate, total)
		if err != nil {
			return row, err
		}
		p50s, p99s = append(p50s, pct(m, 50)), append(p99s, pct(m, 99))
		rawP50s, rawP99s = append(rawP50s, pct(raw, 50)), append(rawP99s, pct(raw, 99))
		row.PeakRSS = append(row.PeakRSS, rss)
		h.logf("run %d: produce → table update p50 %.1f ms, p99 %.1f ms, max %.1f ms; produce → raw read p50 %.1f ms, p99 %.1f ms",
			r, pct(m, 50), pct(m, 99), pct(m, 100), pct(raw, 50), pct(raw, 99))
		row.note("run %d: p50 %.0f ms, p99 %.0f ms, max %.0f ms (raw p50 %.1f ms, p99 %.1f ms)", r, pct(m, 50), pct(m, 99), pct(m, 100), pct(raw, 50), pct(raw, 99))
	}
	row.Cell = fmt.Sprintf("p50 %s ms, p99 %s ms", spread(p50s), spread(p99s))
	row.RawCell = fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", median(rawP50s), median(rawP99s))
	row.note("latency = harness reads the changelog record holding an event's update − harness handed the event to its producer; the table changes only at a commit: at once (at most every 50 ms) where a partition keeps up with its input, every commit interval (500 ms) where it is behind")
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
func (h *harness) latencyRun(ctx context.Context, r int, rate float64, total int64) (meph, raw []float64, rss int64, err error) {
	o := h.opts
	b, kc, err := h.newBroker(fmt.Sprintf("latency-%d", r))
	if err != nil {
		return nil, nil, 0, err
	}
	defer b.close()
	defer kc.close()
	if err := kc.createTopic("in", false); err != nil {
		return nil, nil, 0, err
	}
	const app = "lat"
	w, err := h.startWorker(workerSpec{name: fmt.Sprintf("latency-%d", r), env: []string{"BENCH_MODE=count", "BENCH_APP=" + app},
		brokers: b.addr, nodeID: "b1"})
	if err != nil {
		return nil, nil, 0, err
	}
	defer func() { _ = w.Stop(time.Minute) }()
	if _, err := w.waitReady(ctx, 2*time.Minute, 10*time.Millisecond); err != nil {
		return nil, nil, 0, err
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
	consumer, err := sarama.NewConsumer([]string{b.addr}, cfg)
	if err != nil {
		return nil, nil, 0, err
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
		return nil, nil, 0, err
	}
	// Let the observers' first fetches settle before the clock starts.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, nil, 0, err
	}
	l, err := startLoader([]string{b.addr}, "in", rate, o.Keys, o.ValueSize, total, onSend)
	if err != nil {
		return nil, nil, 0, err
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
	lerr := l.close()
	rss = readProcStats(w.Pid()).PeakRSS
	mephMu.Lock()
	rawMu.Lock()
	defer mephMu.Unlock()
	defer rawMu.Unlock()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w: %d of %d updates seen in the changelog, %d of %d events read raw", err, len(meph), total, len(raw), total)
	}
	return slices.Clone(meph), slices.Clone(raw), rss, errors.Join(lerr, w.Stop(time.Minute))
}
