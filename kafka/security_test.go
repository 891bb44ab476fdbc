package kafka

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/internal/certtest"
)

const password = "s3cr3t-Pa55w0rd!"

func TestSecretNeverShows(t *testing.T) {
	t.Parallel()
	s := Secret(password)
	type holder struct {
		User     string
		Password Secret
	}
	h := holder{"alice", s}
	var out bytes.Buffer
	for _, f := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%10s", "%d"} {
		fmt.Fprintf(&out, f+"|", s)
		fmt.Fprintf(&out, f+"|", h)
		fmt.Fprintf(&out, f+"|", &h)
	}
	fmt.Fprint(&out, s, h)
	fmt.Fprintln(&out, s, h)
	b, _ := json.Marshal(h)
	out.Write(b)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "password", s, "holder", h)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "password", s, "holder", h)
	if strings.Contains(out.String(), password) || strings.Contains(out.String(), fmt.Sprintf("%x", password)) {
		t.Fatalf("the password shows:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatalf("no [redacted] in:\n%s", out.String())
	}
	if Secret("").String() != "" {
		t.Errorf("an empty secret shows as %q", Secret("").String())
	}
}

func TestSecurityCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sec  Security
		want string // in the error; "" for none
	}{
		{Security{}, ""},
		{Security{TLS: true}, ""},
		{Security{TLS: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "kafka"}, ""},
		{Security{SASLMechanism: SASLSCRAMSHA512, SASLUser: "u", SASLPassword: "p"}, ""},
		{Security{CAFile: "ca.pem"}, "--kafka-tls-ca is set but --kafka-tls is off"},
		{Security{TLS: true, CertFile: "c.pem"}, "--kafka-tls-cert and --kafka-tls-key go together"},
		{Security{SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, `--kafka-sasl-mechanism must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got "GSSAPI"`},
		{Security{SASLMechanism: SASLPlain, SASLPassword: "p"}, "needs --kafka-sasl-user"},
		{Security{SASLMechanism: SASLPlain, SASLUser: "u"}, "needs a password: set MEPHISTO_KAFKA_SASL_PASSWORD"},
		{Security{SASLUser: "u", SASLPassword: password}, "--kafka-sasl-mechanism is not"},
	}
	for _, c := range cases {
		err := c.sec.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.sec, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v, want %q", c.sec, err, c.want)
		case err != nil && strings.Contains(err.Error(), password):
			t.Errorf("the error shows the password: %v", err)
		}
	}
	if _, err := (Security{TLS: true, CAFile: "/nonexistent/ca.pem"}).Net(); err == nil || !strings.Contains(err.Error(), "--kafka-tls-ca") {
		t.Errorf("a missing CA file: %v", err)
	}
	d := Security{TLS: true, CAFile: "ca.pem", SASLMechanism: SASLSCRAMSHA512, SASLUser: "alice", SASLPassword: password}.String()
	if d != "TLS (CA ca.pem), SASL SCRAM-SHA-512 as alice" {
		t.Errorf("String = %q", d)
	}
}

// secureBroker is an in-process broker with TLS and SASL, and the files
// of its CA and of a client certificate that CA signed.
type secureBroker struct {
	*Broker
	ca, other *certtest.CA
	files     certtest.Files // the CA, and a client certificate it signed
	conns     *atomic.Int64  // connections that sent ApiVersions
}

func startSecureBroker(t *testing.T, mutual bool, users ...SASLUser) *secureBroker {
	t.Helper()
	ca := certtest.NewCA(t, "test CA")
	srv := ca.Issue(t, "broker", "127.0.0.1", "localhost")
	tc := &tls.Config{Certificates: []tls.Certificate{srv.TLS(t)}}
	if mutual {
		tc.ClientCAs, tc.ClientAuth = ca.Pool(), tls.RequireAndVerifyClientCert
	}
	b := startTestBroker(t, BrokerConfig{TLS: tc, SASL: users})
	sb := &secureBroker{Broker: b, ca: ca, other: certtest.NewCA(t, "another CA"), conns: new(atomic.Int64),
		files: ca.Write(t, t.TempDir(), "client", ca.Issue(t, "client"))}
	b.cluster.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.cluster.KeepControl()
		sb.conns.Add(1)
		return nil, nil, false
	})
	return sb
}

