package harness

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// The peers (issue 10) are what Mephisto's users would pick instead: Kafka
// Streams (bench/streams, a Maven module run as its own JVM) and Faust
// (bench/faust/app.py, faust-streaming in a virtual environment the harness
// makes). Each does the work of a Mephisto workload on the same broker and
// the same preloaded input, in the same run, right after Mephisto's run,
// and is timed the same way: from the moment it says it runs (its
// partitions are assigned and its tables restored) to the moment its
// consumer group has committed the input's high watermarks. Its result is
// then checked in Kafka — its changelog or output topic read back with
// sarama — and a peer whose result is short fails loudly.

// Peer names, as -peers takes them.
const (
	peerStreams = "streams"
	peerFaust   = "faust"
)

// Peers lists every peer, in the order they run and are reported.
var Peers = []string{peerStreams, peerFaust}

// peerTitle is a peer's name in the report.
func peerTitle(peer string) string {
	switch peer {
	case peerStreams:
		return "Kafka Streams"
	case peerFaust:
		return "Faust"
	}
	return peer
}

// PeerOptions configures the peers. Zero fields take the defaults.
type PeerOptions struct {
	// Peers selects peers by name (streams, faust). Default none (the
	// command's -peers default is all).
	Peers []string
	// StreamsThreads is Kafka Streams' num.stream.threads. Default 2: one
	// per core of the benchmark machine, as Mephisto's Go runtime uses
	// every core (GOMAXPROCS), and the most that two cores can keep busy.
	StreamsThreads int
	// StreamsCacheBytes is Kafka Streams' statestore.cache.max.bytes.
	// Default 10 MiB (Streams' own default), which holds every key written
	// between two commits of the count workload: a changelog record per
	// key per commit, as Mephisto writes.
	StreamsCacheBytes int64
	// StreamsHeap is the JVM's -Xmx. Default "1g".
	StreamsHeap string
	// FaustRuns is how many of each workload's runs Faust takes part in
	// (the first ones). Default 1: one Faust worker is single-threaded and
	// takes minutes over a million events.
	FaustRuns int
	// FaustStore is Faust's table store URL. Default "rocksdb://" (through
	// rocksdict, which requirements.txt installs).
	FaustStore string
	// FaustVenv is the virtual environment for Faust; "" is
	// <user cache dir>/mephisto-bench/faust-venv-<hash of requirements.txt>,
	// made on first use.
	FaustVenv string
}

func (o *PeerOptions) defaults() {
	if o.StreamsThreads <= 0 {
		o.StreamsThreads = 2
	}
	if o.StreamsCacheBytes <= 0 {
		o.StreamsCacheBytes = 10 << 20
	}
	if o.StreamsHeap == "" {
		o.StreamsHeap = "1g"
	}
	if o.FaustRuns <= 0 {
		o.FaustRuns = 1
	}
	if o.FaustStore == "" {
		o.FaustStore = "rocksdb://"
	}
}

// mephistoCommitInterval is the bench workers' commit interval (Mephisto's
// default, --commit-interval is not passed): the peers commit as often.
const mephistoCommitInterval = 500 * time.Millisecond

// peerTools is what the peers need, found or made once per run. A peer
// whose tool is missing has skip set and is reported as skipped.
type peerTools struct {
	streamsCP, streamsSkip string // classpath of bench/streams, or why not
	python, faustSkip      string // the venv's python, or why not
	faustApp               string
}

// skip returns why peer cannot run ("" if it can).
func (t *peerTools) skip(peer string) string {
	switch peer {
	case peerStreams:
		return t.streamsSkip
	case peerFaust:
		return t.faustSkip
	}
	return "unknown peer"
}

// preparePeers builds the Kafka Streams module and makes Faust's virtual
// environment, as far as the machine allows; what cannot be done is logged
// and becomes the peer's skip reason.
func (h *harness) preparePeers(ctx context.Context) {
	want := map[string]bool{}
	for _, p := range h.opts.PeerOpts.Peers {
		want[p] = true
	}
	t := &h.tools
	if want[peerStreams] {
		start := time.Now()
		cp, err := buildStreams(ctx, h.opts.Root)
		if err != nil {
			t.streamsSkip = err.Error()
			h.logf("Kafka Streams peer skipped: %v", err)
		} else {
			t.streamsCP, t.streamsSkip = cp, ""
			h.logf("built bench/streams (Kafka Streams %s) in %v", streamsVersion, time.Since(start).Round(time.Millisecond))
		}
	}
	if want[peerFaust] {
		start := time.Now()
		py, err := faustVenv(ctx, h.opts.Root, h.opts.PeerOpts.FaustVenv, h.logf)
		if err != nil {
			t.faustSkip = err.Error()
			h.logf("Faust peer skipped: %v", err)
		} else {
			t.python, t.faustSkip = py, ""
			t.faustApp, _ = filepath.Abs(filepath.Join(h.opts.Root, "bench", "faust", "app.py"))
			h.logf("Faust virtual environment ready (%s) in %v", filepath.Dir(filepath.Dir(py)), time.Since(start).Round(time.Millisecond))
		}
	}
}

