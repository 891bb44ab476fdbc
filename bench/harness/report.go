package harness

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Row is one workload's result: a line of the table plus notes.
type Row struct {
	Workload string
	// Broker is the broker kind it ran on (brokers.go).
	Broker string
	// N says what was processed ("1,000,000 events, 10,000 keys").
	N string
	// Unit of Mephisto and Raw ("events/s", "records/s", "s", "ms").
	Unit string
	// Mephisto and Raw hold one value per run; HigherIsBetter says how to
	// read them. Raw may be empty (no raw equivalent).
	Mephisto, Raw  []float64
	HigherIsBetter bool
	// Cell and RawCell, when set, replace the min / median / max rendering
	// (latency percentiles, n/a rows).
	Cell, RawCell string
	// PeakRSS and RawPeakRSS are per run, bytes (max over the run's
	// Mephisto processes; the raw client's process).
	PeakRSS, RawPeakRSS []int64
	// CPUPerEvent and RawCPUPerEvent are CPU seconds per event, per run.
	CPUPerEvent, RawCPUPerEvent []float64
	// Peers are the peers' results of the same workload (peers.go), in
	// Peers order; empty where the workload has no peer.
	Peers []*PeerResult
	// Notes explain the row.
	Notes []string
	// Failed is the error that stopped the workload, if any.
	Failed string
	// Took is the wall time of the whole workload.
	Took time.Duration
	// Load is the machine's 1-minute load average when the workload ended
	// (the harness's processes included): well above the core count means
	// something else competed for the CPU.
	Load float64
}

func (r *Row) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Report is a whole run.
type Report struct {
	Options Options
	Started time.Time
	Took    time.Duration
	Rows    []*Row
	// LoadStart is the 1-minute load average before the first workload.
	LoadStart float64
}