func mustNet(t *testing.T, s Security) *Net {
	t.Helper()
	n, err := s.Net()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProbeAndClientsThroughTLSAndSASL: clients connect through TLS with
// each SASL mechanism and produce and consume; every refusal is one
// ConnectError naming the broker, its kind and cause — never the password
// — after one connection.
func TestProbeAndClientsThroughTLSAndSASL(t *testing.T) {
	t.Parallel()
	b := startSecureBroker(t, false,
		SASLUser{SASLPlain, "pat", password}, SASLUser{SASLSCRAMSHA256, "sam", password}, SASLUser{SASLSCRAMSHA512, "alice", password})
	tlsOn := Security{TLS: true, CAFile: b.files.CA}
	withSASL := func(mech, user, pw string) Security {
		s := tlsOn
		s.SASLMechanism, s.SASLUser, s.SASLPassword = mech, user, Secret(pw)
		return s
	}
	for _, c := range []struct{ mech, user string }{{SASLPlain, "pat"}, {SASLSCRAMSHA256, "sam"}, {SASLSCRAMSHA512, "alice"}} {
		t.Run("ok-"+c.mech, func(t *testing.T) {
			n := mustNet(t, withSASL(c.mech, c.user, password))
			cfg := n.ClientConfig("probe-ok")
			if err := Probe([]string{b.Addr()}, cfg); err != nil {
				t.Fatalf("Probe: %v", err)
			}
			client, err := sarama.NewClient([]string{b.Addr()}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			adm, err := sarama.NewClusterAdminFromClient(client)
			if err != nil {
				t.Fatal(err)
			}
			topic := "secure-" + strings.ToLower(c.mech)
			if _, err := EnsureTopics(adm, []TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: -1}}); err != nil {
				t.Fatal(err)
			}
			prod, err := NewProducer(client, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			for i := range 3 {
				if _, err := prod.SendSync(ctx, Message(partition.Output{Topic: topic, Key: []byte("k"), Value: []byte(fmt.Sprint(i))})); err != nil {
					t.Fatal(err)
				}
			}
			// A plain consumer of the same Net reads them back.
			cc, err := sarama.NewClient([]string{b.Addr()}, n.ConsumerConfig("probe-read"))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cons, err := sarama.NewConsumerFromClient(cc)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			var got int
			err = ReadToEnd(ctx, cc, cons, topic, 0, func(*sarama.ConsumerMessage) error { got++; return nil })
			if err != nil || got != 3 {
				t.Fatalf("read back %d records, %v", got, err)
			}
		})
	}

	refused := []struct {
		name string
		sec  Security
		kind error
		want string
	}{
		{"wrong password", withSASL(SASLSCRAMSHA512, "alice", "wrong-"+password), ErrAuthentication, `while authenticating user "alice" with SCRAM-SHA-512`},
		{"wrong plain password", withSASL(SASLPlain, "pat", "wrong-"+password), ErrAuthentication, `user "pat" with PLAIN`},
		{"no such user", withSASL(SASLSCRAMSHA256, "mallory", password), ErrAuthentication, `user "mallory"`},
		{"user of another mechanism", withSASL(SASLSCRAMSHA256, "alice", password), ErrAuthentication, `user "alice" with SCRAM-SHA-256`},
		{"no SASL", tlsOn, ErrAuthentication, "it requires SASL authentication"},
		{"untrusted certificate", func() Security {
			s := withSASL(SASLSCRAMSHA512, "alice", password)
			s.CAFile = b.other.Write(t, t.TempDir(), "other", b.other.Issue(t, "x")).CA
			return s
		}(), ErrTLS, "not signed by a CA this client trusts"},
		{"system CAs", withSASL(SASLSCRAMSHA512, "alice", password), ErrTLS, "not signed by a CA this client trusts"},
		{"wrong server name", func() Security {
			s := withSASL(SASLSCRAMSHA512, "alice", password)
			s.ServerName = "kafka.example.com"
			return s
		}(), ErrTLS, `not valid for the name "kafka.example.com"`},
		{"plaintext to a TLS listener", Security{SASLMechanism: SASLSCRAMSHA512, SASLUser: "alice", SASLPassword: password}, ErrTLS, "may expect TLS"},
	}
	for _, c := range refused {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			if c.name == "system CAs" {
				c.sec.CAFile = ""
			}
			before := b.conns.Load()
			err := Probe([]string{b.Addr()}, mustNet(t, c.sec).ClientConfig("probe"))
			checkConnectError(t, err, b.Addr(), c.kind, c.want)
			if n := b.conns.Load() - before; n > 1 {
				t.Errorf("the probe opened %d connections that reached Kafka, want at most 1", n)
			}
		})
	}
}

