package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// ask: round-trip latency of the two ways of messaging a reply agent,
// between two worker processes of one app, next to a raw sarama
// request/reply through two topics.
//
// Each run starts a broker and two nodes of the bench app in BENCH_MODE=ask
// (reply agent ask on topic in, replying with the request's value), with
// gossip and explicit actor addresses: the server s1 and the client c1,
// which share the 8 partitions. Once both nodes' /cluster show the settled
// plan, the harness lets c1's task go (BENCH_ASK_GO); it times sequential
// round trips to keys of the partitions active on s1, first ReplyAgent.Ask
// through Kafka, then ReplyAgent.Request by PID over protoactor remote, each
// for AskDuration after askWarmup not counted, and writes them to a JSON file
// the harness reads (bench/app/ask.go). The workers are then stopped, and on
// the same broker the raw pair runs: `raw respond` (a consumer group on the
// request topic feeding an async producer) and `raw ask` (a sync producer
// and a partition consumer on the reply topic), timing produce → reply read
// the same way.
func (h *harness) ask(ctx context.Context) (*Row, error) {
	o := h.opts
	row := &Row{Workload: "ask", Unit: "ms",
		N: fmt.Sprintf("sequential round trips, %v per path per run, %d-byte values", o.AskDuration, o.ValueSize)}
	var askP50, askP99, pidP50, pidP99, rawP50, rawP99 []float64
	for r := 1; r <= o.Runs; r++ {
		res, err := h.askRun(ctx, r)
		if err != nil {
			return row, err
		}
		askP50, askP99 = append(askP50, pct(res.ask, 50)), append(askP99, pct(res.ask, 99))
		pidP50, pidP99 = append(pidP50, pct(res.pid, 50)), append(pidP99, pct(res.pid, 99))
		rawP50, rawP99 = append(rawP50, pct(res.raw, 50)), append(rawP99, pct(res.raw, 99))
		row.Mephisto, row.Raw = append(row.Mephisto, pct(res.ask, 50)), append(row.Raw, pct(res.raw, 50))
		row.PeakRSS, row.RawPeakRSS = append(row.PeakRSS, res.rss), append(row.RawPeakRSS, res.rawRSS)
		h.logf("run %d: Ask %s; Request by PID %s; raw request/reply %s", r, summary(res.ask), summary(res.pid), summary(res.raw))
		row.note("run %d (keys of s1's partitions %v): Ask %s; by PID %s; raw %s",
			r, res.partitions, summary(res.ask), summary(res.pid), summary(res.raw))
	}
	row.Cell = fmt.Sprintf("Ask p50 %s ms, p99 %s ms; by PID p50 %s ms, p99 %s ms",
		spreadPrec(askP50, 2), spreadPrec(askP99, 2), spreadPrec(pidP50, 3), spreadPrec(pidP99, 3))
	row.RawCell = fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", median(rawP50), median(rawP99))
	row.note("round trip = a task of the client node c1 (a second worker process of the same app) calls and gets the reply, sequentially, to keys of the partitions active on the server node s1, whose reply agent answers with the request's value (%d bytes; no table); each path runs for %v after %v of round trips not counted", o.ValueSize, o.AskDuration, askWarmup(o))
	row.note("Ask: c1 produces the request to the agent's topic (idempotent, acks=all, waiting for the ack) → s1's grain runs the handler and produces the reply to c1's partition of <app>-replies, keyed by the correlation id → c1's reply listener reads it (Kafka long-polls, so no fetch interval is added)")
	row.note("by PID: Request(ctx, PID(key)) sends a protobuf envelope to s1's grain over protoactor remote (gRPC on loopback) and waits for the reply envelope: no Kafka at all")
	row.note("raw: bench/raw respond (a sarama consumer group on a request topic feeding an async producer) and bench/raw ask (a sync producer and a partition consumer on a reply topic), Mephisto's client config, the same headers' roles, on the same broker after the workers stopped: produce → reply read, sequential, for %v after the same warm-up", o.AskDuration)
	row.note("ratio = Ask's p50 over raw's (medians over runs); the PID path has no Kafka hop, so raw is its ceiling, not its baseline")
	row.note("peak RSS: the larger of the two workers / the larger of the raw requester and responder")
	return row, nil
}

// askWarmup is how long each path makes round trips before the clock
// starts: the first stretch of PID round trips is slower (connections,
// gRPC's flow-control windows, the heap growing).
func askWarmup(o Options) time.Duration { return o.AskDuration / 5 }

// askResult is one run of the ask workload: round trips in milliseconds.
type askResult struct {
	ask, pid, raw []float64
	partitions    []int32
	rss, rawRSS   int64
}

// askReport is what the ask client (bench/app/ask.go) writes.
type askReport struct {
	Node       string    `json:"node"`
	Self       string    `json:"self"`
	Server     string    `json:"server"`
	Keys       []string  `json:"keys"`
	Partitions []int32   `json:"partitions"`
	AskMillis  []float64 `json:"ask_ms"`
	PIDMillis  []float64 `json:"pid_ms"`
	Err        string    `json:"err,omitempty"`
}

// summary renders round trips as n, p50, p99 and max.
func summary(ms []float64) string {
	return fmt.Sprintf("n=%s p50 %.3f ms, p99 %.3f ms, max %.1f ms", group(fmt.Sprint(len(ms))), pct(ms, 50), pct(ms, 99), pct(ms, 100))
}

