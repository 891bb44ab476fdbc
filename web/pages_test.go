package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestCheckPage: which page patterns may join the built-in routes and the
// pages before them, and what the error names when one may not.
func TestCheckPage(t *testing.T) {
	before := []Page{{"GET /users/{id}", noHandler}, {"GET /users/{id}/posts/{n}", noHandler}, {"POST /orders", noHandler}}
	for _, c := range []struct {
		pattern string
		want    string // "" = accepted; else substrings of the error, |-separated
	}{
		{"GET /user_count/", ""},
		{"/", ""},                 // a catch-all: built-ins are more specific and keep theirs
		{"GET /{path...}", ""},    // likewise
		{"POST /healthz", ""},     // another method: no request of GET /healthz
		{"/healthz", ""},          // GET /healthz is more specific: it keeps GET and HEAD
		{"GET /tables", ""},       // /tables/{table} needs a segment more
		{"GET /users/{id}/x", ""}, // more specific than a page: the user's choice
		{"GET /users/me", ""},
		{"GET /healthz", `conflicts with the built-in route "GET /healthz"`},
		{"GET /tables/{t}/{k}", `page "GET /tables/{t}/{k}" conflicts with the built-in route "GET /tables/{table}/{key}"|matches the same requests`},
		{"/{a}/x/{b}", `conflicts with the built-in route "GET /tables/{table}/{key}"|neither is more specific`},
		{"GET /tables/{t}/summary", `takes requests of the built-in route "GET /tables/{table}/{key}"|GET /tables/x/summary`},
		{"GET /tables/words/{k}", `takes requests of the built-in route "GET /tables/{table}/{key}"`},
		{"example.com/cluster", `takes requests of the built-in route "GET /cluster"`}, // a host is more specific
		{"GET /metrics/{$}", ``}, // ends with a slash: /metrics/ is not /metrics
		{"GET /users/{name}", `conflicts with the page "GET /users/{id}"`},
		{"GET /{any}/7/posts/{n}", `conflicts with the page "GET /users/{id}/posts/{n}"`},
		{"POST /orders", `conflicts with the page "POST /orders"`},
		{"GET /bad/{x", `page "GET /bad/{x"|bad wildcard`},
		{"GET", `page "GET"|host/path missing /`},
	} {
		err := CheckPage(c.pattern, before)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckPage(%q): %v, want it accepted", c.pattern, err)
		case c.want != "" && err == nil:
			t.Errorf("CheckPage(%q) accepted, want an error with %q", c.pattern, c.want)
		case err != nil:
			for _, w := range strings.Split(c.want, "|") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckPage(%q) = %q, want it to contain %q", c.pattern, err, w)
				}
			}
			if strings.Contains(err.Error(), "registered at") {
				t.Errorf("CheckPage(%q) = %q: names source lines of this package", c.pattern, err)
			}
		}
	}
}

// TestHandlerServesPages: pages are served after the built-in routes, with
// their path values; Handler refuses a page CheckPage refuses, and one
// without a handler.
func TestHandlerServesPages(t *testing.T) {
	h := handler(t, fakeBackend{}, Page{"GET /user_count/{$}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		JSON(w, 200, map[string]int{"user_count": 3})
	})}, Page{"POST /things/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.PathValue("id")+"="+string(b))
	})})
	for _, c := range []struct{ method, path, body, want string }{
		{"GET", "/user_count/", "", `{"user_count":3}`},
		{"POST", "/things/7", "seven", "7=seven"},
		{"GET", "/healthz", "", "ok"},
		{"GET", "/tables/counts/the", "", `"value":42`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if got := rec.Body.String(); rec.Code != 200 || !strings.Contains(got, c.want) {
			t.Errorf("%s %s = %d %q, want 200 with %q", c.method, c.path, rec.Code, got, c.want)
		}
	}
	if _, err := Handler(fakeBackend{}, Page{"GET /cluster", noHandler}); err == nil || !strings.Contains(err.Error(), `"GET /cluster"`) {
		t.Errorf("Handler with a page on /cluster: %v", err)
	}
	if _, err := Handler(fakeBackend{}, Page{"GET /a", noHandler}, Page{"GET /a", noHandler}); err == nil || !strings.Contains(err.Error(), `conflicts with the page "GET /a"`) {
		t.Errorf("Handler with a page twice: %v", err)
	}
	if _, err := Handler(fakeBackend{}, Page{"GET /a", nil}); err == nil || !strings.Contains(err.Error(), "no handler") {
		t.Errorf("Handler with a nil page handler: %v", err)
	}
}

func TestWildcards(t *testing.T) {
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{"GET /counts/{word}", []string{"word"}},
		{"/a/{x}/b/{rest...}", []string{"x", "rest"}},
		{"GET /a/{$}", nil},
		{"example.com/{k}", []string{"k"}},
		{"POST /orders", nil},
	} {
		if got := Wildcards(c.pattern); !slices.Equal(got, c.want) {
			t.Errorf("Wildcards(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
}

// TestForward: a forwarded request arrives with its method, path, query,
// headers and body, marked as forwarded; the answer comes back with its
// status, headers and body, saying who served it.
func TestForward(t *testing.T) {
	var seen *http.Request
	var seenBody string
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen, seenBody = r.Clone(r.Context()), string(b)
		w.Header().Set("Set-Cookie", "a=b")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "made "+r.URL.Query().Get("n"))
	}))
	defer owner.Close()
	web := strings.TrimPrefix(owner.URL, "http://")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Forward(w, r, web) }))
	defer front.Close()

	req, _ := http.NewRequest("PUT", front.URL+"/things/7?n=2", strings.NewReader("payload"))
	req.Header.Set("X-Custom", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(body) != "made 2" || resp.Header.Get("Set-Cookie") != "a=b" ||
		resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-Mephisto-Served-By") != web {
		t.Errorf("forwarded answer: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if seen == nil {
		t.Fatal("the owner saw no request")
	}
	if seen.Method != "PUT" || seen.URL.Path != "/things/7" || seen.URL.RawQuery != "n=2" || seenBody != "payload" ||
		seen.Header.Get("X-Custom") != "yes" || !Forwarded(seen) || seen.Header.Get("X-Forwarded-For") == "" {
		t.Errorf("the owner saw %s %s?%s %q %v", seen.Method, seen.URL.Path, seen.URL.RawQuery, seenBody, seen.Header)
	}
	if Forwarded(req) {
		t.Error("a request from a client counts as forwarded")
	}
}
