package mephisto_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/timer"
)

// sharing is the app the tests of reads from anywhere, iteration and
// pages run: agent count keeps counts[word] of topic words; agent report
// ranges over counts from its handler when topic report gets a record;
// page GET /count/{word} (a TableRoute) and GET /near/{word} (a plain
// page: 503 when the read fails with ErrPartitionMoving, 504 with
// ErrTimeout, 500 otherwise) read counts; GET /time/{word} times 200
// such reads; GET /local ranges over this node's partitions.
type sharing struct {
	app     *mephisto.App
	node    string
	counts  *mephisto.Table[string, int64]
	byLen   *mephisto.Table[int64, int64] // never written: int64 keys
	reports chan map[string]int64         // what report's handler ranged over
}

func newSharing(t testing.TB, broker, node string, opts ...mephisto.Option) *sharing {
	app := mephisto.New("sharing", append([]mephisto.Option{mephisto.WithBrokers(broker), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50 * time.Millisecond), mephisto.WithNodeID(node)}, opts...)...)
	s := &sharing{app: app, node: node, reports: make(chan map[string]int64, 4)}
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	report := mephisto.NewTopic(app, "report", codec.String(), codec.String())
	s.counts = mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	s.byLen = mephisto.NewTable(app, "by_len", codec.Int64(), codec.Int64())
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		return s.counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	})
	mephisto.NewAgent(app, "report", report, func(ctx mephisto.Context, _, _ string) error {
		seen, err := rangeAll(ctx, s.counts)
		if err != nil {
			return err
		}
		s.reports <- seen
		return nil
	})
	app.Page("GET /count/{word}", mephisto.TableRoute(s.counts, "word", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, ok, err := s.counts.Lookup(r.Context(), r.PathValue("word"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"node": node, "word": r.PathValue("word"), "count": n, "found": ok})
	})))
	app.PageFunc("GET /near/{word}", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.counts.Get(r.Context(), r.PathValue("word"))
		switch {
		case errors.Is(err, mephisto.ErrPartitionMoving):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case errors.Is(err, mephisto.ErrTimeout):
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			writeJSON(w, map[string]any{"node": node, "count": n})
		}
	})
	app.PageFunc("GET /time/{word}", func(w http.ResponseWriter, r *http.Request) {
		const reads = 200 // what one Get costs from here, for the test's log
		began := time.Now()
		for range reads {
			if _, err := s.counts.Get(r.Context(), r.PathValue("word")); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		writeJSON(w, map[string]any{"per_read": (time.Since(began) / reads).String()})
	})
	app.PageFunc("GET /local", func(w http.ResponseWriter, r *http.Request) {
		seen, err := rangeAll(r.Context(), s.counts)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, seen)
	})
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// rangeAll collects what Range visits, failing if the keys do not come in
// order.
func rangeAll(ctx context.Context, tb *mephisto.Table[string, int64]) (map[string]int64, error) {
	seen := map[string]int64{}
	var last string
	var order error
	err := tb.Range(ctx, func(k string, v int64) bool {
		if len(seen) > 0 && k <= last {
			order = fmt.Errorf("Range gave %q after %q", k, last)
			return false
		}
		seen[k], last = v, k
		return true
	})
	return seen, errors.Join(err, order)
}

// fruit are the words the tests count: key → how often it is sent.
var fruit = map[string]int64{"apple": 3, "apricot": 1, "banana": 2, "blueberry": 4, "cherry": 1, "date": 2, "elder": 1, "fig": 5}

func fruitRecords() [][2]string {
	var recs [][2]string
	for _, k := range slices.Sorted(maps.Keys(fruit)) {
		for range fruit[k] {
			recs = append(recs, [2]string{k, "x"})
		}
	}
	return recs
}

// committedEquals reports whether Get with ctx returns want for every key.
func committedEquals(ctx context.Context, tb *mephisto.Table[string, int64], want map[string]int64) (bool, string) {
	for k, n := range want {
		got, err := tb.Get(ctx, k)
		if err != nil {
			return false, fmt.Sprintf("Get(%q): %v", k, err)
		}
		if got != n {
			return false, fmt.Sprintf("Get(%q) = %d, want %d", k, got, n)
		}
	}
	return true, ""
}

