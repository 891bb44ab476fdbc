package mephisto

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/web"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var _ web.Backend = (*runtime)(nil)

// Ready is true when the node consumes and every assigned partition is
// recovered and processing; otherwise it says why.
func (rt *runtime) Ready() (bool, string) {
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

func (rt *runtime) readyLocked() (bool, string) {
	if rt.phase != "" {
		return false, rt.phase
	}
	if !rt.session {
		return false, "waiting for a partition assignment from the consumer group"
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
	return true, ""
}

// Metrics serves the node's own registry.
func (rt *runtime) Metrics() http.Handler {
	return promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{Registry: rt.metrics.reg})
}

// TableValue reads the committed value of key from the shard of the
// partition the key hashes to: here if this node is active for it (or, with
// stale, keeps a standby copy), else it names the node that is.
func (rt *runtime) TableValue(table, key string, stale bool) (web.Value, error) {
	var d *tableDef
	for _, t := range rt.tables {
		if t.name == table {
			d = t
		}
	}
	if d == nil {
		return web.Value{}, fmt.Errorf("%w: %s", web.ErrNoTable, table)
	}
	kb, err := d.textKey(key)
	if err != nil {
		return web.Value{}, fmt.Errorf("%w: %v", web.ErrBadKey, err)
	}
	n, err := rt.partitionCount(d.changelog)
	if err != nil {
		return web.Value{}, fmt.Errorf("%w: %v", web.ErrUnavailable, err)
	}
	p := kafka.Partition(kb, n)
	local, remote := rt.routeOf(p)
	fromStandby := !local && stale && rt.isStandby(p)
	switch {
	case local, fromStandby:
	case remote != "":
		return web.Value{}, &web.ElsewhereError{Web: remote}
	default:
		return web.Value{}, fmt.Errorf("%w: partition %d of table %s is moving or recovering", web.ErrUnavailable, p, table)
	}
	raw, found, err := rt.store.Get(d.id, p, kb)
	if err != nil {
		return web.Value{}, err
	}
	if !found {
		return web.Value{}, web.ErrNotFound
	}
	v, err := d.valueJSON(raw)
	return web.Value{JSON: v, Stale: fromStandby}, err
}

// Topology returns the app's topology.
func (rt *runtime) Topology() any { return rt.app.Topology() }

// WebAddr returns the address the running worker's HTTP server listens on
// ("" when no worker runs or the server is disabled) — useful with port 0.
func (a *App) WebAddr() string {
	rt := a.runtime()
	if rt == nil || rt.web == nil {
		return ""
	}
	return rt.web.Addr()
}

// Ready reports whether the running worker is ready, and if not, why.
func (a *App) Ready() (bool, string) {
	rt := a.runtime()
	if rt == nil {
		return false, "not running"
	}
	return rt.Ready()
}
