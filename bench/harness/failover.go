package harness

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// loader produces keyed count events at a steady rate until stopped.
type loader struct {
	sent   atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	errMu  sync.Mutex
	err    error
	onSend func(seq int64, key []byte) // called before each send, if set
}

// startLoader produces to topic at rate events/s (keys among keys
// distinct, values valueSize bytes with the sequence number in the first 8
// bytes), checking the pace every millisecond.
func startLoader(brokers []string, topic string, rate float64, keys, valueSize int, limit int64, onSend func(int64, []byte)) (*loader, error) {
	p, err := sarama.NewAsyncProducer(brokers, lowLatencyProducerConfig())
	if err != nil {
		return nil, err
	}
	l := &loader{stop: make(chan struct{}), done: make(chan struct{}), onSend: onSend}
	go func() {
		for range p.Successes() {
		}
	}()
	go func() {
		for e := range p.Errors() {
			l.errMu.Lock()
			if l.err == nil {
				l.err = e.Err
			}
			l.errMu.Unlock()
		}
	}()
	go func() {
		defer close(l.done)
		defer p.AsyncClose()
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var seq int64
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds() * rate)
			if limit > 0 {
				due = min(due, limit)
			}
			for ; seq < due; seq++ {
				k := keyOf(int(seq), keys)
				v := make([]byte, max(valueSize, 8))
				copy(v[8:], valueOf(int(seq), valueSize))
				for i := range 8 {
					v[i] = byte(seq >> (56 - 8*i))
				}
				if l.onSend != nil {
					l.onSend(seq, k)
				}
				p.Input() <- &sarama.ProducerMessage{Topic: topic, Partition: kafka.Partition(k, partitions),
					Key: sarama.ByteEncoder(k), Value: sarama.ByteEncoder(v)}
				l.sent.Add(1)
			}
			if limit > 0 && seq >= limit {
				<-l.stop
				return
			}
		}
	}()
	return l, nil
}

// close stops the loader and returns the first produce error.
func (l *loader) close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

// failover: three nodes under load, kill -9 one, time until every
// partition processes again.
func (h *harness) failover(ctx context.Context) (*Row, error) {
	o := h.opts
	row := &Row{Workload: "failover", Unit: "s",
		N: fmt.Sprintf("3 nodes, %s events/s, %s keys", group(fmt.Sprint(o.FailoverRate)), group(fmt.Sprint(o.Keys)))}
	var replays []string
	for r := 1; r <= o.FailoverRuns; r++ {
		res, err := h.failoverRun(ctx, r)
		if err != nil {
			return row, err
		}
		row.Mephisto = append(row.Mephisto, res.seconds)
		row.PeakRSS = append(row.PeakRSS, res.rss)
		replays = append(replays, fmt.Sprintf("run %d: %s moved, %s of their %s changelog records replayed; %s; probes served after %.2f s (moved partitions %.2f s, the others %.2f s)",
			r, res.moved, group(fmt.Sprint(res.replayed)), group(fmt.Sprint(res.changelog)), res.timeline, res.seconds, res.movedSeconds, res.otherSeconds))
		h.logf("run %d: every partition processing %.2f s after kill -9; new owners replayed %d changelog records", r, res.seconds, res.replayed)
	}
	row.note("time from kill -9 of one node (of three, gossip on, 1 standby) to the moment a survivor serves a count of 1 for a probe key sent right after the kill to each of the 8 partitions (GET /tables/counts/KEY on a survivor: committed values, so it includes a commit: at once where a partition has caught up, up to one commit interval, 500 ms, where it is behind)")
	row.note("changelog records the new owners of the moved partitions replayed (their mephisto_recovery_last_records; a promoted standby replays only the tail it had not applied yet): %s", strings.Join(replays, "; "))
	row.note("peak RSS is the largest survivor's")
	return row, nil
}

type failoverResult struct {
	seconds, movedSeconds, otherSeconds float64
	moved                               string
	replayed, changelog                 int64
	rss                                 int64
	timeline                            string // from the survivors' logs
}