// loadAverage returns the 1-minute load average (Linux; NaN elsewhere).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// median returns the median of xs (the mean of the middle two for an even
// count); NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// num formats a number with thousands separators and sensible precision.
func num(x float64) string {
	switch {
	case math.IsNaN(x):
		return "—"
	case math.Abs(x) >= 100:
		return group(strconv.FormatInt(int64(math.Round(x)), 10))
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}

// group inserts thousands separators into a decimal integer.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// mib formats bytes as MiB.
func mib(b int64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%d MiB", (b+512<<10)>>20)
}

func maxInt64(xs []int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// cells renders the row's columns.
func (r *Row) cells() (meph, raw, ratio, rss, cpu string) {
	meph, raw, ratio, rss, cpu = "—", "—", "—", "—", "—"
	if len(r.Mephisto) > 0 {
		s := slices.Clone(r.Mephisto)
		slices.Sort(s)
		meph = fmt.Sprintf("%s / **%s** / %s %s", num(s[0]), num(median(s)), num(s[len(s)-1]), r.Unit)
	}
	if r.Cell != "" {
		meph = r.Cell
	}
	if len(r.Raw) > 0 {
		raw = fmt.Sprintf("%s %s", num(median(r.Raw)), r.Unit)
		if m, w := median(r.Mephisto), median(r.Raw); len(r.Mephisto) > 0 && w > 0 && m > 0 {
			if r.HigherIsBetter {
				ratio = fmt.Sprintf("%.1f%%", 100*m/w)
			} else {
				ratio = fmt.Sprintf("%.1f×", m/w)
			}
		}
	}
	if r.RawCell != "" {
		raw = r.RawCell
	}
	if len(r.PeakRSS) > 0 {
		rss = mib(maxInt64(r.PeakRSS))
		if len(r.RawPeakRSS) > 0 {
			rss += " / " + mib(maxInt64(r.RawPeakRSS))
		}
	}
	if len(r.CPUPerEvent) > 0 {
		cpu = fmt.Sprintf("%.1f", median(r.CPUPerEvent)*1e6)
		if len(r.RawCPUPerEvent) > 0 {
			cpu += fmt.Sprintf(" / %.1f", median(r.RawCPUPerEvent)*1e6)
		}
	}
	if r.Failed != "" {
		meph = "FAILED: " + strings.SplitN(r.Failed, "\n", 2)[0]
	}
	return meph, raw, ratio, rss, cpu
}

// Markdown writes the report: per broker the table (and, where peers ran,
// the side-by-side table of peers.go), then the run's footer and the notes
// of each row.
func (rep *Report) Markdown(w io.Writer) {
	o := rep.Options
	brokers := rep.brokers()
	for _, b := range brokers {
		rows := rep.rowsOn(b)
		if len(brokers) > 1 || b != brokerKfake {
			fmt.Fprintf(w, "**On %s**\n\n", brokerTitle(b))
		}
		fmt.Fprintf(w, "| workload | N | Mephisto (min / **median** / max) | raw client (median) | ratio | peak RSS Mephisto / raw | CPU µs per event Mephisto / raw |\n")
		fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, r := range rows {
			meph, raw, ratio, rss, cpu := r.cells()
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Workload, r.N, meph, raw, ratio, rss, cpu)
		}
		peerTable(w, rows)
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Runs per workload: %d (failover %d, latency %d); %d partitions; %d-byte keys, %d-byte values. Total wall time %s.\n",
		o.Runs, o.FailoverRuns, o.LatencyRuns, partitions, keySize, o.ValueSize, rep.Took.Round(time.Second))
	if rep.hasPeers() {
		fmt.Fprintln(w, peerConfig(o))
	}
	loads := make([]string, 0, len(rep.Rows))
	for _, r := range rep.Rows {
		loads = append(loads, fmt.Sprintf("%s %.1f", r.label(len(brokers) > 1), r.Load))
	}
	fmt.Fprintf(w, "1-minute load average before the run %.1f; after each workload: %s (%d cores: much above that means other processes competed for the CPU).\n",
		rep.LoadStart, strings.Join(loads, ", "), runtime.NumCPU())
	fmt.Fprintln(w)
	for _, r := range rep.Rows {
		peerNotes := r.peerNotes()
		if len(r.Notes) == 0 && r.Failed == "" && peerNotes == "" {
			continue
		}
		fmt.Fprintf(w, "* **%s** (%s):", r.label(len(brokers) > 1), r.Took.Round(time.Second))
		for _, n := range r.Notes {
			fmt.Fprintf(w, " %s", strings.TrimSpace(n))
			if !strings.HasSuffix(n, ".") {
				fmt.Fprint(w, ".")
			}
		}
		fmt.Fprint(w, peerNotes)
		if r.Failed != "" {
			fmt.Fprintf(w, " Failed: `%s`.", strings.ReplaceAll(r.Failed, "\n", " "))
		}
		fmt.Fprintln(w)
	}
}

// brokers returns the broker kinds of the rows, in the order they ran.
func (rep *Report) brokers() []string {
	var out []string
	for _, r := range rep.Rows {
		if b := r.brokerKind(); !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		out = []string{brokerKfake}
	}
	return out
}

// rowsOn returns the rows measured on broker kind b.
func (rep *Report) rowsOn(b string) []*Row {
	var out []*Row
	for _, r := range rep.Rows {
		if r.brokerKind() == b {
			out = append(out, r)
		}
	}
	return out
}

func (r *Row) brokerKind() string {
	if r.Broker == "" {
		return brokerKfake
	}
	return r.Broker
}

// label names the row in the footer and the notes: the workload, and its
// broker when the run used more than one.
func (r *Row) label(withBroker bool) string {
	if withBroker {
		return r.Workload + " on " + r.brokerKind()
	}
	return r.Workload
}

// Machine describes the machine for the report header: cores, memory,
// kernel, Go version.
func Machine() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	s := fmt.Sprintf("%d cores, %s RAM, %s/%s, %s", runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
	if cpu != "" {
		s += ", " + cpu
	}
	return s
}

// WriteFile writes the report as markdown to path, creating its directory.
func (rep *Report) WriteFile(path, header string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprint(f, header)
	rep.Markdown(f)
	return f.Close()
}
