package node

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mephistohq/mephisto/web"
)

// What the dashboard shows of this node (web.NodeStatus, GET
// /dashboard/node.json): its partitions, standbys and recoveries, its
// agents' and tables' counts and rates, read from its own Prometheus
// registry (nothing is counted twice), and the last warnings and errors
// it logged, kept by a handler in front of its logger.

// recentErrors is how many warnings and errors a node keeps for the
// dashboard.
const recentErrors = 100

// rateWindow is how far back the rates of the dashboard reach: a rate is
// measured from the oldest sample within it to now.
const rateWindow = 10 * time.Second

// dashboard is a node's state for the dashboard: the ring of recent
// errors and the counter samples that rates are measured between.
type dashboard struct {
	mu      sync.Mutex
	ring    [recentErrors]web.LogRecord
	next    int   // where the next record goes
	total   int64 // records ever logged at warning or above
	samples []sample
}

// sample is the counters the rates are computed from, at one instant.
type sample struct {
	at     time.Time
	events map[string]float64 // by topic
	writes map[string]float64 // by table
}

func newDashboard() *dashboard { return &dashboard{} }

// record keeps r in the ring.
func (d *dashboard) record(r web.LogRecord) {
	d.mu.Lock()
	d.ring[d.next] = r
	d.next = (d.next + 1) % recentErrors
	d.total++
	d.mu.Unlock()
}

// recent returns the ring's records, newest first, and how many were
// ever recorded.
func (d *dashboard) recent() ([]web.LogRecord, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := int(min(d.total, recentErrors))
	out := make([]web.LogRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, d.ring[(d.next-i+recentErrors)%recentErrors])
	}
	return out, d.total
}

// rates records cur and returns the rates per second of its counters
// since the oldest sample within rateWindow (0 without one).
func (d *dashboard) rates(cur sample) (events, writes map[string]float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := d.samples[:0]
	for _, s := range d.samples {
		if cur.at.Sub(s.at) <= rateWindow {
			keep = append(keep, s)
		}
	}
	d.samples = keep
	events, writes = map[string]float64{}, map[string]float64{}
	if len(d.samples) > 0 {
		old := d.samples[0]
		if dt := cur.at.Sub(old.at).Seconds(); dt > 0 {
			for k, v := range cur.events {
				events[k] = max(0, v-old.events[k]) / dt
			}
			for k, v := range cur.writes {
				writes[k] = max(0, v-old.writes[k]) / dt
			}
		}
	}
	// One sample per half second is enough, however many ask.
	if len(d.samples) == 0 || cur.at.Sub(d.samples[len(d.samples)-1].at) >= rateWindow/20 {
		d.samples = append(d.samples, cur)
	}
	return events, writes
}

// errorRing is a slog.Handler in front of the node's: every record at
// warning level or above also goes to the dashboard's ring, whatever
// level the node's own handler logs at.
type errorRing struct {
	next  slog.Handler
	d     *dashboard
	attrs []slog.Attr // from WithAttrs, keys already grouped
	group string      // prefix of the keys of later attributes
}

func (h *errorRing) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *errorRing) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		attrs := map[string]string{}
		for _, a := range h.attrs {
			flatten(attrs, "", a)
		}
		r.Attrs(func(a slog.Attr) bool {
			flatten(attrs, h.group, a)
			return true
		})
		if len(attrs) == 0 {
			attrs = nil
		}
		t := r.Time
		if t.IsZero() {
			t = time.Now()
		}
		h.d.record(web.LogRecord{Time: t.UnixMilli(), Level: r.Level.String(), Msg: r.Message, Attrs: attrs})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *errorRing) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if h.group != "" {
			a.Key = h.group + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *errorRing) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

