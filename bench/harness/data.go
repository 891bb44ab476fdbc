package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// keySize is the size of every generated key.
const keySize = 16

// keyOf returns the 16-byte key of event i among keys distinct keys
// ("k" and 15 digits: printable, so that it reads back over HTTP).
func keyOf(i, keys int) []byte { return fmt.Appendf(nil, "k%015d", i%keys) }

// expectedCount is how often keyOf(j, keys) occurs among n events.
func expectedCount(j, n, keys int) int64 {
	c := int64(n / keys)
	if j < n%keys {
		c++
	}
	return c
}

// letters is the pool values are cut from: random lower-case ASCII, so
// that the pass-through's upper-casing touches every byte.
var letters = func() []byte {
	r := rand.New(rand.NewPCG(5, 5))
	b := make([]byte, 1<<16)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return b
}()

// valueOf returns a size-byte value for event i (shared, read-only).
func valueOf(i, size int) []byte {
	size = min(size, len(letters)/2)
	off := (i * 131) % (len(letters) - size)
	return letters[off : off+size]
}

// vocabulary is the wordcount input's words: those of the example's
// corpus (examples/wordcount), lower-cased.
var vocabulary = strings.Fields(strings.ToLower(
	"The quick brown fox jumps over the lazy dog " +
		"A journey of a thousand miles begins with a single step " +
		"The dog barks and the fox runs into the woods " +
		"All that glitters is not gold " +
		"To be or not to be that is the question " +
		"The early bird catches the worm " +
		"Brown dogs and lazy cats sleep in the sun " +
		"It was the best of times it was the worst of times"))

// makeLines generates lines of about size bytes from the vocabulary until
// they hold at least words words; it returns them with the true count of
// every word.
func makeLines(words, size int, seed uint64) ([]string, map[string]int64) {
	r := rand.New(rand.NewPCG(seed, 7))
	truth := map[string]int64{}
	var lines []string
	total := 0
	for total < words {
		var b strings.Builder
		for b.Len() < size-8 && total < words {
			w := vocabulary[r.IntN(len(vocabulary))]
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
			truth[w]++
			total++
		}
		lines = append(lines, b.String())
	}
	return lines, truth
}

// probeKey returns a 16-byte key that falls on partition p (of 8), for
// run r.
func probeKey(r, p int) []byte {
	for j := 0; ; j++ {
		k := fmt.Appendf(nil, "p%02d%02d-%010d", r%100, p, j)
		if kafka.Partition(k, partitions) == int32(p) {
			return k
		}
	}
}

// tableValue reads key of table from the worker over HTTP: the committed
// value, and whether the key has one.
func (w *worker) tableValue(table, key string) (int64, bool, error) {
	code, body, err := w.get("/tables/" + table + "/" + url.PathEscape(key))
	if err != nil {
		return 0, false, err
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusServiceUnavailable:
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("GET /tables/%s/%s: HTTP %d %s", table, key, code, strings.TrimSpace(string(body)))
	}
	var v struct {
		Value int64 `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, false, fmt.Errorf("GET /tables/%s/%s: %w", table, key, err)
	}
	return v.Value, true, nil
}

// clusterView is a node's answer to GET /cluster, with the question the
// harness asks of it (unsettled).
type clusterView struct{ proctest.ClusterView }

// cluster reads GET /cluster.
func (w *worker) cluster() (clusterView, error) {
	v, err := proctest.Cluster(w.web)
	return clusterView{v}, err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// rawResult is the JSON line bench/raw prints.
type rawResult struct {
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	PeakRSS    int64   `json:"peak_rss"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// LatenciesMs are the round trips of `raw ask`, in milliseconds.
	LatenciesMs []float64 `json:"latencies_ms"`
	// Transactions and CommitSeconds are what `raw pass-txn` committed
	// and the time its partitions spent in commits (summed).
	Transactions  int64   `json:"transactions"`
	CommitSeconds float64 `json:"commit_seconds"`
}

// runRaw runs the raw client (bench/raw) to completion and returns its
// result.
func (h *harness) runRaw(ctx context.Context, name string, args ...string) (rawResult, error) {
	p, err := start(h.dir, name, h.bins.raw, nil, args...)
	if err != nil {
		return rawResult{}, err
	}
	h.procs.add(p)
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill()
		return rawResult{}, ctx.Err()
	}
	if p.Err() != nil {
		return rawResult{}, fmt.Errorf("raw client %s: %v\n%s", name, p.Err(), p.Tail(2000))
	}
	lines := strings.Split(strings.TrimSpace(p.Stdout()), "\n")
	var r rawResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return rawResult{}, fmt.Errorf("raw client %s: no result line: %w\n%s", name, err, p.Tail(2000))
	}
	if r.Seconds <= 0 {
		return rawResult{}, fmt.Errorf("raw client %s: measured no time (%+v)", name, r)
	}
	return r, nil
}
