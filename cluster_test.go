package mephisto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// freeGossipAddr returns a loopback address free for TCP and UDP.
func freeGossipAddr(t testing.TB) string { return proctest.FreeAddrT(t, true) }

type clusterView struct {
	Generation int32 `json:"generation"`
	Nodes      []struct {
		ID    string `json:"id"`
		Web   string `json:"web"`
		Alive bool   `json:"alive"`
	} `json:"nodes"`
	Partitions []struct {
		Partition int32    `json:"partition"`
		Active    string   `json:"active"`
		Standbys  []string `json:"standbys"`
	} `json:"partitions"`
}

func getCluster(web string) (clusterView, error) {
	var v clusterView
	resp, err := http.Get("http://" + web + "/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// TestThreeNodeCluster: three nodes in one process share the partitions,
// keep one standby of each shard on another node, and every node answers
// every key.
func TestThreeNodeCluster(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	var apps []*mephisto.App
	for i, id := range []string{"n1", "n2", "n3"} {
		gossip := seed
		if i > 0 {
			gossip = freeGossipAddr(t)
		}
		app := wordCountApp(t, b.Addr(), t.TempDir())
		app.Configure(mephisto.WithNodeID(id), mephisto.WithGossip(gossip), mephisto.WithJoin(seed),
			mephisto.WithSessionTimeout(6*time.Second))
		apps = append(apps, app)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	waitFor(t, 60*time.Second, "one plan with 3 nodes, each active for some partitions and ready", func() (bool, string) {
		var gen int32 = -1
		for _, app := range apps {
			if ok, why := app.Ready(); !ok {
				return false, why
			}
			v, err := getCluster(app.WebAddr())
			if err != nil {
				return false, err.Error()
			}
			if len(v.Nodes) != 3 {
				return false, fmt.Sprintf("%d nodes in plan", len(v.Nodes))
			}
			if gen >= 0 && v.Generation != gen {
				return false, "generations differ"
			}
			gen = v.Generation
		}
		return true, ""
	})
	v, _ := getCluster(apps[0].WebAddr())
	perNode := map[string]int{}
	for _, p := range v.Partitions {
		if len(p.Standbys) != 1 || p.Standbys[0] == p.Active {
			t.Errorf("partition %d: active %s standbys %v", p.Partition, p.Active, p.Standbys)
		}
		perNode[p.Active]++
	}
	if len(v.Partitions) != 4 || len(perNode) != 3 {
		t.Errorf("plan: %+v", v)
	}
	recs, truth := corpus(400)
	produce(t, b.Addr(), "lines", recs)
	for _, app := range apps {
		waitFor(t, 60*time.Second, "every node answers every key", func() (bool, string) {
			return tableEquals(app.WebAddr(), "word_counts", truth)
		})
	}
}
