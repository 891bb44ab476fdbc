package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/web"
)

const dashPartitions = 4

// dashApp is the dashboard tests' app: every record of topic in adds 1
// to counts[key] in agent count, except a record whose value is "poison",
// which fails its handler (and so goes to the dead-letter topic).
func dashApp(t *testing.T, broker, id, gossip, seed string) *mephisto.App {
	app := mephisto.New("dash", mephisto.WithBrokers(broker), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(dashPartitions), mephisto.WithLogger(proctest.Logger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithMaxAttempts(1),
		mephisto.WithNodeID(id), mephisto.WithGossip(gossip), mephisto.WithJoin(seed), mephisto.WithSessionTimeout(6*time.Second))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", in, func(ctx mephisto.Context, key, value string) error {
		if value == "poison" {
			return errors.New("poison record")
		}
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})
	return app
}

// dashboard reads GET /dashboard.json from the node at addr.
func dashboard(addr string) (web.Dashboard, proctest.ClusterView, error) {
	var d web.Dashboard
	var v proctest.ClusterView
	resp, err := http.Get("http://" + addr + "/dashboard.json")
	if err != nil {
		return d, v, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return d, v, err
	}
	if resp.StatusCode != 200 {
		return d, v, fmt.Errorf("GET /dashboard.json: HTTP %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, v, err
	}
	return d, v, json.Unmarshal(d.Cluster, &v)
}

// consistent says what is wrong ("" if nothing) with d, read from node
// self, for a cluster of exactly the nodes ids: each node alive,
// reachable, ready and in the generation of the view; the partitions
// each node says it is active for and keeps standbys of are exactly
// those the view gives it, each processing, each standby caught up.
func consistent(d web.Dashboard, v proctest.ClusterView, self string, ids []string) string {
	if d.Node != self {
		return fmt.Sprintf("answered by %q, want %q", d.Node, self)
	}
	if why := v.Check(ids, dashPartitions); why != "" {
		return "cluster: " + why
	}
	var got []string
	actives, standbys := map[string][]int32{}, map[string][]int32{}
	for _, p := range v.Partitions {
		actives[p.Active] = append(actives[p.Active], p.Partition)
		for _, s := range p.Standbys {
			standbys[s] = append(standbys[s], p.Partition)
		}
	}
	for _, n := range d.Nodes {
		got = append(got, n.ID)
		if !n.Alive || !n.Reachable || !n.Ready || n.Error != "" {
			return fmt.Sprintf("node %s: alive %v reachable %v ready %v (%s) error %q", n.ID, n.Alive, n.Reachable, n.Ready, n.Why, n.Error)
		}
		if n.Generation != v.Generation {
			return fmt.Sprintf("node %s in generation %d, the view in %d", n.ID, n.Generation, v.Generation)
		}
		var act, sb []int32
		for _, a := range n.Active {
			if a.State != "processing" {
				return fmt.Sprintf("node %s: partition %d %s", n.ID, a.Partition, a.State)
			}
			act = append(act, a.Partition)
		}
		for _, s := range n.Standby {
			if !s.CaughtUp || len(s.Tables) != 1 || s.Tables[0] != (web.TableLag{Table: "counts", Lag: 0}) {
				return fmt.Sprintf("node %s: standby %+v not caught up", n.ID, s)
			}
			sb = append(sb, s.Partition)
		}
		if !slices.Equal(act, actives[n.ID]) || !slices.Equal(sb, standbys[n.ID]) {
			return fmt.Sprintf("node %s says active %v standby %v; the view says %v and %v", n.ID, act, sb, actives[n.ID], standbys[n.ID])
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, ids) {
		return fmt.Sprintf("nodes %v, want %v", got, ids)
	}
	return ""
}

// TestDashboardJSONCluster runs three nodes in this process and checks
// GET /dashboard.json on each against GET /cluster and against what was
// produced: who is active and standby for each partition (each node's own
// account matching the view), no recovery left (a fresh cluster replays
// nothing), the agent's events counted once on the node active for each
// record's partition, the one dead letter counted and logged with its
// record's coordinates on that node, the table's writes; then one node
// stops and the dashboard of another shows the two left, the partitions
// moved.
func TestDashboardJSONCluster(t *testing.T) {
	b, err := kafka.StartBroker(kafka.BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ids := []string{"n1", "n2", "n3"}
	seed := proctest.FreeAddrT(t, true)
	apps := map[string]*mephisto.App{}
	stops := map[string]func(){}
	for i, id := range ids {
		gossip := seed
		if i > 0 {
			gossip = proctest.FreeAddrT(t, true)
		}
		app := dashApp(t, b.Addr(), id, gossip, seed)
		apps[id] = app
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		stopped := false
		stops[id] = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: app.Run: %v", id, err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("%s did not stop", id)
			}
		}
		t.Cleanup(stops[id])
	}
	nodes := func(ids ...string) []proctest.Node {
		var out []proctest.Node
		for _, id := range ids {
			out = append(out, proctest.Node{ID: id, Web: apps[id].WebAddr()})
		}
		return out
	}
	// Ready first: a node's web address is set once it runs (and read
	// safely after Ready has said so).
	proctest.WaitForT(t, 90*time.Second, "three nodes ready", func() (bool, string) {
		for _, id := range ids {
			if ok, why := apps[id].Ready(); !ok {
				return false, id + ": " + why
			}
		}
		return true, ""
	})
	proctest.WaitForT(t, 90*time.Second, "three nodes formed, every dashboard consistent", func() (bool, string) {
		if _, why := proctest.Formed(nodes(ids...), dashPartitions, true); why != "" {
			return false, why
		}
		for _, id := range ids {
			d, v, err := dashboard(apps[id].WebAddr())
			if err != nil {
				return false, err.Error()
			}
			if why := consistent(d, v, id, ids); why != "" {
				return false, id + "'s dashboard: " + why
			}
		}
		return true, ""
	})

	// The poison record alone first: its grain fails, restarts, and
	// dead-letters it; then 30 good ones.
	poison := produceKV(t, b.Addr(), "in", [][2]string{{"bad", "poison"}})[0]
	var good [][2]string
	for i := range 30 {
		good = append(good, [2]string{"k" + strconv.Itoa(i), "x"})
	}
	proctest.WaitForT(t, 60*time.Second, "the poison record dead-lettered", func() (bool, string) {
		d, _, err := dashboard(apps["n1"].WebAddr())
		if err != nil {
			return false, err.Error()
		}
		var dead int64
		for _, n := range d.Nodes {
			for _, a := range n.Agents {
				dead += a.DeadLetters
			}
		}
		return dead == 1, fmt.Sprintf("%d dead letters", dead)
	})
	produceKV(t, b.Addr(), "in", good)

	v, err := proctest.Cluster(apps["n1"].WebAddr())
	if err != nil {
		t.Fatal(err)
	}
	owner := v.Actives()
	wantEvents := map[string]int64{}
	for _, r := range append([][2]string{{"bad", "poison"}}, good...) {
		wantEvents[owner[kafka.Partition([]byte(r[0]), dashPartitions)]]++
	}
	poisonNode := owner[poison.partition]

	var last web.Dashboard
	proctest.WaitForT(t, 60*time.Second, "every dashboard counts every record, lag 0", func() (bool, string) {
		for _, id := range ids {
			d, v, err := dashboard(apps[id].WebAddr())
			if err != nil {
				return false, err.Error()
			}
			if why := consistent(d, v, id, ids); why != "" {
				return false, id + "'s dashboard: " + why
			}
			for _, p := range v.Partitions {
				if p.Lag != 0 {
					return false, fmt.Sprintf("%s: partition %d lag %d", id, p.Partition, p.Lag)
				}
			}
			var writes int64
			for _, n := range d.Nodes {
				if len(n.Agents) != 1 || n.Agents[0].Events != wantEvents[n.ID] {
					return false, fmt.Sprintf("%s's dashboard: node %s agents %+v, want %d events", id, n.ID, n.Agents, wantEvents[n.ID])
				}
				writes += n.Tables[0].Writes
			}
			if writes != 30 {
				return false, fmt.Sprintf("%s's dashboard: %d table writes, want 30", id, writes)
			}
			last = d
		}
		return true, ""
	})

	var topo mephisto.Topology
	if err := json.Unmarshal(last.Topology, &topo); err != nil || topo.App != "dash" || len(topo.Agents) != 1 || len(topo.Tables) != 1 {
		t.Errorf("topology = %s (%v), want GET /topology's body", last.Topology, err)
	}
	for _, n := range last.Nodes {
		a := n.Agents[0]
		wantDead := int64(0)
		if n.ID == poisonNode {
			wantDead = 1
		}
		if a.Name != "count" || a.Topic != "in" || a.DeadLetters != wantDead || a.Skipped != 0 || a.Errors != wantDead || a.Rate < 0 {
			t.Errorf("node %s: agent %+v, want count on in, %d events, %d dead letters", n.ID, a, wantEvents[n.ID], wantDead)
		}
		if len(n.Tables) != 1 || n.Tables[0].Name != "counts" {
			t.Errorf("node %s: tables %+v", n.ID, n.Tables)
		}
		for _, ap := range n.Active {
			if want := []web.TableRecovery{{Table: "counts", Records: 0, Remaining: 0}}; !reflect.DeepEqual(ap.Recovery, want) {
				t.Errorf("node %s partition %d: recovery %+v, want %+v", n.ID, ap.Partition, ap.Recovery, want)
			}
		}
		// The dead letter's warning, with its record's coordinates, on
		// the node that sent it (and the grain's failure before it).
		var deadMsg *web.LogRecord
		failed := 0
		for i, e := range n.Errors {
			switch {
			case strings.HasPrefix(e.Msg, "sending the record to the dead-letter topic"):
				deadMsg = &n.Errors[i]
			case e.Msg == "grain failed; restarting it from its last commit":
				failed++
			}
		}
		if n.ID != poisonNode {
			if deadMsg != nil || failed != 0 {
				t.Errorf("node %s: errors %+v, want no dead letter nor failure", n.ID, n.Errors)
			}
			continue
		}
		if deadMsg == nil || failed != 1 || n.Restarts != 1 || n.ErrorsTotal < 2 {
			t.Fatalf("node %s: errors %+v (%d in all), restarts %d; want the dead letter and one failure", n.ID, n.Errors, n.ErrorsTotal, n.Restarts)
		}
		want := map[string]string{"agent": "count", "topic": "in", "offset": strconv.FormatInt(poison.offset, 10),
			"partition": strconv.Itoa(int(poison.partition)), "dead_letter_topic": "dash-count-dead-letters"}
		for k, w := range want {
			if deadMsg.Attrs[k] != w {
				t.Errorf("dead letter record: %s=%q, want %q (attrs %v)", k, deadMsg.Attrs[k], w, deadMsg.Attrs)
			}
		}
		if !strings.Contains(deadMsg.Attrs["err"], "poison record") || deadMsg.Level != "WARN" {
			t.Errorf("dead letter record: %+v, want a WARN naming the handler's error", deadMsg)
		}
		for _, ap := range n.Active {
			want := int64(0)
			if ap.Partition == poison.partition {
				want = 1
			}
			if ap.Restarts != want {
				t.Errorf("node %s partition %d: %d restarts, want %d", n.ID, ap.Partition, ap.Restarts, want)
			}
		}
	}

	// n3 stops: n1's dashboard shows n1 and n2, every partition on one
	// of them.
	before := owner
	stops["n3"]()
	proctest.WaitForT(t, 60*time.Second, "n1's dashboard without n3", func() (bool, string) {
		d, v, err := dashboard(apps["n1"].WebAddr())
		if err != nil {
			return false, err.Error()
		}
		why := consistent(d, v, "n1", []string{"n1", "n2"})
		return why == "", why
	})
	_, v, _ = dashboard(apps["n1"].WebAddr())
	for p, was := range before {
		if now := v.Actives()[p]; was == "n3" && now != "n1" && now != "n2" {
			t.Errorf("partition %d was on n3, now on %q", p, now)
		}
	}
}

type produced struct {
	partition int32
	offset    int64
}

// produceKV sends key/value records, each to the partition its key
// hashes to, and returns where each went.
func produceKV(t *testing.T, addr, topic string, kvs [][2]string) []produced {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("dash-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out []produced
	for _, kv := range kvs {
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(kv[0]), Value: sarama.StringEncoder(kv[1]),
			Partition: kafka.Partition([]byte(kv[0]), dashPartitions)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, produced{part, off})
	}
	return out
}
