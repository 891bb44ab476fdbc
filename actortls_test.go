package mephisto_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/internal/certtest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The processes of TestActorLinksTLS are this test binary, run with these
// variables set (protoactor's remote sets gRPC's process-wide logger: one
// remote per process).
const (
	envTLSRole   = "ACTORTLS_ROLE"   // node or client
	envTLSBroker = "ACTORTLS_BROKER" // node: the Kafka broker
	envTLSWeb    = "ACTORTLS_WEB"    // node: its web address
	envTLSCert   = "ACTORTLS_CERT"   // the process's certificate, key and CA files ("" for a plaintext client)
	envTLSKey    = "ACTORTLS_KEY"
	envTLSCA     = "ACTORTLS_CA"
	envTLSPID    = "ACTORTLS_PID" // client: address/id of the grain to ask
)

// TestActorTLSChild is a process of TestActorLinksTLS; it is skipped
// anywhere else.
func TestActorTLSChild(t *testing.T) {
	switch os.Getenv(envTLSRole) {
	case "node":
		app, _ := adderApp(t, os.Getenv(envTLSBroker), "n1", "", "", nil)
		app.Configure(mephisto.WithWebAddr(os.Getenv(envTLSWeb)), mephisto.WithActorAddr("127.0.0.1:0"),
			mephisto.WithActorTLS(os.Getenv(envTLSCert), os.Getenv(envTLSKey), os.Getenv(envTLSCA)),
			mephisto.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := app.Run(ctx); err != nil {
			t.Fatal(err)
		}
	case "client":
		// A process speaking the nodes' actor protocol, with the
		// certificate it was given (or none), asking a grain for 2+3.
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
		r := actors.NewRemote(sys)
		var sec *actors.RemoteTLS
		if c := os.Getenv(envTLSCert); c != "" {
			sec = &actors.RemoteTLS{Cert: c, Key: os.Getenv(envTLSKey), CA: os.Getenv(envTLSCA)}
		}
		if err := r.Listen("127.0.0.1:0", func(a string) string { return a }, sec, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		defer r.Shutdown()
		addr, id, _ := strings.Cut(os.Getenv(envTLSPID), "|")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reply, err := r.Request(ctx, actor.NewPID(addr, id), &envelopepb.Envelope{Agent: "adding", Codec: "string/json",
			Key: []byte("k"), Value: []byte(`{"A":2,"B":3}`)})
		if err != nil {
			fmt.Printf("RESULT err %v\n", err)
			return
		}
		fmt.Printf("RESULT ok %s\n", reply.Value)
	default:
		t.Skip("a process of TestActorLinksTLS, run in its own process")
	}
}

// TestActorLinksTLS: a node whose actor links are mutual TLS answers a
// process holding a certificate of the cluster's CA, and refuses — the
// request fails, the handler never runs for it, the node logs the refusal —
// a process speaking plaintext and one whose certificate another CA signed.
func TestActorLinksTLS(t *testing.T) {
	if os.Getenv(envTLSRole) != "" {
		t.Skip("in a child")
	}
	t.Parallel()
	dir := t.TempDir()
	ca, mallory := certtest.NewCA(t, "cluster CA"), certtest.NewCA(t, "mallory's CA")
	n1 := ca.Write(t, dir, "n1", ca.Issue(t, "n1", "127.0.0.1"))
	n2 := ca.Write(t, dir, "n2", ca.Issue(t, "n2", "127.0.0.1"))
	evil := mallory.Write(t, dir, "evil", mallory.Issue(t, "evil", "127.0.0.1"))

	b := startBroker(t)
	web := proctest.FreeAddrT(t, false)
	child := func(name string, env ...string) proctest.Spec {
		return proctest.Spec{Name: name, Path: os.Args[0], Args: []string{"-test.run=^TestActorTLSChild$", "-test.v", "-test.timeout=0"},
			Env: proctest.Environ(env, "MEPHISTO_", "ACTORTLS_")}
	}
	node := proctest.StartT(t, child("n1", envTLSRole+"=node", envTLSBroker+"="+b.Addr(), envTLSWeb+"="+web,
		envTLSCert+"="+n1.Cert, envTLSKey+"="+n1.Key, envTLSCA+"="+n1.CA))
	var actorAddr string
	waitFor(t, 60*time.Second, "n1 ready, with its actor address", func() (bool, string) {
		if err := proctest.Running(node); err != nil {
			t.Fatal(err)
		}
		if ok, why := proctest.Ready(web); !ok {
			return false, why
		}
		v, err := proctest.Cluster(web)
		if err != nil || len(v.Nodes) != 1 || v.Nodes[0].Actor == "" {
			return false, fmt.Sprintf("%+v %v", v, err)
		}
		actorAddr = v.Nodes[0].Actor
		return true, ""
	})
	if !strings.Contains(node.Stderr(), "actor system reachable") || !strings.Contains(node.Stderr(), "tls=true") {
		t.Fatalf("n1 does not say its actor links are TLS:\n%s", node.Tail(4<<10))
	}
	pid := actorAddr + "|partitions/partition/adder/" + fmt.Sprint(kafka.Partition([]byte("k"), 4))
	// ask runs a client process; it runs on a goroutine of its own, so it
	// returns what went wrong rather than failing the test.
	logs := t.TempDir()
	ask := func(name string, env ...string) string {
		spec := child(name, append(env, envTLSRole+"=client", envTLSPID+"="+pid)...)
		spec.LogDir = logs
		r, err := proctest.Run(spec, time.Minute)
		m := regexp.MustCompile(`RESULT (.*)`).FindStringSubmatch(r.Stdout)
		if err != nil || m == nil {
			return fmt.Sprintf("no result (%v): exit %d\n%s%s", err, r.Code, r.Stdout, r.Stderr)
		}
		return m[1]
	}
	// Run side by side: each waits for its request's timeout at most.
	clients := map[string][]string{
		"member":    {envTLSCert + "=" + n2.Cert, envTLSKey + "=" + n2.Key, envTLSCA + "=" + n2.CA},
		"plaintext": nil,
		"foreign":   {envTLSCert + "=" + evil.Cert, envTLSKey + "=" + evil.Key, envTLSCA + "=" + n1.CA}, // trusts the cluster, is not trusted
	}
	results := map[string]chan string{}
	for name := range clients {
		results[name] = make(chan string, 1)
	}
	for name, env := range clients {
		go func() { results[name] <- ask(name, env...) }()
	}
	if got := <-results["member"]; got != "ok 5" {
		t.Errorf("a process with a certificate of the cluster's CA: %s, want ok 5", got)
	}
	for _, name := range []string{"plaintext", "foreign"} {
		if got := <-results[name]; !strings.HasPrefix(got, "err mephisto: ") {
			t.Errorf("a %s process messaged the grain: %s", name, got)
		} else {
			t.Logf("%s: %s", name, got)
		}
	}
	waitFor(t, 10*time.Second, "n1 logs the refused connections", func() (bool, string) {
		return strings.Contains(node.Stderr(), "actor transport: refused a connection that did not pass mutual TLS"), "not yet"
	})
	if n := strings.Count(node.Stderr(), "actor transport: refused a connection"); n != 1 {
		t.Errorf("n1 logged %d refusals, want 1 (at most one a minute)", n)
	}
}
