package mephisto_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// globalApp is a node of an app whose agent counts every event of topic
// users in global table globalusers (key "users", by Merge) and records
// each user in it too (key "user:<id>", by Set).
func globalApp(t testing.TB, broker, dataDir, id, gossip, seed string) (*mephisto.App, *mephisto.GlobalTable[string, int64], *atomic.Int64) {
	app := mephisto.New("gt", mephisto.WithBrokers(broker), mephisto.WithDataDir(dataDir),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(8), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithNodeID(id),
		mephisto.WithGossip(gossip), mephisto.WithJoin(seed), mephisto.WithSessionTimeout(6*time.Second))
	users := mephisto.NewTopic(app, "users", codec.String(), codec.String())
	g := mephisto.NewGlobalTable(app, "globalusers", codec.String(), codec.Int64(), mephisto.MergeWith(mephisto.Sum[int64]))
	// The change hook follows the counter as this node's copy applies it.
	var seen atomic.Int64
	g.OnChange(func(key string, v int64, deleted bool) {
		if key == "users" && !deleted {
			seen.Store(v)
		}
	})
	mephisto.NewAgent(app, "process", users, func(ctx mephisto.Context, id, _ string) error {
		if err := g.Merge(ctx, "users", 1); err != nil {
			return err
		}
		return g.Set(ctx, "user:"+id, 1)
	})
	return app, g, &seen
}

// TestGlobalTableAcrossNodes: three nodes in one process increment one
// key of a global table from every partition at once: every node's copy
// ends exactly at the number of events (no increment lost to a race), and
// holds every key any node set.
func TestGlobalTableAcrossNodes(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	type node struct {
		app  *mephisto.App
		g    *mephisto.GlobalTable[string, int64]
		seen *atomic.Int64 // the counter as the change hook saw it last
	}
	var nodes []node
	for i, id := range []string{"n1", "n2", "n3"} {
		gossip := seed
		if i > 0 {
			gossip = freeGossipAddr(t)
		}
		app, g, seen := globalApp(t, b.Addr(), t.TempDir(), id, gossip, seed)
		nodes = append(nodes, node{app, g, seen})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { done <- n.app.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range nodes {
			if err := <-done; err != nil {
				t.Errorf("app.Run: %v", err)
			}
		}
	})
	waitFor(t, 90*time.Second, "three nodes ready", func() (bool, string) {
		for _, n := range nodes {
			if ok, why := n.app.Ready(); !ok {
				return false, why
			}
			v, err := getCluster(n.app.WebAddr())
			if err != nil || len(v.Nodes) != 3 {
				return false, fmt.Sprintf("cluster view %+v %v", v, err)
			}
		}
		return true, ""
	})

	const users = 2000
	recs := make([][2]string, users)
	for i := range recs {
		recs[i] = [2]string{fmt.Sprintf("u%04d", i), "{}"}
	}
	produce(t, b.Addr(), "users", recs)
	for _, n := range nodes {
		waitFor(t, 60*time.Second, n.app.Config().NodeID+"'s copy counts every event", func() (bool, string) {
			got, err := n.g.Get(context.Background(), "users")
			if err != nil {
				return false, err.Error()
			}
			if got > users {
				t.Fatalf("users = %d > %d events: an increment was applied twice without a failure", got, users)
			}
			return got == users, fmt.Sprintf("users = %d", got)
		})
		waitFor(t, 30*time.Second, n.app.Config().NodeID+"'s change hook saw the last increment", func() (bool, string) {
			got := n.seen.Load()
			return got == users, fmt.Sprintf("hook saw users = %d", got)
		})
		waitFor(t, 30*time.Second, n.app.Config().NodeID+"'s copy holds every user key", func() (bool, string) {
			seen, last := 0, ""
			err := n.g.RangePrefix(context.Background(), "user:", func(k string, v int64) bool {
				if k <= last {
					t.Fatalf("RangePrefix gave %q after %q: not in key order", k, last)
				}
				last = k
				seen++
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			return seen == users, fmt.Sprintf("%d user keys of %d", seen, users)
		})
	}

	// From outside a handler: Set and Delete are sent at once, and every
	// copy shows them.
	if err := nodes[0].g.Set(context.Background(), "motd", 42); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].g.Delete(context.Background(), "user:u0000"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, 30*time.Second, n.app.Config().NodeID+" sees a task's Set and Delete", func() (bool, string) {
			v, ok, err := n.g.Lookup(context.Background(), "motd")
			if err != nil || !ok || v != 42 {
				return false, fmt.Sprintf("motd = %d %v %v", v, ok, err)
			}
			_, ok, err = n.g.Lookup(context.Background(), "user:u0000")
			return err == nil && !ok, fmt.Sprintf("user:u0000 still there (%v)", err)
		})
	}

	// A node that joins later is ready only once its copy has caught up:
	// the moment it says ready, it reads what the others do.
	app, g, seen := globalApp(t, b.Addr(), t.TempDir(), "n4", freeGossipAddr(t), seed)
	go func() { done <- app.Run(ctx) }()
	nodes = append(nodes, node{app, g, seen})
	waitFor(t, 90*time.Second, "n4 ready", app.Ready)
	if got, err := g.Get(context.Background(), "users"); err != nil || got != users {
		t.Errorf("n4 says ready with users = %d (%v) in its copy, want %d", got, err, users)
	}
}

// TestGlobalTableErrors: Merge without MergeWith, and reads while no
// worker runs, are errors that say so.
func TestGlobalTableErrors(t *testing.T) {
	app := mephisto.New("gterr")
	g := mephisto.NewGlobalTable(app, "g", codec.String(), codec.Int64())
	if err := g.Merge(context.Background(), "k", 1); !errors.Is(err, mephisto.ErrNoMerge) {
		t.Errorf("Merge without MergeWith: %v, want ErrNoMerge", err)
	}
	if _, err := g.Get(context.Background(), "k"); !errors.Is(err, mephisto.ErrNotRunning) {
		t.Errorf("Get before Run: %v, want ErrNotRunning", err)
	}
}
