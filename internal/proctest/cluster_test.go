package proctest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeNode serves /readyz and a /cluster of nodes n1, n2 (n2 alive as
// given) in generation gen, 2 partitions, one on each.
func fakeNode(t *testing.T, gen int, n2Alive bool) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			fmt.Fprint(w, "ok")
		case "/cluster":
			fmt.Fprintf(w, `{"generation":%d,"nodes":[{"id":"n1","alive":true},{"id":"n2","alive":%v}],
				"partitions":[{"partition":0,"active":"n1"},{"partition":1,"active":"n2"}]}`, gen, n2Alive)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func TestFormed(t *testing.T) {
	a, b := fakeNode(t, 3, true), fakeNode(t, 3, true)
	if v, why := Formed([]Node{{"n1", a}, {"n2", b}}, 2, true); why != "" || v.Generation != 3 {
		t.Errorf("formed cluster: %q, generation %d", why, v.Generation)
	}
	if _, why := Formed([]Node{{"n1", a}, {"n2", fakeNode(t, 4, true)}}, 2, true); !strings.Contains(why, "generations differ") {
		t.Errorf("two generations: %q", why)
	}
	lagging := fakeNode(t, 3, false)
	if _, why := Formed([]Node{{"n1", lagging}, {"n2", b}}, 2, true); !strings.Contains(why, "not alive") {
		t.Errorf("a node not alive, alive wanted: %q", why)
	}
	if _, why := Formed([]Node{{"n1", lagging}, {"n2", b}}, 2, false); why != "" {
		t.Errorf("a node not alive, alive not wanted: %q", why)
	}
	if _, why := Formed([]Node{{"n1", a}}, 2, true); !strings.Contains(why, "n2 in the plan") {
		t.Errorf("a node not asked for: %q", why)
	}
}
