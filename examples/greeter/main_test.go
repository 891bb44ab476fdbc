package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// TestGreeterInProcess: the task spawns the announcer and greets every
// name by PID and through Kafka; the test greets too, both ways, and the
// table counts every greeting. (This process runs one remote-enabled app:
// protoactor remote sets gRPC's process-wide logger.)
func TestGreeterInProcess(t *testing.T) {
	b := extest.StartBroker(t)
	var mu sync.Mutex
	var got []Reply
	names := []string{"world", "faust"}
	g := newApp(names, func(r Reply) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}, append(extest.Options(t, b.Addr()), mephisto.WithActorAddr("127.0.0.1:0"))...)
	extest.RunApp(t, g.app)

	select {
	case a := <-g.announcer:
		if a.PID() == nil {
			t.Fatal("the spawned announcer has no PID")
		}
	case <-time.After(extest.Timeout):
		t.Fatal("the task never spawned the announcer")
	}
	proctest.WaitForT(t, extest.Timeout, "every name greeted both ways", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2*len(names), fmt.Sprintf("%d replies: %+v", len(got), got)
	})
	mu.Lock()
	for i, r := range got {
		name, path := names[i/2], []string{"pid", "kafka"}[i%2]
		if r.Name != name || r.Path != path || r.Text != "hello, "+name {
			t.Errorf("reply %d = %+v, want %q by %s", i, r, "hello, "+name, path)
		}
	}
	mu.Unlock()

	// The same from the test, on the running node.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pid, err := g.greet.PID("world")
	if err != nil {
		t.Fatal(err)
	}
	if text, err := g.greet.Request(ctx, pid, "world", "world"); err != nil || text != "hello, world" {
		t.Fatalf("Request by PID = %q, %v", text, err)
	}
	if text, err := g.greet.Ask(ctx, "world", "world"); err != nil || text != "hello, world" {
		t.Fatalf("Ask = %q, %v", text, err)
	}
	// Round trips of both paths, for the record.
	const n = 200
	start := time.Now()
	for range n {
		if _, err := g.greet.Request(ctx, pid, "world", "world"); err != nil {
			t.Fatal(err)
		}
	}
	byPID := time.Since(start) / n
	start = time.Now()
	for range n / 4 {
		if _, err := g.greet.Ask(ctx, "world", "world"); err != nil {
			t.Fatal(err)
		}
	}
	byKafka := time.Since(start) / (n / 4)
	t.Logf("LATENCY in-process round trip: Request by PID %v, Ask through Kafka %v", byPID, byKafka)
	// Every greeting went through greet's handler, which counts it:
	// world 2 (task) + 2 + n + n/4 (test), faust 2.
	want := map[string]int64{"world": 4 + n + n/4, "faust": 2}
	proctest.WaitForT(t, extest.Timeout, "greeted counts every greeting", func() (bool, string) {
		return extest.TableEquals(g.app.WebAddr(), "greeted", want)
	})
}

// TestGreeterBinary: the worker's task logs the greetings it got both
// ways; `greeter ask greet '"world"'` prints the JSON reply.
func TestGreeterBinary(t *testing.T) {
	bin := extest.Build(t, "greeter")
	b := extest.StartBroker(t)
	w, web := extest.StartWorker(t, bin, b.Addr(), []string{namesEnv + "=world,alice"})
	proctest.WaitForT(t, extest.Timeout, "the task's greetings in the log", func() (bool, string) {
		if w.Exited() {
			t.Fatalf("worker exited: %s", w.DescribeExit())
		}
		log := w.Stderr()
		for _, name := range []string{"world", "alice"} {
			for _, path := range []string{"pid", "kafka"} {
				want := fmt.Sprintf(`msg=greeted task=welcome name=%s path=%s reply="hello, %s"`, name, path, name)
				if !strings.Contains(log, want) {
					return false, "no line with " + want
				}
			}
		}
		return true, ""
	})
	r := extest.Exec(t, bin, nil, "ask", "greet", `"world"`, "--brokers", b.Addr())
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `"hello, world"` {
		t.Fatalf("greeter ask greet '\"world\"': exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = extest.Exec(t, bin, nil, "ask", "greet", `"gretchen"`, "--key", "gretchen", "--brokers", b.Addr())
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `"hello, gretchen"` {
		t.Fatalf("greeter ask --key: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if r = extest.Exec(t, bin, nil, "ask", "greet", `world`, "--brokers", b.Addr()); r.Code != 2 {
		t.Errorf("ask with a value that is not JSON: exit %d, want 2\n%s", r.Code, r.Stderr)
	}
	// send AGENT: a cast to the agent's topic, no reply.
	r = extest.Exec(t, bin, nil, "send", "greet", `"gretchen"`, "--key", "gretchen", "--brokers", b.Addr())
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sent to greetings partition ") {
		t.Fatalf("greeter send greet: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// The table counts every greeting keyed by the name: the task's two
	// per name, the keyed ask and the cast (not the unkeyed ask).
	proctest.WaitForT(t, extest.Timeout, "greeted counts", func() (bool, string) {
		return extest.TableEquals(web, "greeted", map[string]int64{"gretchen": 2, "alice": 2, "world": 2})
	})
	w.StopT(t, extest.Timeout)
}
