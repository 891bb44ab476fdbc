package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/mephistohq/mephisto"
)

// The ask client: with BENCH_MODE=ask and BENCH_ASK_OUT set, a task of this
// node, once the file BENCH_ASK_GO exists (the harness creates it when the
// cluster is stable), times sequential round trips to the grains of the
// other node (the server): for BENCH_ASK_DURATION each, after
// BENCH_ASK_WARMUP of round trips not recorded, first Ask through Kafka,
// then Request by PID. It writes an askReport as JSON to
// BENCH_ASK_OUT (with Err set if it failed) and then idles until the
// worker is stopped.
const (
	envAskOut       = "BENCH_ASK_OUT"
	envAskGo        = "BENCH_ASK_GO"
	envAskDuration  = "BENCH_ASK_DURATION"
	envAskWarmup    = "BENCH_ASK_WARMUP"
	envAskValueSize = "BENCH_ASK_VALUE_SIZE"
)

// askReport is what the ask client measured; the harness reads it
// (bench/harness/ask.go mirrors it).
type askReport struct {
	Node string `json:"node"`
	// Self and Server are the actor addresses of this node and of the
	// node whose grains were asked.
	Self   string `json:"self"`
	Server string `json:"server"`
	// Keys are the keys asked, one per partition active on the server, in
	// rotation.
	Keys       []string `json:"keys"`
	Partitions []int32  `json:"partitions"`
	// AskMillis and PIDMillis are the round trips, in milliseconds, of
	// sequential Asks and Requests by PID.
	AskMillis []float64 `json:"ask_ms"`
	PIDMillis []float64 `json:"pid_ms"`
	// Err says why the client stopped early, if it did.
	Err string `json:"err,omitempty"`
}

// askClient is the task of the client node.
func askClient(ctx context.Context, app *mephisto.App, ask *mephisto.ReplyAgent[string, []byte, []byte]) error {
	out := os.Getenv(envAskOut)
	if out == "" {
		return nil
	}
	rep := askReport{Node: app.Config().NodeID}
	err := measureAsks(ctx, app, ask, &rep)
	if err != nil {
		rep.Err = err.Error()
	}
	logger(app).Info("ask client done", "asks", len(rep.AskMillis), "requests", len(rep.PIDMillis), "err", err)
	return errors.Join(err, writeJSON(out, rep))
}

func measureAsks(ctx context.Context, app *mephisto.App, ask *mephisto.ReplyAgent[string, []byte, []byte], rep *askReport) error {
	d, err := time.ParseDuration(os.Getenv(envAskDuration))
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%q: want a positive duration", envAskDuration, os.Getenv(envAskDuration))
	}
	warmup, err := time.ParseDuration(os.Getenv(envAskWarmup))
	if err != nil || warmup < 0 {
		return fmt.Errorf("%s=%q: want a duration", envAskWarmup, os.Getenv(envAskWarmup))
	}
	size := 100
	if s := os.Getenv(envAskValueSize); s != "" {
		if _, err := fmt.Sscan(s, &size); err != nil {
			return fmt.Errorf("%s=%q: want a size in bytes", envAskValueSize, s)
		}
	}
	size = max(size, 16) // room for the sequence number, as in bench/raw
	goFile := os.Getenv(envAskGo)
	if err := waitFor(ctx, 5*time.Minute, "the file "+goFile, func() bool {
		_, err := os.Stat(goFile)
		return err == nil
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, time.Minute, "the worker to be ready", func() bool { ok, _ := app.Ready(); return ok }); err != nil {
		return err
	}
	rep.Self = app.ActorSystem().Address()

	// One key per grain of the other node.
	type target struct {
		key string
		pid *actor.PID
	}
	var targets []target
	seen := map[string]bool{}
	for i := 0; i < 10_000 && len(seen) < 64; i++ {
		key := fmt.Sprintf("ask%013d", i)
		pid, err := ask.PID(key)
		if err != nil {
			return fmt.Errorf("PID(%s): %w", key, err)
		}
		if pid.Address == rep.Self || seen[pid.Id] {
			continue
		}
		if rep.Server != "" && pid.Address != rep.Server {
			return fmt.Errorf("grains on two other nodes (%s and %s): want one server", rep.Server, pid.Address)
		}
		seen[pid.Id] = true
		rep.Server = pid.Address
		targets = append(targets, target{key, pid})
		rep.Keys = append(rep.Keys, key)
		// A grain's id ends in its partition: partitions/partition/<app>/<p>.
		p, err := strconv.Atoi(pid.Id[strings.LastIndexByte(pid.Id, '/')+1:])
		if err != nil {
			return fmt.Errorf("PID(%s) = %s: no partition in its id", key, pid)
		}
		rep.Partitions = append(rep.Partitions, int32(p))
	}
	if len(targets) == 0 {
		return errors.New("no partition is active on another node")
	}

	value := func(i int) []byte {
		v := bytes.Repeat([]byte{'v'}, size)
		copy(v, fmt.Sprintf("%015d", i))
		return v
	}
	check := func(what string, i int, v, got []byte, err error) error {
		if err != nil {
			return fmt.Errorf("%s %d: %w", what, i, err)
		}
		if !bytes.Equal(got, v) {
			return fmt.Errorf("%s %d: reply %q, want %q", what, i, got, v)
		}
		return nil
	}
	request := func(tg target, v []byte, limit time.Duration) ([]byte, error) {
		rctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		return ask.Request(rctx, tg.pid, tg.key, v)
	}
	askOnce := func(tg target, v []byte, limit time.Duration) ([]byte, error) {
		actx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		return ask.Ask(actx, tg.key, v)
	}

	// Every grain answers once it has loaded its partition: retry until
	// then.
	for j, tg := range targets {
		var last error
		if err := waitFor(ctx, time.Minute, "the grain of "+tg.key+" to answer", func() bool {
			v := value(j)
			got, err := request(tg, v, 2*time.Second)
			last = check("request", j, v, got, err)
			return last == nil
		}); err != nil {
			return fmt.Errorf("%w (last error: %w)", err, last)
		}
	}

	// Sequential round trips, keys in rotation: for warm-up (not
	// recorded), then for d.
	loop := func(what string, call func(target, []byte, time.Duration) ([]byte, error)) ([]float64, error) {
		var ms []float64
		i := 0
		for _, s := range []struct {
			d    time.Duration
			keep bool
		}{{warmup, false}, {d, true}} {
			for end := time.Now().Add(s.d); time.Now().Before(end); i++ {
				v := value(i)
				t0 := time.Now()
				got, err := call(targets[i%len(targets)], v, 10*time.Second)
				rtt := time.Since(t0)
				if err := check(what, i, v, got, err); err != nil {
					return nil, err
				}
				if s.keep {
					ms = append(ms, millis(rtt))
				}
			}
		}
		return ms, nil
	}
	if rep.AskMillis, err = loop("ask", askOnce); err != nil {
		return err
	}
	rep.PIDMillis, err = loop("request", request)
	return err
}

func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// waitFor polls cond every 10ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func logger(app *mephisto.App) *slog.Logger {
	if l := app.Config().Logger; l != nil {
		return l
	}
	return slog.Default()
}

// writeJSON writes v to path atomically (a temporary file renamed), so
// that a reader polling for path never sees it half written.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
