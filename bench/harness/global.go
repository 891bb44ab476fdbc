package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// global and global-3-nodes: every event of the input increments one key
// of a global table (bench/benchapp NewGlobal: Merge(ctx, "k", 1)), so
// every partition, on every node, sends its increments to the one grain
// that owns the key, and every node's copy follows the sum.
//
// Throughput is timed to the same end as count's, and further: the group
// has committed the input's high watermarks AND every node's own copy of
// "k" (GET /bench/global, the node's local Lookup) shows at least N.
// Below N after the timeout fails the row; the final copies must agree;
// above N is at-least-once replay, and without a failure injected it is
// suspicious, so it is logged and noted.
//
//   - global (one node) starts like count: from the worker's first /readyz
//     200, on the preloaded input topic in.
//   - global-3-nodes starts three workers, gossip joined (as failover
//     does), on an empty input topic and waits until every node's
//     /cluster shows the same settled plan. Then it freezes the three
//     processes (SIGSTOP), preloads the N events, thaws them (SIGCONT),
//     and the clock starts: three settled nodes on a backlog, as count's
//     one node starts on one. (A preloaded backlog would be eaten by the
//     first node up while the others join; holding it back in the app
//     would take a handler that blocks, which blocks the rebalances that
//     settle the cluster; producing while the clock runs measured the
//     harness's producer, not the nodes.) The freeze lasts less than the
//     group's session timeout; the run fails if the cluster's generation
//     moved by the end (gossip declaring a thawed node dead, say).
//
// Visibility: a task of node g1 Sets the global table's key "probe" to the
// wall clock (ns) every globalProbeEvery from the start of the clock to
// globalRest after the end (bench/app/global.go; a task's Set returns once
// the write is acknowledged by the broker), and every node's change hook
// records when its copy applied which value. A write w is visible on a
// node at the first change that node applied whose value is w or a later
// write (the key's writes are applied in order, and a commit stores the
// last value a key took in it, so a write superseded before its commit is
// visible through its successor); the delay is that moment minus w. One
// machine, one wall clock: the writer's and the hooks' clocks are the same.
// Delays are reported over the nodes other than the writer (on one node,
// over its own copy, which then also owns the probe's partition), for the
// writes made under load (before the end) and at rest (after it).
const (
	globalProbeEvery = 10 * time.Millisecond
	globalRest       = time.Second
	// globalKey and globalProbeKey are bench/benchapp's GlobalKey and
	// ProbeKey.
	globalKey, globalProbeKey = "k", "probe"
	// globalWriter is the node whose task writes the probe.
	globalWriter = "g1"
)