// streamsVersion is the kafka-streams version bench/streams/pom.xml pins.
const streamsVersion = "4.1.1"

// buildStreams compiles bench/streams and returns the classpath to run it
// with; an error says why it cannot (no java or mvn, a failed build).
func buildStreams(ctx context.Context, root string) (string, error) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is not on PATH", tool)
		}
	}
	dir, err := filepath.Abs(filepath.Join(root, "bench", "streams"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "compile", "dependency:build-classpath", "-Dmdep.outputFile=target/classpath.txt")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mvn compile in bench/streams: %w: %s", err, lastBytes(out, 2000))
	}
	deps, err := os.ReadFile(filepath.Join(dir, "target", "classpath.txt"))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "target", "classes") + string(os.PathListSeparator) + strings.TrimSpace(string(deps)), nil
}

// faustVenv returns the python of a virtual environment holding
// bench/faust/requirements.txt, making it first if need be.
func faustVenv(ctx context.Context, root, dir string, logf func(string, ...any)) (string, error) {
	req, err := filepath.Abs(filepath.Join(root, "bench", "faust", "requirements.txt"))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(req)
	if err != nil {
		return "", err
	}
	py := filepath.Join(dir, "bin", "python")
	if dir != "" {
		// The user's own environment: used as it is if it has a python.
		if _, err := os.Stat(py); err == nil {
			return py, nil
		}
	} else {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no user cache dir for Faust's virtual environment: %w", err)
		}
		sum := sha256.Sum256(b)
		dir = filepath.Join(cache, "mephisto-bench", "faust-venv-"+hex.EncodeToString(sum[:6]))
		py = filepath.Join(dir, "bin", "python")
	}
	// .installed marks an environment whose pip install finished; one
	// without it (an interrupted first run) is made again.
	done := filepath.Join(dir, ".installed")
	if _, err := os.Stat(done); err == nil {
		return py, nil
	}
	python3, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("python3 is not on PATH")
	}
	logf("making Faust's virtual environment in %s (python3 -m venv; pip install -r bench/faust/requirements.txt)", dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, python3, "-m", "venv", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("python3 -m venv: %w: %s", err, lastBytes(out, 2000))
	}
	pip := exec.CommandContext(ctx, filepath.Join(dir, "bin", "pip"), "install", "-q", "-r", req)
	if out, err := pip.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pip install -r bench/faust/requirements.txt: %w: %s", err, lastBytes(out, 2000))
	}
	if err := os.WriteFile(done, b, 0o644); err != nil {
		return "", err
	}
	return py, nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// peerEvent is one JSON line a peer prints on stdout (see
// bench/streams/.../Main.java and bench/faust/app.py).
type peerEvent struct {
	Event     string `json:"event"`
	TimeNs    int64  `json:"time_ns"` // wall clock, ns since the Unix epoch
	CPUNs     int64  `json:"cpu_ns"`  // the process's CPU time so far
	Partition int32  `json:"partition"`
	Records   int64  `json:"records"`
	Keys      int64  `json:"keys"`
	Sum       int64  `json:"sum"`
	Message   string `json:"message"`
}

func (e peerEvent) time() time.Time    { return time.Unix(0, e.TimeNs) }
func (e peerEvent) cpu() time.Duration { return time.Duration(e.CPUNs) }

// parsePeerEvents returns the events in a peer's stdout, in order: each
// line's JSON object from `{"event"` on. Other lines (a banner, say) are
// skipped.
func parsePeerEvents(out string) []peerEvent {
	var evs []peerEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		// A terminal escape (Faust's spinner) may come first.
		line := sc.Text()
		i := strings.Index(line, `{"event"`)
		if i < 0 {
			continue
		}
		var e peerEvent
		if json.Unmarshal([]byte(strings.TrimSpace(line[i:])), &e) == nil && e.Event != "" {
			evs = append(evs, e)
		}
	}
	return evs
}