func httpGet(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

type read struct {
	n         int64
	err, werr error
}

// TestReadsFromAnywhere: on one node, a timer, a task, a page, a handler
// (Range) and a plain context.Background() read the counts' committed
// values; writes from a timer or task fail with ErrNotInAgent naming the
// two right ways; Range comes in key order, RangePrefix keeps to its
// prefix, and refuses keys that have no prefixes.
func TestReadsFromAnywhere(t *testing.T) {
	b := startBroker(t)
	clock := timer.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := newSharing(t, b.Addr(), "n1", mephisto.WithClock(clock))
	timerReads := make(chan read, 1)
	s.app.Timer("reader", time.Minute, func(ctx context.Context) error {
		n, err := s.counts.Get(ctx, "fig")
		timerReads <- read{n, err, s.counts.Set(ctx, "fig", 0)}
		return nil
	})
	asks, answers := make(chan string), make(chan read)
	s.app.Task("reader", func(ctx context.Context) error {
		for {
			select {
			case k := <-asks:
				n, err := s.counts.Get(ctx, k)
				answers <- read{n, err, s.counts.Update(ctx, k, func(n int64) int64 { return n + 1 })}
			case <-ctx.Done():
				return nil
			}
		}
	})
	runApp(t, s.app)
	produce(t, b.Addr(), "words", fruitRecords())
	ctx := context.Background()
	waitFor(t, 60*time.Second, "every count committed, read from context.Background()", func() (bool, string) {
		return committedEquals(ctx, s.counts, fruit)
	})
	if n, ok, err := s.counts.Lookup(ctx, "kiwi"); err != nil || ok || n != 0 {
		t.Errorf("Lookup of a key never written = %d, %v, %v", n, ok, err)
	}

	// A timer.
	waitFor(t, 10*time.Second, "the timer waiting on the clock", func() (bool, string) {
		return clock.Waiters() >= 1, fmt.Sprintf("%d waiters", clock.Waiters())
	})
	clock.Advance(time.Minute)
	var tr read
	select {
	case tr = <-timerReads:
	case <-time.After(30 * time.Second):
		t.Fatal("the timer did not run")
	}
	if tr.err != nil || tr.n != fruit["fig"] {
		t.Errorf("Get from a timer = %d, %v; want %d", tr.n, tr.err, fruit["fig"])
	}
	checkWriteRefused(t, "Set from a timer", tr.werr)

	// A task.
	asks <- "blueberry"
	ta := <-answers
	if ta.err != nil || ta.n != fruit["blueberry"] {
		t.Errorf("Get from a task = %d, %v; want %d", ta.n, ta.err, fruit["blueberry"])
	}
	checkWriteRefused(t, "Update from a task", ta.werr)

	// Pages: a plain one and a TableRoute, both local here.
	web := "http://" + s.app.WebAddr()
	if code, _, body := httpGet(t, web+"/near/apple"); code != 200 || !strings.Contains(body, `"count":3`) {
		t.Errorf("GET /near/apple = %d %s", code, body)
	}
	if code, h, body := httpGet(t, web+"/count/banana"); code != 200 || !strings.Contains(body, `"count":2`) || h.Get("X-Mephisto-Served-By") != "" {
		t.Errorf("GET /count/banana = %d %s %v, want 2 served here", code, body, h)
	}
	if code, _, body := httpGet(t, web+"/count/kiwi"); code != 200 || !strings.Contains(body, `"found":false`) {
		t.Errorf("GET /count/kiwi = %d %s", code, body)
	}

	// Range: from a page, from a handler, from here; and prefixes.
	code, _, body := httpGet(t, web+"/local")
	var local map[string]int64
	if err := json.Unmarshal([]byte(body), &local); code != 200 || err != nil || !maps.Equal(local, fruit) {
		t.Errorf("GET /local (Range from a page) = %d %s", code, body)
	}
	produce(t, b.Addr(), "report", [][2]string{{"", "go"}})
	select {
	case seen := <-s.reports:
		if !maps.Equal(seen, fruit) {
			t.Errorf("Range from a handler = %v, want %v", seen, fruit)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the report agent did not range")
	}
	if seen, err := rangeAll(ctx, s.counts); err != nil || !maps.Equal(seen, fruit) {
		t.Errorf("Range = %v, %v", seen, err)
	}
	prefix := func(p string) []string {
		var keys []string
		if err := s.counts.RangePrefix(ctx, p, func(k string, _ int64) bool { keys = append(keys, k); return true }); err != nil {
			t.Fatalf("RangePrefix(%q): %v", p, err)
		}
		return keys
	}
	for p, want := range map[string][]string{"a": {"apple", "apricot"}, "b": {"banana", "blueberry"}, "ap": {"apple", "apricot"},
		"blue": {"blueberry"}, "z": nil, "": slices.Sorted(maps.Keys(fruit))} {
		if got := prefix(p); !slices.Equal(got, want) {
			t.Errorf("RangePrefix(%q) = %q, want %q", p, got, want)
		}
	}
	var first []string
	if err := s.counts.Range(ctx, func(k string, _ int64) bool { first = append(first, k); return len(first) < 2 }); err != nil || !slices.Equal(first, []string{"apple", "apricot"}) {
		t.Errorf("Range stopped after two = %q, %v", first, err)
	}
	if err := s.byLen.RangePrefix(ctx, 5, func(int64, int64) bool { return true }); err == nil || !strings.Contains(err.Error(), "string or bytes keys") {
		t.Errorf("RangePrefix on int64 keys: %v", err)
	}
	if err := s.byLen.Range(ctx, func(int64, int64) bool { t.Error("a row of an empty table"); return true }); err != nil {
		t.Errorf("Range of an empty table: %v", err)
	}
}

// checkWriteRefused checks that err is ErrNotInAgent and tells what to do.
func checkWriteRefused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, mephisto.ErrNotInAgent) {
		t.Errorf("%s: %v, want ErrNotInAgent", what, err)
		return
	}
	for _, want := range []string{"table counts", "send a record to the topic", "global table"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", what, err, want)
		}
	}
}