// global runs the global workload on nodes worker processes.
func (h *harness) global(ctx context.Context, name string, nodes int) (*Row, error) {
	o := h.opts
	n := o.N
	row := &Row{Workload: name, Unit: "events/s", HigherIsBetter: true,
		N: fmt.Sprintf("%s events → 1 key, %d node%s", group(fmt.Sprint(n)), nodes, map[bool]string{true: "s"}[nodes > 1])}
	count, err := h.countRates(ctx, row)
	if err != nil {
		return row, err
	}
	row.Raw = count
	row.RawCell = fmt.Sprintf("count %s events/s", num(median(count)))

	var b *broker
	var kc *kclient
	var hwm []int64
	if nodes == 1 {
		b, kc, hwm, err = h.preloadedInput(name, o.Keys)
	} else {
		b, kc, err = h.newBroker(name)
	}
	if err != nil {
		return row, err
	}
	defer b.close()
	defer kc.close()
	var loadP50, loadP99, restP50, restP99 []float64
	for r := 1; r <= o.Runs; r++ {
		res, err := h.globalRun(ctx, name, r, nodes, b, kc, hwm)
		if err != nil {
			return row, err
		}
		row.Mephisto = append(row.Mephisto, res.rate)
		row.PeakRSS = append(row.PeakRSS, res.rss)
		row.CPUPerEvent = append(row.CPUPerEvent, res.cpuPerEvent)
		loadP50, loadP99 = append(loadP50, pct(res.load, 50)), append(loadP99, pct(res.load, 99))
		restP50, restP99 = append(restP50, pct(res.rest, 50)), append(restP99, pct(res.rest, 99))
		h.logf("run %d: %s events/s (input committed: %s events/s); visible under load %s; at rest %s",
			r, num(res.rate), num(res.commitRate), summary(res.load), summary(res.rest))
		row.note("run %d: %s events/s to every copy at N, %s events/s to the input's commit%s; %s; visible %s under load %s, at rest %s; %s",
			r, num(res.rate), num(res.commitRate), res.produced, res.final, res.where, summary(res.load), summary(res.rest), res.perNode)
		for _, s := range res.suspicious {
			row.note("run %d: %s", r, s)
		}
	}
	seen := "the other nodes' copies"
	if nodes == 1 {
		seen = "its own copy"
	}
	s := slices.Clone(row.Mephisto)
	slices.Sort(s)
	row.Cell = fmt.Sprintf("%s / **%s** / %s events/s; visible in %s p50 %s ms, p99 %s ms under load, p50 %s ms, p99 %s ms at rest",
		num(s[0]), num(median(s)), num(s[len(s)-1]), seen, spreadPrec(loadP50, 1), spreadPrec(loadP99, 1), spreadPrec(restP50, 1), spreadPrec(restP99, 1))
	if nodes == 1 {
		row.note("every event of the preloaded input (%s keys, 8 partitions) Merges 1 into global table global, key %q (partition %d), which its grain applies; "+
			"timed like count from the first /readyz 200, to the group's commit of the input's high watermarks and the node's copy of %q showing N (GET /bench/global, a local Lookup)",
			group(fmt.Sprint(o.Keys)), globalKey, kafka.Partition([]byte(globalKey), partitions), globalKey)
	} else {
		row.note("three workers gossip joined, the cluster settled on an empty input topic, then frozen (SIGSTOP) while the harness preloaded N events (%s keys, 8 partitions), each of which Merges 1 into global table global, key %q (partition %d), from whichever node owns the event's partition; "+
			"timed from the thaw (SIGCONT) to the group's commit of the input's high watermarks and every node's copy of %q showing N, the cluster's generation unchanged; CPU per event is the three processes' together (their start and settling included), peak RSS the largest",
			group(fmt.Sprint(o.Keys)), globalKey, kafka.Partition([]byte(globalKey), partitions), globalKey)
	}
	row.note("visibility: a task of %s Sets key %q (partition %d) to the wall clock every %v (acknowledged before the next), from the start of the clock to %v after the end; each node's change hook records when its copy applies which value; "+
		"a write is visible at the first change applied with it or a later write; the delay is that moment minus the write's clock (one machine, one wall clock); "+
		"under load = writes before the end, at rest = the %v after it; p50/p99 are nearest-rank over %s, medians over runs with their range",
		globalWriter, globalProbeKey, kafka.Partition([]byte(globalProbeKey), partitions), globalProbeEvery, globalRest, globalRest, seen)
	row.note("ratio = global's median over count's median in the same run (count: one table, one key per event's key, one node)")
	return row, nil
}

// countRates returns the count workload's events/s of this broker's run,
// measuring it once (without peers) if count was not selected.
func (h *harness) countRates(ctx context.Context, row *Row) ([]float64, error) {
	if c := h.rows["count"]; c != nil && c.Failed == "" && len(c.Mephisto) > 0 {
		return c.Mephisto, nil
	}
	h.logf("%s's ratio needs count's throughput: measuring count once", row.Workload)
	saved, peers := h.opts.Runs, h.opts.PeerOpts.Peers
	h.opts.Runs, h.opts.PeerOpts.Peers = 1, nil
	c, err := h.count(ctx, "count", h.opts.Keys)
	h.opts.Runs, h.opts.PeerOpts.Peers = saved, peers
	if err != nil {
		return nil, fmt.Errorf("measure count for the ratio: %w", err)
	}
	row.note("count was not selected: measured once for the ratio, %s events/s", num(median(c.Mephisto)))
	h.rows["count"] = c
	return c.Mephisto, nil
}

