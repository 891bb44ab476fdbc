package mephisto_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// TestSpawnTopicAgentOnRunningCluster: two running nodes spawn an agent on
// a topic neither consumed before; without a restart they rejoin the group
// and process it, sharing its partitions.
func TestSpawnTopicAgentOnRunningCluster(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	var apps []*mephisto.App
	for i, id := range []string{"n1", "n2"} {
		gossip := seed
		if i > 0 {
			gossip = freeGossipAddr(t)
		}
		app := wordCountApp(t, b.Addr(), t.TempDir())
		app.Configure(mephisto.WithNodeID(id), mephisto.WithGossip(gossip), mephisto.WithJoin(seed))
		apps = append(apps, app)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(apps))
	for _, app := range apps {
		go func() { done <- app.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range apps {
			<-done
		}
	})
	ready := func() (bool, string) {
		for _, app := range apps {
			if ok, why := app.Ready(); !ok {
				return false, why
			}
		}
		return true, ""
	}
	waitFor(t, 60*time.Second, "two nodes ready", ready)
	var processed [2]atomic.Int64
	for i, app := range apps {
		late := mephisto.NewTopic(app, "late", codec.String(), codec.String())
		if _, err := mephisto.SpawnAgent(app, "late-agent", late, func(ctx mephisto.Context, k, _ string) error {
			processed[i].Add(1)
			return nil
		}); err != nil {
			t.Fatalf("spawn: %v", err)
		}
	}
	waitFor(t, 60*time.Second, "both nodes ready after the rejoin", ready)
	var recs [][2]string
	for i := 0; i < 200; i++ {
		recs = append(recs, [2]string{fmt.Sprint("key", i), "v"})
	}
	produce(t, b.Addr(), "late", recs)
	waitFor(t, 60*time.Second, "every record of the new topic processed", func() (bool, string) {
		n1, n2 := processed[0].Load(), processed[1].Load()
		return n1+n2 >= 200, fmt.Sprintf("n1 %d, n2 %d", n1, n2)
	})
	if processed[0].Load() == 0 || processed[1].Load() == 0 {
		t.Errorf("the new topic was not shared: n1 %d, n2 %d", processed[0].Load(), processed[1].Load())
	}
}
