package mephisto_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type addReq struct {
	A int `json:"a"`
	B int `json:"b"`
}

func adderApp(t testing.TB, broker, node, gossip, seed string, block <-chan struct{}) (*mephisto.App, *mephisto.ReplyAgent[string, addReq, int]) {
	app := mephisto.New("adder", mephisto.WithBrokers(broker), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond), mephisto.WithNodeID(node),
		mephisto.WithGossip(gossip), mephisto.WithJoin(seed), mephisto.WithSessionTimeout(3*time.Second), mephisto.WithMaxAttempts(1))
	topic := mephisto.NewTopic(app, "adding", codec.String(), codec.JSON[addReq]())
	agent := mephisto.NewReplyAgent(app, "adding", topic, func(ctx mephisto.Context, _ string, r addReq) (int, error) {
		switch {
		case r.A < 0:
			return 0, errors.New("negative numbers are not allowed")
		case r.A == 999:
			<-block
		}
		return r.A + r.B, nil
	}, mephisto.OnError(mephisto.Skip))
	return app, agent
}

// TestAskAcrossNodes: Ask, Join and Map through Kafka, for keys owned by
// each of two nodes; errors and timeouts surface. (Requests by PID across
// nodes need the nodes in separate processes: see internal/clustertest.)
func TestAskAcrossNodes(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	block := make(chan struct{})
	defer close(block)
	app1, add1 := adderApp(t, b.Addr(), "n1", seed, seed, block)
	app2, add2 := adderApp(t, b.Addr(), "n2", freeGossipAddr(t), seed, block)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- app1.Run(ctx) }()
	go func() { done <- app2.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	waitFor(t, 60*time.Second, "two nodes sharing the partitions", func() (bool, string) {
		for _, app := range []*mephisto.App{app1, app2} {
			if ok, why := app.Ready(); !ok {
				return false, why
			}
			v, err := getCluster(app.WebAddr())
			if err != nil || len(v.Nodes) != 2 {
				return false, fmt.Sprintf("nodes %d %v", len(v.Nodes), err)
			}
		}
		return true, ""
	})

	// Keys owned by each node: ask from n1 for all of them.
	owners := map[string]bool{}
	for i := 0; i < 12; i++ {
		key := "k" + strconv.Itoa(i)
		owner, err := ownerOf(app1.WebAddr(), key)
		if err != nil {
			t.Fatal(err)
		}
		owners[owner] = true
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := add1.Ask(rctx, key, addReq{A: i, B: 100})
		rcancel()
		if err != nil || got != i+100 {
			t.Fatalf("Ask(%s) = %d, %v", key, got, err)
		}
	}
	if len(owners) != 2 {
		t.Fatalf("keys owned by %d nodes, want both", len(owners))
	}

	jctx, jcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer jcancel()
	got, err := add1.Join(jctx, addReq{1, 1}, addReq{2, 2}, addReq{3, 3}, addReq{4, 4}, addReq{5, 5})
	if err != nil || fmt.Sprint(got) != "[2 4 6 8 10]" {
		t.Fatalf("Join = %v, %v (want input order)", got, err)
	}
	seen := map[int]int{}
	for r := range add2.Map(jctx, addReq{10, 1}, addReq{20, 2}, addReq{30, 3}) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		seen[r.Index] = r.Value
	}
	if fmt.Sprint(seen) != "map[0:11 1:22 2:33]" {
		t.Fatalf("Map = %v", seen)
	}

	// A handler error comes back as ErrRemote (once the Skip policy gives
	// up on it).
	if _, err := add1.Ask(jctx, "neg", addReq{A: -1}); !errors.Is(err, mephisto.ErrRemote) {
		t.Errorf("Ask with a failing handler: %v", err)
	}
	// Timeouts surface as ErrTimeout.
	short, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if _, err := add1.Ask(short, "slow", addReq{A: 999}); !errors.Is(err, mephisto.ErrTimeout) {
		t.Errorf("Ask past its deadline: %v", err)
	}
}

// ownerOf returns the node active for key's partition of "adding".
func ownerOf(web, key string) (string, error) {
	v, err := getCluster(web)
	if err != nil {
		return "", err
	}
	p := kafka.Partition([]byte(key), int32(len(v.Partitions)))
	for _, pp := range v.Partitions {
		if pp.Partition == p {
			return pp.Active, nil
		}
	}
	return "", fmt.Errorf("no partition %d in %+v", p, v)
}

