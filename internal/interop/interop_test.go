package interop

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

const partitions = 4

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

// sharedKafka is the package's Apache Kafka broker.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "kafka"}}

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "interop",
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/interop/testapp", Name: "itest", Out: &testappBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// java runs java/Interop.java with args, stdin as its input, and returns
// its stdout; it skips t where Java or Maven is missing.
func java(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	if err := proctest.KafkaAvailable(); err != nil {
		t.Skipf("needs the Java client: %v", err)
	}
	cp, err := proctest.KafkaClasspath()
	if err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs(filepath.Join("java", "Interop.java"))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(in, stdin, 0o644); err != nil {
		t.Fatal(err)
	}
	// The JVM reads stdin from a file: proctest's processes take no pipe.
	sh := fmt.Sprintf(`exec java -Xmx256m -cp "$CP" %s "$@" < %s`, src, in)
	r := proctest.RunT(t, proctest.Spec{Name: "java-" + args[0], Path: "/bin/sh", Args: append([]string{"-c", sh, "java"}, args...),
		Env: proctest.Environ([]string{"CP=" + cp}, "MEPHISTO_")}, 3*time.Minute)
	if r.Code != 0 {
		t.Fatalf("java Interop.java %s: exit status %d\nstderr:\n%s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r.Stdout
}

// TestPartitionerMatchesJavaClient: for many keys — words, numbers,
// random bytes, UTF-8, the empty key — and many partition counts,
// kafka.Partition picks the partition the Java producer's default
// partitioner picks (the real client's code, not a copy of its murmur2).
func TestPartitionerMatchesJavaClient(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 7))
	keys := [][]byte{{}, []byte("a"), []byte("key"), []byte("ключ"), []byte("鍵"), {0}, {0xff, 0xff, 0xff, 0xff}}
	for i := range 4000 {
		keys = append(keys, []byte("key-"+strconv.Itoa(i)), []byte(strconv.Itoa(r.IntN(1<<30))))
		b := make([]byte, r.IntN(64))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		keys = append(keys, b)
	}
	counts := []int32{1, 2, 3, 4, 5, 7, 8, 12, 16, 31, 64, 100, 1000, 1 << 20}
	var in bytes.Buffer
	for _, k := range keys {
		in.WriteString(hex.EncodeToString(k) + "\n")
	}
	names := make([]string, len(counts))
	for i, n := range counts {
		names[i] = strconv.Itoa(int(n))
	}
	out := strings.Split(strings.TrimRight(java(t, in.Bytes(), "partitions", strings.Join(names, ",")), "\n"), "\n")
	if len(out) != len(keys) {
		t.Fatalf("the Java client answered %d lines for %d keys", len(out), len(keys))
	}
	bad := 0
	for i, k := range keys {
		javas := strings.Fields(out[i])
		for j, n := range counts {
			if got, want := strconv.Itoa(int(kafka.Partition(k, n))), javas[j]; got != want {
				if bad++; bad <= 10 {
					t.Errorf("key %x among %d partitions: Mephisto picks %s, the Java client %s", k, n, got, want)
				}
			}
		}
	}
	t.Logf("%d keys × %d partition counts: %d disagreements", len(keys), len(counts), bad)
}

// env is a test's broker: kfake (`mephisto broker`, a process of the
// test's own) or the package's Apache Kafka, with names of the test's own.
type env struct {
	kind, addr, app, prefix string
}

func eachBroker(t *testing.T, f func(t *testing.T, e env)) {
	for _, kind := range []string{"kfake", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := env{kind: kind, app: "interop"}
			if kind == "kfake" {
				addr := proctest.FreeAddrT(t, false)
				b := proctest.StartT(t, proctest.Spec{Name: "broker", Path: mephistoBin,
					Args: []string{"broker", "--listen", addr, "--data-dir", t.TempDir()}, Env: childEnv(nil),
					LogDir: proctest.LogDir(t, "interop")})
				e.addr, _ = b.WaitListeningT(t, 30*time.Second, addr)
			} else {
				e.addr = sharedKafka.Get(t).Bootstrap()
				e.app = proctest.SharedName(t, "it")
				e.prefix = e.app + "."
			}
			f(t, e)
		})
	}
}

func childEnv(extra []string) []string { return proctest.Environ(extra, "MEPHISTO_", "INTEROP_") }

// receipt is the testapp's answer to an order (its Receipt).
type receipt struct {
	Order     int64  `json:"order"`
	Account   string `json:"account"`
	Total     int64  `json:"total"`
	Partition int32  `json:"partition"`
}

// TestJavaClientsAndMephistoAgent: the Java producer sends JSON orders
// keyed by account with its default partitioner; the Mephisto agent counts
// them per account in a table without repartitioning, so the totals read
// back by key are right only if both sides put every key on the same
// partition; the Java consumer reads the agent's JSON receipts.
func TestJavaClientsAndMephistoAgent(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, e env) {
		const n = 3000
		web := startWorker(t, e)
		truth := ordersTruth(n)
		sent := strings.Fields(java(t, nil, "produce", e.addr, e.prefix+"orders", strconv.Itoa(n)))
		if len(sent) != 3*n {
			t.Fatalf("the Java producer reported %d fields, want %d", len(sent), 3*n)
		}
		for i := 0; i < len(sent); i += 3 {
			key, p := sent[i+1], sent[i+2]
			if want := strconv.Itoa(int(kafka.Partition([]byte(key), partitions))); p != want {
				t.Fatalf("the Java producer put %s on partition %s, Mephisto's partitioner says %s", key, p, want)
			}
		}

		waitTotals(t, web, truth)

		seen := map[int64]bool{}
		last := map[string]int64{}
		for _, line := range strings.Split(strings.TrimSpace(java(t, nil, "consume", e.addr, e.prefix+"receipts", strconv.Itoa(n))), "\n") {
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 || f[0] != "got" {
				t.Fatalf("the Java consumer printed %q", line)
			}
			var r receipt
			if err := json.Unmarshal([]byte(f[3]), &r); err != nil {
				t.Fatalf("receipt %s is not the JSON the agent sends: %v", f[3], err)
			}
			if r.Account != f[2] || strconv.Itoa(int(r.Partition)) != f[1] ||
				r.Partition != kafka.Partition([]byte(r.Account), partitions) {
				t.Errorf("receipt %s read from partition %s with key %s: not where the account belongs", f[3], f[1], f[2])
			}
			seen[r.Order] = true
			last[r.Account] = max(last[r.Account], r.Total)
		}
		if len(seen) != n {
			t.Errorf("the Java consumer read receipts for %d distinct orders, want %d", len(seen), n)
		}
		for acct, want := range truth {
			if last[acct] != want {
				t.Errorf("the last receipt of %s says total %d, want %d", acct, last[acct], want)
			}
		}
	})
}

