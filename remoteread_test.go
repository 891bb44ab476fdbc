package mephisto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// The nodes of TestReadFromOwnerByActor are this test binary, run with
// these variables set: protoactor's remote sets gRPC's process-wide logger
// when it starts, so each node with an actor address is a process of its
// own (and this process starts none).
const (
	envChildNode   = "SHARING_CHILD_NODE"
	envChildBroker = "SHARING_CHILD_BROKER"
	envChildDir    = "SHARING_CHILD_DIR"
	envChildWeb    = "SHARING_CHILD_WEB"
	envChildGossip = "SHARING_CHILD_GOSSIP"
	envChildSeed   = "SHARING_CHILD_SEED"
)

// TestSharingChildNode is a node of TestReadFromOwnerByActor, run in a
// child process; it is skipped anywhere else.
func TestSharingChildNode(t *testing.T) {
	node := os.Getenv(envChildNode)
	if node == "" {
		t.Skip("a node of TestReadFromOwnerByActor, run in its own process")
	}
	s := newSharing(t, os.Getenv(envChildBroker), node, mephisto.WithDataDir(os.Getenv(envChildDir)),
		mephisto.WithWebAddr(os.Getenv(envChildWeb)), mephisto.WithActorAddr("127.0.0.1:0"),
		mephisto.WithGossip(os.Getenv(envChildGossip)), mephisto.WithJoin(os.Getenv(envChildSeed)),
		mephisto.WithSessionTimeout(6*time.Second))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.app.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// startSharingNode starts node id of the sharing app as a child process;
// it returns the process and its web address.
func startSharingNode(t *testing.T, id, broker, gossip, seed string) (*proctest.Proc, string) {
	web := proctest.FreeAddrT(t, false)
	p := proctest.StartT(t, proctest.Spec{
		Name: id, Path: os.Args[0], Args: []string{"-test.run=^TestSharingChildNode$", "-test.v", "-test.timeout=0"},
		Env: proctest.Environ([]string{envChildNode + "=" + id, envChildBroker + "=" + broker, envChildDir + "=" + t.TempDir(),
			envChildWeb + "=" + web, envChildGossip + "=" + gossip, envChildSeed + "=" + seed}, "MEPHISTO_", "SHARING_"),
	})
	return p, web
}

var pageClient = &http.Client{Timeout: 15 * time.Second}

// nearRead asks node web's page GET /near/{word}, which reads counts with
// Get(r.Context(), word): the status and, on 200, the count.
func nearRead(web, word string) (int, int64, string, error) {
	resp, err := pageClient.Get("http://" + web + "/near/" + word)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Count int64 `json:"count"`
	}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &v); err != nil {
			return 0, 0, "", fmt.Errorf("GET /near/%s: %q: %w", word, b, err)
		}
	}
	return resp.StatusCode, v.Count, string(b), nil
}

// TestReadFromOwnerByActor: nodes n1 and n2, each a process with an actor
// address, share the partitions. A page on n1 reading a key n2 is active
// for (Get with the request's context) returns its committed value, one
// hop to n2's table server; a key never written reads as 0. After n2 is
// killed with SIGKILL every read of its keys on n1 either fails with
// ErrPartitionMoving or ErrTimeout (the page answers 503 or 504) or
// returns the committed value — never another error, never a wrong
// value — until n1 has taken the partitions over and answers them itself.
func TestReadFromOwnerByActor(t *testing.T) {
	if os.Getenv(envChildNode) != "" {
		t.Skip("in a child")
	}
	b := startBroker(t)
	seed := freeGossipAddr(t)
	n1, web1 := startSharingNode(t, "n1", b.Addr(), seed, seed)
	n2, _ := startSharingNode(t, "n2", b.Addr(), freeGossipAddr(t), seed)
	waitFor(t, 120*time.Second, "n1 and n2 sharing the partitions", func() (bool, string) {
		if err := proctest.Running(n1, n2); err != nil {
			t.Fatal(err)
		}
		v, err := getCluster(web1)
		if err != nil || len(v.Nodes) != 2 {
			return false, fmt.Sprintf("nodes %d %v", len(v.Nodes), err)
		}
		for _, p := range v.Partitions {
			if p.Active == "" {
				return false, fmt.Sprintf("partition %d has no active node", p.Partition)
			}
		}
		return true, ""
	})
	produce(t, b.Addr(), "words", fruitRecords())
	far := map[string]int64{}
	waitFor(t, 60*time.Second, "n1's page reads every committed count, n2's keys from n2", func() (bool, string) {
		for k, n := range fruit {
			code, got, body, err := nearRead(web1, k)
			if err != nil || code != 200 || got != n {
				return false, fmt.Sprintf("%s: %d %d %s %v", k, code, got, body, err)
			}
			if owner, err := ownerOf(web1, k); err == nil && owner == "n2" {
				far[k] = n
			}
		}
		return true, ""
	})
	if len(far) == 0 {
		t.Fatal("n2 owns none of the keys: nothing went over the hop")
	}
	t.Logf("keys n1 read from n2 by actor message: %v", far)
	var absent string
	for i := 0; absent == ""; i++ {
		k := fmt.Sprintf("kiwi%d", i)
		if owner, err := ownerOf(web1, k); err == nil && owner == "n2" {
			absent = k
		}
	}
	if code, n, body, err := nearRead(web1, absent); err != nil || code != 200 || n != 0 {
		t.Errorf("GET n1/near/%s, never written, n2's = %d %d %s %v", absent, code, n, body, err)
	}

	var near string
	for k := range fruit {
		if _, ok := far[k]; !ok {
			near = k
		}
	}
	for _, k := range []string{near, firstKey(far)} {
		if code, _, body := httpGet(t, "http://"+web1+"/time/"+k); code == 200 {
			owner, _ := ownerOf(web1, k)
			t.Logf("Get on n1 of %q (active on %s): %s", k, owner, strings.TrimSpace(body))
		}
	}

	n2.KillT(t)
	refused := map[int]int{}
	waitFor(t, 90*time.Second, "n1 answers n2's keys itself after the kill", func() (bool, string) {
		if err := proctest.Running(n1); err != nil {
			t.Fatal(err)
		}
		for k, n := range far {
			code, got, body, err := nearRead(web1, k)
			switch {
			case err != nil:
				t.Fatal(err)
			case code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
				refused[code]++
				return false, body
			case code != 200:
				t.Fatalf("GET n1/near/%s during the failover = %d %s, want 200, 503 or 504", k, code, body)
			case got != n:
				t.Fatalf("GET n1/near/%s during the failover = %d, want %d", k, got, n)
			}
		}
		v, err := getCluster(web1)
		if err != nil || len(v.Nodes) != 1 {
			return false, fmt.Sprintf("nodes %d %v", len(v.Nodes), err)
		}
		return true, ""
	})
	t.Logf("reads refused while the partitions moved: %d moving (503), %d timed out (504)", refused[503], refused[504])
}
