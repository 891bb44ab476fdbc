package web

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The dashboard (issue 15 point 6): an HTML page with no external assets
// at GET / (and GET /dashboard), which fetches GET /dashboard.json every
// second and renders it. GET /dashboard.json is the cluster as one node
// sees it: GET /cluster's and GET /topology's bodies as they are, and
// every node's own status, which the answering node fetches from each
// live peer's GET /dashboard/node.json (its own it takes directly).

//go:embed dashboard.html
var dashboardHTML []byte

// NodeStatus is one node's own part of the dashboard, the body of
// GET /dashboard/node.json: what only that node knows.
type NodeStatus struct {
	ID  string `json:"id"`
	Web string `json:"web"`
	// Time is when the status was taken, in unix milliseconds.
	Time int64 `json:"time"`
	// Ready and Why are GET /readyz's answer.
	Ready bool   `json:"ready"`
	Why   string `json:"why,omitempty"`
	// Generation is the consumer group generation of the node's current
	// assignment.
	Generation int32 `json:"generation"`
	// Active lists the partitions this node's grains run, by partition.
	Active []ActivePartition `json:"active"`
	// Standby lists the standby shards this node tails, by partition.
	Standby []StandbyPartition `json:"standby"`
	// Agents are the app's agents as this node runs them.
	Agents []AgentStatus `json:"agents"`
	// Tables are the app's tables as this node writes them.
	Tables []TableStatus `json:"tables"`
	// Restarts counts the grain restarts on this node since it started.
	Restarts int64 `json:"restarts"`
	// Errors are the last warnings and errors the node logged (a bounded
	// ring; dead letters, skipped records and grain failures among them),
	// newest first; ErrorsTotal counts every one since the node started.
	Errors      []LogRecord `json:"errors"`
	ErrorsTotal int64       `json:"errors_total"`
}

// ActivePartition is a partition a node is active for.
type ActivePartition struct {
	Partition int32 `json:"partition"`
	// State is "recovering" (replaying changelogs), "processing",
	// "failing" (restarting with backoff) or "stopped" (by an agent's
	// error policy).
	State string `json:"state"`
	// Error says why it is failing or stopped.
	Error string `json:"error,omitempty"`
	// Restarts counts the restarts of the partition's grain on this node.
	Restarts int64 `json:"restarts"`
	// Recovery is, per table, the partition's current or last recovery:
	// the changelog records it had to replay and those still to replay.
	Recovery []TableRecovery `json:"recovery"`
}

// TableRecovery is a table shard's recovery from its changelog.
type TableRecovery struct {
	Table     string `json:"table"`
	Records   int64  `json:"records"`
	Remaining int64  `json:"remaining"`
}

// StandbyPartition is a partition a node keeps a standby copy of.
type StandbyPartition struct {
	Partition int32 `json:"partition"`
	// CaughtUp is set once every table's tail has reached the end of its
	// changelog as it was when the standby started.
	CaughtUp bool       `json:"caught_up"`
	Tables   []TableLag `json:"tables"`
}

// TableLag is how far behind its changelog a standby copy of a table's
// shard is, in records (-1: not known yet).
type TableLag struct {
	Table string `json:"table"`
	Lag   int64  `json:"lag"`
}

// AgentStatus is an agent on one node: the records of its topic this node
// received (Events) and their rate, in events per second over the last
// few seconds (measured between calls: 0 on the first), and the records
// its error policy gave up on: sent to the dead-letter topic or skipped
// (Errors is their sum).
type AgentStatus struct {
	Name        string  `json:"name"`
	Topic       string  `json:"topic"`
	Events      int64   `json:"events"`
	Rate        float64 `json:"rate"`
	DeadLetters int64   `json:"dead_letters"`
	Skipped     int64   `json:"skipped"`
	Errors      int64   `json:"errors"`
}

// TableStatus is a table on one node: the writes its handlers made here
// (counted at each commit) and their rate per second.
type TableStatus struct {
	Name   string  `json:"name"`
	Writes int64   `json:"writes"`
	Rate   float64 `json:"rate"`
}

// LogRecord is a warning or error a node logged: its time in unix
// milliseconds, level, message and attributes as text.
type LogRecord struct {
	Time  int64             `json:"time"`
	Level string            `json:"level"`
	Msg   string            `json:"msg"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Dashboard is the body of GET /dashboard.json.
type Dashboard struct {
	// Node is the id of the node that answered; Time when, in unix ms.
	Node string `json:"node"`
	Time int64  `json:"time"`
	// Cluster is GET /cluster's body, Topology GET /topology's.
	Cluster  json.RawMessage `json:"cluster"`
	Topology json.RawMessage `json:"topology"`
	// Nodes are the nodes of the cluster view (this node first if the
	// view does not name it yet), each with its own status.
	Nodes []DashboardNode `json:"nodes"`
}

// DashboardNode is a node of the dashboard: its status as it reported it
// (GET /dashboard/node.json), whether the cluster view sees it alive, and
// whether it answered (Error says why not; its status then holds only
// its id and address).
type DashboardNode struct {
	NodeStatus
	Alive     bool   `json:"alive"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// peerTimeout bounds the fetch of one peer's status: a dashboard refreshes
// every second, and a node that does not answer by then is shown so.
const peerTimeout = 1500 * time.Millisecond

// peerClient fetches the peers' statuses; a node that is gone refuses the
// connection at once, one that hangs is given up after peerTimeout.
var peerClient = &http.Client{
	Timeout: peerTimeout,
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	},
}

