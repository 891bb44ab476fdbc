package securetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The lines the CLI sends, and the words the worker's split agent writes
// to its words topic for them.
var (
	lines = []string{"red green blue", "red green", "red"}
	words = map[string]int64{"red": 3, "green": 2, "blue": 1}
	// events are the keys sent to the events topic (count per key).
	events = map[string]int64{"k1": 3, "k2": 1}
)

// TestWorkerAndCLIThroughTLSAndSCRAM: a worker and the send command
// connect through TLS with SCRAM-SHA-512, the password from
// MEPHISTO_KAFKA_SASL_PASSWORD: the tables count exactly what the CLI
// sent, the words topic the worker wrote holds exactly the words of the
// lines (read back with sarama, and with kcat where installed, through the
// same listener), and no log shows the password.
func TestWorkerAndCLIThroughTLSAndSCRAM(t *testing.T) {
	eachBroker(t, func(t *testing.T, e *env) {
		flags, secret := e.secure()
		w, web := e.startWorker("n1", secret, append(flags, "--brokers", e.addr)...)
		proctest.WaitForT(t, 90*time.Second, "the worker ready", func() (bool, string) {
			if err := proctest.Running(w); err != nil {
				t.Fatal(err)
			}
			return proctest.Ready(web)
		})
		var cli strings.Builder
		send := func(topic, key, value string) {
			args := append([]string{"send", e.topic(topic), value, "--brokers", e.addr}, flags...)
			if key != "" {
				args = append(args, "--key", key)
			}
			r := runCmd(t, "send", e.names(secret...), testappBin, args...)
			cli.WriteString(r.Stdout + r.Stderr)
			if r.Code != 0 {
				t.Fatalf("send %s: exit %d\n%s%s", topic, r.Code, r.Stdout, r.Stderr)
			}
		}
		for _, l := range lines {
			send("lines", "", l)
		}
		for k, n := range events {
			for range n {
				send("events", k, "x")
			}
		}
		want := func(table string, counts map[string]int64) {
			proctest.WaitForT(t, 60*time.Second, "table "+table+" exact", func() (bool, string) {
				for k, n := range counts {
					code, body, err := proctest.Get(web, "/tables/"+table+"/"+k)
					var v struct{ Value int64 }
					if err != nil || code != 200 || json.Unmarshal(body, &v) != nil || v.Value != n {
						return false, fmt.Sprintf("%s: %d %s %v (want %d)", k, code, body, err, n)
					}
				}
				return true, ""
			})
		}
		want("word_counts", words)
		want("counts", events)

		got := readTopic(t, e.addr, e.security(), e.topic("words"))
		if fmt.Sprint(got) != fmt.Sprint(words) {
			t.Errorf("the words topic, read through TLS + SCRAM: %v, want %v", got, words)
		}
		t.Run("kcat", func(t *testing.T) { kcatReads(t, e, e.topic("words"), words) })

		w.StopT(t, 60*time.Second)
		for what, log := range map[string]string{"the worker's log": w.Stderr() + w.Stdout(), "the CLI's output": cli.String()} {
			if strings.Contains(log, scramPass) {
				t.Errorf("%s shows the password", what)
			}
		}
		if !strings.Contains(w.Stderr(), `security="TLS (CA `+e.pki.files.CA+`), SASL SCRAM-SHA-512 as alice"`) {
			t.Errorf("the worker does not log how it connects:\n%s", w.Tail(4<<10))
		}
	})
}

