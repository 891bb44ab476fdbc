// Package web serves a Mephisto node's HTTP endpoints: health, readiness,
// Prometheus metrics, table reads, the topology and the cluster view, the
// dashboard page and its JSON (dashboard.go), and the app's own pages (see
// Page), forwarding a request to the node that serves it where one must
// (Forward).
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Errors a Backend's TableValue returns; Handler maps them to status codes.
var (
	// ErrNoTable: the app declares no such table (404).
	ErrNoTable = errors.New("no such table")
	// ErrNotFound: the key was never written, or was deleted (404).
	ErrNotFound = errors.New("key not found")
	// ErrBadKey: the key cannot be parsed with the table's key codec (400).
	ErrBadKey = errors.New("bad key")
	// ErrUnavailable: the key's partition is not served here right now,
	// e.g. during a rebalance or recovery (503 with Retry-After).
	ErrUnavailable = errors.New("partition unavailable")
)

// Backend is what a node exposes over HTTP.
type Backend interface {
	// Ready reports whether every assigned partition is recovered and
	// processing, and if not, why.
	Ready() (bool, string)
	// Metrics serves the node's Prometheus registry.
	Metrics() http.Handler
	// TableValue returns a table value rendered as JSON (a windowed
	// table's: the key's live windows). With q.Stale, a node that only
	// keeps a standby copy of the key's partition may answer from it (and
	// says so). An *ElsewhereError says which node serves it.
	TableValue(table, key string, q Query) (Value, error)
	// Topology returns what the app declares, rendered as JSON.
	Topology() any
	// Cluster returns the node's view of the cluster, rendered as JSON.
	Cluster() any
	// NodeStatus returns what the dashboard shows of this node.
	NodeStatus() NodeStatus
}

// Query is how a table read may be answered: Stale lets a standby copy
// answer, and At (with HasAt) keeps only a windowed table's windows
// containing that instant (unix milliseconds).
type Query struct {
	Stale bool
	At    int64
	HasAt bool
}

// Value is a table value and whether it came from a standby copy. For a
// windowed table Windowed is set and Windows holds the key's live
// windows, in start order (JSON is unused).
type Value struct {
	JSON     json.RawMessage
	Stale    bool
	Windowed bool
	Windows  []WindowValue
}

// WindowValue is a key's value in one window, start and end in unix
// milliseconds (the window is [start, end)).
type WindowValue struct {
	Start int64           `json:"start"`
	End   int64           `json:"end"`
	Value json.RawMessage `json:"value"`
}

// ElsewhereError says that another node serves the key: Handler proxies
// the request there (one hop).
type ElsewhereError struct{ Web string }

func (e *ElsewhereError) Error() string { return "served by the node at " + e.Web }

// Handler returns the node's HTTP routes followed by the app's pages. A
// page whose pattern is invalid, conflicts with a built-in route or an
// earlier page, or would take requests a built-in route serves is an error
// naming both patterns (see CheckPage); nothing is served then. The
// dashboard page is served at GET / too, unless one of the pages serves
// GET / (an app's "/" or "GET /{$}"): that page keeps it, and the
// dashboard is at GET /dashboard only.
func Handler(b Backend, pages ...Page) (http.Handler, error) {
	mux := http.NewServeMux()
	for _, r := range builtins(b) {
		mux.Handle(r.Pattern, r.Handler)
	}
	if !rootTaken(pages) {
		mux.Handle("GET /{$}", http.HandlerFunc(servePage))
	}
	for i, pg := range pages {
		if err := CheckPage(pg.Pattern, pages[:i]); err != nil {
			return nil, err
		}
		if pg.Handler == nil {
			return nil, fmt.Errorf("page %q has no handler", pg.Pattern)
		}
		mux.Handle(pg.Pattern, pg.Handler)
	}
	return mux, nil
}

