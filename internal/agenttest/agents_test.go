package agenttest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/agenttest"
	"github.com/mephistohq/mephisto/kafka"
)

// TestAskCastMapJoinAcrossProcesses: the messaging path through Kafka,
// across processes. The test process is a client: `atest ask` answers for
// a key owned by each node, `atest send tally` (a cast) lands in the table
// of the key's owner. A third worker joins the cluster and runs Join and
// Map from its task: Join's replies come in input order, Map delivers
// every index once. With no worker left, `atest ask --timeout` exits 1
// saying it timed out.
func TestAskCastMapJoinAcrossProcesses(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		c := newCluster(t, b)
		n1 := c.start("n1")
		n2 := c.start("n2")
		v := c.waitFormed(90*time.Second, n1, n2)

		// ask, for a key of each node.
		for i, w := range []*worker{n1, n2} {
			key, p := v.keyOwnedBy("ask", w.id)
			if key == "" {
				t.Fatalf("no key owned by %s in %+v", w.id, v.Partitions)
			}
			r := c.run("ask", "adding", `{"a":4,"b":4}`, "--key", key)
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != "8" {
				t.Fatalf("atest ask adding {4,4} --key %s (partition %d, owner %s): exit %d, stdout %q, stderr %q",
					key, p, w.id, r.Code, r.Stdout, r.Stderr)
			}
			t.Logf("atest ask --key %s (partition %d on %s) printed 8; the client process took %v", key, p, w.id, r.Took.Round(time.Millisecond))
			r = c.run("ask", "adding", fmt.Sprintf(`{"a":%d,"b":-1}`, 100*(i+1)), "--key", key)
			if want := fmt.Sprint(100*(i+1) - 1); r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
				t.Fatalf("atest ask --key %s: exit %d, stdout %q, want %s; stderr %q", key, r.Code, r.Stdout, want, r.Stderr)
			}
		}

		// send AGENT (cast): three amounts per key, for a key of each node,
		// read back through both nodes.
		want := map[string]string{}
		for _, w := range []*worker{n1, n2} {
			key, _ := v.keyOwnedBy("tally", w.id)
			for _, amount := range []string{"5", "2", "1"} {
				r := c.run("send", "tally", amount, "--key", key)
				if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sent to "+b.topicPrefix+"tally partition ") {
					t.Fatalf("atest send tally %s --key %s: exit %d, stdout %q, stderr %q", amount, key, r.Code, r.Stdout, r.Stderr)
				}
			}
			want[key] = "8"
		}
		waitFor(t, 30*time.Second, "the casts counted in tallies, read through both nodes", func() (bool, string) {
			c.running([]*worker{n1, n2})
			for key, val := range want {
				for _, w := range []*worker{n1, n2} {
					got, err := w.tableValue("tallies", key)
					if err != nil {
						return false, err.Error()
					}
					if got != val {
						return false, fmt.Sprintf("tallies/%s via %s = %s, want %s", key, w.id, got, val)
					}
				}
			}
			return true, ""
		})

		// Join and Map, from a third worker's task.
		out := filepath.Join(t.TempDir(), "join.json")
		n3 := c.start("n3", agenttest.EnvJoin+"=1", agenttest.EnvOut+"="+out)
		var rep agenttest.JoinReport
		readJSON(t, 90*time.Second, out, &rep, n1.proc, n2.proc, n3.proc)
		if rep.JoinErr != "" || len(rep.Join) != agenttest.JoinValues {
			t.Fatalf("Join from n3: %v, error %q", rep.Join, rep.JoinErr)
		}
		for i, got := range rep.Join {
			if got != i+agenttest.JoinB {
				t.Errorf("Join result %d = %d, want %d (results must be in input order): %v", i, got, i+agenttest.JoinB, rep.Join)
			}
		}
		seen := map[int]int{}
		var order []int
		for _, r := range rep.Map {
			if r.Err != "" {
				t.Errorf("Map result %d failed: %s", r.Index, r.Err)
			}
			if r.Value != r.Index+agenttest.JoinB {
				t.Errorf("Map result for index %d = %d, want %d", r.Index, r.Value, r.Index+agenttest.JoinB)
			}
			seen[r.Index]++
			order = append(order, r.Index)
		}
		for i := range agenttest.JoinValues {
			if seen[i] != 1 {
				t.Errorf("Map delivered index %d %d times, want once (arrival order %v)", i, seen[i], order)
			}
		}
		if len(rep.Map) != agenttest.JoinValues {
			t.Errorf("Map delivered %d results, want %d", len(rep.Map), agenttest.JoinValues)
		}
		t.Logf("Map's arrival order: %v", order)
		t.Logf("LATENCY ask through Kafka, from n3's task (3 worker processes): %s", stats(rep.AskMillis))

		// No worker: the request waits in Kafka, and the client times out.
		for _, w := range []*worker{n3, n1, n2} {
			w.proc.StopT(t, 60*time.Second)
		}
		key, _ := v.keyOwnedBy("ask", "n1")
		r := c.run("ask", "adding", `{"a":1,"b":1}`, "--key", key, "--timeout", "300ms")
		if r.Code == 0 || !strings.Contains(r.Stderr, "timed out") {
			t.Fatalf("atest ask --timeout 300ms with no worker: exit %d, stdout %q, stderr %q; want non-zero and \"timed out\"", r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("atest ask --timeout 300ms with no worker: exit %d after %v: %s", r.Code, r.Took.Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	})
}