func (h *harness) failoverRun(ctx context.Context, r int) (failoverResult, error) {
	var res failoverResult
	o := h.opts
	b, kc, err := h.newBroker(fmt.Sprintf("failover-%d", r))
	if err != nil {
		return res, err
	}
	defer b.close()
	defer kc.close()
	if err := kc.createTopic("in", false); err != nil {
		return res, err
	}
	const app = "fo"
	var gossip [3]string
	for i := range gossip {
		if gossip[i], err = proctest.FreeAddr(true); err != nil {
			return res, err
		}
	}
	nodes := map[string]*worker{}
	for i := range 3 {
		id := fmt.Sprintf("f%d", i+1)
		w, err := h.startWorker(workerSpec{name: fmt.Sprintf("failover-%d-%s", r, id), env: []string{"BENCH_MODE=count", "BENCH_APP=" + app},
			brokers: b.addr, nodeID: id, extra: []string{"--gossip", gossip[i], "--join", gossip[0]}})
		if err != nil {
			return res, err
		}
		nodes[id] = w
	}
	defer func() {
		for _, w := range nodes {
			_ = w.Stop(time.Minute)
		}
	}()
	view, err := waitStablePlan(ctx, nodes, planStable)
	if err != nil {
		return res, err
	}

	l, err := startLoader([]string{b.addr}, "in", float64(o.FailoverRate), o.Keys, o.ValueSize, 0, nil)
	if err != nil {
		return res, err
	}
	defer func() { _ = l.close() }()
	probes, err := sarama.NewSyncProducer([]string{b.addr}, lowLatencyProducerConfig())
	if err != nil {
		return res, err
	}
	defer probes.Close()
	if err := sleep(ctx, o.FailoverWarmup); err != nil {
		return res, err
	}
	if view, err = nodes["f1"].cluster(); err != nil {
		return res, err
	}
	// The victim: the node other than the gossip seed with the most
	// active partitions.
	active := map[string][]int32{}
	for _, p := range view.Partitions {
		active[p.Active] = append(active[p.Active], p.Partition)
	}
	victim := "f2"
	if len(active["f3"]) > len(active["f2"]) {
		victim = "f3"
	}
	moved := active[victim]
	res.moved = fmt.Sprintf("%d partitions %v", len(moved), moved)
	survivor := nodes["f1"]

	t0 := time.Now()
	_ = nodes[victim].Kill()
	msgs := make([]*sarama.ProducerMessage, partitions)
	keys := make([]string, partitions)
	for p := range partitions {
		k := probeKey(r, p)
		keys[p] = string(k)
		msgs[p] = &sarama.ProducerMessage{Topic: "in", Partition: int32(p), Key: sarama.ByteEncoder(k), Value: sarama.ByteEncoder(valueOf(p, o.ValueSize))}
	}
	if err := probes.SendMessages(msgs); err != nil {
		return res, fmt.Errorf("send probes: %w", err)
	}
	seen := make([]time.Duration, partitions)
	left := partitions
	_, err = proctest.Poll(ctx, pollInterval, 2*time.Minute, fmt.Sprintf("every partition's probe after kill -9 of %s", victim), func() (bool, string, error) {
		for p := range partitions {
			if seen[p] != 0 {
				continue
			}
			v, ok, err := survivor.tableValue("counts", keys[p])
			if err != nil {
				return false, "", err
			}
			if ok && v >= 1 {
				seen[p] = time.Since(t0)
				left--
			}
		}
		return left == 0, fmt.Sprintf("probes seen after %v", seen), nil
	})
	if err != nil {
		return res, err
	}
	isMoved := map[int32]bool{}
	for _, p := range moved {
		isMoved[p] = true
	}
	for p, d := range seen {
		res.seconds = max(res.seconds, d.Seconds())
		if isMoved[int32(p)] {
			res.movedSeconds = max(res.movedSeconds, d.Seconds())
		} else {
			res.otherSeconds = max(res.otherSeconds, d.Seconds())
		}
	}

	// What the new owners replayed: their last recovery of each moved
	// partition.
	after, err := survivor.cluster()
	if err != nil {
		return res, err
	}
	hwm, err := kc.highWatermarks(app + "-counts-changelog")
	if err != nil {
		return res, err
	}
	for _, p := range after.Partitions {
		if !isMoved[p.Partition] {
			continue
		}
		owner := nodes[p.Active]
		if owner == nil || owner.Exited() {
			return res, fmt.Errorf("partition %d: new owner %q is not a survivor", p.Partition, p.Active)
		}
		v, err := owner.metric("mephisto_recovery_last_records", map[string]string{"table": "counts", "partition": strconv.Itoa(int(p.Partition))})
		if err != nil {
			return res, err
		}
		res.replayed += int64(v)
		res.changelog += hwm[p.Partition]
	}
	delete(nodes, victim)
	for _, w := range nodes {
		res.rss = max(res.rss, readProcStats(w.Pid()).PeakRSS)
	}
	res.timeline = failoverTimeline(nodes, t0)
	return res, l.close()
}

