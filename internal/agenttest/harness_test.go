package agenttest_test

// The process harness of these tests, adapted from
// internal/clustertest/harness_test.go: child processes with their output
// in files, free ports, waiting on conditions, a broker and workers of the
// test app, HTTP probes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

const (
	numPartitions  = 4
	commitInterval = 100 * time.Millisecond
	sessionTimeout = 10 * time.Second
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mephisto-agenttest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "agenttest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testappBin = filepath.Join(dir, "atest")
	mephistoBin = filepath.Join(dir, "mephisto")
	builds := []struct {
		out, pkg string
		race     bool
	}{
		// The test app is race-checked when the tests are: its tasks and
		// the library's messaging paths run in it.
		{testappBin, "github.com/mephistohq/mephisto/internal/agenttest/testapp", raceEnabled},
		{mephistoBin, "github.com/mephistohq/mephisto/cmd/mephisto", false},
	}
	for _, b := range builds {
		args := []string{"build", "-o", b.out}
		if b.race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "agenttest: go build %s: %v\n", b.pkg, err)
			return 1
		}
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Child processes.

// proc is a child process of the suite, its output in files (see
// proctest.Proc).
type proc = proctest.Proc

// childEnv is the test's environment without MEPHISTO_* and ATEST_*
// variables (the binaries would read them), plus extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEPHISTO_") && !strings.HasPrefix(kv, "ATEST_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func startProc(t testing.TB, logDir, name, path string, env []string, args ...string) *proc {
	t.Helper()
	return proctest.Start(t, logDir, name, path, childEnv(env), args...)
}

// result is how a command run to completion ended.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs the test app binary as a client command (ask, send …) to
// completion, within a minute.
func run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testappBin, args...)
	cmd.Env = childEnv(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
	default:
		t.Fatalf("atest %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode(), took: took}
}

// ---------------------------------------------------------------------------
// Ports.

// Ports and waiting are shared with the other process suites.
var (
	freePort = proctest.FreePort
	loopback = proctest.Loopback
	waitFor  = proctest.WaitFor
)

// ---------------------------------------------------------------------------
// Waiting.

const pollEvery = 20 * time.Millisecond

// ---------------------------------------------------------------------------
// The cluster: one broker and workers of the test app.

type cluster struct {
	t       *testing.T
	logDir  string
	broker  *proc
	brokers string // the broker's address
	seed    string // the first worker's gossip address
	workers []*worker
}

// worker is one node of the test app.
type worker struct {
	c      *cluster
	id     string
	web    string
	gossip string
	actor  string
	env    []string
	proc   *proc
}

var listeningRE = regexp.MustCompile(`broker listening on (\S+) cluster-id (\S+)`)

// newCluster starts a broker; add workers with start.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	logDir := filepath.Join(os.TempDir(), "mephisto-agenttest-logs", strings.ReplaceAll(t.Name(), "/", "_"))
	_ = os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("AGENTTEST_KEEP_LOGS") == "" {
			_ = os.RemoveAll(logDir)
		} else {
			t.Logf("logs of every process are in %s", logDir)
		}
	})
	c := &cluster{t: t, logDir: logDir}
	addr := loopback(freePort(t, false))
	c.broker = startProc(t, logDir, "broker", mephistoBin, nil, "broker", "--listen", addr, "--data-dir", t.TempDir())
	waitFor(t, 30*time.Second, "broker listening", func() (bool, string) {
		if c.broker.Exited() {
			t.Fatalf("broker exited: %s\n%s", c.broker.DescribeExit(), c.broker.Stderr())
		}
		m := listeningRE.FindStringSubmatch(c.broker.Stdout())
		if m == nil {
			return false, "no 'broker listening' line on stdout yet"
		}
		c.brokers = m[1]
		return true, ""
	})
	return c
}

// start starts a worker named id with extra environment variables; the
// first worker started is every later one's gossip seed.
func (c *cluster) start(id string, env ...string) *worker {
	c.t.Helper()
	w := &worker{c: c, id: id, env: env, web: loopback(freePort(c.t, false)),
		gossip: loopback(freePort(c.t, true)), actor: loopback(freePort(c.t, false))}
	if c.seed == "" {
		c.seed = w.gossip
	}
	w.proc = startProc(c.t, c.logDir, id, testappBin, env, "worker",
		"--brokers", c.brokers, "--node-id", id, "--web", w.web,
		"--gossip", w.gossip, "--join", c.seed, "--actor", w.actor, "--data-dir", c.t.TempDir(),
		"--partitions", strconv.Itoa(numPartitions), "--commit-interval", commitInterval.String(),
		"--session-timeout", sessionTimeout.String())
	c.workers = append(c.workers, w)
	return w
}

