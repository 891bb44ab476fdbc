package harness

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mephistohq/mephisto/kafka"
)

// The windowed count (issue 13): count-tumbling and count-hopping are
// count with its table windowed (bench/benchapp NewWindowed): tumbling
// windows of windowSize, or hopping windows of windowSize every
// windowSize/4, so that every event lands in 4 windows; grace
// windowGrace, expiry windowExpires. The input is count's (N events over
// Keys keys, 8 partitions) with event times: the harness stamps event i
// with base + i·span/N, the span being Options.Windows windows of
// windowSize, so every partition's stream time moves steadily through
// the span as it is processed, and windows close and expire all the run
// long (base is a day ago: Apache Kafka refuses timestamps more than an
// hour ahead and deletes segments past their retention, 7 days).
//
// Each run measures the windowed count and plain count on the same
// broker and the same preloaded input, interleaved (count first in odd
// runs), timed as count (from the first /readyz 200 to the group's
// committed offsets reaching the high watermarks), so that the ratio
// windowed ÷ count is taken in the same minutes. The row's raw column
// holds count's figures: its rate, its peak RSS and its CPU per event.
//
// Both runs' data dirs (Pebble) are sampled every diskSampleEvery while
// the clock runs, once more when the group has committed everything, and
// after the worker stopped.
//
// The result is checked exactly, against a model of the input (which
// window holds which event, each partition's final stream time):
//
//   - the close callback's tally (GET /bench/windows): for every key,
//     exactly as many windows closed as the model closes (end + grace at
//     or below its partition's final stream time), their final counts
//     summing to exactly the key's events in them, and no other key;
//   - three keys over HTTP (GET /tables/counts/KEY): exactly the windows
//     the model keeps live (end + expires above the stream time), each at
//     exactly its count;
//   - once the worker stopped, the changelog (every record, each window's
//     last one): every live window of every key at exactly its count,
//     every expired window ended by a tombstone, no other window, and each
//     partition's times row at the model's stream time;
//   - so per key, the tally's sum plus the counts of its windows that have
//     not closed is exactly its events times the windows per event: no
//     event lost, none counted twice;
//   - no late event (mephisto_window_late_events_total), no grain restart
//     (a restart would close windows again into the in-memory tally).
//
// The paired count run is checked as count is (three keys at least their
// count).
const (
	windowSize    = time.Minute
	windowGrace   = 10 * time.Second
	windowExpires = 2 * time.Minute
	// windowHops is how many hopping windows hold each event.
	windowHops = 4
	// diskSampleEvery is how often a run's data dir is measured.
	diskSampleEvery = 200 * time.Millisecond
)

// windowModel is the windowed workloads' input and what the table must
// make of it.
type windowModel struct {
	hopping                    bool
	size, step, grace, expires int64 // ms
	base, span                 int64 // ms: event i is at base + i·span/n
	n, keys                    int
	kBase                      int64   // the first window's start / step
	nw                         int     // windows (by start) any event falls in
	part                       []int32 // each key's partition
	stream                     [partitions]int64
	counts                     []int32 // [j·nw + k−kBase]: events of key j in window k
}

func newWindowModel(hopping bool, n, keys, windows int, now time.Time) *windowModel {
	m := &windowModel{hopping: hopping, size: windowSize.Milliseconds(), grace: windowGrace.Milliseconds(),
		expires: windowExpires.Milliseconds(), n: n, keys: keys}
	m.step = m.size
	if hopping {
		m.step = m.size / windowHops
	}
	m.span = int64(windows) * m.size
	m.base = now.Add(-24 * time.Hour).Truncate(time.Hour).UnixMilli()
	lo, _ := m.windowsOf(m.ts(0))
	_, hi := m.windowsOf(m.ts(n - 1))
	m.kBase, m.nw = lo, int(hi-lo+1)
	m.part = make([]int32, min(keys, n))
	for j := range m.part {
		m.part[j] = kafka.Partition(keyOf(j, keys), partitions)
	}
	m.counts = make([]int32, len(m.part)*m.nw)
	for p := range m.stream {
		m.stream[p] = -1
	}
	for i := range n {
		j, t := i%keys, m.ts(i)
		lo, hi := m.windowsOf(t)
		for k := lo; k <= hi; k++ {
			m.counts[j*m.nw+int(k-m.kBase)]++
		}
		m.stream[m.part[j]] = max(m.stream[m.part[j]], t)
	}
	return m
}