func checkConnectError(t *testing.T, err error, addr string, kind error, want string) {
	t.Helper()
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v is no ConnectError", err, err)
	}
	if !errors.Is(err, kind) || ce.Broker != addr || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v: want kind %v, broker %s and %q", err, kind, addr, want)
	}
	if !strings.HasPrefix(err.Error(), "Kafka broker "+addr+": ") || ce.Hint == "" {
		t.Errorf("the error does not start with the broker or has no hint: %v", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("the error shows the password: %v", err)
	}
	if Misconfigured(err) != (kind != ErrUnreachable) {
		t.Errorf("Misconfigured(%v) = %v", err, Misconfigured(err))
	}
	if Summary(err) != fmt.Sprintf("%s: %v: %s", addr, ce.Kind, ce.Cause) {
		t.Errorf("Summary = %q", Summary(err))
	}
	t.Logf("%v", err)
}

// TestProbeMutualTLS: a broker that requires client certificates accepts
// the one its CA signed and refuses none and another CA's.
func TestProbeMutualTLS(t *testing.T) {
	t.Parallel()
	b := startSecureBroker(t, true)
	base := Security{TLS: true, CAFile: b.files.CA}
	ok := base
	ok.CertFile, ok.KeyFile = b.files.Cert, b.files.Key
	if err := Probe([]string{b.Addr()}, mustNet(t, ok).ClientConfig("mtls")); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	err := Probe([]string{b.Addr()}, mustNet(t, base).ClientConfig("mtls"))
	checkConnectError(t, err, b.Addr(), ErrTLS, "requires a client certificate (mutual TLS) and none is configured")
	foreign := b.other.Write(t, t.TempDir(), "foreign", b.other.Issue(t, "foreign"))
	bad := base
	bad.CertFile, bad.KeyFile = foreign.Cert, foreign.Key
	err = Probe([]string{b.Addr()}, mustNet(t, bad).ClientConfig("mtls"))
	checkConnectError(t, err, b.Addr(), ErrTLS, "refused this client's certificate")
}

// TestProbePlainBroker: TLS to a plaintext listener, and no listener.
func TestProbePlainBroker(t *testing.T) {
	t.Parallel()
	b := startTestBroker(t, BrokerConfig{})
	// kfake reads the ClientHello as the size of a request and waits for
	// the rest (Kafka would close the connection): the handshake times out.
	cfg := mustNet(t, Security{TLS: true}).ClientConfig("p")
	cfg.Net.DialTimeout = 500 * time.Millisecond
	err := Probe([]string{b.Addr()}, cfg)
	checkConnectError(t, err, b.Addr(), ErrTLS, "did not complete the TLS handshake (a plaintext listener?)")
	if err := Probe([]string{b.Addr()}, ClientConfig("p")); err != nil {
		t.Fatalf("plaintext: %v", err)
	}
	cfg = ClientConfig("p")
	cfg.Net.DialTimeout = time.Second
	err = Probe([]string{"127.0.0.1:1"}, cfg)
	checkConnectError(t, err, "127.0.0.1:1", ErrUnreachable, "no TCP connection")
}