// TestRequestByPID: a request straight to the grain that owns a key, its
// handler's error, and a protobuf message of a type grains do not know —
// refused with an error, and the node keeps working.
func TestRequestByPID(t *testing.T) {
	b := startBroker(t)
	app, add := adderApp(t, b.Addr(), "n1", "", "", nil)
	app.Configure(mephisto.WithActorAddr("127.0.0.1:0"))
	runApp(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 8; i++ {
		key := "k" + strconv.Itoa(i)
		pid, err := add.PID(key)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := add.Request(ctx, pid, key, addReq{A: i, B: 1000}); err != nil || got != i+1000 {
			t.Fatalf("Request(%s) by PID %v = %d, %v", key, pid, got, err)
		}
	}
	pid, _ := add.PID("neg")
	if _, err := add.Request(ctx, pid, "neg", addReq{A: -1}); !errors.Is(err, mephisto.ErrRemote) {
		t.Errorf("Request with a failing handler: %v", err)
	}
	pid, _ = add.PID("k1")
	res, err := app.ActorSystem().Root.RequestFuture(pid, wrapperspb.String("hello"), 5*time.Second).Result()
	if env, ok := res.(*envelopepb.Envelope); err != nil || !ok || env.Error == "" {
		t.Errorf("unknown message type: reply %v, %v", res, err)
	}
	if v, err := add.Request(ctx, pid, "k1", addReq{A: 1, B: 2}); err != nil || v != 3 {
		t.Errorf("after an unknown message: %d, %v", v, err)
	}
}

// TestSendReplyToTopic: replies go to another agent's topic, keyed like the
// request, where that agent picks them up.
func TestSendReplyToTopic(t *testing.T) {
	b := startBroker(t)
	app, add := adderApp(t, b.Addr(), "n1", "", "", nil)
	sums := mephisto.NewTopic(app, "sums", codec.String(), codec.JSON[int]())
	got := make(chan string, 10)
	mephisto.NewAgent(app, "collect", sums, func(_ mephisto.Context, k string, v int) error {
		got <- fmt.Sprintf("%s=%d", k, v)
		return nil
	})
	runApp(t, app)
	if err := add.SendReplyTo(context.Background(), "x", addReq{A: 20, B: 22}, "sums"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != "x=42" {
			t.Fatalf("reply = %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reply on the reply-to topic")
	}
}

// TestDirectPathRules: without remote, the PID of a key this node owns is
// local and works; a batch agent refuses direct messages; a concurrent
// agent may not write tables by PID either.
func TestDirectPathRules(t *testing.T) {
	b := startBroker(t)
	app, add := adderApp(t, b.Addr(), "n1", "", "", nil) // no WithActorAddr: no remote
	in := mephisto.NewTopic(app, "batched", codec.String(), codec.String())
	batched := mephisto.NewBatchAgent(app, "batched", in, 10, time.Second,
		func(mephisto.Context, []mephisto.KV[string, string]) error { return nil })
	conc := mephisto.NewTopic(app, "conc", codec.String(), codec.String())
	tb := mephisto.NewTable(app, "conc_table", codec.String(), codec.Int64())
	writer := mephisto.NewReplyAgent(app, "writer", conc, func(ctx mephisto.Context, k, _ string) (string, error) {
		return "", tb.Set(ctx, k, 1)
	}, mephisto.Concurrency(2))
	runApp(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := add.PID("k")
	if err != nil {
		t.Fatalf("local PID without remote: %v", err)
	}
	if got, err := add.Request(ctx, pid, "k", addReq{A: 1, B: 2}); err != nil || got != 3 {
		t.Fatalf("Request to a local PID: %d, %v", got, err)
	}
	pid, _ = batched.PID("k")
	if err := batched.SendPID(pid, "k", "v"); err != nil {
		t.Fatal(err)
	}
	pid, _ = writer.PID("k")
	if _, err := writer.Request(ctx, pid, "k", "v"); !errors.Is(err, mephisto.ErrRemote) || !strings.Contains(err.Error(), "Concurrency 1") {
		t.Fatalf("table write by PID from a concurrent agent: %v", err)
	}
	// The grain of "k"'s partition also runs the adder: an Ask through
	// Kafka makes it process and commit after the direct message (where a
	// batch agent fed by PID used to crash), and no grain restarted.
	if got, err := add.Ask(ctx, "k", addReq{A: 2, B: 2}); err != nil || got != 4 {
		t.Fatalf("Ask after a direct message to a batch agent: %d, %v", got, err)
	}
	waitFor(t, 10*time.Second, "a commit after the direct message", func() (bool, string) {
		m := metric(t, app.WebAddr(), "mephisto_commits_total")
		return m != "" && !strings.HasSuffix(m, " 0"), m
	})
	if m := metric(t, app.WebAddr(), "mephisto_grain_restarts_total"); m != "" {
		t.Fatalf("a grain restarted after a direct message to a batch agent: %s", m)
	}
}