// ts is event i's time (unix ms).
func (m *windowModel) ts(i int) int64 { return m.base + int64(i)*m.span/int64(m.n) }

// windowsOf returns the windows holding instant t, as the first and last
// window index (a window's start is its index times the step): the
// windows [k·step, k·step+size) with k·step ≤ t < k·step+size.
func (m *windowModel) windowsOf(t int64) (lo, hi int64) {
	hi = floorDiv(t, m.step)
	return floorDiv(t-m.size, m.step) + 1, hi
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// window k's start and end.
func (m *windowModel) window(k int64) (start, end int64) { return k * m.step, k*m.step + m.size }

// perEvent is how many windows hold each event.
func (m *windowModel) perEvent() int64 { return m.size / m.step }

// state is what the table must hold of key j's window k at the end: its
// count (0: the key has no event in it), whether it closed and whether it
// expired.
func (m *windowModel) state(j int, k int64) (count int64, closed, expired bool) {
	count = int64(m.counts[j*m.nw+int(k-m.kBase)])
	_, end := m.window(k)
	st := m.stream[m.part[j]]
	return count, end+m.grace <= st, end+m.expires <= st
}

// env is the bench app's environment for the windowed table.
func (m *windowModel) env() []string {
	mode := "count-tumbling"
	if m.hopping {
		mode = "count-hopping"
	}
	ms := func(x int64) string { return (time.Duration(x) * time.Millisecond).String() }
	return []string{"BENCH_MODE=" + mode, "BENCH_WINDOW_SIZE=" + ms(m.size), "BENCH_WINDOW_STEP=" + ms(m.step),
		"BENCH_WINDOW_GRACE=" + ms(m.grace), "BENCH_WINDOW_EXPIRES=" + ms(m.expires)}
}

// totals counts the windows of every key: with an event, closed, expired.
func (m *windowModel) totals() (created, closed, expired int) {
	for j := range m.part {
		for k := m.kBase; k < m.kBase+int64(m.nw); k++ {
			c, cl, ex := m.state(j, k)
			if c == 0 {
				continue
			}
			created++
			if cl {
				closed++
			}
			if ex {
				expired++
			}
		}
	}
	return created, closed, expired
}

// windowKey decodes a windowed table's changelog key (the user key's
// length as a uvarint, the key, the window's start as 8 bytes big-endian
// with the sign bit flipped: docs/windows.md, State and recovery).
func windowKey(b []byte) (key string, start int64, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) != n+8 {
		return "", 0, fmt.Errorf("changelog key %q is not a window key", b)
	}
	return string(b[w : w+int(n)]), int64(binary.BigEndian.Uint64(b[w+int(n):]) ^ (1 << 63)), nil
}

// metaKey is the row of a windowed shard holding its stream time and
// close watermark.
const metaKey = "\xff"

// windowChangelog is a windowed table's changelog, folded.
type windowChangelog struct {
	last       map[string]int64 // window key → its last count; −1: a tombstone
	meta       [partitions][]byte
	records    int64 // read back
	written    int64 // the high watermarks: every record produced, compacted or not
	tombstones int64
	err        error
}

func (c *windowChangelog) add(p int32, key, value []byte) {
	c.records++
	if string(key) == metaKey {
		if p >= 0 && p < partitions {
			c.meta[p] = append([]byte(nil), value...)
		}
		return
	}
	if value == nil {
		c.tombstones++
		c.last[string(key)] = -1
		return
	}
	n, err := decodeCount(int64BE, value)
	if err != nil && c.err == nil {
		c.err = fmt.Errorf("changelog value of %q: %w", key, err)
	}
	c.last[string(key)] = n
}

