package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/examples/internal/extest"
)

// TestAdderInProcess asks the agent from Go, through Kafka and by PID.
func TestAdderInProcess(t *testing.T) {
	b := extest.StartBroker(t)
	app, adding := newApp(extest.Options(t, b.Addr())...)
	extest.RunApp(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := adding.Ask(ctx, "k", Add{A: 4, B: 4}); err != nil || got != 8 {
		t.Fatalf("Ask = %d, %v", got, err)
	}
	got, err := adding.Join(ctx, Add{1, 2}, Add{3, 4}, Add{5, 6})
	if err != nil || len(got) != 3 || got[0] != 3 || got[1] != 7 || got[2] != 11 {
		t.Fatalf("Join = %v, %v", got, err)
	}
}

// TestAdderBinary: `adder ask adding '{"a":4,"b":4}'` prints 8 and exits 0;
// a timeout exits non-zero with the error.
func TestAdderBinary(t *testing.T) {
	bin := extest.Build(t, "adder")
	b := extest.StartBroker(t)
	w, _ := extest.StartWorker(t, bin, b.Addr(), nil)
	r := extest.Exec(t, bin, nil, "ask", "adding", `{"a":4,"b":4}`, "--brokers", b.Addr())
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "8" {
		t.Fatalf("ask: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = extest.Exec(t, bin, nil, "ask", "adding", `{"a":40,"b":2}`, "--key", "some-key", "--brokers", b.Addr())
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "42" {
		t.Fatalf("ask --key: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if r = extest.Exec(t, bin, nil, "ask", "adding", `not json`, "--brokers", b.Addr()); r.Code != 2 {
		t.Errorf("ask with a value the codec rejects: exit %d, want 2\n%s", r.Code, r.Stderr)
	}
	w.StopT(t, extest.Timeout)
	// No worker: the request waits in Kafka and the ask times out.
	r = extest.Exec(t, bin, nil, "ask", "adding", `{"a":1,"b":1}`, "--timeout", "500ms", "--brokers", b.Addr())
	if r.Code != 1 || !strings.Contains(r.Stderr, "timed out") {
		t.Fatalf("ask without a worker: exit %d, stderr %q", r.Code, r.Stderr)
	}
}