// builtins are the node's own routes, which keep their paths whatever
// pages an app adds.
// With b nil (only patterns wanted), metrics are not asked for.
func builtins(b Backend) []Page {
	metrics := noHandler
	if b != nil {
		metrics = b.Metrics()
	}
	return append([]Page{
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = fmt.Fprintln(w, "ok")
		})},
		{"GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			ok, why := b.Ready()
			if !ok {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
				return
			}
			_, _ = fmt.Fprintln(w, "ready")
		})},
		{"GET /metrics", metrics},
		{"GET /topology", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			JSON(w, http.StatusOK, b.Topology())
		})},
		{"GET /cluster", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			JSON(w, http.StatusOK, b.Cluster())
		})},
		// A key goes in the path, or — the only spelling of the empty key
		// (a JSON null field after GroupBy), and the safe one for keys
		// with slashes or other characters proxies rewrite — in ?key=.
		{"GET /tables/{table}/{key}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			table, key := r.PathValue("table"), r.PathValue("key")
			if r.URL.Query().Has("key") {
				JSON(w, http.StatusBadRequest, map[string]any{"table": table, "key": key,
					"error": "the key twice, in the path and in ?key=: give it once"})
				return
			}
			tableRead(w, r, b, table, key)
		})},
		{"GET /tables/{table}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			table := r.PathValue("table")
			if !r.URL.Query().Has("key") {
				JSON(w, http.StatusBadRequest, map[string]any{"table": table,
					"error": "no key: GET /tables/{table}/{key}, or /tables/{table}?key= (URL-encoded; empty for the empty key)"})
				return
			}
			tableRead(w, r, b, table, r.URL.Query().Get("key"))
		})},
	}, dashboardRoutes(b)...)
}

// tableRead answers a read of key in table: from this node, or proxied to
// the node that serves it.
func tableRead(w http.ResponseWriter, r *http.Request, b Backend, table, key string) {
	q := Query{Stale: r.URL.Query().Get("stale") == "ok"}
	if at := r.URL.Query().Get("at"); at != "" {
		ms, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			JSON(w, http.StatusBadRequest, map[string]any{"table": table, "key": key,
				"error": fmt.Sprintf("?at=%q: give an instant in unix milliseconds", at)})
			return
		}
		q.At, q.HasAt = ms, true
	}
	v, err := b.TableValue(table, key, q)
	var elsewhere *ElsewhereError
	if errors.As(err, &elsewhere) {
		if !Forwarded(r) {
			ctx, cancel := context.WithTimeout(r.Context(), tableReadTimeout)
			defer cancel()
			Forward(w, r.WithContext(ctx), elsewhere.Web)
			return
		}
		err = fmt.Errorf("%w: ownership is changing", ErrUnavailable)
	}
	switch {
	case err == nil && v.Windowed:
		body := map[string]any{"table": table, "key": key, "windows": v.Windows}
		if v.Windows == nil {
			body["windows"] = []WindowValue{}
		}
		if v.Stale {
			body["stale"] = true
		}
		JSON(w, http.StatusOK, body)
	case err == nil && v.Stale:
		JSON(w, http.StatusOK, map[string]any{"table": table, "key": key, "value": v.JSON, "stale": true})
	case err == nil:
		JSON(w, http.StatusOK, map[string]any{"table": table, "key": key, "value": v.JSON})
	case errors.Is(err, ErrNoTable), errors.Is(err, ErrNotFound):
		JSON(w, http.StatusNotFound, map[string]any{"table": table, "key": key, "error": err.Error()})
	case errors.Is(err, ErrBadKey):
		JSON(w, http.StatusBadRequest, map[string]any{"table": table, "key": key, "error": err.Error()})
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		JSON(w, http.StatusServiceUnavailable, map[string]any{"table": table, "key": key, "error": err.Error()})
	default:
		JSON(w, http.StatusInternalServerError, map[string]any{"table": table, "key": key, "error": err.Error()})
	}
}

// JSON writes v as a JSON response.
func JSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is a running HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen starts serving h on addr. It fails at once (naming the address) if
// the address is taken, rather than after the worker has started.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web server on %s: %w (choose another with --web, or --web '' to disable)", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
