// Package hints holds what the examples share to show a newcomer that
// they work: the start-up guide and the generator of the counting
// examples (Demo), a rate read from the environment, counts read back over
// HTTP, waiting for readiness, and how to run the example again.
package hints

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mephistohq/mephisto"
)

// RateFromEnv reads a non-negative rate from the environment (unset: 0).
func RateFromEnv(name string) (float64, error) {
	s := os.Getenv(name)
	if s == "" {
		return 0, nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return 0, fmt.Errorf("%s=%q: want a number of records per second (0 or unset: off)", name, s)
	}
	return r, nil
}

// ReadCount GETs /tables/{table}/{key}: the count, "0" for a key not
// counted yet, or "?" if the worker cannot answer.
func ReadCount(ctx context.Context, client *http.Client, web, table, key string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+web+"/tables/"+table+"/"+key, nil)
	if err != nil {
		return "?"
	}
	resp, err := client.Do(req)
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	var body struct {
		Value json.Number `json:"value"`
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "0"
	case resp.StatusCode != http.StatusOK, json.NewDecoder(resp.Body).Decode(&body) != nil:
		return "?"
	}
	return body.Value.String()
}

// WaitReady polls the worker's readiness until it is ready, ctx is done or
// timeout passes.
func WaitReady(ctx context.Context, app *mephisto.App, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := app.Ready(); ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// Logger returns the worker's Logger.
func Logger(app *mephisto.App) *slog.Logger {
	if l := app.Config().Logger; l != nil {
		return l
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// SelfCommand is how to run this program again: "go run ./examples/NAME"
// under go run, else the path it was started with.
func SelfCommand(name string) string {
	if strings.Contains(os.Args[0], "go-build") {
		return "go run ./examples/" + name
	}
	return os.Args[0]
}
