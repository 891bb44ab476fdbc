package mephisto_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/timer"
)

type runCounter struct {
	mu   sync.Mutex
	runs map[string]int // node → runs
}

func (c *runCounter) inc(node string) {
	c.mu.Lock()
	c.runs[node]++
	c.mu.Unlock()
}

func (c *runCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.runs {
		out[k] = v
	}
	return out
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestTimersOnLeader: with a fake clock, a timer fires on every node each
// period, an OnLeader timer on exactly one; when the leader stops, another
// node takes the OnLeader timer over.
func TestTimersOnLeader(t *testing.T) {
	b := startBroker(t)
	clock := timer.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	every, leader := &runCounter{runs: map[string]int{}}, &runCounter{runs: map[string]int{}}
	seed := freeGossipAddr(t)
	type node struct {
		app    *mephisto.App
		cancel context.CancelFunc
		done   chan error
	}
	var nodes []node
	for i, id := range []string{"n1", "n2", "n3"} {
		gossip := seed
		if i > 0 {
			gossip = freeGossipAddr(t)
		}
		app := wordCountApp(t, b.Addr(), t.TempDir())
		app.Configure(mephisto.WithNodeID(id), mephisto.WithGossip(gossip), mephisto.WithJoin(seed),
			mephisto.WithSessionTimeout(2*time.Second), mephisto.WithClock(clock))
		app.Timer("everywhere", time.Minute, func(context.Context) error { every.inc(id); return nil })
		app.Timer("singleton", time.Minute, func(context.Context) error { leader.inc(id); return nil }, mephisto.OnLeader())
		ctx, cancel := context.WithCancel(context.Background())
		n := node{app: app, cancel: cancel, done: make(chan error, 1)}
		go func() { n.done <- app.Run(ctx) }()
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.cancel()
			<-n.done
		}
	})
	allReady := func(ns []node) func() (bool, string) {
		return func() (bool, string) {
			for _, n := range ns {
				if ok, why := n.app.Ready(); !ok {
					return false, why
				}
				v, err := getCluster(n.app.WebAddr())
				if err != nil || len(v.Nodes) != len(ns) {
					return false, fmt.Sprintf("plan nodes %d, %v", len(v.Nodes), err)
				}
			}
			return true, ""
		}
	}
	waitFor(t, 60*time.Second, "3 nodes ready", allReady(nodes))
	// Each timer waits on the clock; advance one period at a time.
	tick := func(wantEvery, wantLeader int) {
		t.Helper()
		waitFor(t, 10*time.Second, "timers waiting on the clock", func() (bool, string) {
			return clock.Waiters() >= 2*len(nodes), fmt.Sprintf("%d waiters", clock.Waiters())
		})
		clock.Advance(time.Minute)
		waitFor(t, 10*time.Second, "timer runs", func() (bool, string) {
			e, l := sum(every.snapshot()), sum(leader.snapshot())
			return e == wantEvery && l == wantLeader, fmt.Sprintf("everywhere %d, singleton %d", e, l)
		})
	}
	tick(3, 1)
	tick(6, 2)
	runs := leader.snapshot()
	if len(runs) != 1 {
		t.Fatalf("OnLeader timer ran on %v, want one node", runs)
	}
	var first string
	for id := range runs {
		first = id
	}
	// Stop the leader: its partitions (and leadership) move to a survivor.
	var rest []node
	for _, n := range nodes {
		if n.app.Config().NodeID == first {
			n.cancel()
			if err := <-n.done; err != nil {
				t.Fatal(err)
			}
			n.done <- nil // for Cleanup
		} else {
			rest = append(rest, n)
		}
	}
	nodes = rest
	waitFor(t, 60*time.Second, "2 nodes ready without the old leader", allReady(rest))
	tick(6+2, 3)
	after := leader.snapshot()
	if after[first] != runs[first] || len(after) != 2 {
		t.Fatalf("after the leader stopped: %v (before %v)", after, runs)
	}
}