// verify checks the folded changelog against the model: every window of
// every key live at exactly its count or ended by a tombstone if it
// expired, no other window, each partition's times row at the model's
// stream time and close watermark.
func (c *windowChangelog) verify(m *windowModel) error {
	if c.err != nil {
		return c.err
	}
	type wk struct {
		key   string
		start int64
	}
	seen := make(map[wk]int64, len(c.last))
	for k, v := range c.last {
		key, start, err := windowKey([]byte(k))
		if err != nil {
			return err
		}
		seen[wk{key, start}] = v
	}
	want := 0
	for j := range m.part {
		key := string(keyOf(j, m.keys))
		for k := m.kBase; k < m.kBase+int64(m.nw); k++ {
			count, _, expired := m.state(j, k)
			if count == 0 {
				continue
			}
			want++
			start, _ := m.window(k)
			got, ok := seen[wk{key, start}]
			switch {
			case !ok:
				return fmt.Errorf("window %s of key %s (%d events): not in the changelog", fmtWindow(start, m.size), key, count)
			case expired && got != -1:
				return fmt.Errorf("window %s of key %s: expired (stream time %s) but its last changelog record is a count of %d, not a tombstone",
					fmtWindow(start, m.size), key, fmtMs(m.stream[m.part[j]]), got)
			case !expired && got != count:
				return fmt.Errorf("window %s of key %s: the changelog's last count is %d, want %d", fmtWindow(start, m.size), key, got, count)
			}
		}
	}
	if len(seen) != want {
		return fmt.Errorf("the changelog holds %d windows, want %d (windows of keys or times no event had)", len(seen), want)
	}
	for p, raw := range c.meta {
		if m.stream[p] < 0 && raw == nil {
			continue // no event on the partition
		}
		if len(raw) != 16 {
			return fmt.Errorf("partition %d: times row %x, want 16 bytes (stream time, close watermark)", p, raw)
		}
		stream, closed := int64(binary.BigEndian.Uint64(raw)), int64(binary.BigEndian.Uint64(raw[8:]))
		if stream != m.stream[p] || closed != m.stream[p] {
			return fmt.Errorf("partition %d: stream time %s, close watermark %s; want both %s (the partition's last event)", p, fmtMs(stream), fmtMs(closed), fmtMs(m.stream[p]))
		}
	}
	return nil
}

func fmtMs(t int64) string { return time.UnixMilli(t).UTC().Format("15:04:05.000") }

func fmtWindow(start, size int64) string {
	return fmt.Sprintf("[%s, %s)", fmtMs(start), fmtMs(start+size))
}

// windowTally is GET /bench/windows's answer (bench/app/window.go).
type windowTally struct {
	Keys   map[string][2]int64 `json:"keys"`
	Closes int64               `json:"closes"`
}

// verifyTally checks the close callback's tally: per key, exactly the
// windows the model closes, their counts summing to exactly the events in
// them; and per key, the tally's sum plus the counts of the windows not
// closed is the key's events times the windows per event.
func (m *windowModel) verifyTally(t windowTally) error {
	var closes int64
	for j := range m.part {
		key := string(keyOf(j, m.keys))
		var wantCloses, wantSum, open int64
		for k := m.kBase; k < m.kBase+int64(m.nw); k++ {
			count, closed, _ := m.state(j, k)
			if count == 0 {
				continue
			}
			if closed {
				wantCloses++
				wantSum += count
			} else {
				open += count
			}
		}
		got := t.Keys[key]
		if got[0] != wantCloses || got[1] != wantSum {
			return fmt.Errorf("key %s: %d windows closed with counts summing to %d, want %d windows summing to %d", key, got[0], got[1], wantCloses, wantSum)
		}
		if events := expectedCount(j, m.n, m.keys); wantSum+open != events*m.perEvent() {
			return fmt.Errorf("the model is wrong: key %s has %d events, its windows sum to %d", key, events, wantSum+open)
		}
		closes += wantCloses
	}
	for key := range t.Keys {
		var j int
		if _, err := fmt.Sscanf(key, "k%015d", &j); err != nil || j >= len(m.part) || key != string(keyOf(j, m.keys)) {
			return fmt.Errorf("a window of key %q closed: no event had that key", key)
		}
	}
	if t.Closes != closes {
		return fmt.Errorf("%d windows closed, want %d", t.Closes, closes)
	}
	return nil
}

