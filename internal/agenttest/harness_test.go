package agenttest_test

// What these tests build on internal/proctest: a broker and workers of the
// test app, client commands, and what the tests ask of a node over HTTP.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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

// ---------------------------------------------------------------------------
// Child processes, ports and waiting: the process harness the suites
// share.

// proc is a child process of the suite, its output in files.
type proc = proctest.Proc

// childEnv is the test's environment without MEPHISTO_* and ATEST_*
// variables (the binaries would read them), plus extra.
func childEnv(extra []string) []string { return proctest.Environ(extra, "MEPHISTO_", "ATEST_") }

func startProc(t testing.TB, logDir, name, path string, env []string, args ...string) *proc {
	t.Helper()
	return proctest.StartT(t, proctest.Spec{Name: name, Path: path, Args: args, Env: childEnv(env), LogDir: logDir})
}

var (
	freeAddr = proctest.FreeAddrT
	waitFor  = proctest.WaitForT
)

// run runs the test app binary as a client command (ask, send …) of the
// cluster's app to completion, within a minute; --brokers is added.
func (c *cluster) run(args ...string) proctest.Result {
	c.t.Helper()
	args = append(args, "--brokers", c.brokers)
	return proctest.RunT(c.t, proctest.Spec{Name: "atest-" + args[0], Path: testappBin, Args: args, Env: childEnv(c.b.env)}, time.Minute)
}

// ---------------------------------------------------------------------------
// The cluster: one broker and workers of the test app.

type cluster struct {
	t      *testing.T
	b      *broker
	logDir string
	// broker is the broker's process: `mephisto broker` on kfake, the
	// shared Apache Kafka's JVM on Kafka.
	broker  *proc
	brokers string // the bootstrap address
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

// newCluster is the cluster on b (on kfake its broker starts now); add
// workers with start.
func newCluster(t *testing.T, b *broker) *cluster {
	t.Helper()
	logDir := proctest.LogDir(t, "agenttest")
	c := &cluster{t: t, b: b, logDir: logDir}
	c.brokers, c.broker = b.start(t, logDir)
	return c
}

// start starts a worker named id with extra environment variables; the
// first worker started is every later one's gossip seed.
func (c *cluster) start(id string, env ...string) *worker {
	c.t.Helper()
	w := &worker{c: c, id: id, env: env, web: freeAddr(c.t, false),
		gossip: freeAddr(c.t, true), actor: freeAddr(c.t, false)}
	if c.seed == "" {
		c.seed = w.gossip
	}
	w.proc = startProc(c.t, c.logDir, id, testappBin, append(slices.Clone(c.b.env), env...), "worker",
		"--brokers", c.brokers, "--node-id", id, "--web", w.web,
		"--gossip", w.gossip, "--join", c.seed, "--actor", w.actor, "--data-dir", c.t.TempDir(),
		"--partitions", strconv.Itoa(numPartitions), "--commit-interval", commitInterval.String(),
		"--session-timeout", sessionTimeout.String())
	c.workers = append(c.workers, w)
	return w
}

// running fails the test if the broker or a worker of ws has exited.
func (c *cluster) running(ws []*worker) {
	c.t.Helper()
	procs := []*proc{c.broker}
	for _, w := range ws {
		procs = append(procs, w.proc)
	}
	if err := proctest.Running(procs...); err != nil {
		c.t.Fatalf("%v", err)
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
	nodes := make([]proctest.Node, len(ws))
	for i, w := range ws {
		nodes[i] = proctest.Node{ID: w.id, Web: w.web}
	}
	var last clusterView
	waitFor(c.t, timeout, fmt.Sprintf("cluster of %v formed (all ready, one generation, all alive)", ids), func() (bool, string) {
		c.running(ws)
		v, why := proctest.Formed(nodes, numPartitions, true)
		last = clusterView{v}
		return why == "", why
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
				t.Fatalf("%s exited before writing %s: %s", p.Name(), file, p.DescribeExit())
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
