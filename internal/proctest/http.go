package proctest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var httpClient = &http.Client{Timeout: 5 * time.Second}

// Get fetches path from the HTTP server at addr (host:port) and returns the
// status code and body.
func Get(addr, path string) (int, []byte, error) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Ready reports whether the node at addr answers /readyz with 200, and
// what it answered.
func Ready(addr string) (bool, string) {
	code, body, err := Get(addr, "/readyz")
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, fmt.Sprintf("/readyz: HTTP %d %s", code, strings.TrimSpace(string(body)))
}

// Cluster fetches the node at addr's /cluster.
func Cluster(addr string) (ClusterView, error) {
	var v ClusterView
	code, body, err := Get(addr, "/cluster")
	if err != nil {
		return v, err
	}
	if code != http.StatusOK {
		return v, fmt.Errorf("GET /cluster: HTTP %d %s", code, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("GET /cluster: %v: %s", err, body)
	}
	return v, nil
}

// Metric fetches the node at addr's /metrics and sums the samples of the
// metric name whose labels include every name="value" pair of match; n is
// how many samples matched.
func Metric(addr, name string, match map[string]string) (sum float64, n int, err error) {
	code, body, err := Get(addr, "/metrics")
	if err != nil {
		return 0, 0, err
	}
	if code != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: HTTP %d", code)
	}
	sum, n = sumMetric(body, name, match)
	return sum, n, nil
}

// sumMetric sums the samples of the metric name in a Prometheus text
// exposition whose labels include match, and counts them.
func sumMetric(body []byte, name string, match map[string]string) (sum float64, n int) {
	eachSample(body, name, func(labels map[string]string, v float64) {
		for k, want := range match {
			if labels[k] != want {
				return
			}
		}
		sum += v
		n++
	})
	return sum, n
}

// eachSample calls fn for every sample of the metric name in a Prometheus
// text exposition.
func eachSample(body []byte, name string, fn func(labels map[string]string, v float64)) {
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			for _, kv := range SplitLabels(rest[1:end]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					labels[k], _ = strconv.Unquote(v)
				}
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric sharing the prefix
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		fn(labels, v)
	}
}

// SplitLabels splits a sample's label list, `a="x",b="y,z"`, at the commas
// outside quotes.
func SplitLabels(s string) []string {
	var out []string
	var quoted, esc bool
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
