package deploy

// The dashboard: its file checked on its own, every metric its queries
// read checked against what a real worker exports, and the image's binary
// run as a worker with a compose node's own settings.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// timeout bounds every wait.
const timeout = 90 * time.Second

// TestDashboardFile checks the dashboard on its own: panels with unique
// ids laid out without overlap on Grafana's 24 columns, every query one
// that parses and names a series, every variable it uses defined, and the
// views issue 15 asks for present.
func TestDashboardFile(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: uid %q, title %q: want both", dashboardFile, d.UID, d.Title)
	}
	ids := map[int]string{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var rects []rect
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panel %q %+v overlaps panel %q", p.Title, g, r.title)
			}
		}
		rects = append(rects, rect{p.Title, g.X, g.Y, g.W, g.H})
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	varRef := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	used := map[string]bool{}
	for _, q := range d.queries(t) {
		r, err := parsePromQL(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		if len(r.metrics) == 0 {
			t.Errorf("%s: %q names no series", q.where, q.expr)
		}
		for _, m := range r.metrics {
			used[m] = true
		}
		for _, m := range varRef.FindAllStringSubmatch(q.expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: %q uses $%s, which the dashboard does not define", q.where, q.expr, m[1])
			}
		}
	}
	// What issue 15 asks the dashboard to show, by the series that show it.
	for what, metric := range map[string]string{
		"events per second per agent": "mephisto_processing_seconds_count",
		"lag per partition":           "mephisto_consumer_lag",
		"commit latency":              "mephisto_commit_seconds_bucket",
		"recovery progress":           "mephisto_recovery_remaining_records",
		"restarts":                    "mephisto_grain_restarts_total",
		"dead letters":                "mephisto_dead_letters_total",
		"failovers":                   "mephisto_dead_nodes_evicted_total",
		"RSS":                         "process_resident_memory_bytes",
	} {
		if !used[metric] {
			t.Errorf("%s: no panel shows %s (%s)", dashboardFile, what, metric)
		}
	}
}

// scrape is the series of one /metrics page: each series name with the
// label names its samples carry.
type scrape map[string]map[string]bool

func scrapeMetrics(t testing.TB, web string) scrape {
	t.Helper()
	code, body, err := proctest.Get(web, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET http://%s/metrics: %d %v", web, code, err)
	}
	s := scrape{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name := line[:end]
		if s[name] == nil {
			s[name] = map[string]bool{}
		}
		if line[end] == '{' {
			close := strings.LastIndexByte(line, '}')
			for _, kv := range proctest.SplitLabels(line[end+1 : close]) {
				if k, _, ok := strings.Cut(kv, "="); ok {
					s[name][k] = true
				}
			}
		}
	}
	return s
}

// value sums the samples of name whose labels include match.
func metricValue(t testing.TB, web, name string, match map[string]string) float64 {
	t.Helper()
	v, _, err := proctest.Metric(web, name, match)
	if err != nil {
		t.Fatalf("metrics of %s: %v", web, err)
	}
	return v
}

// Series Prometheus makes itself for every target, and the labels it
// adds to every scraped series.
var (
	prometheusSeries = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}
	targetLabels     = []string{"job", "instance"}
)

// testApp is a worker app with what every panel needs to have data: two
// hops through Kafka and a table (as wordcount), an agent that fails on
// "boom" — its grain restarts, and with --max-attempts 1 the record then
// goes to the dead-letter topic — and one whose Skip policy skips the
// word "skipme".
func testApp(t testing.TB, broker, dataDir string) (*mephisto.App, *mephisto.Topic[string, string]) {
	app := mephisto.New("deploytest", mephisto.WithBrokers(broker), mephisto.WithDataDir(dataDir),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4), mephisto.WithNodeID("n1"),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithMaxAttempts(1), mephisto.WithLogger(proctest.Logger(t)))
	lines := mephisto.NewTopic(app, "lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _ string, line string) error {
		if line == "boom" {
			return errors.New("boom")
		}
		for _, w := range strings.Fields(line) {
			if err := words.Send(ctx, w, w); err != nil {
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		if word == "skipme" {
			return errors.New("skip me")
		}
		return counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	}, mephisto.OnError(mephisto.Skip))
	return app, lines
}

// runApp runs app until stop is called or the test ends, and waits until
// it is ready.
func runApp(t testing.TB, app *mephisto.App) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		case <-time.After(timeout):
			t.Errorf("app did not stop within %v", timeout)
		}
	}
	t.Cleanup(stop)
	proctest.WaitForT(t, timeout, "worker ready", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("app.Run returned early: %v", err)
		default:
		}
		return app.Ready()
	})
	return stop
}