// flatten adds a to m as text, a group's members under "group.key".
func flatten(m map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			flatten(m, p, g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	m[prefix+a.Key] = v.String()
}

// withErrorRing returns log with its records at warning level and above
// kept in d as well (the attributes log already has are not: the node's
// app and id).
func withErrorRing(log *slog.Logger, d *dashboard) *slog.Logger {
	return slog.New(&errorRing{next: log.Handler(), d: d})
}

// NodeStatus is what the dashboard shows of this node.
func (rt *Node) NodeStatus() web.NodeStatus {
	now := time.Now()
	st := web.NodeStatus{ID: rt.cfg.NodeID, Web: rt.webAddr(), Time: now.UnixMilli()}
	// The node's counters and gauges, by metric and labels.
	m := rt.gather()

	rt.mu.Lock()
	st.Ready, st.Why = rt.readyLocked() // as /readyz says, without setting mephisto_ready
	st.Generation = rt.generation
	if !rt.session {
		st.Generation = 0
	}
	for p, gs := range rt.grains {
		ap := web.ActivePartition{Partition: p, State: "processing"}
		switch {
		case gs.stopped != nil:
			ap.State, ap.Error = "stopped", gs.stopped.Error()
		case gs.failing != nil:
			ap.State, ap.Error = "failing", gs.failing.Error()
		case !gs.loaded:
			ap.State = "recovering"
		}
		st.Active = append(st.Active, ap)
	}
	standbys := make(map[int32]*standby, len(rt.standbys))
	for p, s := range rt.standbys {
		standbys[p] = s
	}
	agents := rt.agents
	rt.mu.Unlock()

	restarts := m.byLabel("mephisto_grain_restarts_total", "grain")
	for _, v := range restarts {
		st.Restarts += int64(v)
	}
	sort.Slice(st.Active, func(i, j int) bool { return st.Active[i].Partition < st.Active[j].Partition })
	for i := range st.Active {
		ap := &st.Active[i]
		ps := strconv.Itoa(int(ap.Partition))
		ap.Restarts = int64(restarts[grainName(rt.spec.App, ap.Partition)])
		last := m.byLabels("mephisto_recovery_last_records", "partition", ps, "table")
		remaining := m.byLabels("mephisto_recovery_remaining_records", "partition", ps, "table")
		for _, d := range rt.tables {
			total, ok := last[d.Name]
			if !ok {
				continue // not recovered here (a global table's copy)
			}
			ap.Recovery = append(ap.Recovery, web.TableRecovery{Table: d.Name, Records: int64(total), Remaining: int64(remaining[d.Name])})
		}
	}
	for p, s := range standbys {
		sp := web.StandbyPartition{Partition: p, CaughtUp: s.caughtUp()}
		for _, d := range s.tables {
			sp.Tables = append(sp.Tables, web.TableLag{Table: d.Name, Lag: s.lagOf(d.Index)})
		}
		st.Standby = append(st.Standby, sp)
	}
	sort.Slice(st.Standby, func(i, j int) bool { return st.Standby[i].Partition < st.Standby[j].Partition })

	events := m.byLabel("mephisto_events_in_total", "topic")
	writes := m.byLabel("mephisto_table_writes_total", "table")
	eventRates, writeRates := rt.dash.rates(sample{at: now, events: events, writes: writes})
	dead := m.byLabel("mephisto_dead_letters_total", "agent")
	skipped := m.byLabel("mephisto_skipped_total", "agent")
	for _, a := range agents {
		as := web.AgentStatus{Name: a.Name, Topic: a.Topic, Events: int64(events[a.Topic]), Rate: eventRates[a.Topic],
			DeadLetters: int64(dead[a.Name]), Skipped: int64(skipped[a.Name])}
		as.Errors = as.DeadLetters + as.Skipped
		st.Agents = append(st.Agents, as)
	}
	for _, d := range rt.tables {
		st.Tables = append(st.Tables, web.TableStatus{Name: d.Name, Writes: int64(writes[d.Name]), Rate: writeRates[d.Name]})
	}
	st.Errors, st.ErrorsTotal = rt.dash.recent()
	return st
}

// grainName is the supervisor's name of partition p's grain, the label
// of mephisto_grain_restarts_total.
func grainName(app string, p int32) string {
	return fmt.Sprintf("partitions/partition/%s/%d", app, p)
}

// gathered is the node's metrics as gathered: per metric name, the value
// of each series with its labels.
type gathered map[string][]series

type series struct {
	labels map[string]string
	value  float64
}

// gather reads the node's registry (no series is created by reading).
func (rt *Node) gather() gathered {
	out := gathered{}
	fams, err := rt.metrics.reg.Gather()
	if err != nil && len(fams) == 0 {
		return out
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "mephisto_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range mt.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case mt.GetCounter() != nil:
				s.value = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				s.value = mt.GetGauge().GetValue()
			default:
				continue
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// byLabel returns metric's values by the value of label (summed over
// the other labels).
func (g gathered) byLabel(metric, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range g[metric] {
		out[s.labels[label]] += s.value
	}
	return out
}

// byLabels returns metric's values of the series whose label where is
// is, by the value of label.
func (g gathered) byLabels(metric, where, is, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range g[metric] {
		if s.labels[where] == is {
			out[s.labels[label]] += s.value
		}
	}
	return out
}