func (h *harness) askRun(ctx context.Context, r int) (askResult, error) {
	var res askResult
	o := h.opts
	b, kc, err := h.newBroker(fmt.Sprintf("ask-%d", r))
	if err != nil {
		return res, err
	}
	defer b.close()
	defer kc.close()
	for _, t := range []string{"in", "raw-requests", "raw-replies"} {
		if err := kc.createTopic(t, false); err != nil {
			return res, err
		}
	}

	// The two nodes: s1 serves, c1 asks.
	// One dir per broker of the run: a stale client.json would pass for this run's.
	dir := filepath.Join(h.dir, fmt.Sprintf("ask-%s-%d", h.brokerKind, r))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	out, goFile := filepath.Join(dir, "client.json"), filepath.Join(dir, "go")
	var gossip, actor [2]string
	for i := range 2 {
		if gossip[i], err = proctest.FreeAddr(true); err != nil {
			return res, err
		}
		if actor[i], err = proctest.FreeAddr(false); err != nil {
			return res, err
		}
	}
	env := []string{"BENCH_MODE=ask", "BENCH_APP=ask"}
	nodes := map[string]*worker{}
	for i, id := range []string{"s1", "c1"} {
		e := env
		if id == "c1" {
			e = append(e, "BENCH_ASK_OUT="+out, "BENCH_ASK_GO="+goFile,
				"BENCH_ASK_DURATION="+o.AskDuration.String(), "BENCH_ASK_WARMUP="+askWarmup(o).String(), fmt.Sprintf("BENCH_ASK_VALUE_SIZE=%d", o.ValueSize))
		}
		w, err := h.startWorker(workerSpec{name: fmt.Sprintf("ask-%d-%s", r, id), env: e, brokers: b.addr, nodeID: id,
			extra: []string{"--gossip", gossip[i], "--join", gossip[0], "--actor", actor[i]}})
		if err != nil {
			return res, err
		}
		nodes[id] = w
	}
	defer func() {
		for _, w := range nodes {
			_ = w.Stop(time.Minute)
		}
	}()
	if _, err := waitStablePlan(ctx, nodes, viewsAgree); err != nil {
		return res, err
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		return res, err
	}
	var rep askReport
	if err := waitJSON(ctx, out, 2*o.AskDuration+3*time.Minute, &rep, nodes); err != nil {
		return res, err
	}
	if rep.Err != "" {
		return res, fmt.Errorf("ask client: %s\n%s", rep.Err, nodes["c1"].Tail(3000))
	}
	if rep.Self != actor[1] || rep.Server != actor[0] {
		return res, fmt.Errorf("ask client at %s asked grains at %s; want c1 (%s) asking s1 (%s)", rep.Self, rep.Server, actor[1], actor[0])
	}
	if len(rep.AskMillis) == 0 || len(rep.PIDMillis) == 0 {
		return res, fmt.Errorf("ask client measured %d asks and %d requests by PID", len(rep.AskMillis), len(rep.PIDMillis))
	}
	res.ask, res.pid, res.partitions = rep.AskMillis, rep.PIDMillis, rep.Partitions
	for _, w := range nodes {
		res.rss = max(res.rss, readProcStats(w.Pid()).PeakRSS)
	}
	var errs []error
	for id, w := range nodes {
		errs = append(errs, w.Stop(time.Minute))
		delete(nodes, id)
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}

	// The raw pair, on the same broker, with the workers gone.
	responder, err := start(h.dir, fmt.Sprintf("ask-%d-raw-respond", r), h.bins.raw, nil,
		"respond", "--brokers", b.addr, "--topic", "raw-requests", "--group", "raw-respond")
	if err != nil {
		return res, err
	}
	h.procs.add(responder)
	defer responder.Kill()
	rr, err := h.runRaw(ctx, fmt.Sprintf("ask-%d-raw-ask", r), "ask", "--brokers", b.addr, "--topic", "raw-requests",
		"--out", "raw-replies", "--duration", o.AskDuration.String(), "--warmup", askWarmup(o).String(), "--value-size", fmt.Sprint(o.ValueSize), "--timeout", "5m")
	if err != nil {
		return res, fmt.Errorf("%w\nresponder:\n%s", err, responder.Tail(2000))
	}
	res.raw = rr.LatenciesMs
	res.rawRSS = max(rr.PeakRSS, readProcStats(responder.Pid()).PeakRSS)
	if err := responder.Stop(time.Minute); err != nil {
		return res, err
	}
	if len(res.raw) == 0 {
		return res, errors.New("raw requester measured no round trip")
	}
	return res, nil
}

// waitJSON waits until path exists and decodes it into v, failing if a
// node exits first or timeout passes.
func waitJSON(ctx context.Context, path string, timeout time.Duration, v any, nodes map[string]*worker) error {
	var b []byte
	_, err := proctest.Poll(ctx, pollInterval, timeout, filepath.Base(path)+" written", func() (bool, string, error) {
		var err error
		if b, err = os.ReadFile(path); err == nil {
			return true, "", nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return false, "", err
		}
		for _, w := range nodes {
			if w.Exited() {
				return false, "", fmt.Errorf("%s exited: %s\n%s", w.Name(), w.DescribeExit(), w.Tail(3000))
			}
		}
		return false, "not there yet", nil
	})
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
