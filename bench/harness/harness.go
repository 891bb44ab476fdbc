// Package harness runs Mephisto's benchmarks (issue #5): every workload
// against `mephisto broker` in a separate process, each next to the raw
// sarama client doing the same Kafka work, measured in the same run. Since
// issue 10 the same workloads also run on Apache Kafka (brokers.go), and
// count, pass, wordcount and the recover workloads next to the users'
// alternatives, Kafka Streams and Faust (peers.go). Since issue 12
// count-eos, pass-eos and latency-eos measure the same under exactly_once,
// next to at_least_once in the same run (eos.go), and since issue 13
// count-tumbling and count-hopping a windowed count next to count
// (windowed.go).
//
// The unit under test is always a separate OS process: the broker
// (cmd/mephisto), the Mephisto worker (bench/app, or examples/wordcount)
// and the raw client (bench/raw). The harness builds them, preloads the
// input, starts them, watches them from outside (Kafka offsets, HTTP,
// /proc) and reports. See BENCHMARKS.md for how to read the numbers.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Workloads lists every workload, in the order they run.
var Workloads = []string{"count", "count-eos", "count-tumbling", "count-hopping", "count-1m-keys", "pass", "pass-eos", "wordcount", "recover-10k-keys", "recover-1m-keys", "failover", "ask", "latency", "latency-eos", "global", "global-3-nodes"}

// Options configures a benchmark run. Zero fields take the defaults of
// issue #5.
type Options struct {
	// Root is the repository root (the module directory); binaries are
	// built from it. Default ".".
	Root string
	// N is the number of input events of the throughput workloads. Default
	// 1,000,000.
	N int
	// Runs is how often each workload is measured (min / median / max are
	// over the runs). Default 3.
	Runs int
	// Keys is the number of distinct keys of count (and of the failover
	// and latency load). Default 10,000.
	Keys int
	// ValueSize is the size of input values in bytes. Default 100.
	ValueSize int
	// RecoverRecords is the number of changelog records the recover
	// workloads rebuild a table from. Default N.
	RecoverRecords int
	// FailoverRuns and LatencyRuns override Runs for those two workloads
	// (each run starts three or one fresh workers). Default Runs.
	FailoverRuns, LatencyRuns int
	// FailoverRate is the load, in events/s, during failover. Default
	// 5,000.
	FailoverRate int
	// FailoverWarmup is how long the load runs before the kill. Default 5s.
	FailoverWarmup time.Duration
	// LatencyDuration is how long the latency workload produces. Default
	// 10s.
	LatencyDuration time.Duration
	// AskDuration is how long, in each run of the ask workload, each path
	// (Ask through Kafka, Request by PID, the raw request/reply) makes
	// sequential round trips. Default half of LatencyDuration (5s; 1.5s
	// in make bench-quick).
	AskDuration time.Duration
	// LatencyRate is the latency workload's input rate in events/s; 0
	// means half of the count workload's median throughput (measured
	// first if count is not among the workloads).
	LatencyRate float64
	// Windows is how many windows of the windowed workloads' size
	// (windowed.go) the input's event times span. Default 20.
	Windows int
	// Workloads selects workloads by name; empty means all.
	Workloads []string
	// Brokers selects the brokers every workload runs on, in order
	// (brokers.go: kfake, kafka); empty means kfake alone.
	Brokers []string
	// PeerOpts configures the peers (peers.go) that run next to Mephisto
	// in count, pass, wordcount and the recover workloads.
	PeerOpts PeerOptions
	// WorkDir holds binaries, logs and data; "" makes a temporary one.
	WorkDir string
	// Keep keeps WorkDir (logs, data) after the run.
	Keep bool
	// Log receives progress lines. Default os.Stderr.
	Log io.Writer
}