// globalResult is one run of a global workload.
type globalResult struct {
	rate, commitRate float64
	rss              int64
	cpuPerEvent      float64
	// load and rest are the probe's visibility delays (ms) on the nodes
	// other than the writer (its own copy on one node).
	load, rest []float64
	// Notes: the production (3 nodes), the final values, which nodes the
	// delays are over, per node delays and copy lag, anything suspicious.
	produced, final, where, perNode string
	suspicious                      []string
}

// globalReport is what GET /bench/global answers (bench/app/global.go).
type globalReport struct {
	Node     string     `json:"node"`
	Value    int64      `json:"value"`
	Found    bool       `json:"found"`
	Written  []int64    `json:"written"`
	Seen     [][2]int64 `json:"seen"`
	ProbeErr string     `json:"probe_err"`
}

// globalView is the part of GET /cluster about global tables.
type globalView struct {
	GlobalTables map[string]struct {
		Lag    int64   `json:"lag"`
		Copied []int32 `json:"copied"`
	} `json:"global_tables"`
}

func (w *worker) globalReport(probes bool) (globalReport, error) {
	var rep globalReport
	path := "/bench/global"
	if probes {
		path += "?probes=1"
	}
	code, body, err := w.get(path)
	if err != nil {
		return rep, err
	}
	if code != 200 {
		return rep, fmt.Errorf("%s GET %s: HTTP %d %s", w.Name(), path, code, strings.TrimSpace(string(body)))
	}
	return rep, json.Unmarshal(body, &rep)
}

