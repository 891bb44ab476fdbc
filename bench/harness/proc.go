package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// start runs bin with args and extra environment variables (after the
// harness's own), its stdout and stderr in <dir>/<name>.stdout and
// <dir>/<name>.stderr. The child has its own process group: a Ctrl-C of
// the harness does not reach it before the harness stops it in order.
func start(dir, name, bin string, env []string, args ...string) (*proctest.Proc, error) {
	return proctest.Start(proctest.Spec{Name: name, Path: bin, Args: args,
		Env: append(os.Environ(), env...), LogDir: dir, OwnGroup: true})
}

// procStats is what /proc says about a process.
type procStats struct {
	PeakRSS int64         // VmHWM, bytes
	CPU     time.Duration // user + system time
}

// readProcStats reads the peak resident set size and the CPU time used so
// far by pid (Linux only; zero values elsewhere).
func readProcStats(pid int) procStats {
	var s procStats
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				f := strings.Fields(rest)
				if len(f) >= 1 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					s.PeakRSS = kb * 1024
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces) start
		// after the last ')': state is field 3, utime 14, stime 15.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				s.CPU = time.Duration(ut+st) * time.Second / clockTicks
			}
		}
	}
	return s
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux platform Go supports).
const clockTicks = 100

// broker is a `mephisto broker` process, or an Apache Kafka broker (kind
// brokerKafka, see brokers.go).
type broker struct {
	*proctest.Proc
	addr  string
	kind  string
	kafka *proctest.Kafka // Apache Kafka only
}

// startBroker runs `mephisto broker` on a free port with a data dir under
// dir and returns once it listens.
func startBroker(dir, bin, name string) (*broker, error) {
	addr, err := proctest.FreeAddr(false)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, name+"-data")
	p, err := start(dir, name, bin, nil, "broker", "--listen", addr, "--data-dir", data, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if _, _, err := p.WaitListening(30 * time.Second); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return &broker{Proc: p, addr: addr, kind: brokerKfake}, nil
}

// close ends the broker. Its state is scratch: SIGKILL, so that it does
// not spend time persisting a million records nobody will read.
func (b *broker) close() {
	if b.kafka != nil {
		_ = b.kafka.KillBroker(0)
		return
	}
	_ = b.Kill()
}

// worker is a Mephisto worker process (the bench app or an example).
type worker struct {
	*proctest.Proc
	web    string
	nodeID string
	data   string
}

// workerSpec describes a worker to start.
type workerSpec struct {
	name    string   // log file name
	bin     string   // binary
	env     []string // BENCH_MODE=…, BENCH_APP=…
	brokers string
	dataDir string
	nodeID  string
	extra   []string // further flags (gossip, join…)
}

// startWorker starts a worker with --log-format json (the harness reads
// recovery timings from its log) on a free web port.
func startWorker(dir string, s workerSpec) (*worker, error) {
	web, err := proctest.FreeAddr(false)
	if err != nil {
		return nil, err
	}
	args := append([]string{"worker", "--brokers", s.brokers, "--data-dir", s.dataDir, "--web", web,
		"--partitions", "8", "--node-id", s.nodeID, "--log-format", "json"}, s.extra...)
	p, err := start(dir, s.name, s.bin, s.env, args...)
	if err != nil {
		return nil, err
	}
	return &worker{Proc: p, web: web, nodeID: s.nodeID, data: s.dataDir}, nil
}

// get GETs path from the worker's HTTP server.
func (w *worker) get(path string) (int, []byte, error) { return proctest.Get(w.web, path) }

// ready reports whether /readyz answers 200.
func (w *worker) ready() bool {
	ok, _ := proctest.Ready(w.web)
	return ok
}

// waitReady polls /readyz every interval until it answers 200 and returns
// the time it was first seen ready.
func (w *worker) waitReady(ctx context.Context, timeout, interval time.Duration) (time.Time, error) {
	start := time.Now()
	d, err := proctest.Poll(ctx, interval, timeout, w.Name()+" ready", func() (bool, string, error) {
		ok, why := proctest.Ready(w.web)
		if !ok && w.Exited() {
			return false, "", fmt.Errorf("%s exited before it was ready: %s\n%s", w.Name(), w.DescribeExit(), w.Tail(3000))
		}
		return ok, why, nil
	})
	if err != nil && !w.Exited() {
		err = fmt.Errorf("%w\n%s", err, w.Tail(3000))
	}
	return start.Add(d), err
}

// metric sums the samples of a metric in the worker's /metrics whose labels
// include every name="value" pair of match.
func (w *worker) metric(name string, match map[string]string) (float64, error) {
	v, _, err := proctest.Metric(w.web, name, match)
	return v, err
}

// logEvent is one JSON log line of a worker.
type logEvent struct {
	Time      time.Time `json:"time"`
	Msg       string    `json:"msg"`
	Records   int64     `json:"records"`
	Partition int32     `json:"partition"`
	Tail      int64     `json:"tail_records"`
	From      int64     `json:"from"`
}

// logEvents returns the worker's JSON log lines whose msg is one of msgs.
func (w *worker) logEvents(msgs ...string) ([]logEvent, error) {
	f, err := os.Open(w.StderrFile())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[string]bool{}
	for _, m := range msgs {
		want[m] = true
	}
	var out []logEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && want[e.Msg] {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// procs tracks every child process so that an aborted run kills them all.
type procs struct {
	mu   sync.Mutex
	list []*proctest.Proc
}

func (ps *procs) add(p *proctest.Proc) {
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
}

// killAll SIGKILLs every tracked process still running.
func (ps *procs) killAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		_ = p.Kill()
	}
	ps.list = nil
}