// running fails the test if a worker of ws or the broker has exited.
func (c *cluster) running(ws []*worker) {
	c.t.Helper()
	for _, w := range ws {
		if w.proc.Exited() {
			c.t.Fatalf("worker %s exited unexpectedly: %s", w.id, w.proc.DescribeExit())
		}
	}
	if c.broker.Exited() {
		c.t.Fatalf("broker exited unexpectedly: %s", c.broker.DescribeExit())
	}
}

// waitFormed waits until ws are exactly the cluster: each is ready, each
// one's /cluster names exactly ws, all alive, in one generation, and every
// partition has an active among them. It returns the last view.
func (c *cluster) waitFormed(timeout time.Duration, ws ...*worker) clusterView {
	c.t.Helper()
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.id
	}
	var last clusterView
	waitFor(c.t, timeout, fmt.Sprintf("cluster of %v formed (all ready, one generation, all alive)", ids), func() (bool, string) {
		c.running(ws)
		gen := int32(-1)
		for _, w := range ws {
			if ok, why := w.ready(); !ok {
				return false, w.id + ": " + why
			}
			v, err := w.cluster()
			if err != nil {
				return false, w.id + ": " + err.Error()
			}
			if why := v.Check(ids, numPartitions); why != "" {
				return false, w.id + "'s /cluster: " + why
			}
			if gen >= 0 && v.Generation != gen {
				return false, fmt.Sprintf("generations differ: %d and %d", gen, v.Generation)
			}
			gen, last = v.Generation, v
		}
		return true, ""
	})
	return last
}

// ---------------------------------------------------------------------------
// HTTP.

func (w *worker) get(path string) (int, []byte, error) { return proctest.Get(w.web, path) }

func (w *worker) ready() (bool, string) { return proctest.Ready(w.web) }

// clusterView is a node's answer to GET /cluster, with the questions this
// suite asks of it.
type clusterView struct{ proctest.ClusterView }

func (w *worker) cluster() (clusterView, error) {
	v, err := proctest.Cluster(w.web)
	return clusterView{v}, err
}

// nodeOfActor returns the id of the node whose actor address is addr.
func (v clusterView) nodeOfActor(addr string) string {
	for _, n := range v.Nodes {
		if n.Actor == addr {
			return n.ID
		}
	}
	return ""
}

// keyOwnedBy returns the first key prefix-<i> whose partition (as
// Mephisto and the Java client compute it) is active on node.
func (v clusterView) keyOwnedBy(prefix, node string) (string, int32) {
	owner := v.Actives()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		p := kafka.Partition([]byte(k), numPartitions)
		if owner[p] == node {
			return k, p
		}
	}
	return "", -1
}

// tableValue reads table[key] through w: the value's JSON text, or an
// error (404 included).
func (w *worker) tableValue(table, key string) (string, error) {
	code, body, err := w.get("/tables/" + table + "/" + key)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("%s/%s via %s: HTTP %d %s", table, key, w.id, code, strings.TrimSpace(string(body)))
	}
	var v struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("%s/%s: %v: %s", table, key, err, body)
	}
	return string(v.Value), nil
}

// readJSON waits until file exists and decodes it into v, failing if one
// of procs exits first.
func readJSON(t *testing.T, timeout time.Duration, file string, v any, procs ...*proc) {
	t.Helper()
	waitFor(t, timeout, "report "+filepath.Base(file), func() (bool, string) {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("%s exited before writing %s: %s", p.Name, file, p.DescribeExit())
			}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return false, err.Error()
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v\n%s", file, err, b)
		}
		return true, ""
	})
}

// stats summarizes round trips in milliseconds: median, 99th percentile
// and mean.
func stats(ms []float64) string {
	if len(ms) == 0 {
		return "no samples"
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	p := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("n=%d p50=%.3fms p99=%.3fms mean=%.3fms", len(s), p(0.5), p(0.99), sum/float64(len(s)))
}