func (h *harness) globalRun(ctx context.Context, name string, r, count int, b *broker, kc *kclient, hwm []int64) (globalResult, error) {
	var res globalResult
	o := h.opts
	n := o.N
	app := fmt.Sprintf("%s-%d", name, r)
	topic := "in"
	if count > 1 {
		topic = fmt.Sprintf("in-%d", r)
		if err := kc.createTopic(topic, false); err != nil {
			return res, err
		}
	}
	dir := filepath.Join(h.dir, fmt.Sprintf("%s-%s-%d", name, h.brokerKind, r))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	goFile, stopFile := filepath.Join(dir, "go"), filepath.Join(dir, "stop")
	var gossip []string
	for range count {
		g, err := proctest.FreeAddr(true)
		if err != nil {
			return res, err
		}
		gossip = append(gossip, g)
	}
	nodes := map[string]*worker{}
	var ids []string
	for i := range count {
		id := fmt.Sprintf("g%d", i+1)
		env := []string{"BENCH_MODE=global", "BENCH_APP=" + app, "BENCH_IN=" + topic}
		if id == globalWriter {
			env = append(env, "BENCH_GLOBAL_PROBE_EVERY="+globalProbeEvery.String(), "BENCH_GLOBAL_GO="+goFile, "BENCH_GLOBAL_STOP="+stopFile)
		}
		var extra []string
		if count > 1 {
			extra = []string{"--gossip", gossip[i], "--join", gossip[0]}
		}
		w, err := h.startWorker(workerSpec{name: fmt.Sprintf("%s-%s", app, id), env: env, brokers: b.addr, nodeID: id, extra: extra})
		if err != nil {
			return res, err
		}
		nodes[id] = w
		ids = append(ids, id)
	}
	defer func() {
		for _, w := range nodes {
			_ = w.Stop(time.Minute)
		}
	}()

	var t0 time.Time
	gen0 := int32(-1)
	if count == 1 {
		var err error
		if t0, err = nodes[globalWriter].waitReady(ctx, 2*time.Minute, 5*time.Millisecond); err != nil {
			return res, err
		}
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			return res, err
		}
	} else {
		settled, err := waitStablePlan(ctx, nodes, viewsAgree)
		if err != nil {
			return res, err
		}
		gen0 = settled.Generation
		// The gate: the settled cluster frozen while the input is
		// preloaded, then thawed at once, so that three nodes start on a
		// backlog as count's one does.
		defer signalAll(nodes, syscall.SIGCONT) // never leave one stopped
		frozen := time.Now()
		if err := signalAll(nodes, syscall.SIGSTOP); err != nil {
			return res, err
		}
		err = kc.preload(topic, n, func(i int) record { return record{key: keyOf(i, o.Keys), value: valueOf(i, o.ValueSize)} })
		if err == nil {
			hwm, err = kc.highWatermarks(topic)
		}
		if err == nil {
			err = os.WriteFile(goFile, nil, 0o644)
		}
		if err != nil {
			return res, err
		}
		if err := signalAll(nodes, syscall.SIGCONT); err != nil {
			return res, err
		}
		t0 = time.Now()
		res.produced = fmt.Sprintf(" (frozen %.2f s while the input was preloaded)", t0.Sub(frozen).Seconds())
	}

	committed, visible, err := h.waitGlobal(ctx, nodes, ids, kc, app, topic, hwm, n)
	if err != nil {
		return res, err
	}
	res.rate = float64(n) / visible.Sub(t0).Seconds()
	res.commitRate = float64(n) / committed.Sub(t0).Seconds()
	var cpu time.Duration
	for _, w := range nodes {
		st := readProcStats(w.Pid())
		res.rss, cpu = max(res.rss, st.PeakRSS), cpu+st.CPU
	}
	res.cpuPerEvent = cpu.Seconds() / float64(n)

	// At rest: the probe goes on for globalRest, then stops; every node
	// must show its last write.
	if err := sleep(ctx, globalRest); err != nil {
		return res, err
	}
	if err := os.WriteFile(stopFile, nil, 0o644); err != nil {
		return res, err
	}
	reps, err := waitProbesSeen(ctx, nodes, ids)
	if err != nil {
		return res, err
	}
	writer := reps[globalWriter]
	if writer.ProbeErr != "" {
		return res, fmt.Errorf("the probe's Set failed on %s: %s", globalWriter, writer.ProbeErr)
	}
	load, rest := splitWritten(writer.Written, visible.UnixNano())
	if len(rest) == 0 {
		return res, fmt.Errorf("the probe wrote nothing in the %v at rest", globalRest)
	}
	if len(load) == 0 {
		res.suspicious = append(res.suspicious, "no probe write under load: the load ended before the first")
	}

	// The final copies: the same on every node, N or more.
	final := map[string]int64{}
	var finals []string
	for _, id := range ids {
		final[id] = reps[id].Value
		finals = append(finals, fmt.Sprintf("%s %s", id, group(fmt.Sprint(reps[id].Value))))
	}
	res.final = "final copies of " + globalKey + ": " + strings.Join(finals, ", ")
	for _, id := range ids {
		if v := final[id]; v < int64(n) {
			return res, fmt.Errorf("%s's copy of %s is %d, want %d: increments lost (%s)", id, globalKey, v, n, res.final)
		} else if v != final[ids[0]] {
			return res, fmt.Errorf("the copies of %s disagree at rest: %s", globalKey, res.final)
		} else if v > int64(n) && id == ids[0] {
			s := fmt.Sprintf("SUSPICIOUS: %s = %d > N = %d with no failure injected (at-least-once replay of %d increments)", globalKey, v, n, v-int64(n))
			h.logf("%s", s)
			res.suspicious = append(res.suspicious, s)
		}
	}

	// Who owns what, each node's delays and its copy's lag.
	var owner clusterView
	if owner, err = nodes[globalWriter].cluster(); err != nil {
		return res, err
	}
	if gen0 >= 0 && owner.Generation != gen0 {
		return res, fmt.Errorf("the cluster rebalanced during the run (generation %d → %d): not a settled %d-node run; see the workers' logs (gossip after the freeze?)", gen0, owner.Generation, count)
	}
	active := map[int32]string{}
	for _, p := range owner.Partitions {
		active[p.Partition] = p.Active
	}
	kp, pp := kafka.Partition([]byte(globalKey), partitions), kafka.Partition([]byte(globalProbeKey), partitions)
	var per []string
	for _, id := range ids {
		l, lu := visibility(load, reps[id].Seen)
		rs, ru := visibility(rest, reps[id].Seen)
		if lu+ru > 0 {
			return res, fmt.Errorf("%s never showed %d of the probe's writes", id, lu+ru)
		}
		role := "copy"
		if active[pp] == id {
			role = "owns the probe's partition"
		}
		lag := "?"
		var gv globalView
		if _, body, err := nodes[id].get("/cluster"); err == nil && json.Unmarshal(body, &gv) == nil {
			if c, ok := gv.GlobalTables["global"]; ok {
				lag = fmt.Sprint(c.Lag)
			}
		}
		per = append(per, fmt.Sprintf("%s (%s; copy lag at the end %s): under load p50 %.1f ms, p99 %.1f ms; at rest p50 %.1f ms, p99 %.1f ms",
			id, role, lag, pct(l, 50), pct(l, 99), pct(rs, 50), pct(rs, 99)))
		if count == 1 || id != globalWriter {
			res.load, res.rest = append(res.load, l...), append(res.rest, rs...)
		}
	}
	res.perNode = fmt.Sprintf("key %q's partition %d active on %s, %q's partition %d on %s; per node: %s",
		globalKey, kp, active[kp], globalProbeKey, pp, active[pp], strings.Join(per, "; "))
	res.where = "in its own copy"
	if count > 1 {
		var others []string
		for _, id := range ids {
			if id != globalWriter {
				others = append(others, id)
			}
		}
		res.where = "on " + strings.Join(others, " and ")
	}

	var errs []error
	for id, w := range nodes {
		errs = append(errs, w.Stop(time.Minute))
		delete(nodes, id)
	}
	return res, errors.Join(errs...)
}

