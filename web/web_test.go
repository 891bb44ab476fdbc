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
}

func (f fakeBackend) Ready() (bool, string) { return f.ready, f.why }
func (f fakeBackend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "mephisto_up 1") })
}
func (f fakeBackend) Topology() any { return map[string]string{"app": "x"} }
func (f fakeBackend) TableValue(table, key string) (json.RawMessage, error) {
	switch {
	case table != "counts":
		return nil, ErrNoTable
	case key == "moving":
		return nil, fmt.Errorf("%w: partition 3 recovering", ErrUnavailable)
	case key == "bad":
		return nil, fmt.Errorf("%w: not an int", ErrBadKey)
	case key == "the":
		return json.RawMessage("42"), nil
	}
	return nil, ErrNotFound
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
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(c.backend).ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
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
