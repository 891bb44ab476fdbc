package mephisto

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/mephistohq/mephisto/web"
)

// pageDef is a declared page.
type pageDef struct {
	pattern string
	handler http.Handler
	table   string // the table of a TableRoute page, "" otherwise
	key     string // its key's path wildcard
}

// PageInfo describes a declared page (GET /topology).
type PageInfo struct {
	Pattern string `json:"pattern"`
	// Table and KeyParam are set for a TableRoute page: the table whose
	// key, named by the path wildcard KeyParam, decides the node serving
	// the request.
	Table    string `json:"table,omitempty"`
	KeyParam string `json:"key_param,omitempty"`
}

// Page adds handler to the HTTP server of every worker of the app
// (Faust's @app.page), at pattern: a net/http ServeMux pattern, with an
// optional method and host and wildcards ("GET /users/{id}",
// "POST /orders", "/static/{path...}"), matched by ServeMux's rules (the
// most specific pattern wins). Declare pages before Run.
//
// Tables are readable inside (pass r.Context()): Get and Lookup return the
// key's committed value from whichever node is active for it, Range the
// partitions of this node; wrap the handler in TableRoute to serve each
// request on the node active for a key instead. Writes go through an
// agent: send a record to its topic.
//
// The built-in routes (/healthz, /readyz, /metrics, /topology, /cluster,
// /tables/...) keep their paths: a pattern that is invalid, conflicts
// with a built-in route or another page (two patterns matching some
// request, neither more specific), or would take requests a built-in
// route serves is a declaration error, reported by Validate (and so at
// start), naming both patterns.
func (a *App) Page(pattern string, handler http.Handler) {
	d := pageDef{pattern: pattern, handler: handler}
	if tr, ok := handler.(interface{ route() (string, string) }); ok {
		d.table, d.key = tr.route()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkPageLocked(d); err != nil {
		a.errs = append(a.errs, err)
		return
	}
	a.pages = append(a.pages, d)
}

// PageFunc adds fn as a page at pattern; see Page.
func (a *App) PageFunc(pattern string, fn func(http.ResponseWriter, *http.Request)) {
	if fn == nil {
		a.Page(pattern, nil)
		return
	}
	a.Page(pattern, http.HandlerFunc(fn))
}

func (a *App) checkPageLocked(d pageDef) error {
	if d.handler == nil {
		return fmt.Errorf("page %q has no handler", d.pattern)
	}
	before := make([]web.Page, len(a.pages))
	for i, p := range a.pages {
		before[i] = web.Page{Pattern: p.pattern, Handler: p.handler}
	}
	if err := web.CheckPage(d.pattern, before); err != nil {
		return err
	}
	if d.table != "" && !slices.Contains(web.Wildcards(d.pattern), d.key) {
		return fmt.Errorf("page %q: TableRoute of table %s takes its key from the path wildcard {%s}, which the pattern does not have",
			d.pattern, d.table, d.key)
	}
	return nil
}

// webPages returns the pages as the node serves them.
func (a *App) webPagesLocked() []web.Page {
	out := make([]web.Page, len(a.pages))
	for i, p := range a.pages {
		out[i] = web.Page{Pattern: p.pattern, Handler: p.handler}
	}
	return out
}

// pageInfosLocked describes the pages, in declaration order.
func (a *App) pageInfosLocked() []PageInfo {
	out := make([]PageInfo, len(a.pages))
	for i, p := range a.pages {
		out[i] = PageInfo{Pattern: p.pattern, Table: p.table, KeyParam: p.key}
	}
	return out
}

// TableRoute wraps a page's handler so that each request is served by the
// node active for a key of table (Faust's @app.table_route): the key is
// the path wildcard keyParam of the page's pattern, parsed like the key
// of GET /tables/{table}/{key} (the key codec's text form). A node that
// is active for the key's partition serves the request itself; any other
// forwards it, one hop, to the node that is, and relays its answer (the
// answer carries X-Mephisto-Served-By). Inside h, table reads of that key
// are local.
//
// A key that does not parse is answered 400; while no node serves the
// key's partition (it is moving or recovering), or the owner cannot be
// reached, 503 with Retry-After, as for /tables. A request forwarded once
// is never forwarded again. Give the result to Page or PageFunc's
// pattern with a wildcard {keyParam} (or {keyParam...}); a pattern
// without it is a declaration error.
//
//	app.Page("GET /counts/{word}", mephisto.TableRoute(counts, "word",
//		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			n, err := counts.Get(r.Context(), r.PathValue("word")) // local
//			...
//		})))
func TableRoute[K, V any](table *Table[K, V], keyParam string, h http.Handler) http.Handler {
	return &tableRoute[K, V]{t: table, param: keyParam, h: h}
}

type tableRoute[K, V any] struct {
	t     *Table[K, V]
	param string
	h     http.Handler
}

func (tr *tableRoute[K, V]) route() (string, string) { return tr.t.def.spec.Name, tr.param }

func (tr *tableRoute[K, V]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := tr.t.def.spec.Name
	key := r.PathValue(tr.param)
	n := tr.t.app.running()
	if n == nil {
		web.JSON(w, http.StatusServiceUnavailable, map[string]any{"table": name, "key": key, "error": ErrNotRunning.Error()})
		return
	}
	kb, err := tr.t.def.spec.KeyText(key)
	if err != nil {
		web.JSON(w, http.StatusBadRequest, map[string]any{"table": name, "key": key, "error": fmt.Sprintf("bad key: %v", err)})
		return
	}
	local, owner, err := n.TableOwner(tr.t.def.spec.Index, kb)
	switch {
	case local:
		tr.h.ServeHTTP(w, r)
		return
	case err == nil && !web.Forwarded(r):
		web.Forward(w, r, owner)
		return
	case err == nil:
		err = fmt.Errorf("%w: ownership is changing", ErrPartitionMoving)
	}
	w.Header().Set("Retry-After", "1")
	web.JSON(w, http.StatusServiceUnavailable, map[string]any{"table": name, "key": key, "error": err.Error()})
}