// signalAll sends sig to every node, each at once after the other.
func signalAll(nodes map[string]*worker, sig syscall.Signal) error {
	var errs []error
	for _, w := range nodes {
		errs = append(errs, w.Signal(sig))
	}
	return errors.Join(errs...)
}

// waitGlobal polls until group has committed hwm of topic and then until
// every node's copy of the key shows at least n; it returns when each was
// first seen.
func (h *harness) waitGlobal(ctx context.Context, nodes map[string]*worker, ids []string, kc *kclient, group, topic string, hwm []int64, n int) (committed, visible time.Time, err error) {
	timeout := 2*time.Minute + time.Duration(n)*time.Second/2000
	values := map[string]int64{}
	_, err = proctest.Poll(ctx, pollInterval, timeout, fmt.Sprintf("group %s to commit %s and every copy of %s to show %d", group, topic, globalKey, n), func() (bool, string, error) {
		for _, id := range ids {
			if w := nodes[id]; w.Exited() {
				return false, "", fmt.Errorf("%s exited: %s\n%s", w.Name(), w.DescribeExit(), w.Tail(3000))
			}
		}
		if committed.IsZero() {
			ok, err := kc.caughtUp(group, topic, hwm)
			if err != nil {
				return false, "", err
			}
			if !ok {
				return false, "input not committed", nil
			}
			committed = time.Now()
		}
		all := true
		for _, id := range ids {
			rep, err := nodes[id].globalReport(false)
			if err != nil {
				return false, "", err
			}
			values[id] = rep.Value
			all = all && rep.Value >= int64(n)
		}
		if all {
			visible = time.Now()
		}
		return all, fmt.Sprintf("copies of %s: %v", globalKey, values), nil
	})
	if err != nil {
		c, _ := kc.committed(group, topic)
		err = fmt.Errorf("%w: committed %v of %v; copies of %s %v (want %d: below it, increments are lost or stuck)", err, c, hwm, globalKey, values, n)
	}
	return committed, visible, err
}

