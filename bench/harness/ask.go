package harness

import "context"

// ask is the hook for the ask workload: round-trip latency p50/p99 of
// agent.Ask through Kafka (reply-to topic and correlation id) and of
// Request by PID over protoactor remote. The ask/PID API is issue #4 and
// does not exist yet, so the row says n/a.
//
// To fill it in once the API lands: give bench/app a BENCH_MODE=ask
// topology (an agent that answers each request with its value), start it
// as a worker like latency does, drive it from a small client binary (a
// second copy of the app as a client node, or a mode of bench/raw using the
// app package) that issues sequential asks for a fixed duration, and report
// p50/p99 of both paths here, with the raw column a sarama request/reply
// through two topics measured in the same run.
func (h *harness) ask(context.Context) (*Row, error) {
	return &Row{
		Workload: "ask",
		N:        "—",
		Cell:     "n/a (issue 4)",
		Notes:    []string{"not measured: the ask/PID API is issue #4; the hook is harness.ask in bench/harness/ask.go"},
	}, nil
}