// startWorker starts the Mephisto test app on e and waits until it is
// ready; it returns its HTTP address.
func startWorker(t *testing.T, e env) string {
	t.Helper()
	web := proctest.FreeAddrT(t, false)
	w := proctest.StartT(t, proctest.Spec{Name: "worker", Path: testappBin,
		Args: []string{"worker", "--brokers", e.addr, "--data-dir", t.TempDir(), "--web", web,
			"--partitions", strconv.Itoa(partitions), "--commit-interval", "100ms", "--node-id", "n1"},
		Env: childEnv([]string{"INTEROP_APP_NAME=" + e.app, "INTEROP_TOPIC_PREFIX=" + e.prefix}), LogDir: proctest.LogDir(t, "interop")})
	proctest.WaitForT(t, 90*time.Second, "worker ready", func() (bool, string) {
		if w.Exited() {
			t.Fatalf("worker exited: %s", w.DescribeExit())
		}
		return proctest.Ready(web)
	})
	return web
}

// ordersTruth is the total per account of the n orders both foreign
// clients send: account acct-(i%37), amount i%10+1.
func ordersTruth(n int) map[string]int64 {
	truth := map[string]int64{}
	for i := range n {
		truth["acct-"+strconv.Itoa(i%37)] += int64(i%10 + 1)
	}
	return truth
}

// waitTotals waits until the worker at web serves truth in table totals.
func waitTotals(t *testing.T, web string, truth map[string]int64) {
	t.Helper()
	proctest.WaitForT(t, 60*time.Second, "totals read back by key == the orders' sums", func() (bool, string) {
		for acct, want := range truth {
			code, body, err := proctest.Get(web, "/tables/totals/"+acct)
			if err != nil {
				return false, err.Error()
			}
			if code != http.StatusOK {
				return false, fmt.Sprintf("%s: HTTP %d", acct, code)
			}
			var v struct{ Value int64 }
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s: %v: %s", acct, err, body)
			}
			if v.Value != want {
				return false, fmt.Sprintf("%s = %d, want %d", acct, v.Value, want)
			}
		}
		return true, ""
	})
}

// TestFaustAndMephistoAgent: a Faust app sends JSON orders keyed by
// account with its own producer and partitioner; the Mephisto agent
// counts them per account without repartitioning and answers each with a
// JSON receipt, which the Faust agent reads. Both ends must agree on the
// totals and on the partition of every key.
func TestFaustAndMephistoAgent(t *testing.T) {
	t.Parallel()
	req, err := filepath.Abs(filepath.Join("..", "..", "bench", "faust", "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	eachBroker(t, func(t *testing.T, e env) {
		python, err := proctest.PythonVenv(context.Background(), req)
		if err != nil {
			t.Skipf("needs faust-streaming in a virtual environment: %v", err)
		}
		const n = 2000
		web := startWorker(t, e)
		f := proctest.StartT(t, proctest.Spec{Name: "faust", Path: python, Args: []string{filepath.Join("faust", "app.py"), "worker", "-l", "warn", "--without-web"},
			Env: childEnv([]string{"INTEROP_BROKER=" + e.addr, "INTEROP_APP=faust-" + e.app, "INTEROP_ORDERS=" + e.prefix + "orders",
				"INTEROP_RECEIPTS=" + e.prefix + "receipts", "INTEROP_N=" + strconv.Itoa(n)}),
			LogDir: proctest.LogDir(t, "interop")})
		t.Cleanup(func() { _ = f.Kill() })
		m, err := f.WaitStdout(regexp.MustCompile(`(\{"event": "done".*\})\n`), 3*time.Minute)
		if err != nil {
			t.Fatalf("the Faust app did not read a receipt for every order: %v\nits log:\n%s", err, f.Tail(4<<10))
		}
		var done struct {
			Receipts, Orders, Misplaced int
			Totals                      map[string]int64
		}
		if err := json.Unmarshal([]byte(m[1]), &done); err != nil {
			t.Fatalf("the Faust app printed %s: %v", m[1], err)
		}
		truth := ordersTruth(n)
		waitTotals(t, web, truth)
		if done.Orders != n || done.Misplaced != 0 {
			t.Errorf("Faust read %d receipts for %d distinct orders (want %d), %d from another partition than the account's", done.Receipts, done.Orders, n, done.Misplaced)
		}
		for acct, want := range truth {
			if done.Totals[acct] != want {
				t.Errorf("Faust's last receipt of %s says total %d, want %d", acct, done.Totals[acct], want)
			}
		}
		t.Logf("Faust: %d receipts for %d orders, totals of %d accounts exact", done.Receipts, done.Orders, len(done.Totals))
	})
}