func sendLines(t testing.TB, lines *mephisto.Topic[string, string], n int, extra ...string) {
	t.Helper()
	corpus := []string{"the quick brown fox", "the lazy dog", "to be or not to be", "the early bird"}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i := range n {
		if err := lines.SendValue(ctx, corpus[i%len(corpus)]); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range extra {
		if err := lines.SendValue(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDashboardMetricsExported runs a real worker on an embedded broker
// and requires every series every dashboard query reads to be on its
// /metrics, with every label the query matches or groups by. The worker
// first rebuilds its tables from the changelogs a first worker wrote (so
// that the recovery series exist), then processes events, a record that
// fails until it is dead-lettered and one its agent skips.
func TestDashboardMetricsExported(t *testing.T) {
	queries := loadDashboard(t).queries(t)
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	// A first worker fills the changelogs.
	first, lines := testApp(t, b.Addr(), t.TempDir())
	stop := runApp(t, first)
	sendLines(t, lines, 40)
	proctest.WaitForT(t, timeout, "the first worker's counts committed", func() (bool, string) {
		v := metricValue(t, first.WebAddr(), "mephisto_table_writes_total", nil)
		return v >= 100, fmt.Sprintf("%v table writes committed", v)
	})
	stop()

	// The worker under test starts on an empty data dir: it recovers.
	app, lines := testApp(t, b.Addr(), t.TempDir())
	runApp(t, app)
	web := app.WebAddr()
	sendLines(t, lines, 200, "boom", "skipme now")
	proctest.WaitForT(t, timeout, "records processed, dead-lettered and skipped", func() (bool, string) {
		s := scrapeMetrics(t, web)
		var missing []string
		for _, m := range []string{"mephisto_dead_letters_total", "mephisto_skipped_total", "mephisto_grain_restarts_total",
			"mephisto_recovery_records_total", "mephisto_table_cache_hits_total", "mephisto_table_cache_misses_total"} {
			if s[m] == nil {
				missing = append(missing, m)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not yet on /metrics: %v", missing)
	})
	if n := metricValue(t, web, "mephisto_recovery_records_total", nil); n < 1 {
		t.Errorf("recovery replayed %v records, want the first worker's changelog", n)
	}

	s := scrapeMetrics(t, web)
	for _, q := range queries {
		r, err := parsePromQL(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		have := map[string]bool{}
		for _, l := range targetLabels {
			have[l] = true
		}
		for _, m := range r.metrics {
			if slices.Contains(prometheusSeries, m) {
				continue
			}
			if s[m] == nil {
				t.Errorf("%s: %s is not exported by the worker", q.where, m)
				continue
			}
			for l := range s[m] {
				have[l] = true
			}
		}
		labels := r.labels
		if q.label != "" {
			labels = append(labels, q.label)
		}
		for _, l := range labels {
			if !have[l] {
				t.Errorf("%s: label %s is on none of the series %v (%q)", q.where, l, r.metrics, q.expr)
			}
		}
	}
}

// TestImageWorker runs the image's binary as a worker with node-1's
// settings from the compose file — its flags on the command line, its
// variables in the environment, the image's ENV under them — with only
// the addresses moved to this machine (the broker, free loopback ports, a
// temporary data dir). It must start, become ready, process the lines its
// generator sends, label its series with the app and its node id, and
// stop cleanly on SIGTERM.
func TestImageWorker(t *testing.T) {
	bin := imageBinary(t)
	c := loadCompose(t)
	nodes := mephistoNodes(t, c, loadDockerfile(t), workerFlags(t))
	// The node that runs the example's generator, so that events flow.
	var n *mephistoNode
	for _, nd := range nodes {
		if n == nil && nd.env["WORDCOUNT_RATE"] != "" {
			n = nd
		}
	}
	if n == nil {
		t.Fatal("docker-compose.yml: no node runs the generator (WORDCOUNT_RATE): nothing would flow in the trial")
	}
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	web := proctest.FreeAddrT(t, false)
	gossip := proctest.FreeAddrT(t, true)
	here := map[string]string{
		"brokers": b.Addr(), "web": web, "gossip": gossip, "join": gossip, "advertise": "127.0.0.1",
		"actor": proctest.FreeAddrT(t, false), "data-dir": t.TempDir(),
	}
	args := slices.Clone(n.args)
	env := map[string]string{}
	for k, v := range n.env {
		env[k] = v
	}
	for flag, v := range here {
		s, ok := n.settings[flag]
		switch {
		case !ok:
			t.Fatalf("service %s does not set --%s", n.name, flag)
		case s.from == "command":
			for i, a := range args {
				if a == "--"+flag && i+1 < len(args) {
					args[i+1] = v
				} else if strings.HasPrefix(a, "--"+flag+"=") {
					args[i] = "--" + flag + "=" + v
				}
			}
		default:
			env[s.from] = v
		}
	}
	var envList []string
	for _, k := range sortedKeys(env) {
		envList = append(envList, k+"="+env[k])
	}
	p := proctest.StartT(t, proctest.Spec{Name: n.name, Path: bin, Args: args, Env: append(proctest.Environ(nil, "MEPHISTO_", "WORDCOUNT_"), envList...)})
	proctest.WaitForT(t, timeout, n.name+" ready on http://"+web+"/readyz", func() (bool, string) {
		if p.Exited() {
			t.Fatalf("%s exited (%s) before it was ready", n.name, p.DescribeExit())
		}
		return proctest.Ready(web)
	})
	app := "wordcount" // the example's app name, which its series carry
	id := n.get(t, "node-id")
	proctest.WaitForT(t, timeout, "the generator's lines counted", func() (bool, string) {
		v := metricValue(t, web, "mephisto_events_in_total", map[string]string{"topic": "words", "app": app, "node": id})
		return v > 0, fmt.Sprintf("mephisto_events_in_total{topic=words,app=%s,node=%s} = %v", app, id, v)
	})
	if strings.EqualFold(n.env["MEPHISTO_LOG_FORMAT"], "json") {
		if first, _, _ := strings.Cut(p.Stderr(), "\n"); !strings.HasPrefix(first, "{") {
			t.Errorf("MEPHISTO_LOG_FORMAT=json, but the worker logs %q", first)
		}
	}
	p.StopT(t, 45*time.Second)
}
