package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the harness started (a broker, a worker or a
// raw client). Its stdout and stderr go to <dir>/<name>.log.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	waitErr error
}

// start runs bin with args and extra environment variables, logging to a
// file in dir.
func start(dir, name, bin string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C of the harness does not reach the
	// children before the harness stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.started = time.Now()
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// SIGKILLs it.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.waitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n bytes of the process's log, for error messages.
func (p *proc) tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
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

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freeUDPTCPAddr returns a loopback address whose port was free for both
// TCP and UDP a moment ago (memberlist gossip uses both).
func freeUDPTCPAddr() (string, error) {
	for range 20 {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		return addr, nil
	}
	return "", errors.New("no free TCP+UDP port found")
}

// broker is a `mephisto broker` process.
type broker struct {
	*proc
	addr string
}

// startBroker runs `mephisto broker` on a free port with a data dir under
// dir and returns once it listens.
func startBroker(dir, bin, name string) (*broker, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, name+"-data")
	p, err := start(dir, name, bin, nil, "broker", "--listen", addr, "--data-dir", data, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	b := &broker{proc: p, addr: addr}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return nil, fmt.Errorf("broker exited at start: %v\n%s", p.waitErr, p.tail(2000))
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return b, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	return nil, fmt.Errorf("broker did not listen on %s within 30s\n%s", addr, p.tail(2000))
}

// close ends the broker. Its state is scratch: SIGKILL, so that it does
// not spend time persisting a million records nobody will read.
func (b *broker) close() { b.kill() }

// worker is a Mephisto worker process (the bench app or an example).
type worker struct {
	*proc
	web    string
	nodeID string
	data   string
	client *http.Client
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
	web, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"worker", "--brokers", s.brokers, "--data-dir", s.dataDir, "--web", web,
		"--partitions", "8", "--node-id", s.nodeID, "--log-format", "json"}, s.extra...)
	p, err := start(dir, s.name, s.bin, s.env, args...)
	if err != nil {
		return nil, err
	}
	return &worker{proc: p, web: web, nodeID: s.nodeID, data: s.dataDir,
		client: &http.Client{Timeout: 5 * time.Second}}, nil
}

// get GETs path from the worker's HTTP server.
func (w *worker) get(path string) (int, []byte, error) {
	resp, err := w.client.Get("http://" + w.web + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// ready reports whether /readyz answers 200.
func (w *worker) ready() bool {
	code, _, err := w.get("/readyz")
	return err == nil && code == http.StatusOK
}

// waitReady polls /readyz every interval until it answers 200 and returns
// the time it was first seen ready.
func (w *worker) waitReady(ctx context.Context, timeout, interval time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if w.ready() {
			return time.Now(), nil
		}
		if w.exited() {
			return time.Time{}, fmt.Errorf("%s exited before it was ready: %v\n%s", w.name, w.waitErr, w.tail(3000))
		}
		if time.Now().After(deadline) {
			_, body, _ := w.get("/readyz")
			return time.Time{}, fmt.Errorf("%s not ready within %v (%s)\n%s", w.name, timeout, strings.TrimSpace(string(body)), w.tail(3000))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// metric sums the samples of a metric in the worker's /metrics whose labels
// include every name="value" pair of match.
func (w *worker) metric(name string, match map[string]string) (float64, error) {
	code, body, err := w.get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: HTTP %d", code)
	}
	return sumMetric(body, name, match), nil
}

// metricByLabel returns the samples of a metric keyed by the value of one
// label.
func (w *worker) metricByLabel(name, label string) (map[string]float64, error) {
	code, body, err := w.get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: HTTP %d", code)
	}
	out := map[string]float64{}
	eachSample(body, name, func(labels map[string]string, v float64) { out[labels[label]] += v })
	return out, nil
}

// sumMetric sums the samples of metric name in a Prometheus text exposition
// whose labels include match.
func sumMetric(body []byte, name string, match map[string]string) float64 {
	var sum float64
	eachSample(body, name, func(labels map[string]string, v float64) {
		for k, want := range match {
			if labels[k] != want {
				return
			}
		}
		sum += v
	})
	return sum
}

// eachSample calls fn for every sample of metric name in a Prometheus text
// exposition.
func eachSample(body []byte, name string, fn func(labels map[string]string, v float64)) {
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			for _, kv := range splitLabels(rest[1:end]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					labels[k], _ = strconv.Unquote(v)
				}
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric sharing the prefix
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		fn(labels, v)
	}
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	var quoted, esc bool
	startAt := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, s[startAt:i])
			startAt = i + 1
		}
	}
	if startAt < len(s) {
		out = append(out, s[startAt:])
	}
	return out
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
	f, err := os.Open(w.logPath)
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
	list []*proc
}

func (ps *procs) add(p *proc) {
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
}

// killAll SIGKILLs every tracked process still running.
func (ps *procs) killAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		p.kill()
	}
	ps.list = nil
}