// TestStaleReadsAndTableRoute: two nodes in one process (so without actor
// addresses: protoactor's remote is one per process). A node asked for a
// key of the other's partition cannot make the hop (ErrNoRemote, saying
// why); with AllowStale its standby copy answers, and Range covers its
// standby partitions too. A TableRoute page asked on either node is
// served by the key's owner; /topology lists the pages.
func TestStaleReadsAndTableRoute(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	s1 := newSharing(t, b.Addr(), "n1", mephisto.WithGossip(seed), mephisto.WithJoin(seed), mephisto.WithSessionTimeout(6*time.Second))
	s2 := newSharing(t, b.Addr(), "n2", mephisto.WithGossip(freeGossipAddr(t)), mephisto.WithJoin(seed), mephisto.WithSessionTimeout(6*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- s1.app.Run(ctx) }()
	go func() { done <- s2.app.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	waitFor(t, 60*time.Second, "two nodes sharing the partitions, each with standbys of the other's", func() (bool, string) {
		for _, s := range []*sharing{s1, s2} {
			if ok, why := s.app.Ready(); !ok {
				return false, why
			}
			v, err := getCluster(s.app.WebAddr())
			if err != nil || len(v.Nodes) != 2 {
				return false, fmt.Sprintf("nodes %d %v", len(v.Nodes), err)
			}
			for _, p := range v.Partitions {
				if len(p.Standbys) != 1 {
					return false, fmt.Sprintf("partition %d has standbys %v", p.Partition, p.Standbys)
				}
			}
		}
		return true, ""
	})
	produce(t, b.Addr(), "words", fruitRecords())
	waitFor(t, 60*time.Second, "every count served over HTTP", func() (bool, string) {
		return tableEquals(s1.app.WebAddr(), "counts", fruit)
	})
	mine := map[*sharing]map[string]int64{s1: {}, s2: {}}
	for k, n := range fruit {
		owner, err := ownerOf(s1.app.WebAddr(), k)
		if err != nil {
			t.Fatal(err)
		}
		if owner == "n1" {
			mine[s1][k] = n
		} else {
			mine[s2][k] = n
		}
	}
	if len(mine[s1]) == 0 || len(mine[s2]) == 0 {
		t.Fatalf("the keys are all on one node: %v", mine)
	}
	var far string // a key n2 owns
	for k := range mine[s2] {
		far = k
	}

	bg := context.Background()
	if ok, why := committedEquals(bg, s1.counts, mine[s1]); !ok {
		t.Errorf("n1 reading its own keys: %s", why)
	}
	_, err := s1.counts.Get(bg, far)
	if !errors.Is(err, mephisto.ErrNoRemote) || !strings.Contains(err.Error(), "--actor") {
		t.Errorf("n1 reading %q of n2 without actor addresses: %v, want ErrNoRemote naming --actor", far, err)
	}
	stale := mephisto.AllowStale(bg)
	waitFor(t, 30*time.Second, "n1's standby copies answer every key under AllowStale", func() (bool, string) {
		return committedEquals(stale, s1.counts, fruit)
	})
	if seen, err := rangeAll(bg, s1.counts); err != nil || !maps.Equal(seen, mine[s1]) {
		t.Errorf("Range on n1 = %v, %v; want its own partitions' %v", seen, err, mine[s1])
	}
	if seen, err := rangeAll(stale, s1.counts); err != nil || !maps.Equal(seen, fruit) {
		t.Errorf("Range on n1 under AllowStale = %v, %v; want every key %v", seen, err, fruit)
	}

	// TableRoute: asked on n1, a key of n2 is served by n2, one hop.
	code, h, body := httpGet(t, "http://"+s1.app.WebAddr()+"/count/"+far)
	if want := fmt.Sprintf(`"count":%d`, fruit[far]); code != 200 || !strings.Contains(body, `"node":"n2"`) || !strings.Contains(body, want) ||
		h.Get("X-Mephisto-Served-By") != s2.app.WebAddr() {
		t.Errorf("GET n1/count/%s = %d %s %v, want n2's answer with %s", far, code, body, h, want)
	}
	code, h, body = httpGet(t, "http://"+s2.app.WebAddr()+"/count/"+far)
	if code != 200 || !strings.Contains(body, `"node":"n2"`) || h.Get("X-Mephisto-Served-By") != "" {
		t.Errorf("GET n2/count/%s = %d %s %v, want n2's own answer", far, code, body, h)
	}
	req, _ := http.NewRequest("GET", "http://"+s2.app.WebAddr()+"/count/"+firstKey(mine[s1]), nil)
	req.Header.Set("X-Mephisto-Forwarded", "1") // as if n1 had forwarded it: n2 must not send it back
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a forwarded TableRoute request for a key n2 does not own = %d, want 503 with Retry-After", resp.StatusCode)
	}

	var topo struct {
		Pages []mephisto.PageInfo `json:"pages"`
	}
	code, _, body = httpGet(t, "http://"+s1.app.WebAddr()+"/topology")
	if err := json.Unmarshal([]byte(body), &topo); code != 200 || err != nil {
		t.Fatalf("GET /topology = %d %s", code, body)
	}
	want := []mephisto.PageInfo{{Pattern: "GET /count/{word}", Table: "counts", KeyParam: "word"}, {Pattern: "GET /near/{word}"}, {Pattern: "GET /time/{word}"}, {Pattern: "GET /local"}}
	if !slices.Equal(topo.Pages, want) {
		t.Errorf("/topology pages = %+v, want %+v", topo.Pages, want)
	}
}

func firstKey(m map[string]int64) string {
	return slices.Sorted(maps.Keys(m))[0]
}

// TestPageDeclarationErrors: a page that would take a built-in route's
// requests, two pages that conflict, a TableRoute whose pattern lacks its
// key wildcard and a page without a handler are declaration errors, each
// naming the patterns; the worker does not start.
func TestPageDeclarationErrors(t *testing.T) {
	app := mephisto.New("pages", mephisto.WithWebAddr("127.0.0.1:0"))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	tb := mephisto.NewTable(app, "tb", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "a", in, func(mephisto.Context, string, string) error { return nil })
	ok := http.NotFoundHandler()
	app.Page("GET /users/{id}", ok)
	app.Page("GET /tables/{t}/{k}", ok)
	app.Page("GET /users/{name}", ok)
	app.Page("GET /tables/tb/{k}", ok)
	app.Page("GET /by/{user}", mephisto.TableRoute(tb, "id", ok))
	app.PageFunc("GET /nothing", nil)
	app.Page("GET /fine/{id...}", mephisto.TableRoute(tb, "id", ok))
	err := app.Validate()
	for _, want := range []string{
		`page "GET /tables/{t}/{k}" conflicts with the built-in route "GET /tables/{table}/{key}"`,
		`page "GET /users/{name}" conflicts with the page "GET /users/{id}"`,
		`page "GET /tables/tb/{k}" takes requests of the built-in route "GET /tables/{table}/{key}"`,
		`page "GET /by/{user}": TableRoute of table tb takes its key from the path wildcard {id}`,
		`page "GET /nothing" has no handler`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nwant it to say %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "/fine/") {
		t.Errorf("Validate refused a good page: %v", err)
	}
	if err := app.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "GET /users/{name}") {
		t.Errorf("Run with bad pages: %v", err)
	}
	if got := app.Topology().Pages; len(got) != 2 {
		t.Errorf("the pages declared are %+v, want the two good ones", got)
	}
}