// waitProbesSeen waits, once the probe is told to stop, until the writer's
// list of writes stays the same for a poll and every node has applied its
// last write (or a later one), and returns every node's report.
func waitProbesSeen(ctx context.Context, nodes map[string]*worker, ids []string) (map[string]globalReport, error) {
	reps := map[string]globalReport{}
	lastLen := -1
	_, err := proctest.Poll(ctx, pollInterval, 30*time.Second, "every copy to show the probe's last write", func() (bool, string, error) {
		for _, id := range ids {
			rep, err := nodes[id].globalReport(true)
			if err != nil {
				return false, "", err
			}
			reps[id] = rep
		}
		written := reps[globalWriter].Written
		stable := len(written) == lastLen
		lastLen = len(written)
		if !stable || len(written) == 0 {
			return false, fmt.Sprintf("the writer has written %d", len(written)), nil
		}
		last := slices.Max(written)
		for _, id := range ids {
			if _, unseen := visibility([]int64{last}, reps[id].Seen); unseen > 0 {
				return false, id + " has not shown the last write", nil
			}
		}
		return true, "", nil
	})
	return reps, err
}

// viewsAgree says whether every node is ready and each one's /cluster
// shows the same settled plan (all alive, all active, no standbys: the
// ask and global apps have no partitioned table). The ask client looks
// PIDs up in its own view, so the views must agree.
func viewsAgree(nodes map[string]*worker) (bool, clusterView, string) {
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var first clusterView
	var actives string
	for _, id := range ids {
		w := nodes[id]
		if !w.ready() {
			return false, first, id + " not ready"
		}
		v, err := w.cluster()
		if err != nil {
			return false, v, id + ": " + err.Error()
		}
		if why := v.unsettled(len(nodes), false); why != "" {
			return false, v, id + "'s view: " + why
		}
		var a []string
		for _, p := range v.Partitions {
			a = append(a, fmt.Sprintf("%d:%s", p.Partition, p.Active))
		}
		if s := strings.Join(a, " "); actives == "" {
			first, actives = v, s
		} else if s != actives {
			return false, v, fmt.Sprintf("the views differ: %s %s, %s %s", ids[0], actives, id, s)
		}
	}
	return true, first, ""
}

// splitWritten splits the probe's writes (wall clock, ns) into those
// before at and those at or after it, each sorted.
func splitWritten(written []int64, at int64) (before, after []int64) {
	s := slices.Clone(written)
	slices.Sort(s)
	i, _ := slices.BinarySearch(s, at)
	return s[:i], s[i:]
}

// visibility returns, for each write (its value is the wall clock it was
// written at, ns), how long in milliseconds until seen — the changes a
// node's copy applied, as (wall clock ns, value) — first showed that write
// or a later one; unseen counts the writes no change covers. Writes of one
// key are applied in order, so a copy showing a later write has applied
// this one (a commit keeps only the last value of a key, so a write
// superseded before its commit shows through its successor).
func visibility(written []int64, seen [][2]int64) (ms []float64, unseen int) {
	w := slices.Clone(written)
	slices.Sort(w)
	s := slices.Clone(seen)
	slices.SortStableFunc(s, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	// upTo[i] is the latest write shown by the changes s[:i+1].
	upTo := make([]int64, len(s))
	for i, c := range s {
		upTo[i] = c[1]
		if i > 0 {
			upTo[i] = max(upTo[i], upTo[i-1])
		}
	}
	i := 0
	for _, x := range w {
		for i < len(s) && upTo[i] < x {
			i++
		}
		if i == len(s) {
			unseen++
			continue
		}
		ms = append(ms, float64(s[i][0]-x)/1e6)
	}
	return ms, unseen
}
