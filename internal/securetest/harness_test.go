package securetest

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/certtest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "securetest",
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/systest/testapp", Out: &testappBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "securetest:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// The SASL users of every broker of the suite. Passwords are letters and
// digits (Apache Kafka's format tool takes them unquoted).
const (
	scramUser = "alice" // SCRAM-SHA-512
	scramPass = "AlicePassw0rd42"
	plainUser = "pat" // PLAIN
	plainPass = "PatPassw0rd17"
)

// pki is the suite's CA, the brokers' certificate it signed, and a CA that
// signed nothing the brokers use.
type pki struct {
	ca, other *certtest.CA
	broker    certtest.Pair
	dir       string
	files     certtest.Files // the CA, and the brokers' certificate and key
	otherCA   string         // a file of the other CA
}

var (
	pkiOnce sync.Once
	suite   *pki
)

// thePKI makes the suite's certificates once; the kafka subtests' shared
// broker must use the same ones.
func thePKI(t *testing.T) *pki {
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mephisto-securetest-pki-")
		if err != nil {
			t.Fatal(err)
		}
		p := &pki{ca: certtest.NewCA(t, "securetest CA"), other: certtest.NewCA(t, "another CA"), dir: dir}
		p.broker = p.ca.Issue(t, "broker", "127.0.0.1", "localhost")
		p.files = p.ca.Write(t, dir, "broker", p.broker)
		p.otherCA = p.other.Write(t, dir, "other", p.other.Issue(t, "other")).CA
		suite = p
		sharedKafka.Spec.SASLSSL = &proctest.KafkaSASLSSL{CertPEM: p.broker.CertPEM, KeyPEM: p.broker.KeyPEM, Users: []proctest.KafkaUser{
			{Mechanism: kafka.SASLSCRAMSHA512, Name: scramUser, Password: scramPass},
			{Mechanism: kafka.SASLPlain, Name: plainUser, Password: plainPass},
		}}
	})
	if suite == nil {
		t.Fatal("the suite's certificates could not be made")
	}
	return suite
}

// sharedKafka is the package's Apache Kafka, with a SASL_SSL listener.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "kafka"}}

// env is a broker with a TLS + SASL listener and the names the test app
// uses on it.
type env struct {
	t      *testing.T
	kind   string // kfake or kafka
	addr   string // the TLS + SASL listener
	pki    *pki
	app    string
	prefix string
}

// eachBroker runs f as subtest kfake, on a `mephisto broker --tls-cert …
// --sasl …` of its own, and as subtest kafka, on the shared Apache Kafka's
// SASL_SSL listener (skipped where Java or Maven is missing).
func eachBroker(t *testing.T, f func(t *testing.T, e *env)) {
	p := thePKI(t)
	for _, kind := range []string{"kfake", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, kind: kind, pki: p, app: "securetest"}
			switch kind {
			case "kfake":
				e.addr = startSecureBroker(t, p)
			case "kafka":
				k := sharedKafka.Get(t)
				e.addr = strings.Join(k.SecureAddrs(), ",")
				e.app = proctest.SharedName(t, "sec")
				e.prefix = e.app + "."
			}
			f(t, e)
		})
	}
}

// startSecureBroker runs `mephisto broker` with TLS and the suite's SASL
// users and returns its address.
func startSecureBroker(t *testing.T, p *pki, extra ...string) string {
	t.Helper()
	args := append([]string{"broker", "--listen", proctest.FreeAddrT(t, false),
		"--tls-cert", p.files.Cert, "--tls-key", p.files.Key,
		"--sasl", kafka.SASLSCRAMSHA512 + ":" + scramUser + ":" + scramPass,
		"--sasl", kafka.SASLPlain + ":" + plainUser + ":" + plainPass}, extra...)
	b := startProc(t, "broker", nil, mephistoBin, args...)
	addr, _ := b.WaitListeningT(t, 30*time.Second, "")
	return addr
}

func (e *env) topic(name string) string { return e.prefix + name }

// names is the environment that gives the test app its names.
func (e *env) names(extra ...string) []string {
	return append([]string{"SYSTEST_APP_NAME=" + e.app, "SYSTEST_TOPIC_PREFIX=" + e.prefix}, extra...)
}

// secure returns the flags of TLS and SCRAM-SHA-512 with the suite's CA,
// and the environment with the password.
func (e *env) secure() (flags, environ []string) {
	return []string{"--kafka-tls", "--kafka-tls-ca", e.pki.files.CA, "--kafka-sasl-mechanism", kafka.SASLSCRAMSHA512, "--kafka-sasl-user", scramUser},
		[]string{"MEPHISTO_KAFKA_SASL_PASSWORD=" + scramPass}
}

// security is the same as Go settings.
func (e *env) security() kafka.Security {
	return kafka.Security{TLS: true, CAFile: e.pki.files.CA, SASLMechanism: kafka.SASLSCRAMSHA512, SASLUser: scramUser, SASLPassword: scramPass}
}

// startProc starts path with args and env, in the test's environment
// without MEPHISTO_* and SYSTEST_* variables.
func startProc(t *testing.T, name string, env []string, path string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartT(t, proctest.Spec{Name: name, Path: path, Args: args,
		Env: proctest.Environ(env, "MEPHISTO_", "SYSTEST_"), LogDir: proctest.LogDir(t, "securetest")})
}

// runCmd runs a short-lived command to completion, within a minute.
func runCmd(t *testing.T, name string, env []string, path string, args ...string) proctest.Result {
	t.Helper()
	return proctest.RunT(t, proctest.Spec{Name: name, Path: path, Args: args, Env: proctest.Environ(env, "MEPHISTO_", "SYSTEST_")}, time.Minute)
}

// startWorker runs a worker of the test app on e's brokers with flags and
// environment env added to its names; it returns the process and its web
// address.
func (e *env) startWorker(name string, env []string, flags ...string) (*proctest.Proc, string) {
	e.t.Helper()
	web := proctest.FreeAddrT(e.t, false)
	args := append([]string{"worker", "--node-id", name, "--data-dir", e.t.TempDir(), "--web", web,
		"--partitions", "4", "--commit-interval", "100ms", "--actor", ""}, flags...)
	return startProc(e.t, name, e.names(env...), testappBin, args...), web
}

// counter is a TCP proxy in front of a broker that counts the
// connections clients open through it.
type counter struct {
	ln    net.Listener
	conns atomic.Int64
}

func newCounter(t *testing.T, target string) *counter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				_ = in.Close()
				continue
			}
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return c
}

func (c *counter) addr() string { return c.ln.Addr().String() }
