package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// chromium returns a headless browser to run: $MEPHISTO_CHROMIUM, or
// Debian's chromium (or chromium-browser) on PATH; "" if there is none.
func chromium() string {
	if p := os.Getenv("MEPHISTO_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// page is the dashboard as a headless browser rendered it: the body's
// attributes and, by data-node, data-partition, data-agent and
// data-table, the attributes of each row of the page's tables.
type page struct {
	body                           map[string]string
	nodes, parts, agents, tables   map[string]map[string]string
	partOrder, nodeOrder, agentIDs []string
}

var (
	tagRE  = regexp.MustCompile(`<(body|tr)\b([^>]*)>`)
	attrRE = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

func parsePage(dom string) page {
	pg := page{body: map[string]string{}, nodes: map[string]map[string]string{}, parts: map[string]map[string]string{},
		agents: map[string]map[string]string{}, tables: map[string]map[string]string{}}
	for _, m := range tagRE.FindAllStringSubmatch(dom, -1) {
		attrs := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(m[2], -1) {
			attrs[a[1]] = a[2]
		}
		switch {
		case m[1] == "body":
			pg.body = attrs
		case attrs["data-node"] != "":
			pg.nodes[attrs["data-node"]] = attrs
			pg.nodeOrder = append(pg.nodeOrder, attrs["data-node"])
		case attrs["data-partition"] != "":
			pg.parts[attrs["data-partition"]] = attrs
			pg.partOrder = append(pg.partOrder, attrs["data-partition"])
		case attrs["data-agent"] != "":
			pg.agents[attrs["data-agent"]] = attrs
		case attrs["data-table"] != "":
			pg.tables[attrs["data-table"]] = attrs
		}
	}
	return pg
}

// shows says what is wrong ("" if nothing) with pg as the dashboard of a
// cluster of exactly the nodes ids, each alive, reachable and ready, with
// partitions partitions, each processing on the node actives gives it
// and with a standby elsewhere, the agent count having had events events
// (unless events < 0: a killed node's counts are gone with it).
func (pg page) shows(ids []string, partitions int, actives map[int32]string, events int) string {
	if pg.body["data-state"] != "loaded" {
		return fmt.Sprintf("page state %q (the script did not render /dashboard.json)", pg.body["data-state"])
	}
	nodes := slices.Clone(pg.nodeOrder)
	sort.Strings(nodes)
	if !slices.Equal(nodes, ids) {
		return fmt.Sprintf("node rows %v, want %v", pg.nodeOrder, ids)
	}
	for _, id := range ids {
		n := pg.nodes[id]
		if n["data-alive"] != "true" || n["data-reachable"] != "true" || n["data-ready"] != "true" {
			return fmt.Sprintf("node %s shown %v, want alive, reachable and ready", id, n)
		}
	}
	if len(pg.partOrder) != partitions {
		return fmt.Sprintf("%d partition rows, want %d", len(pg.partOrder), partitions)
	}
	for p := range int32(partitions) {
		row := pg.parts[strconv.Itoa(int(p))]
		if row == nil {
			return fmt.Sprintf("no row of partition %d", p)
		}
		if row["data-active"] != actives[p] || row["data-state"] != "processing" {
			return fmt.Sprintf("partition %d shown active on %q, %s; want processing on %s", p, row["data-active"], row["data-state"], actives[p])
		}
		sb := row["data-standbys"]
		if sb == "" || slices.Contains(strings.Split(sb, ","), actives[p]) {
			return fmt.Sprintf("partition %d shown with standbys %q, want one besides its active %s", p, sb, actives[p])
		}
		for _, s := range strings.Split(sb, ",") {
			if !slices.Contains(ids, s) {
				return fmt.Sprintf("partition %d has standby %s, not a node of %v", p, s, ids)
			}
		}
	}
	if a := pg.agents["count"]; a == nil || (events >= 0 && a["data-events"] != strconv.Itoa(events)) {
		return fmt.Sprintf("agent count shown %v, want %d events", a, events)
	}
	if pg.tables["counts"] == nil {
		return "no row of table counts"
	}
	return ""
}

// TestDashboardInBrowser: a real headless browser (chromium) loads the
// dashboard of a three-node cluster of real worker processes and
// renders the three nodes and the partitions where GET /cluster puts
// them, refreshing itself; after one node is killed with kill -9, the
// page (loaded again) shows the two nodes left and the dead node's
// partitions on them. It skips where no chromium is installed.
func TestDashboardInBrowser(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("no headless browser: chromium is not on PATH (Debian: apt-get install chromium) and MEPHISTO_CHROMIUM is not set")
	}
	const partitions = 4
	bin := t.TempDir()
	var testapp, mephistoBin string
	if err := proctest.Build(bin,
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/clustertest/testapp", Out: &testapp},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin}); err != nil {
		t.Fatal(err)
	}
	env := proctest.Environ(nil, "MEPHISTO_", "CLUSTERTEST_")
	logDir := proctest.LogDir(t, "web-browser")
	listen := proctest.FreeAddrT(t, false)
	broker := proctest.StartT(t, proctest.Spec{Name: "broker", Path: mephistoBin, Env: env, LogDir: logDir,
		Args: []string{"broker", "--listen", listen, "--data-dir", t.TempDir()}})
	brokers, _ := broker.WaitListeningT(t, 30*time.Second, listen)

	ids := []string{"n1", "n2", "n3"}
	var nodes []proctest.Node
	procs := map[string]*proctest.Proc{}
	seed := ""
	for _, id := range ids {
		web, gossip := proctest.FreeAddrT(t, false), proctest.FreeAddrT(t, true)
		if seed == "" {
			seed = gossip
		}
		procs[id] = proctest.StartT(t, proctest.Spec{Name: id, Path: testapp, Env: env, LogDir: logDir,
			Args: []string{"worker", "--brokers", brokers, "--node-id", id, "--web", web, "--gossip", gossip, "--join", seed,
				"--data-dir", t.TempDir(), "--partitions", strconv.Itoa(partitions), "--commit-interval", "100ms",
				"--session-timeout", "6s"}})
		nodes = append(nodes, proctest.Node{ID: id, Web: web})
	}
	live := []*proctest.Proc{broker, procs["n1"], procs["n2"], procs["n3"]}
	running := func() {
		if err := proctest.Running(live...); err != nil {
			t.Fatalf("%v", err)
		}
	}
	var view proctest.ClusterView
	proctest.WaitForT(t, 90*time.Second, "three nodes formed", func() (bool, string) {
		running()
		var why string
		view, why = proctest.Formed(nodes, partitions, true)
		return why == "", why
	})
	const events = 20
	var recs [][2]string
	for i := range events {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i), "x"})
	}
	produceKV(t, brokers, "events", recs)

	profile := t.TempDir()
	load := func(web string) (page, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Virtual time runs ahead while the page waits on nothing but its
		// timers: 4 s of it is four refreshes of the page, in about one
		// real second.
		cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--user-data-dir="+profile, "--virtual-time-budget=4000", "--dump-dom", "http://"+web+"/")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s --dump-dom: %v\n%s", filepath.Base(browser), err, stderr.String())
		}
		return parsePage(string(out)), string(out)
	}

	front := nodes[0].Web // n1's page; n3 is the one killed
	var pg page
	var dom string
	proctest.WaitForT(t, 60*time.Second, "the browser shows the three nodes and their partitions", func() (bool, string) {
		running()
		v, err := proctest.Cluster(front)
		if err != nil {
			return false, err.Error()
		}
		pg, dom = load(front)
		if why := pg.shows(ids, partitions, v.Actives(), events); why != "" {
			return false, why
		}
		view = v
		return true, ""
	})
	if n, _ := strconv.Atoi(pg.body["data-refreshes"]); n < 2 || pg.body["data-node"] != "n1" {
		t.Errorf("page body %v: want it served by n1 and refreshed by itself at least twice", pg.body)
	}
	t.Logf("the page before the kill: nodes %v, partitions %v", pg.nodeOrder, view.Actives())
	if !strings.Contains(dom, "Mephisto · ctest") {
		t.Errorf("the page has no title naming the app")
	}

	before := view.Actives()
	gen := view.Generation
	live = live[:3]
	if err := procs["n3"].Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	sawDead := false
	proctest.WaitForT(t, 60*time.Second, "the browser shows the failover: two nodes, n3's partitions moved", func() (bool, string) {
		running()
		v, err := proctest.Cluster(front)
		if err != nil {
			return false, err.Error()
		}
		pg, _ = load(front)
		if n := pg.nodes["n3"]; n != nil && n["data-alive"] == "false" {
			sawDead = true
		}
		if why := pg.shows([]string{"n1", "n2"}, partitions, v.Actives(), -1); why != "" {
			return false, why
		}
		if g, _ := strconv.Atoi(pg.body["data-generation"]); int32(g) <= gen {
			return false, fmt.Sprintf("page shows generation %d, the one before the kill was %d", g, gen)
		}
		view = v
		return true, ""
	})
	moved := map[int32]string{}
	for p, was := range before {
		if was == "n3" {
			moved[p] = view.Actives()[p]
		}
	}
	if len(moved) == 0 {
		t.Errorf("n3 was active for no partition before the kill: %v", before)
	}
	t.Logf("the page after the kill: nodes %v; n3's partitions now on %v (n3 shown dead on the way: %v)", pg.nodeOrder, moved, sawDead)
}