// TestPIDAcrossProcesses: the direct path, across processes. n1's task
// requests by PID to the grains of n2 (Request answers; SendPID writes n2's
// table; a protobuf message of a type grains do not know is refused with
// an error envelope, and n2 keeps answering; one of a type n2's program
// never registered gets no answer, and n2 survives it and answers the next
// request). Then the test kills n2 with
// SIGKILL and lets the task request by the old PID again: the request
// fails with ErrNodeDead before its own deadline, and once the partition
// moved, looking the PID up again reaches the new owner.
func TestPIDAcrossProcesses(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		c := newCluster(t, b)
		dir := t.TempDir()
		out, goFile := filepath.Join(dir, "pid.json"), filepath.Join(dir, "go")
		n1 := c.start("n1", agenttest.EnvPID+"=1", agenttest.EnvOut+"="+out, agenttest.EnvGo+"="+goFile)
		n2 := c.start("n2")
		c.waitFormed(90*time.Second, n1, n2)

		var rep agenttest.PIDReport
		readJSON(t, 90*time.Second, out, &rep, n1.proc, n2.proc)
		v, err := n1.cluster()
		if err != nil {
			t.Fatal(err)
		}
		if rep.SelfActor != n1.actor {
			t.Errorf("n1's actor address %q, want %q (its --actor)", rep.SelfActor, n1.actor)
		}
		if len(rep.Remote) == 0 {
			t.Fatal("the task found no key owned by n2")
		}
		owner := v.Actives()
		for _, p := range rep.Remote {
			part := kafka.Partition([]byte(p.Key), numPartitions)
			if p.Err != "" || p.Got != p.Want {
				t.Errorf("Request(%s) by PID %s = %d, error %q; want %d", p.Key, p.PID, p.Got, p.Err, p.Want)
			}
			if p.Addr != n2.actor || owner[part] != "n2" {
				t.Errorf("key %s: PID %s, partition %d active on %s; want n2's grain at %s", p.Key, p.PID, part, owner[part], n2.actor)
			}
		}
		t.Logf("requests by PID to %d grains of n2 answered (%d tries in all while n2 loaded its partitions)", len(rep.Remote), rep.Attempts)

		// SendPID wrote n2's shard: read it through both nodes.
		if rep.SendPIDErr != "" {
			t.Fatalf("tally.SendPID: %s", rep.SendPIDErr)
		}
		waitFor(t, 30*time.Second, "the SendPID write in tallies, through both nodes", func() (bool, string) {
			for _, w := range []*worker{n1, n2} {
				got, err := w.tableValue("tallies", rep.SendPIDKey)
				if err != nil {
					return false, err.Error()
				}
				if got != fmt.Sprint(rep.SendPIDAmount) {
					return false, fmt.Sprintf("tallies/%s via %s = %s, want %d", rep.SendPIDKey, w.id, got, rep.SendPIDAmount)
				}
			}
			return true, ""
		})

		// The unknown message type: refused with an error envelope, and n2
		// still answers.
		if rep.UnknownReplyType != "*envelopepb.Envelope" || rep.UnknownError == "" || rep.UnknownErr != "" {
			t.Errorf("wrapperspb.StringValue to %s: reply %s with Error %q, future error %q; want an *envelopepb.Envelope with Error set",
				rep.Remote[0].PID, rep.UnknownReplyType, rep.UnknownError, rep.UnknownErr)
		}
		t.Logf("unknown message type refused: %s", rep.UnknownError)
		if a := rep.After; a.Err != "" || a.Got != a.Want {
			t.Errorf("request by PID after the unknown message: %d, error %q; want %d", a.Got, a.Err, a.Want)
		}
		if ok, why := n2.ready(); !ok || n2.proc.Exited() {
			t.Errorf("n2 after the unknown message: %s (%s)", why, n2.proc.DescribeExit())
		}
		// A type n2's program never registered: protoactor on n2 cannot decode
		// it. n2 must survive it, and its grains answer requests by PID again.
		t.Logf("message of a type n2 never registered: future ended after %.0fms with reply %s, error %q",
			rep.ForeignMillis, rep.ForeignReplyType, rep.ForeignErr)
		t.Logf("first request by PID after it: got %d, error %q (%.1fms); answered again after %d tries, %.2fs",
			rep.AfterForeign.Got, rep.AfterForeign.Err, rep.AfterForeign.Millis, rep.AfterForeignTries, rep.AfterForeignSeconds)
		if a := rep.AfterForeignOK; a.Err != "" || a.Got != a.Want {
			t.Errorf("n2's grain never answered a request by PID again after a message of an unregistered type: %+v", a)
		}
		if ok, why := n2.ready(); !ok || n2.proc.Exited() {
			t.Errorf("n2 after a message of an unregistered type: %s (%s)", why, n2.proc.DescribeExit())
		}
		t.Logf("LATENCY request by PID, n1 → n2 (separate processes): %s", stats(rep.PIDMillis))
		t.Logf("LATENCY ask through Kafka, n1 → n2's partitions (separate processes): %s", stats(rep.AskMillis))

		// Kill n2; the task requests by the old PID.
		killedAt := time.Now()
		n2.proc.KillT(t)
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var dead agenttest.DeadReport
		readJSON(t, 90*time.Second, out+agenttest.DeadSuffix, &dead, n1.proc)
		t.Logf("request by the old PID %s: started %v after the kill, failed after %v (%v after the kill): %s",
			dead.PID, dead.Start.Sub(killedAt).Round(time.Millisecond), dead.End.Sub(dead.Start).Round(time.Millisecond),
			dead.End.Sub(killedAt).Round(time.Millisecond), dead.Err)
		if !dead.IsNodeDead {
			t.Errorf("request to the killed node's PID: error %q (ErrTimeout %v, ErrNoOwner %v, ErrRemote %v), got %d; want errors.Is(err, mephisto.ErrNodeDead)",
				dead.Err, dead.IsTimeout, dead.IsNoOwner, dead.IsRemote, dead.Got)
		}
		if !dead.End.Before(dead.Deadline) {
			t.Errorf("request to the killed node's PID ended at %v, not before its deadline %v", dead.End, dead.Deadline)
		}
		t.Logf("PID(%s) right after: %q (ErrNodeDead: %v)", dead.Key, dead.LookupErr, dead.LookupIsDead)
		if r := dead.Recovered; r.Err != "" || r.Got != r.Want || r.Addr != n1.actor {
			t.Errorf("request by a fresh PID after the failover: %+v; want %d from n1 (%s)", r, r.Want, n1.actor)
		}
		t.Logf("key %s reachable by PID again %.2fs after the failed request (%d failed tries meanwhile)", dead.Key, dead.RecoveredAfter, dead.RecoverErrs)
		c.running([]*worker{n1})
	})
}
