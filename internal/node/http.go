package node

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/web"
)

var _ web.Backend = (*Node)(nil)

// Ready is true when the node consumes and every assigned partition is
// recovered and processing; otherwise it says why.
func (rt *Node) Ready() (bool, string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	ok, why := rt.readyLocked()
	if ok {
		rt.metrics.ready.Set(1)
	} else {
		rt.metrics.ready.Set(0)
	}
	return ok, why
}

func (rt *Node) readyLocked() (bool, string) {
	if rt.phase != "" {
		return false, rt.phase
	}
	if rt.member != nil {
		if err := rt.member.Trouble(); err != nil {
			return false, fmt.Sprintf("cannot reach Kafka at %s: %v (the consumer group retries with backoff)", strings.Join(rt.brokers, ","), err)
		}
	}
	if !rt.session {
		brokers := strings.Join(rt.brokers, ",")
		if rt.member != nil {
			if err := rt.member.Trouble(); err != nil {
				return false, fmt.Sprintf("cannot reach Kafka at %s: %v (the consumer group retries with backoff)", brokers, err)
			}
		}
		return false, "waiting for a partition assignment from the consumer group at Kafka " + brokers
	}
	var recovering, stopped, failing []int32
	for p, gs := range rt.grains {
		switch {
		case gs.stopped != nil:
			stopped = append(stopped, p)
		case gs.failing != nil:
			failing = append(failing, p)
		case !gs.loaded:
			recovering = append(recovering, p)
		}
	}
	sort.Slice(failing, func(i, j int) bool { return failing[i] < failing[j] })
	if len(failing) > 0 {
		return false, fmt.Sprintf("partitions %v failing and restarting with backoff: %v", failing, rt.grains[failing[0]].failing)
	}
	sort.Slice(stopped, func(i, j int) bool { return stopped[i] < stopped[j] })
	sort.Slice(recovering, func(i, j int) bool { return recovering[i] < recovering[j] })
	if len(stopped) > 0 {
		return false, fmt.Sprintf("partitions %v stopped by an agent's error policy: %v", stopped, rt.grains[stopped[0]].stopped)
	}
	if len(recovering) > 0 {
		return false, fmt.Sprintf("partitions %v recovering tables from their changelogs", recovering)
	}
	if why := rt.globalsPendingLocked(); why != "" {
		return false, why
	}
	return true, ""
}

// Metrics serves the node's own registry.
func (rt *Node) Metrics() http.Handler {
	return promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{Registry: rt.metrics.reg})
}

// TableValue reads the committed value of key from the shard of the
// partition the key hashes to: here if this node is active for it (or, with
// stale, keeps a standby copy), else it names the node that is.
func (rt *Node) TableValue(table, key string, q web.Query) (web.Value, error) {
	stale := q.Stale
	d := rt.tableNamed(table)
	if d == nil {
		return web.Value{}, fmt.Errorf("%w: %s", web.ErrNoTable, table)
	}
	kb, err := d.KeyText(key)
	if err != nil {
		return web.Value{}, fmt.Errorf("%w: %v", web.ErrBadKey, err)
	}
	p, err := rt.tablePartition(d, kb)
	if err != nil {
		return web.Value{}, fmt.Errorf("%w: %v", web.ErrUnavailable, err)
	}
	loc := rt.locate(p, stale)
	switch {
	case loc.local, loc.standby:
	case loc.owned && loc.owner.NodeID != rt.cfg.NodeID && loc.owner.Web != "":
		// If the node serving it is really gone, the proxy's failure
		// answers 503 with Retry-After.
		return web.Value{}, &web.ElsewhereError{Web: loc.owner.Web}
	default:
		return web.Value{}, fmt.Errorf("%w: partition %d of table %s is moving or recovering", web.ErrUnavailable, p, table)
	}
	if d.Window != nil {
		return rt.windowsValue(d, p, kb, q, loc.standby)
	}
	raw, found, err := rt.store.Get(rt.ids[d.Index], p, kb)
	if err != nil {
		return web.Value{}, err
	}
	if !found {
		return web.Value{}, web.ErrNotFound
	}
	v, err := d.ValueJSON(raw)
	return web.Value{JSON: v, Stale: loc.standby}, err
}

// Topology returns the app's topology.
func (rt *Node) Topology() any { return rt.spec.Topology() }

// WebAddr returns the address the HTTP server listens on ("" when it is
// disabled or not started yet).
func (rt *Node) WebAddr() string {
	if rt.web == nil {
		return ""
	}
	return rt.web.Addr()
}

// windowsValue renders a key's live windows of windowed table d, stored
// here in partition p (with q.HasAt, those containing q.At).
func (rt *Node) windowsValue(d *partition.Table, p int32, kb []byte, q web.Query, standby bool) (web.Value, error) {
	rows, err := rt.localWindows(d, p, kb)
	if err != nil {
		return web.Value{}, err
	}
	v := web.Value{Windowed: true, Stale: standby, Windows: []web.WindowValue{}}
	for _, r := range rows {
		if q.HasAt && !r.Range.Contains(q.At) {
			continue
		}
		js, err := d.ValueJSON(r.Value)
		if err != nil {
			return web.Value{}, fmt.Errorf("table %s: stored value of window %v: %w", d.Name, r.Range, err)
		}
		v.Windows = append(v.Windows, web.WindowValue{Start: r.Range.Start, End: r.Range.End, Value: js})
	}
	return v, nil
}