// peerProc is a running peer.
type peerProc struct {
	*proctest.Proc
	peer string
}

// events returns what the peer has printed so far.
func (p *peerProc) events() []peerEvent { return parsePeerEvents(p.Stdout()) }

// failed returns an error if the peer reported one or exited.
func (p *peerProc) failed() error {
	for _, e := range p.events() {
		if e.Event == "error" {
			return fmt.Errorf("%s reported an error: %s\n%s", p.Name(), e.Message, p.Tail(3000))
		}
	}
	if p.Exited() {
		return fmt.Errorf("%s exited: %s\n%s", p.Name(), p.DescribeExit(), p.Tail(3000))
	}
	return nil
}

// waitEvent waits until the peer prints an event named name and returns
// the first one.
func (p *peerProc) waitEvent(ctx context.Context, name string, timeout time.Duration) (peerEvent, error) {
	var got peerEvent
	_, err := proctest.Poll(ctx, 5*time.Millisecond, timeout, fmt.Sprintf("%s to say %q", p.Name(), name), func() (bool, string, error) {
		for _, e := range p.events() {
			if e.Event == name {
				got = e
				return true, "", nil
			}
		}
		if err := p.failed(); err != nil {
			return false, "", err
		}
		return false, "not yet", nil
	})
	return got, err
}

// peerSpec says which peer to start on what.
type peerSpec struct {
	peer    string // peerStreams or peerFaust
	name    string // log file name
	mode    string // count, pass, wordcount, restore
	app     string // application id: the consumer group and the changelogs' prefix
	b       *broker
	in, out string
	// instance, if set, makes the peer a static group member of that id
	// (restore: each run replaces the last at once).
	instance string
}

// startPeer starts a peer process; the harness kills it with the rest.
func (h *harness) startPeer(s peerSpec) (*peerProc, error) {
	o := h.opts.PeerOpts
	if s.in == "" {
		s.in = "in"
	}
	if s.out == "" {
		s.out = "out"
	}
	state := h.newDataDir(s.name)
	var (
		bin  string
		args []string
		env  []string
	)
	switch s.peer {
	case peerStreams:
		bin = "java"
		args = []string{"-Xmx" + o.StreamsHeap, "-cp", h.tools.streamsCP, "io.mephisto.bench.streams.Main",
			"--mode", s.mode, "--app-id", s.app, "--bootstrap", s.b.addr, "--state-dir", state,
			"--in", s.in, "--out", s.out, "--threads", fmt.Sprint(o.StreamsThreads),
			"--commit-ms", fmt.Sprint(mephistoCommitInterval.Milliseconds()), "--cache-bytes", fmt.Sprint(o.StreamsCacheBytes),
			"--kfake-compat", fmt.Sprint(s.b.kind == brokerKfake)}
		if s.instance != "" {
			args = append(args, "--instance-id", s.instance)
		}
	case peerFaust:
		bin = h.tools.python
		args = []string{h.tools.faustApp, "worker", "--loglevel", "warn", "--without-web"}
		env = []string{"BENCH_MODE=" + s.mode, "BENCH_APP=" + s.app, "BENCH_BROKER=" + s.b.addr,
			"BENCH_IN=" + s.in, "BENCH_OUT=" + s.out, "BENCH_DATA_DIR=" + state, "BENCH_STORE=" + o.FaustStore,
			fmt.Sprintf("BENCH_COMMIT_INTERVAL=%g", mephistoCommitInterval.Seconds())}
	default:
		return nil, fmt.Errorf("unknown peer %q", s.peer)
	}
	p, err := start(h.dir, s.name, bin, env, args...)
	if err != nil {
		return nil, err
	}
	h.procs.add(p)
	return &peerProc{Proc: p, peer: s.peer}, nil
}

// peerReadyTimeout bounds a peer's start (a JVM or a Python interpreter,
// a group join, on a busy machine).
const peerReadyTimeout = 3 * time.Minute

// peerCommitTimeout bounds how long a peer may take over n events: two
// minutes and 2 ms an event (500 events/s, far below either peer).
func peerCommitTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*2*time.Millisecond
}