// failoverTimeline reads from the survivors' logs when, after t0 (the
// kill), gossip declared the node dead, the dead node was removed from the
// group, every survivor had its new partitions, and the last promoted
// standby was ready to replay; and which moved partitions were rebuilt from
// the changelog's start instead (given to a node without a standby copy).
func failoverTimeline(survivors map[string]*worker, t0 time.Time) string {
	const (
		dead     = "gossip: node dead"
		evicted  = "removed a dead node from the consumer group: its partitions move now"
		assigned = "partitions assigned"
		promoted = "promoted standby shard: replaying only the changelog tail"
		full     = "recovering table shard from changelog"
	)
	first := map[string]time.Duration{}
	last := map[string]time.Duration{}
	var cold []string
	for _, w := range survivors {
		evs, err := w.logEvents(dead, evicted, assigned, promoted, full)
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if e.Time.Before(t0) {
				continue
			}
			if e.Msg == full {
				if e.From == 0 { // from the start: no standby copy here
					cold = append(cold, fmt.Sprintf("partition %d on %s (%s records)", e.Partition, w.nodeID, group(fmt.Sprint(e.Records))))
				}
				continue
			}
			if seen[e.Msg] && e.Msg != promoted {
				continue // each node's first occurrence after the kill (every promotion)
			}
			seen[e.Msg] = true
			d := e.Time.Sub(t0)
			if f, ok := first[e.Msg]; !ok || d < f {
				first[e.Msg] = d
			}
			last[e.Msg] = max(last[e.Msg], d)
		}
	}
	at := func(m map[string]time.Duration, msg string) string {
		d, ok := m[msg]
		if !ok {
			return "?"
		}
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	s := fmt.Sprintf("declared dead %s, removed from the group %s, partitions reassigned %s, standbys promoted %s after the kill",
		at(first, dead), at(first, evicted), at(last, assigned), at(last, promoted))
	if len(cold) > 0 {
		sort.Strings(cold)
		s += "; COLD (no standby on the new owner, rebuilt from offset 0): " + strings.Join(cold, ", ")
	}
	return s
}

// waitStablePlan waits until stable says the cluster of nodes has settled
// (planStable, for failover) and returns the view it settled on.
func waitStablePlan(ctx context.Context, nodes map[string]*worker, stable func(map[string]*worker) (bool, clusterView, string)) (clusterView, error) {
	var v clusterView
	_, err := proctest.Poll(ctx, 250*time.Millisecond, 2*time.Minute, "a stable cluster", func() (bool, string, error) {
		ok, view, why := stable(nodes)
		v = view
		if ok {
			return true, "", nil
		}
		for _, w := range nodes {
			if w.Exited() {
				return false, "", fmt.Errorf("%s exited: %s\n%s", w.Name(), w.DescribeExit(), w.Tail(3000))
			}
		}
		return false, why, nil
	})
	return v, err
}

// planStable says whether every node is ready and the first node's
// /cluster shows all of them alive, each active for some partition, and
// every partition with an active node and a standby.
func planStable(nodes map[string]*worker) (bool, clusterView, string) {
	var ids []string
	for id, w := range nodes {
		if !w.ready() {
			return false, clusterView{}, id + " not ready"
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	v, err := nodes[ids[0]].cluster()
	if err != nil {
		return false, v, err.Error()
	}
	if why := v.unsettled(len(nodes), true); why != "" {
		return false, v, why
	}
	return true, v, ""
}

// unsettled says why v is not the settled plan of a cluster of n nodes
// ("" if it is): all n alive, every partition with an active node (and a
// standby, if standbys), every node active for some partition.
func (v clusterView) unsettled(n int, standbys bool) string {
	alive := 0
	for _, node := range v.Nodes {
		if node.Alive {
			alive++
		}
	}
	if alive != n {
		return fmt.Sprintf("%d of %d nodes alive in the plan", alive, n)
	}
	actives := map[string]bool{}
	if len(v.Partitions) != partitions {
		return fmt.Sprintf("%d partitions in the plan", len(v.Partitions))
	}
	for _, p := range v.Partitions {
		if p.Active == "" || (standbys && len(p.Standbys) == 0) {
			return fmt.Sprintf("partition %d: active %q, standbys %v", p.Partition, p.Active, p.Standbys)
		}
		actives[p.Active] = true
	}
	if len(actives) != n {
		return fmt.Sprintf("only %d nodes active", len(actives))
	}
	return ""
}