func (o *Options) defaults() {
	if o.Root == "" {
		o.Root = "."
	}
	if o.N <= 0 {
		o.N = 1_000_000
	}
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Keys <= 0 {
		o.Keys = 10_000
	}
	if o.ValueSize <= 0 {
		o.ValueSize = 100
	}
	if o.RecoverRecords <= 0 {
		o.RecoverRecords = o.N
	}
	if o.FailoverRuns <= 0 {
		o.FailoverRuns = o.Runs
	}
	if o.LatencyRuns <= 0 {
		o.LatencyRuns = o.Runs
	}
	if o.FailoverRate <= 0 {
		o.FailoverRate = 5_000
	}
	if o.FailoverWarmup <= 0 {
		o.FailoverWarmup = 5 * time.Second
	}
	if o.LatencyDuration <= 0 {
		o.LatencyDuration = 10 * time.Second
	}
	if o.AskDuration <= 0 {
		o.AskDuration = o.LatencyDuration / 2
	}
	if o.Windows <= 0 {
		o.Windows = 20
	}
	if len(o.Workloads) == 0 {
		o.Workloads = Workloads
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if len(o.Brokers) == 0 {
		o.Brokers = []string{brokerKfake}
	}
	o.PeerOpts.defaults()
}

// binaries are the programs a run starts.
type binaries struct {
	mephisto, app, wordcount, raw string
}

// harness is one benchmark run.
type harness struct {
	opts  Options
	dir   string
	bins  binaries
	procs procs
	rows  map[string]*Row // this broker's rows so far, by workload
	seq   int             // numbers brokers and data dirs

	brokerKind string    // the broker being measured (brokers.go)
	tools      peerTools // what the peers run with (peers.go)
	peerErrs   []error   // peers' failures: the run fails with them
}

// Run builds the binaries and runs the selected workloads. It returns the
// report even when a workload failed (that row then says so), with the
// errors joined.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	for _, w := range opts.Workloads {
		if !slices.Contains(Workloads, w) {
			return nil, fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(Workloads, ", "))
		}
	}
	for _, b := range opts.Brokers {
		if !slices.Contains(Brokers, b) {
			return nil, fmt.Errorf("unknown broker %q (have %s)", b, strings.Join(Brokers, ", "))
		}
	}
	for _, p := range opts.PeerOpts.Peers {
		if !slices.Contains(Peers, p) {
			return nil, fmt.Errorf("unknown peer %q (have %s)", p, strings.Join(Peers, ", "))
		}
	}
	dir := opts.WorkDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "mephisto-bench-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := &harness{opts: opts, dir: dir, rows: map[string]*Row{}}
	defer func() {
		h.procs.killAll()
		if !opts.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	rep := &Report{Options: opts, Started: time.Now(), LoadStart: loadAverage()}
	if rep.LoadStart > 0.5*float64(runtime.NumCPU()) {
		h.logf("warning: the 1-minute load average is %.1f before the run: other processes are using the CPU and will disturb the numbers", rep.LoadStart)
	}
	if err := h.build(ctx); err != nil {
		return nil, err
	}
	h.preparePeers(ctx)
	var errs []error
	for _, bk := range opts.Brokers {
		h.brokerKind, h.rows = bk, map[string]*Row{}
		for _, name := range Workloads { // fixed order: latency needs count's result
			if !slices.Contains(opts.Workloads, name) {
				continue
			}
			if ctx.Err() != nil {
				errs = append(errs, ctx.Err())
				break
			}
			h.logf("== %s on %s", name, bk)
			start := time.Now()
			row, err := h.workload(ctx, name)
			if err != nil {
				err = fmt.Errorf("%s on %s: %w", name, bk, err)
				h.logf("%v", err)
				errs = append(errs, err)
				if row == nil {
					row = &Row{Workload: name}
				}
				row.Failed = err.Error()
			}
			row.Broker = bk
			row.Took, row.Load = time.Since(start), loadAverage()
			h.rows[name] = row
			rep.Rows = append(rep.Rows, row)
			h.procs.killAll() // nothing outlives its workload
		}
		if ctx.Err() != nil {
			break
		}
	}
	errs = append(errs, h.peerErrs...)
	rep.Took = time.Since(rep.Started)
	if opts.Keep {
		h.logf("logs and data kept in %s", dir)
	}
	return rep, errors.Join(errs...)
}

func (h *harness) workload(ctx context.Context, name string) (*Row, error) {
	switch name {
	case "count":
		return h.count(ctx, name, h.opts.Keys)
	case "count-1m-keys":
		return h.count(ctx, name, h.opts.N)
	case "pass":
		return h.pass(ctx)
	case "count-eos":
		return h.countEOS(ctx)
	case "pass-eos":
		return h.passEOS(ctx)
	case "count-tumbling":
		return h.countWindowed(ctx, name, false)
	case "count-hopping":
		return h.countWindowed(ctx, name, true)
	case "wordcount":
		return h.wordcount(ctx)
	case "recover-10k-keys":
		return h.recover(ctx, name, min(10_000, h.opts.RecoverRecords))
	case "recover-1m-keys":
		return h.recover(ctx, name, h.opts.RecoverRecords)
	case "failover":
		return h.failover(ctx)
	case "ask":
		return h.ask(ctx)
	case "latency":
		return h.latency(ctx, name, false)
	case "latency-eos":
		return h.latency(ctx, name, true)
	case "global":
		return h.global(ctx, name, 1)
	case "global-3-nodes":
		return h.global(ctx, name, 3)
	}
	return nil, fmt.Errorf("unknown workload %q", name)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.opts.Log, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// build compiles the broker, the bench app, the wordcount example and the
// raw client into the work dir.
func (h *harness) build(ctx context.Context) error {
	bin := filepath.Join(h.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	h.logf("building ./cmd/mephisto ./bench/app ./bench/raw ./examples/wordcount into %s", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator),
		"./cmd/mephisto", "./bench/app", "./bench/raw", "./examples/wordcount")
	cmd.Dir = h.opts.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	h.bins = binaries{
		mephisto:  filepath.Join(bin, "mephisto"),
		app:       filepath.Join(bin, "app"),
		wordcount: filepath.Join(bin, "wordcount"),
		raw:       filepath.Join(bin, "raw"),
	}
	return nil
}

// newBroker starts a fresh broker of the kind being measured (a `mephisto
// broker` process, or Apache Kafka) and connects to it.
func (h *harness) newBroker(name string) (*broker, *kclient, error) {
	h.seq++
	var b *broker
	var err error
	if h.brokerKind == brokerKafka {
		b, err = startKafkaBroker(h.dir, fmt.Sprintf("kafka-%02d-%s", h.seq, name))
	} else {
		b, err = startBroker(h.dir, h.bins.mephisto, fmt.Sprintf("broker-%02d-%s", h.seq, name))
	}
	if err != nil {
		return nil, nil, err
	}
	h.procs.add(b.Proc)
	kc, err := dial(b.addr)
	if err != nil {
		b.close()
		return nil, nil, err
	}
	return b, kc, nil
}

// newDataDir returns a fresh, empty data dir path.
func (h *harness) newDataDir(name string) string {
	h.seq++
	return filepath.Join(h.dir, fmt.Sprintf("data-%03d-%s", h.seq, name))
}

// startWorker starts a worker process and tracks it.
func (h *harness) startWorker(s workerSpec) (*worker, error) {
	if s.bin == "" {
		s.bin = h.bins.app
	}
	if s.dataDir == "" {
		s.dataDir = h.newDataDir(s.name)
	}
	w, err := startWorker(h.dir, s)
	if err != nil {
		return nil, err
	}
	h.procs.add(w.Proc)
	return w, nil
}