// readTopic counts the keys of every record of topic, read through sec.
func readTopic(t *testing.T, brokers string, sec kafka.Security, topic string) map[string]int64 {
	t.Helper()
	n, err := sec.Net()
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(strings.Split(brokers, ","), n.ConsumerConfig("securetest-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range parts {
		if err := kafka.ReadToEnd(ctx, client, cons, topic, p, func(m *sarama.ConsumerMessage) error {
			got[string(m.Key)]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// kcatReads checks that kcat, a librdkafka client, reads want from topic
// through e's TLS + SASL listener. It skips (the rest of the test has
// run) where kcat is not installed.
func kcatReads(t *testing.T, e *env, topic string, want map[string]int64) {
	t.Helper()
	bin, err := exec.LookPath("kcat")
	if err != nil {
		if bin, err = exec.LookPath("kafkacat"); err != nil {
			t.Skip("kcat is not installed (apt-get install kcat): the third-party client's read is skipped")
		}
	}
	// kcat reads every partition to its end (-e) and prints each record's
	// key: as the worker's SCRAM-SHA-512 user on the dev broker, as the
	// PLAIN user on Apache Kafka, since Debian 12's kcat (librdkafka 2.0.2)
	// fails SCRAM-SHA-512 against Apache Kafka 4.1.1 with "invalid
	// credentials" for the credentials sarama authenticates with on the
	// same listener.
	mech, user, pass := "SCRAM-SHA-512", scramUser, scramPass
	if e.kind == "kafka" {
		mech, user, pass = "PLAIN", plainUser, plainPass
	}
	r := proctest.RunT(t, proctest.Spec{Name: "kcat", Path: bin, Args: []string{"-C", "-b", e.addr, "-t", topic, "-e", "-q", "-f", "%k\n",
		"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=" + mech, "-X", "sasl.username=" + user,
		"-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + e.pki.files.CA}}, time.Minute)
	if r.Code != 0 {
		t.Fatalf("kcat: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	got := map[string]int64{}
	for _, k := range strings.Fields(r.Stdout) {
		got[k]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kcat read %v, want %v\n%s", got, want, r.Stderr)
	}
}

// TestRefusedCredentials: a worker whose password is wrong, or that does
// not trust the broker's certificate, logs ONE error naming the broker,
// the cause and what to do; it retries with backoff, one connection per
// attempt (counted by a proxy in front of the broker), the waits doubling;
// /readyz says why. The send command fails at once with the same error
// after one connection. Nothing shows the password.
func TestRefusedCredentials(t *testing.T) {
	eachBroker(t, func(t *testing.T, e *env) {
		flags, _ := e.secure()
		cases := []struct {
			name        string
			flags, env  []string
			kind, cause string
		}{
			{"wrong-password", flags, []string{"MEPHISTO_KAFKA_SASL_PASSWORD=wrong" + scramPass}, "SASL authentication failed", `user \"alice\"`},
			{"untrusted-certificate", append(flags, "--kafka-tls-ca", e.pki.otherCA), []string{"MEPHISTO_KAFKA_SASL_PASSWORD=" + scramPass},
				"TLS handshake failed", "not signed by a CA this client trusts"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				proxy := newCounter(t, strings.Split(e.addr, ",")[0])
				w, web := e.startWorker("n1", append(c.env, "MEPHISTO_LOG_LEVEL=debug"), append(c.flags, "--brokers", proxy.addr())...)
				proctest.WaitForT(t, 30*time.Second, "three connection attempts", func() (bool, string) {
					if err := proctest.Running(w); err != nil {
						t.Fatal(err)
					}
					return proxy.conns.Load() >= 3, fmt.Sprintf("%d connections", proxy.conns.Load())
				})
				ready, why := proctest.Ready(web)
				w.StopT(t, 30*time.Second)
				log := w.Stderr()
				errs := regexp.MustCompile(`(?m)^.*level=ERROR.*$`).FindAllString(log, -1)
				if len(errs) != 1 {
					t.Fatalf("%d error lines, want 1:\n%s", len(errs), strings.Join(errs, "\n"))
				}
				line := errs[0]
				for _, want := range []string{"cannot connect to Kafka", "Kafka broker " + proxy.addr(), c.kind, c.cause, "brokers=" + proxy.addr(), "--kafka-"} {
					if !strings.Contains(line, want) {
						t.Errorf("the error line does not say %q:\n%s", want, line)
					}
				}
				retries := regexp.MustCompile(`still cannot connect to Kafka \(same cause\).* attempt=(\d+) retry_in=(\S+)`).FindAllStringSubmatch(log, -1)
				attempts := 1 + len(retries)
				if conns := int(proxy.conns.Load()); conns != attempts && conns != attempts+1 { // +1: stopped during an attempt
					t.Errorf("%d connections for %d attempts: want one connection per attempt (no retries inside an attempt)", conns, attempts)
				}
				wantWaits := []string{"2s", "4s", "8s", "16s"}
				for i, r := range retries {
					if r[1] != fmt.Sprint(i+2) || r[2] != wantWaits[i] {
						t.Errorf("retry %d: attempt %s, retry_in %s; want attempt %d, retry_in %s (backoff doubling from 1s)", i, r[1], r[2], i+2, wantWaits[i])
					}
				}
				if !strings.Contains(line, "retry_in=1s") {
					t.Errorf("the first retry is not after 1s: %s", line)
				}
				if ready || !strings.Contains(why, c.kind) {
					t.Errorf("/readyz: ready %v, %q; want 503 saying %q", ready, why, c.kind)
				}

				// The CLI: one connection, one error, exit 1.
				before := proxy.conns.Load()
				r := runCmd(t, "send", e.names(c.env...), testappBin, append([]string{"send", e.topic("events"), "x", "--brokers", proxy.addr()}, c.flags...)...)
				if r.Code != 1 || strings.Count(r.Stderr, "Error:") != 1 || !strings.Contains(r.Stderr, "Kafka broker "+proxy.addr()) ||
					!strings.Contains(r.Stderr, c.kind) || !strings.Contains(r.Stderr, strings.ReplaceAll(c.cause, `\"`, `"`)) {
					t.Errorf("send: exit %d, stderr:\n%s", r.Code, r.Stderr)
				}
				if n := proxy.conns.Load() - before; n != 1 {
					t.Errorf("send opened %d connections, want 1", n)
				}
				for what, out := range map[string]string{"worker": log, "send": r.Stderr + r.Stdout} {
					if strings.Contains(out, scramPass) {
						t.Errorf("the %s's output shows the password", what)
					}
				}
			})
		}
	})
}

// TestMutualTLS: `mephisto broker --tls-client-ca` requires client
// certificates; a worker with one its CA signed connects and counts, the
// send command without one is refused with a clear error.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	p := thePKI(t)
	client := p.ca.Write(t, t.TempDir(), "client", p.ca.Issue(t, "client"))
	addr := startSecureBroker(t, p, "--tls-client-ca", p.files.CA)
	e := &env{t: t, kind: "kfake", addr: addr, pki: p, app: "securetest"}
	flags, secret := e.secure()
	mtls := append(flags, "--kafka-tls-cert", client.Cert, "--kafka-tls-key", client.Key, "--brokers", addr)
	w, web := e.startWorker("n1", secret, mtls...)
	proctest.WaitForT(t, 60*time.Second, "the worker ready", func() (bool, string) {
		if err := proctest.Running(w); err != nil {
			t.Fatal(err)
		}
		return proctest.Ready(web)
	})
	r := runCmd(t, "send", secret, testappBin, append([]string{"send", "events", "x", "--key", "k"}, mtls...)...)
	if r.Code != 0 {
		t.Fatalf("send with the client certificate: exit %d\n%s", r.Code, r.Stderr)
	}
	proctest.WaitForT(t, 30*time.Second, "k counted", func() (bool, string) {
		code, body, err := proctest.Get(web, "/tables/counts/k")
		return code == 200 && strings.Contains(string(body), `"value":1`), fmt.Sprintf("%d %s %v", code, body, err)
	})
	r = runCmd(t, "send", secret, testappBin, append([]string{"send", "events", "x", "--brokers", addr}, flags...)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "requires a client certificate (mutual TLS)") || !strings.Contains(r.Stderr, "--kafka-tls-cert") {
		t.Errorf("send without a client certificate: exit %d\n%s", r.Code, r.Stderr)
	}
}