func TestParseSASLUser(t *testing.T) {
	t.Parallel()
	u, err := ParseSASLUser("scram-sha-512:alice:pa:ss")
	if err != nil || u.Mechanism != SASLSCRAMSHA512 || u.User != "alice" || u.Password != "pa:ss" {
		t.Fatalf("%+v %v", u, err)
	}
	for _, bad := range []string{"PLAIN:alice", "GSSAPI:a:b", "PLAIN::pw", "PLAIN:alice:"} {
		if _, err := ParseSASLUser(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestEveryProductConfigIsSecured: the product's code (not its tests,
// tools or benchmarks) makes its sarama configs only through a Net, so
// that every client of a worker or a command connects with its TLS and
// SASL settings: no plaintext constructor, no sarama.NewConfig outside
// config.go.
func TestEveryProductConfigIsSecured(t *testing.T) {
	t.Parallel()
	plain := regexp.MustCompile(`\bkafka\.(ClientConfig|ConsumerConfig|ChangelogConfig|GroupConfig|TxnConfig)\(|sarama\.NewConfig\(`)
	// Inside this package the plaintext constructors are called unqualified.
	local := regexp.MustCompile(`(^|[^.\w])(ClientConfig|ConsumerConfig|ChangelogConfig|GroupConfig|TxnConfig)\(`)
	var checked int
	for _, dir := range []string{"..", "../actors", "../cluster", "../internal/node", "../kafka", "../state", "../web", "../cmd/mephisto"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || filepath.Base(f) == "config.go" && filepath.Base(dir) == "kafka" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			for i, line := range strings.Split(string(b), "\n") {
				code := strings.TrimSpace(line)
				if strings.HasPrefix(code, "//") || strings.HasPrefix(code, "func ") {
					continue
				}
				if plain.MatchString(line) || filepath.Base(dir) == "kafka" && local.MatchString(line) {
					t.Errorf("%s:%d makes a sarama config without the node's Net: %s", f, i+1, strings.TrimSpace(line))
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d files: the layout changed", checked)
	}
}

// TestBrokerListsSASLHandshakeV0: with SASL on, the embedded broker's
// ApiVersions lists SaslHandshake from version 0, as Apache Kafka does
// (librdkafka clients refuse to authenticate otherwise), and still
// authenticates with v1.
func TestBrokerListsSASLHandshakeV0(t *testing.T) {
	t.Parallel()
	b := startSecureBroker(t, false, SASLUser{SASLSCRAMSHA512, "alice", password})
	n := mustNet(t, Security{TLS: true, CAFile: b.files.CA})
	cfg := n.ClientConfig("apiversions")
	br := sarama.NewBroker(b.Addr())
	if err := br.Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	resp, err := br.ApiVersions(&sarama.ApiVersionsRequest{Version: 3, ClientSoftwareName: "test", ClientSoftwareVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, k := range resp.ApiKeys {
		if k.ApiKey == int16(kmsg.SASLHandshake) {
			found = true
			if k.MinVersion != 0 || k.MaxVersion != 1 {
				t.Errorf("SaslHandshake listed as %d–%d, want 0–1", k.MinVersion, k.MaxVersion)
			}
		}
	}
	if !found {
		t.Error("ApiVersions does not list SaslHandshake")
	}
	sc := mustNet(t, Security{TLS: true, CAFile: b.files.CA, SASLMechanism: SASLSCRAMSHA512, SASLUser: "alice", SASLPassword: password}).ClientConfig("ok")
	if err := Probe([]string{b.Addr()}, sc); err != nil {
		t.Fatalf("SCRAM after the rewrite: %v", err)
	}
}
