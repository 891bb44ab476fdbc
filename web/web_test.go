package web

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeBackend struct {
	ready bool
	why   string
	other string // web address of the node serving "far"
}

func (f fakeBackend) Ready() (bool, string) { return f.ready, f.why }
func (f fakeBackend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "mephisto_up 1") })
}
func (f fakeBackend) Topology() any { return map[string]string{"app": "x"} }
func (f fakeBackend) Cluster() any  { return map[string]int{"generation": 3} }
func (f fakeBackend) NodeStatus() NodeStatus {
	return NodeStatus{ID: "n1", Web: "127.0.0.1:1", Ready: f.ready, Why: f.why}
}
func (f fakeBackend) TableValue(table, key string, q Query) (Value, error) {
	stale := q.Stale
	switch {
	case table != "counts":
		return Value{}, ErrNoTable
	case key == "moving" && stale:
		return Value{JSON: json.RawMessage("41"), Stale: true}, nil
	case key == "moving":
		return Value{}, fmt.Errorf("%w: partition 3 recovering", ErrUnavailable)
	case key == "bad":
		return Value{}, fmt.Errorf("%w: not an int", ErrBadKey)
	case key == "the":
		return Value{JSON: json.RawMessage("42")}, nil
	case key == "": // what a JSON null field becomes after GroupBy
		return Value{JSON: json.RawMessage("7")}, nil
	case key == "a/b c?d":
		return Value{JSON: json.RawMessage("8")}, nil
	case key == "far" && f.other != "":
		return Value{}, &ElsewhereError{Web: f.other}
	}
	return Value{}, ErrNotFound
}

// handler is Handler(b, pages...), failing the test on an error.
func handler(t testing.TB, b Backend, pages ...Page) http.Handler {
	t.Helper()
	h, err := Handler(b, pages...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHandler(t *testing.T) {
	cases := []struct {
		backend    fakeBackend
		path       string
		code       int
		body       string
		retryAfter bool
	}{
		{fakeBackend{}, "/healthz", 200, "ok", false},
		{fakeBackend{ready: true}, "/readyz", 200, "ready", false},
		{fakeBackend{why: "partitions [1] recovering"}, "/readyz", 503, "not ready: partitions [1] recovering", true},
		{fakeBackend{}, "/metrics", 200, "mephisto_up 1", false},
		{fakeBackend{}, "/topology", 200, `{"app":"x"}`, false},
		{fakeBackend{}, "/tables/counts/the", 200, `{"key":"the","table":"counts","value":42}`, false},
		{fakeBackend{}, "/tables/counts/never", 404, `"error":"key not found"`, false},
		{fakeBackend{}, "/tables/nope/the", 404, `"error":"no such table"`, false},
		{fakeBackend{}, "/tables/counts/bad", 400, `bad key`, false},
		{fakeBackend{}, "/tables/counts/moving", 503, `partition unavailable`, true},
		{fakeBackend{}, "/tables/counts/moving?stale=ok", 200, `"stale":true`, false},
		{fakeBackend{}, "/cluster", 200, `{"generation":3}`, false},
		// The key as a query parameter: the only spelling of the empty
		// key, and one for keys no path segment carries well.
		{fakeBackend{}, "/tables/counts?key=", 200, `{"key":"","table":"counts","value":7}`, false},
		{fakeBackend{}, "/tables/counts?key=the", 200, `{"key":"the","table":"counts","value":42}`, false},
		{fakeBackend{}, "/tables/counts?key=a%2Fb+c%3Fd", 200, `{"key":"a/b c?d","table":"counts","value":8}`, false},
		{fakeBackend{}, "/tables/counts?key=never", 404, `"error":"key not found"`, false},
		{fakeBackend{}, "/tables/nope?key=", 404, `"error":"no such table"`, false},
		{fakeBackend{}, "/tables/counts?key=moving", 503, `partition unavailable`, true},
		{fakeBackend{}, "/tables/counts?key=moving&stale=ok", 200, `"stale":true`, false},
		{fakeBackend{}, "/tables/counts", 400, `?key=`, false},
		{fakeBackend{}, "/tables/counts/the?key=other", 400, `the key twice`, false},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			handler(t, c.backend).ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != c.code || !strings.Contains(string(body), c.body) {
				t.Errorf("GET %s = %d %q, want %d containing %q", c.path, rec.Code, body, c.code, c.body)
			}
			if got := rec.Header().Get("Retry-After") != ""; got != c.retryAfter {
				t.Errorf("GET %s: Retry-After present %v, want %v", c.path, got, c.retryAfter)
			}
		})
	}
}

func TestListenNamesTakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "--web") {
		t.Fatalf("Listen on a taken address: %v", err)
	}
}

// TestProxyOneHop: a key served elsewhere is fetched from that node; a
// request already forwarded is not forwarded again; an unreachable owner is
// a 503 with Retry-After.
func TestProxyOneHop(t *testing.T) {
	owner := httptest.NewServer(handler(t, fakeBackend{}))
	defer owner.Close()
	// A node that thinks "far" is on itself-elsewhere would loop; forwarded
	// requests must stop.
	looping := httptest.NewServer(nil)
	looping.Config.Handler = handler(t, fakeBackend{other: strings.TrimPrefix(looping.URL, "http://")})
	defer looping.Close()
	front := httptest.NewServer(handler(t, fakeBackend{other: strings.TrimPrefix(owner.URL, "http://")}))
	defer front.Close()

	get := func(url string) (int, string, http.Header) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// The owner itself has no "far" key: it answers 404, relayed as is.
	if code, body, h := get(front.URL + "/tables/counts/far"); code != 404 || h.Get("X-Mephisto-Served-By") == "" {
		t.Errorf("proxied read: %d %q %v", code, body, h)
	}
	if code, body, h := get(front.URL + "/tables/counts?key=far"); code != 404 || h.Get("X-Mephisto-Served-By") == "" || !strings.Contains(body, `"key":"far"`) {
		t.Errorf("proxied read by ?key=: %d %q %v", code, body, h)
	}
	if code, _, h := get(looping.URL + "/tables/counts/far"); code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("second hop: %d, want 503 with Retry-After", code)
	}
	dead := httptest.NewServer(handler(t, fakeBackend{other: "127.0.0.1:1"}))
	defer dead.Close()
	if code, _, h := get(dead.URL + "/tables/counts/far"); code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("unreachable owner: %d, want 503 with Retry-After", code)
	}
}
