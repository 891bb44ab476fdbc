package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// dashBackend is a node for the dashboard's tests: its cluster view and
// its own status are given.
type dashBackend struct {
	fakeBackend
	cluster any
	status  NodeStatus
}

func (d dashBackend) Cluster() any           { return d.cluster }
func (d dashBackend) NodeStatus() NodeStatus { return d.status }

// serve starts b's handler on a test server and returns its host:port.
func serve(t *testing.T, b Backend, pages ...Page) string {
	t.Helper()
	s := httptest.NewServer(handler(t, b, pages...))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func getBody(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestDashboardJSON: GET /dashboard.json on one node holds its cluster
// view and topology as GET /cluster and /topology give them, its own
// status, each live peer's status as the peer gives it at GET
// /dashboard/node.json, and for each node it could not ask, why: dead by
// gossip, not answering, or answering as another node.
func TestDashboardJSON(t *testing.T) {
	n2Status := NodeStatus{ID: "n2", Web: "set below", Time: 1700000000002, Ready: true, Generation: 4,
		Active:  []ActivePartition{{Partition: 1, State: "processing", Restarts: 2, Recovery: []TableRecovery{{Table: "counts", Records: 10, Remaining: 0}}}},
		Standby: []StandbyPartition{{Partition: 0, CaughtUp: true, Tables: []TableLag{{Table: "counts", Lag: 0}}}},
		Agents:  []AgentStatus{{Name: "count", Topic: "events", Events: 7, Rate: 3.5, DeadLetters: 1, Skipped: 0, Errors: 1}},
		Tables:  []TableStatus{{Name: "counts", Writes: 6, Rate: 3}},
		Errors: []LogRecord{{Time: 1700000000001, Level: "WARN", Msg: "sending the record to the dead-letter topic; processing goes on once it is written",
			Attrs: map[string]string{"agent": "count", "offset": "3"}}},
		ErrorsTotal: 1, Restarts: 2}
	n2 := dashBackend{status: n2Status, cluster: map[string]any{}}
	n2.status.Web = "" // set once the server runs
	n2Addr := serve(t, &n2)
	n2.status.Web = n2Addr
	n2Status.Web = n2Addr
	impostor := serve(t, dashBackend{status: NodeStatus{ID: "n9"}, cluster: map[string]any{}})

	view := map[string]any{
		"generation": 4,
		"nodes": []map[string]any{
			{"id": "n1", "web": "front", "alive": true},
			{"id": "n2", "web": n2Addr, "alive": true},
			{"id": "n3", "web": "127.0.0.1:9", "alive": false},
			{"id": "n4", "web": "127.0.0.1:1", "alive": true},
			{"id": "n5", "web": impostor, "alive": true},
		},
		"partitions": []map[string]any{{"group": "ctest", "partition": 0, "active": "n1", "standbys": []string{"n2"}, "lag": 5}},
	}
	self := NodeStatus{ID: "n1", Web: "front", Time: 1700000000003, Ready: false, Why: "partitions [0] recovering tables from their changelogs",
		Generation: 4, Active: []ActivePartition{{Partition: 0, State: "recovering", Recovery: []TableRecovery{{Table: "counts", Records: 40, Remaining: 30}}}}}
	front := serve(t, dashBackend{cluster: view, status: self})

	code, h, body := getBody(t, "http://"+front+"/dashboard.json")
	if code != 200 || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /dashboard.json: %d %v %s", code, h, body)
	}
	var d Dashboard
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if d.Node != "n1" || d.Time == 0 {
		t.Errorf("node %q time %d, want n1 and a time", d.Node, d.Time)
	}
	wantView, _ := json.Marshal(view)
	if string(d.Cluster) != string(wantView) {
		t.Errorf("cluster = %s, want GET /cluster's body %s", d.Cluster, wantView)
	}
	if string(d.Topology) != `{"app":"x"}` {
		t.Errorf("topology = %s, want GET /topology's body", d.Topology)
	}
	empty := func(st NodeStatus) NodeStatus { fillEmpty(&st); return st }
	want := []DashboardNode{
		{NodeStatus: empty(self), Alive: true, Reachable: true},
		{NodeStatus: empty(n2Status), Alive: true, Reachable: true},
		{NodeStatus: empty(NodeStatus{ID: "n3", Web: "127.0.0.1:9"}), Alive: false, Error: "gossip sees it dead"},
		{NodeStatus: empty(NodeStatus{ID: "n4", Web: "127.0.0.1:1"}), Alive: true},
		{NodeStatus: empty(NodeStatus{ID: "n5", Web: impostor}), Alive: true, Error: `the node at ` + impostor + ` is "n9", not "n5"`},
	}
	if len(d.Nodes) != len(want) {
		t.Fatalf("%d nodes, want %d: %+v", len(d.Nodes), len(want), d.Nodes)
	}
	// n4 refuses the connection: the error names its address and why.
	if e := d.Nodes[3].Error; !strings.HasPrefix(e, "does not answer at 127.0.0.1:1: ") || !strings.Contains(e, "connection refused") {
		t.Errorf("n4's error = %q, want it not answering at 127.0.0.1:1, connection refused", e)
	}
	want[3].Error = d.Nodes[3].Error
	for i := range want {
		if !reflect.DeepEqual(d.Nodes[i], want[i]) {
			t.Errorf("node %d:\n got %+v\nwant %+v", i, d.Nodes[i], want[i])
		}
	}
	// What each node says of itself, with lists where it has none.
	_, _, body = getBody(t, "http://"+n2Addr+"/dashboard/node.json")
	var st NodeStatus
	if err := json.Unmarshal(body, &st); err != nil || !reflect.DeepEqual(st, empty(n2Status)) {
		t.Errorf("n2's /dashboard/node.json = %s (%v), want %+v", body, err, n2Status)
	}
	_, _, body = getBody(t, "http://"+impostor+"/dashboard/node.json")
	if got := string(body); got != `{"id":"n9","web":"","time":0,"ready":false,"generation":0,"active":[],"standby":[],"agents":[],"tables":[],"restarts":0,"errors":[],"errors_total":0}`+"\n" {
		t.Errorf("a node with nothing: %s", got)
	}
}

// TestDashboardJSONWithoutPlan: a node with no assignment yet (an empty
// view) shows itself alone.
func TestDashboardJSONWithoutPlan(t *testing.T) {
	self := NodeStatus{ID: "n1", Web: "a:1", Why: "waiting for a partition assignment"}
	front := serve(t, dashBackend{cluster: map[string]any{"generation": 0, "nodes": []any{}, "partitions": []any{}}, status: self})
	_, _, body := getBody(t, "http://"+front+"/dashboard.json")
	var d Dashboard
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	fillEmpty(&self)
	if want := []DashboardNode{{NodeStatus: self, Alive: true, Reachable: true}}; !reflect.DeepEqual(d.Nodes, want) {
		t.Errorf("nodes = %+v, want %+v", d.Nodes, want)
	}
}

// TestDashboardPage: GET / and GET /dashboard serve the page, which loads
// nothing from anywhere (no external asset: its CSS and script are
// inline, and the policy sent with it forbids anything else) and fetches
// GET /dashboard.json.
func TestDashboardPage(t *testing.T) {
	addr := serve(t, fakeBackend{})
	_, _, root := getBody(t, "http://"+addr+"/")
	for _, path := range []string{"/", "/dashboard"} {
		code, h, body := getBody(t, "http://"+addr+path)
		if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" || string(body) != string(dashboardHTML) {
			t.Errorf("GET %s: %d %q, %d bytes, want the page (%d bytes)", path, code, h.Get("Content-Type"), len(body), len(dashboardHTML))
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	page := string(root)
	for _, re := range []string{`<script[^>]*\ssrc=`, `<link\b`, `@import`, `url\(`, `<img\b`, `<iframe\b`, `https?://[a-z]`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page refers to something outside it: %q", m)
		}
	}
	if !strings.Contains(page, `fetch("/dashboard.json"`) || !strings.Contains(page, "setTimeout(tick, REFRESH_MS)") {
		t.Errorf("the page does not fetch /dashboard.json again and again")
	}
	// Paths under / that are no route are still not found.
	if code, _, _ := getBody(t, "http://"+addr+"/nothing"); code != 404 {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}

// TestDashboardYieldsRoot: an app page that serves GET / keeps it; the
// dashboard is at GET /dashboard then. A page elsewhere leaves / to the
// dashboard.
func TestDashboardYieldsRoot(t *testing.T) {
	mine := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "the app's own root") })
	for _, c := range []struct {
		pattern   string
		rootIsApp bool
	}{
		{"GET /{$}", true},
		{"/", true},
		{"GET /{path...}", true},
		{"/{$}", true},
		{"GET /user_count/{$}", false},
		{"POST /{$}", false},
	} {
		addr := serve(t, fakeBackend{}, Page{c.pattern, mine})
		_, _, body := getBody(t, "http://"+addr+"/")
		if got := string(body) == "the app's own root"; got != c.rootIsApp {
			t.Errorf("page %q: GET / served by the app's page %v, want %v", c.pattern, got, c.rootIsApp)
		}
		if _, _, body := getBody(t, "http://"+addr+"/dashboard"); string(body) != string(dashboardHTML) {
			t.Errorf("page %q: GET /dashboard does not serve the dashboard", c.pattern)
		}
		if err := CheckPage(c.pattern, nil); err != nil {
			t.Errorf("CheckPage(%q): %v", c.pattern, err)
		}
	}
	// The dashboard's own paths are built-in routes.
	if err := CheckPage("GET /dashboard.json", nil); err == nil || !strings.Contains(err.Error(), `built-in route "GET /dashboard.json"`) {
		t.Errorf("a page at /dashboard.json: %v", err)
	}
}