// verifyServed checks GET /tables/counts/KEY of key j: exactly the live
// windows, in start order, at exactly their counts.
func (m *windowModel) verifyServed(w *worker, j int) error {
	key := string(keyOf(j, m.keys))
	code, body, err := w.get("/tables/counts/" + url.PathEscape(key))
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET /tables/counts/%s: HTTP %d %s", key, code, strings.TrimSpace(string(body)))
	}
	var v struct {
		Windows []struct {
			Start, End, Value int64
		} `json:"windows"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("GET /tables/counts/%s: %w", key, err)
	}
	var want []string
	for k := m.kBase; k < m.kBase+int64(m.nw); k++ {
		if count, _, expired := m.state(j, k); count > 0 && !expired {
			start, end := m.window(k)
			want = append(want, fmt.Sprintf("%d-%d:%d", start, end, count))
		}
	}
	var got []string
	for _, x := range v.Windows {
		got = append(got, fmt.Sprintf("%d-%d:%d", x.Start, x.End, x.Value))
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("GET /tables/counts/%s: windows %v, want %v", key, got, want)
	}
	return nil
}

// diskSample is a data dir's size at a moment of a run.
type diskSample struct {
	at time.Duration // since the clock started
	// total is the bytes on disk (allocated blocks, as du counts them:
	// Pebble preallocates its WAL files), files the bytes in the files
	// (their sizes), sst the bytes in Pebble's table files.
	total, files, sst int64
}

// dirUsage measures the files under dir.
func dirUsage(dir string) (u diskSample) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		n := info.Size()
		u.files += n
		if strings.HasSuffix(path, ".sst") {
			u.sst += n
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n = st.Blocks * 512
		}
		u.total += n
		return nil
	})
	return u
}

// diskSampler measures a data dir every diskSampleEvery until stopped.
type diskSampler struct {
	dir     string
	start   time.Time
	stop    chan struct{}
	done    chan struct{}
	samples []diskSample
}

func sampleDisk(dir string) *diskSampler {
	s := &diskSampler{dir: dir, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(diskSampleEvery)
		defer tick.Stop()
		for {
			s.take()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *diskSampler) take() {
	u := dirUsage(s.dir)
	u.at = time.Since(s.start)
	s.samples = append(s.samples, u)
}

// end stops the sampler after one last sample and returns the samples.
func (s *diskSampler) end() []diskSample {
	close(s.stop)
	<-s.done
	s.take()
	return s.samples
}

// diskUse sums up a run's data dir samples.
type diskUse struct {
	peak    diskSample // the largest of each measure
	end     diskSample // once the group had committed everything
	stopped diskSample // after the worker stopped
	// deciles are the samples at 10%, 20%, … 100% of the timed window.
	deciles [10]diskSample
}

func summarizeDisk(samples []diskSample, stopped diskSample) diskUse {
	u := diskUse{stopped: stopped}
	if len(samples) == 0 {
		return u
	}
	for _, s := range samples {
		u.peak.total, u.peak.files, u.peak.sst = max(u.peak.total, s.total), max(u.peak.files, s.files), max(u.peak.sst, s.sst)
	}
	u.end = samples[len(samples)-1]
	for q := range u.deciles {
		at := u.end.at * time.Duration(q+1) / 10
		i, _ := slices.BinarySearchFunc(samples, at, func(s diskSample, at time.Duration) int { return int(s.at - at) })
		u.deciles[q] = samples[min(i, len(samples)-1)]
	}
	return u
}

// series renders a measure of the deciles (MiB).
func (u diskUse) series(f func(diskSample) int64) string {
	parts := make([]string, len(u.deciles))
	for i, s := range u.deciles {
		parts[i] = mibn(f(s))
	}
	return strings.Join(parts, " / ")
}

func onDisk(s diskSample) int64  { return s.total }
func inFiles(s diskSample) int64 { return s.files }
func inSST(s diskSample) int64   { return s.sst }

// mibf formats bytes as MiB with one decimal.
func mibf(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// windowRun is one worker run of a windowed workload's pair.
type windowRun struct {
	s    runStats
	disk diskUse
	// changelog is the windowed run's changelog, folded (nil for count).
	changelog *windowChangelog
	closes    int64
}

// countWindowed: the windowed count (tumbling, or hopping with
// windowHops windows per event), paired with count.
func (h *harness) countWindowed(ctx context.Context, name string, hopping bool) (*Row, error) {
	n, keys, vs := h.opts.N, h.opts.Keys, h.opts.ValueSize
	m := newWindowModel(hopping, n, keys, h.opts.Windows, time.Now())
	spec := fmt.Sprintf("%d tumbling windows of %v", m.nw, windowSize)
	if hopping {
		spec = fmt.Sprintf("%d hopping windows of %v every %v (%d per event)", m.nw, windowSize, windowSize/windowHops, windowHops)
	}
	row := &Row{Workload: name, Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events, %s keys, event times over %s", group(fmt.Sprint(n)), group(fmt.Sprint(keys)), spec)}
	b, kc, err := h.newBroker(name)
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	start := time.Now()
	if err := kc.createTopic("in", false); err != nil {
		return row, err
	}
	if err := kc.preload("in", n, func(i int) record {
		return record{key: keyOf(i, keys), value: valueOf(i, vs), ts: time.UnixMilli(m.ts(i))}
	}); err != nil {
		return row, err
	}
	hwm, err := kc.highWatermarks("in")
	if err != nil {
		return row, err
	}
	h.logf("preloaded %d events stamped %s to %s in %v", n, time.UnixMilli(m.ts(0)).UTC().Format(time.DateTime),
		time.UnixMilli(m.ts(n-1)).UTC().Format(time.DateTime), time.Since(start).Round(time.Millisecond))
	var wins, counts []windowRun
	for r := 1; r <= h.opts.Runs; r++ {
		for _, windowed := range pairOrder(r) {
			wr, err := h.windowPairRun(ctx, row, kc, b, m, name, r, windowed, hwm)
			if err != nil {
				return row, err
			}
			if windowed {
				wins = append(wins, wr)
				row.addRun(wr.s)
			} else {
				counts = append(counts, wr)
				row.Raw = append(row.Raw, wr.s.rate)
				row.RawPeakRSS = append(row.RawPeakRSS, wr.s.rss)
				row.RawCPUPerEvent = append(row.RawCPUPerEvent, wr.s.cpuPerEvent)
			}
		}
		w, c := wins[r-1], counts[r-1]
		h.logf("run %d: count %s events/s; %s %s events/s (%.1f%%), peak RSS %s / %s, data dir peak %s (%s in files), end %s (%s) / count %s (%s), %s (%s)",
			r, num(c.s.rate), name, num(w.s.rate), 100*w.s.rate/c.s.rate, mib(w.s.rss), mib(c.s.rss),
			mibf(w.disk.peak.total), mibf(w.disk.peak.files), mibf(w.disk.end.total), mibf(w.disk.end.files),
			mibf(c.disk.peak.total), mibf(c.disk.peak.files), mibf(c.disk.end.total), mibf(c.disk.end.files))
		first := "count first"
		if r%2 == 0 {
			first = name + " first"
		}
		row.note("run %d (%s): %s %s events/s (all consumed: %s), count %s events/s (%s): %.1f%%; CPU per event %.1f / %.1f µs; peak RSS %s / %s; "+
			"data dir at 10%%, 20%% … 100%% of the timed window, MiB on disk %s (in its files %s; in Pebble tables %s), peak %s on disk, %s in files, after the worker stopped %s / %s; "+
			"count's on disk %s, in files %s; "+
			"changelog: %s records written, %s windows ended by a tombstone; %s windows closed",
			r, first, name, num(w.s.rate), consumedCell(w.s), num(c.s.rate), consumedCell(c.s), 100*w.s.rate/c.s.rate, w.s.cpuPerEvent*1e6, c.s.cpuPerEvent*1e6, mib(w.s.rss), mib(c.s.rss),
			w.disk.series(onDisk), w.disk.series(inFiles), w.disk.series(inSST), mibf(w.disk.peak.total), mibf(w.disk.peak.files), mibf(w.disk.stopped.total), mibf(w.disk.stopped.files),
			c.disk.series(onDisk), c.disk.series(inFiles),
			group(fmt.Sprint(w.changelog.written)), group(fmt.Sprint(w.changelog.tombstones)), group(fmt.Sprint(w.closes)))
	}
	med := func(rs []windowRun, f func(windowRun) int64) int64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = float64(f(r))
		}
		return int64(median(xs))
	}
	s := slices.Clone(row.Mephisto)
	slices.Sort(s)
	row.Cell = fmt.Sprintf("%s / **%s** / %s events/s; data dir peak **%s** on disk, %s in its files, at the end %s / %s (count: %s / %s, %s / %s)",
		num(s[0]), num(median(s)), num(s[len(s)-1]),
		mibf(med(wins, func(r windowRun) int64 { return r.disk.peak.total })), mibf(med(wins, func(r windowRun) int64 { return r.disk.peak.files })),
		mibf(med(wins, func(r windowRun) int64 { return r.disk.end.total })), mibf(med(wins, func(r windowRun) int64 { return r.disk.end.files })),
		mibf(med(counts, func(r windowRun) int64 { return r.disk.peak.total })), mibf(med(counts, func(r windowRun) int64 { return r.disk.peak.files })),
		mibf(med(counts, func(r windowRun) int64 { return r.disk.end.total })), mibf(med(counts, func(r windowRun) int64 { return r.disk.end.files })))
	row.RawCell = fmt.Sprintf("count %s events/s", num(median(row.Raw)))
	created, closed, expired := m.totals()
	row.note("count with windowed table counts (%s, grace %v, expires %v; bench/benchapp NewWindowed), event time = the record's timestamp, stamped by the harness: event i at base + i × %d windows / N, so each partition's stream time crosses the span as it is processed; "+
		"the close callback adds each closed window's count to an in-memory tally (a map update); "+
		"in every run the windowed count and count ran on the same broker and input, interleaved; timed as count; ratio = the windowed count's median over count's; the raw column is count's (rate, peak RSS, CPU per event)",
		map[bool]string{false: "tumbling " + windowSize.String(), true: fmt.Sprintf("hopping %v every %v", windowSize, windowSize/windowHops)}[hopping],
		windowGrace, windowExpires, h.opts.Windows)
	row.note("windows: %s (key, window) pairs got events, %s closed and %s expired by the end (deleted from Pebble and tombstoned in the changelog), %s live at the end; "+
		"the input is %s (N × %d-byte keys and %d-byte values)",
		group(fmt.Sprint(created)), group(fmt.Sprint(closed)), group(fmt.Sprint(expired)), group(fmt.Sprint(created-expired)),
		mibf(int64(n)*int64(keySize+vs)), keySize, vs)
	row.note("checked exactly, against a model of the input: the close tally (every key's closed windows and the sum of their counts), three keys' live windows over HTTP, the whole changelog once the worker stopped (every live window at its count, every expired one ended by a tombstone, no other window, each partition's stream time), so per key closed + open windows sum to exactly %d × its events; no late event, no grain restart",
		m.perEvent())
	row.note("data dir: the worker's --data-dir (Pebble: WAL files, which Pebble preallocates, tables, manifest), on disk (allocated blocks, as du counts) and in its files (their sizes), sampled every %v from the first /readyz 200, once more when the group had committed everything (the end: the cell's figures), and after the worker stopped; medians over runs", diskSampleEvery)
	return row, nil
}

// consumedCell renders a run's rate until every event was consumed.
func consumedCell(s runStats) string {
	if s.consumedRate <= 0 {
		return "not seen"
	}
	return num(s.consumedRate)
}

// mibn formats bytes as MiB with one decimal, no unit.
func mibn(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// windowPairRun runs one worker of a windowed workload's pair: count, or
// the windowed count, through the preloaded input.
func (h *harness) windowPairRun(ctx context.Context, row *Row, kc *kclient, b *broker, m *windowModel, name string, r int, windowed bool, hwm []int64) (windowRun, error) {
	n, keys := m.n, m.keys
	var wr windowRun
	app := fmt.Sprintf("%s-count-%d", name, r)
	env := []string{"BENCH_MODE=count", "BENCH_APP=" + app}
	if windowed {
		app = fmt.Sprintf("%s-%d", name, r)
		env = append(m.env(), "BENCH_APP="+app)
	}
	dataDir := h.newDataDir(app)
	var sampler *diskSampler
	var samples []diskSample
	onReady := func() { sampler = sampleDisk(dataDir) }
	check := func(w *worker) error {
		samples = sampler.end()
		sampler = nil
		used := min(keys, n)
		probe := []int{0, used / 2, used - 1}
		if !windowed {
			for _, j := range probe {
				k := string(keyOf(j, keys))
				got, ok, err := w.tableValue("counts", k)
				if err != nil {
					return err
				}
				if want := expectedCount(j, n, keys); !ok || got < want {
					return fmt.Errorf("count: counts[%s] = %d (found %v), want %d: the table lost updates", k, got, ok, want)
				} else if got > want {
					row.note("run %d count: counts[%s] = %d > %d (at-least-once replay)", r, k, got, want)
				}
			}
			return nil
		}
		late, _ := w.metric("mephisto_window_late_events_total", nil)
		restarts, _ := w.metric("mephisto_grain_restarts_total", nil)
		if late > 0 || restarts > 0 {
			return fmt.Errorf("%.0f late events, %.0f grain restarts: the input is in time order and nothing failed, so neither should happen (and a restart would close windows again into the in-memory tally)", late, restarts)
		}
		code, body, err := w.get("/bench/windows")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /bench/windows: HTTP %d %s", code, strings.TrimSpace(string(body)))
		}
		var t windowTally
		if err := json.Unmarshal(body, &t); err != nil {
			return fmt.Errorf("GET /bench/windows: %w", err)
		}
		if err := m.verifyTally(t); err != nil {
			return fmt.Errorf("the close callback's tally: %w", err)
		}
		wr.closes = t.Closes
		for _, j := range probe {
			if err := m.verifyServed(w, j); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := h.throughputRunHooked(ctx, kc, workerSpec{name: app, env: env, brokers: b.addr, nodeID: "b1", dataDir: dataDir}, app, "in", hwm, n, onReady, check)
	if sampler != nil {
		sampler.end()
	}
	if err != nil {
		return wr, fmt.Errorf("%s: %w", map[bool]string{false: "count", true: name}[windowed], err)
	}
	wr.s = s
	wr.disk = summarizeDisk(samples, dirUsage(dataDir))
	if windowed {
		changelog := app + "-counts-changelog"
		c := &windowChangelog{last: map[string]int64{}}
		if err := kc.readTopicP(changelog, c.add); err != nil {
			return wr, fmt.Errorf("read %s: %w", changelog, err)
		}
		if err := c.verify(m); err != nil {
			return wr, fmt.Errorf("%s: %w", changelog, err)
		}
		hw, err := kc.highWatermarks(changelog)
		if err != nil {
			return wr, err
		}
		c.written = sum(hw)
		wr.changelog = c
	}
	return wr, nil
}