// waitPeerCommitted polls until group has committed hwm on every partition
// of topic, and returns when that was first seen.
func (h *harness) waitPeerCommitted(ctx context.Context, p *peerProc, kc *kclient, group, topic string, hwm []int64, n int) (time.Time, error) {
	var done time.Time
	_, err := proctest.Poll(ctx, pollInterval, peerCommitTimeout(n), fmt.Sprintf("group %s to commit %s", group, topic), func() (bool, string, error) {
		ok, err := kc.caughtUp(group, topic, hwm)
		if err != nil {
			return false, err.Error(), nil // the group may not exist yet
		}
		if ok {
			done = time.Now()
			return true, "", nil
		}
		if err := p.failed(); err != nil {
			return false, "", err
		}
		return false, "not caught up", nil
	})
	if err != nil && !p.Exited() {
		c, _ := kc.committed(group, topic)
		err = fmt.Errorf("%s: %w: committed %v of %v", p.Name(), err, c, hwm)
	}
	return done, err
}

// peerRun times a started peer through the preloaded input of topic (n
// events, high watermarks hwm): from its "running" event to the group's
// commit of hwm. CPU per event counts the CPU it used in that window
// (from its own reading at "running" to /proc's at the end), not its
// start-up.
func (h *harness) peerRun(ctx context.Context, p *peerProc, kc *kclient, group, topic string, hwm []int64, n int) (runStats, time.Time, error) {
	var s runStats
	ev, err := p.waitEvent(ctx, "running", peerReadyTimeout)
	if err != nil {
		return s, time.Time{}, err
	}
	t1, err := h.waitPeerCommitted(ctx, p, kc, group, topic, hwm, n)
	if err != nil {
		return s, time.Time{}, err
	}
	st := readProcStats(p.Pid())
	s.rate = float64(n) / t1.Sub(ev.time()).Seconds()
	s.rss = st.PeakRSS
	s.cpuPerEvent = (st.CPU - ev.cpu()).Seconds() / float64(n)
	return s, ev.time(), nil
}

// PeerResult is one peer's part of a row.
type PeerResult struct {
	Peer string
	// Values, PeakRSS and CPUPerEvent are per run, as Row's Mephisto,
	// PeakRSS and CPUPerEvent.
	Values      []float64
	PeakRSS     []int64
	CPUPerEvent []float64
	// Skipped says why the peer did not run (its toolchain is missing, or
	// it was not selected); Failed why its run or its check failed.
	Skipped, Failed string
	Notes           []string
}

func (p *PeerResult) add(s runStats) {
	p.Values = append(p.Values, s.rate)
	p.PeakRSS = append(p.PeakRSS, s.rss)
	p.CPUPerEvent = append(p.CPUPerEvent, s.cpuPerEvent)
}

func (p *PeerResult) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// peer returns the row's result of peer, adding it (in Peers order) if
// need be.
func (r *Row) peer(name string) *PeerResult {
	for _, p := range r.Peers {
		if p.Peer == name {
			return p
		}
	}
	p := &PeerResult{Peer: name}
	r.Peers = append(r.Peers, p)
	return p
}

// runPeers runs each selected peer's part of run r of a workload: fn does
// the run and returns its stats; the peer's result, a skip or a failure
// lands in the row. Faust takes part in the first FaustRuns runs only. A
// failure is logged and remembered (the whole run then exits non-zero),
// and that peer does not run again in this workload.
func (h *harness) runPeers(row *Row, r int, peers []string, fn func(peer string, res *PeerResult) (runStats, error)) {
	for _, peer := range peers {
		if !slices.Contains(h.opts.PeerOpts.Peers, peer) {
			continue
		}
		res := row.peer(peer)
		if why := h.tools.skip(peer); why != "" {
			res.Skipped = why
			continue
		}
		if res.Failed != "" || (peer == peerFaust && r > h.opts.PeerOpts.FaustRuns) {
			continue
		}
		s, err := fn(peer, res)
		if err != nil {
			err = fmt.Errorf("%s on %s, %s run %d: %w", row.Workload, h.brokerKind, peerTitle(peer), r, err)
			h.logf("PEER FAILED: %v", err)
			h.peerErrs = append(h.peerErrs, err)
			res.Failed = err.Error()
			continue
		}
		res.add(s)
		h.logf("run %d: %s %s %s, peak RSS %s, CPU %.1f µs/event", r, peerTitle(peer), num(s.rate), row.Unit, mib(s.rss), s.cpuPerEvent*1e6)
	}
}
