package web

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Page is a route an app adds to every node's HTTP server: a net/http
// ServeMux pattern ("[METHOD ][HOST]/PATH", wildcards such as {id} and
// {rest...}) and its handler.
type Page struct {
	Pattern string
	Handler http.Handler
}

// noHandler stands in for handlers where only patterns are checked.
var noHandler = http.NotFoundHandler()

// CheckPage reports whether pattern can be added after the pages before:
// it must be a valid ServeMux pattern, must not conflict with a built-in
// route or one of before (ServeMux would panic: two patterns matching some
// request with neither more specific), and must not take requests a
// built-in route serves (a pattern more specific than one, such as
// "GET /tables/{t}/summary"). The error names both patterns.
func CheckPage(pattern string, before []Page) error {
	mux := http.NewServeMux()
	var prior []Page
	for _, r := range builtins(nil) {
		prior = append(prior, Page{r.Pattern, noHandler})
		mux.Handle(r.Pattern, noHandler)
	}
	builtinOnly := http.NewServeMux()
	for _, r := range prior {
		builtinOnly.Handle(r.Pattern, noHandler)
	}
	nb := len(prior)
	for _, p := range before {
		if err := register(mux, p.Pattern); err != nil {
			return fmt.Errorf("page %q: %v", p.Pattern, err)
		}
		prior = append(prior, p)
	}
	if err := register(mux, pattern); err != nil {
		// Name the pattern it conflicts with: the first one it cannot
		// stand beside alone.
		for i, q := range prior {
			pair := http.NewServeMux()
			pair.Handle(q.Pattern, noHandler)
			if perr := register(pair, pattern); perr != nil {
				what := "page"
				if i < nb {
					what = "built-in route"
				}
				return fmt.Errorf("page %q conflicts with the %s %q: %s", pattern, what, q.Pattern, reason(perr))
			}
		}
		return fmt.Errorf("page %q: %v", pattern, err)
	}
	probe := sample(pattern)
	if _, got := mux.Handler(probe); got == pattern {
		if _, b := builtinOnly.Handler(probe); b != "" {
			return fmt.Errorf("page %q takes requests of the built-in route %q (such as %s %s): built-in routes keep their paths; choose another path",
				pattern, b, probe.Method, probe.URL.Path)
		}
	}
	return nil
}

// register adds pattern to mux, turning ServeMux's panic into an error.
func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, noHandler)
	return nil
}

// reason is ServeMux's explanation of a conflict, without the places the
// patterns were registered at.
func reason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "):\n"); i >= 0 {
		msg = msg[i+3:]
	}
	return strings.ReplaceAll(msg, "\n", " ")
}

// sample returns a request pattern matches: its method (GET when it has
// none), its host, and its path with every wildcard replaced by "x".
func sample(pattern string) *http.Request {
	method, rest := "GET", pattern
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		method, rest = pattern[:i], strings.TrimLeft(pattern[i:], " \t")
	}
	host, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			if s == "{$}" {
				segs[i] = ""
			} else {
				segs[i] = "x"
			}
		}
	}
	return &http.Request{Method: method, Host: host, URL: &url.URL{Path: strings.Join(segs, "/")}, Header: http.Header{}}
}

// Wildcards returns the names of pattern's wildcards ({name} and
// {name...}), in order.
func Wildcards(pattern string) []string {
	var out []string
	for _, s := range strings.Split(pattern, "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && s != "{$}" {
			out = append(out, strings.TrimSuffix(s[1:len(s)-1], "..."))
		}
	}
	return out
}

// forwardedHeader marks a forwarded request so that it is not forwarded
// again (ownership may be changing: two nodes could each think the other
// serves it).
const forwardedHeader = "X-Mephisto-Forwarded"

// servedByHeader names, in a forwarded answer, the node that served it.
const servedByHeader = "X-Mephisto-Served-By"

// tableReadTimeout bounds a forwarded table read.
const tableReadTimeout = 5 * time.Second

// forwardTransport carries forwarded requests: a node that does not accept
// the connection fails fast; one that accepts but does not answer within
// 30s counts as gone.
var forwardTransport = &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	ResponseHeaderTimeout: 30 * time.Second,
	MaxIdleConnsPerHost:   16,
	IdleConnTimeout:       90 * time.Second,
}

// Forwarded reports whether r was forwarded here by another node (one
// hop): it is served here or refused, never forwarded again.
func Forwarded(r *http.Request) bool { return r.Header.Get(forwardedHeader) != "" }

// Forward serves r on the node whose HTTP server is at web (host:port) and
// relays its answer — status, headers, body, streamed — adding
// X-Mephisto-Served-By. The request goes with its method, path, query,
// headers and body, marked so that the other node does not forward it
// again (check Forwarded first). If that node cannot be reached the
// answer is 503 with Retry-After: the partition counts as moving.
func Forward(w http.ResponseWriter, r *http.Request, web string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: web})
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, "1")
		},
		Transport: forwardTransport,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(servedByHeader, web)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			JSON(w, http.StatusServiceUnavailable, map[string]any{"error": fmt.Sprintf("%v: the node at %s does not answer: %v", ErrUnavailable, web, err)})
		},
	}
	rp.ServeHTTP(w, r)
}
