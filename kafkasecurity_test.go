package mephisto_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/certtest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

const securePassword = "Zx9-very-secret-pass"

// TestSecurityConfigValidate: inconsistent TLS and SASL settings are
// refused before anything starts, each named by its flag, none showing the
// password.
func TestSecurityConfigValidate(t *testing.T) {
	t.Parallel()
	brokers := mephisto.WithBrokers("127.0.0.1:1")
	for _, c := range []struct {
		opts []mephisto.Option
		want string
	}{
		{[]mephisto.Option{brokers, mephisto.WithKafkaTLSCA("ca.pem")}, "--kafka-tls-ca is set but --kafka-tls is off"},
		{[]mephisto.Option{brokers, mephisto.WithKafkaTLS(true), mephisto.WithKafkaTLSCert("c.pem", "")}, "--kafka-tls-cert and --kafka-tls-key go together"},
		{[]mephisto.Option{brokers, mephisto.WithKafkaSASL("OAUTHBEARER", "u", securePassword)}, `--kafka-sasl-mechanism must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got "OAUTHBEARER"`},
		{[]mephisto.Option{brokers, mephisto.WithKafkaSASL(mephisto.SASLSCRAMSHA512, "u", "")}, "needs a password: set MEPHISTO_KAFKA_SASL_PASSWORD"},
		{[]mephisto.Option{mephisto.WithKafkaTLS(true)}, "--brokers is empty: the embedded broker speaks plaintext"},
		{[]mephisto.Option{brokers, mephisto.WithActorAddr("127.0.0.1:0"), mephisto.WithActorTLS("n.pem", "", "ca.pem")}, "--actor-tls-key is missing"},
		{[]mephisto.Option{brokers, mephisto.WithActorTLS("n.pem", "n-key.pem", "ca.pem")}, "--actor is empty"},
		{[]mephisto.Option{brokers, mephisto.WithActorTLSServerName("node")}, "--actor-tls-server-name needs"},
	} {
		err := mephisto.New("v", c.opts...).Config().Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
		if err != nil && strings.Contains(err.Error(), securePassword) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	ok := mephisto.New("v", brokers, mephisto.WithKafkaTLS(true), mephisto.WithKafkaTLSCA("ca.pem"),
		mephisto.WithKafkaSASL(mephisto.SASLPlain, "u", securePassword)).Config()
	if err := ok.Validate(); err != nil {
		t.Errorf("a consistent configuration: %v", err)
	}
	var dump bytes.Buffer
	fmt.Fprintf(&dump, "%v %+v %#v %s", ok, ok, ok, ok.KafkaSASLPassword)
	b, _ := json.Marshal(ok)
	dump.Write(b)
	slog.New(slog.NewTextHandler(&dump, nil)).Info("config", "cfg", ok, "password", ok.KafkaSASLPassword)
	if strings.Contains(dump.String(), securePassword) {
		t.Errorf("a dump of the Config shows the password:\n%s", dump.String())
	}
	if string(ok.KafkaSASLPassword) != securePassword {
		t.Errorf("the password is not kept")
	}
}

// secureBroker starts an in-process broker speaking TLS with a SCRAM-SHA-512
// user and returns it and the file of the CA that signed its certificate.
func secureBroker(t *testing.T) (*kafka.Broker, string) {
	t.Helper()
	ca := certtest.NewCA(t, "test CA")
	pair := ca.Issue(t, "broker", "127.0.0.1")
	files := ca.Write(t, t.TempDir(), "broker", pair)
	b, err := kafka.StartBroker(kafka.BrokerConfig{
		TLS:  &tls.Config{Certificates: []tls.Certificate{pair.TLS(t)}},
		SASL: []kafka.SASLUser{{Mechanism: kafka.SASLSCRAMSHA512, User: "alice", Password: securePassword}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, files.CA
}

// TestWorkerThroughTLSAndSCRAMByOptions: a worker configured by options
// and the send and ask commands configured by flags connect through TLS
// and SCRAM-SHA-512: the table counts exactly what was sent, ask gets its
// reply; the help and the logs never show the password.
func TestWorkerThroughTLSAndSCRAMByOptions(t *testing.T) {
	t.Parallel()
	b, caFile := secureBroker(t)
	var logs proctest.Buffer
	app := mephisto.New("secure", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr(""), mephisto.WithPartitions(2), mephisto.WithCommitInterval(50*time.Millisecond),
		mephisto.WithLogger(testLogger(t, &logs)),
		mephisto.WithKafkaTLS(true), mephisto.WithKafkaTLSCA(caFile), mephisto.WithKafkaSASL(mephisto.SASLSCRAMSHA512, "alice", securePassword))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", in, func(ctx mephisto.Context, k, _ string) error {
		return counts.Update(ctx, k, func(n int64) int64 { return n + 1 })
	})
	questions := mephisto.NewTopic(app, "questions", codec.String(), codec.JSON[addReq]())
	mephisto.NewReplyAgent(app, "add", questions, func(_ mephisto.Context, _ string, r addReq) (int, error) { return r.A + r.B, nil })
	var help bytes.Buffer
	if code := app.Execute(context.Background(), []string{"worker", "--help"}, &help, &help); code != 0 || strings.Contains(help.String(), securePassword) ||
		!strings.Contains(help.String(), "--kafka-sasl-password") {
		t.Fatalf("worker --help: exit %d, shows the password or lacks the flag:\n%s", code, help.String())
	}
	runApp(t, app)
	var out bytes.Buffer
	for range 3 {
		// A client of the command line: the flags, the password by flag
		// (the env variable is bindEnv's, tested by internal/securetest).
		if code := app.Execute(context.Background(), []string{"send", "in", "x", "--key", "k", "--brokers", b.Addr(),
			"--kafka-tls", "--kafka-tls-ca", caFile, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "alice",
			"--kafka-sasl-password", securePassword}, &out, &out); code != 0 {
			t.Fatalf("send: exit %d\n%s", code, out.String())
		}
	}
	waitFor(t, 30*time.Second, "k counted 3 times", func() (bool, string) {
		n, err := counts.Get(context.Background(), "k")
		return err == nil && n == 3, fmt.Sprintf("%d %v", n, err)
	})
	// ask: a request and its reply, both through TLS + SCRAM.
	out.Reset()
	if code := app.Execute(context.Background(), []string{"ask", "add", `{"A":40,"B":2}`, "--key", "q", "--brokers", b.Addr(),
		"--kafka-tls", "--kafka-tls-ca", caFile, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "alice",
		"--kafka-sasl-password", securePassword, "--timeout", "20s"}, &out, &out); code != 0 || strings.TrimSpace(out.String()) != "42" {
		t.Fatalf("ask through TLS + SCRAM: exit %d, %q", code, out.String())
	}
	// A wrong password: the command fails at once, naming the broker.
	out.Reset()
	code := app.Execute(context.Background(), []string{"send", "in", "x", "--brokers", b.Addr(), "--kafka-tls", "--kafka-tls-ca", caFile,
		"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "alice", "--kafka-sasl-password", "not-" + securePassword}, &out, &out)
	if code != 1 || !strings.Contains(out.String(), "Kafka broker "+b.Addr()+": SASL authentication failed") {
		t.Errorf("send with a wrong password: exit %d\n%s", code, out.String())
	}
	if strings.Contains(logs.String(), securePassword) || strings.Contains(out.String(), securePassword) {
		t.Errorf("the logs or the CLI's output show the password")
	}
}