// dashboardRoutes are the dashboard's built-in routes (the page at GET /
// is added by Handler unless an app page serves GET /).
func dashboardRoutes(b Backend) []Page {
	return []Page{
		{"GET /dashboard", http.HandlerFunc(servePage)},
		{"GET /dashboard.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			JSON(w, http.StatusOK, BuildDashboard(r.Context(), b))
		})},
		{"GET /dashboard/node.json", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			st := b.NodeStatus()
			fillEmpty(&st)
			w.Header().Set("Cache-Control", "no-store")
			JSON(w, http.StatusOK, st)
		})},
	}
}

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Everything is inline: nothing else may load (no external assets).
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	_, _ = w.Write(dashboardHTML)
}

// rootTaken reports whether one of pages serves GET /: the app's page
// keeps it, and the dashboard is at GET /dashboard only.
func rootTaken(pages []Page) bool {
	mux := http.NewServeMux()
	for _, p := range pages {
		if err := register(mux, p.Pattern); err != nil {
			return false // Handler refuses such pages anyway
		}
	}
	_, pattern := mux.Handler(sample("GET /{$}"))
	return pattern != ""
}

// BuildDashboard assembles GET /dashboard.json's body on b's node: b's
// cluster view and topology, its own status, and the status of every
// other node the view names, fetched concurrently (a node the view sees
// dead is not asked).
func BuildDashboard(ctx context.Context, b Backend) Dashboard {
	d := Dashboard{Time: time.Now().UnixMilli()}
	d.Cluster = marshalRaw(b.Cluster())
	d.Topology = marshalRaw(b.Topology())
	self := b.NodeStatus()
	d.Node = self.ID
	var view struct {
		Nodes []struct {
			ID    string `json:"id"`
			Web   string `json:"web"`
			Alive bool   `json:"alive"`
		} `json:"nodes"`
	}
	_ = json.Unmarshal(d.Cluster, &view)
	seenSelf := false
	for _, n := range view.Nodes {
		if n.ID == self.ID {
			seenSelf = true
		}
	}
	if !seenSelf {
		d.Nodes = append(d.Nodes, DashboardNode{NodeStatus: self, Alive: true, Reachable: true})
	}
	for _, n := range view.Nodes {
		d.Nodes = append(d.Nodes, DashboardNode{NodeStatus: NodeStatus{ID: n.ID, Web: n.Web}, Alive: n.Alive})
	}
	var wg sync.WaitGroup
	for i := range d.Nodes {
		dn := &d.Nodes[i] // the slice is whole: no append moves it now
		switch {
		case dn.ID == self.ID:
			dn.NodeStatus, dn.Reachable = self, true
		case !dn.Alive:
			dn.Error = "gossip sees it dead"
		case dn.Web == "":
			dn.Error = "no HTTP address (its --web is off)"
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, addr := dn.ID, dn.Web
				st, err := fetchStatus(ctx, addr)
				switch {
				case err != nil:
					dn.Error = err.Error()
				case st.ID != id:
					dn.Error = fmt.Sprintf("the node at %s is %q, not %q", addr, st.ID, id)
				default:
					dn.NodeStatus, dn.Reachable = st, true
				}
			}()
		}
	}
	wg.Wait()
	for i := range d.Nodes { // never null in JSON
		fillEmpty(&d.Nodes[i].NodeStatus)
	}
	return d
}

// fetchStatus asks the node at web (host:port) for its own status.
func fetchStatus(ctx context.Context, web string) (NodeStatus, error) {
	var st NodeStatus
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+web+"/dashboard/node.json", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set(forwardedHeader, "1")
	resp, err := peerClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the method and URL
		}
		return st, fmt.Errorf("does not answer at %s: %v", web, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("answers HTTP %d at %s", resp.StatusCode, web)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("answers at %s with what is not a node status: %v", web, err)
	}
	return st, nil
}

// fillEmpty replaces nil lists with empty ones, so that the page (and
// any client) finds a list in each.
func fillEmpty(st *NodeStatus) {
	if st.Active == nil {
		st.Active = []ActivePartition{}
	}
	for i := range st.Active {
		if st.Active[i].Recovery == nil {
			st.Active[i].Recovery = []TableRecovery{}
		}
	}
	if st.Standby == nil {
		st.Standby = []StandbyPartition{}
	}
	for i := range st.Standby {
		if st.Standby[i].Tables == nil {
			st.Standby[i].Tables = []TableLag{}
		}
	}
	if st.Agents == nil {
		st.Agents = []AgentStatus{}
	}
	if st.Tables == nil {
		st.Tables = []TableStatus{}
	}
	if st.Errors == nil {
		st.Errors = []LogRecord{}
	}
}

// marshalRaw renders v as JSON (null if it cannot be).
func marshalRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
