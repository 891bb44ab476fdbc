package clustertest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// The brokers a test runs on: kfake (a `mephisto broker` process of the
// test's own, as always) and Apache Kafka (the package's one cluster,
// shared by every test, so each test names its own group and topics).

// Environment variables the test app reads for its names (unset: "ctest"
// and no prefix, the names on kfake).
const (
	envAppName     = "CLUSTERTEST_APP_NAME"
	envTopicPrefix = "CLUSTERTEST_TOPIC_PREFIX"
)

// sharedKafka is the package's Apache Kafka: one JVM broker for all the
// tests, started by the first that asks for it and stopped by TestMain.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "clustertest-kafka"}}

// broker is where a subtest's workers run: its names and, on Apache
// Kafka, the shared cluster.
type broker struct {
	name  string          // "kfake" or "kafka"
	kafka *proctest.Kafka // nil on kfake
	// The app name (the consumer group and the changelogs' prefix) and
	// the input topic.
	app, events string
	env         []string // what tells the test app those names
}

// changelog is the counts table's changelog topic.
func (b *broker) changelog() string { return b.app + "-" + countsTable + "-changelog" }

// eachBroker runs f as subtest kfake and as subtest kafka. On Apache
// Kafka the group and the topics are named after the test (the cluster
// is shared); the subtest skips, saying why, where the real-Kafka tier
// cannot run.
func eachBroker(t *testing.T, f func(t *testing.T, b *broker)) {
	t.Run("kfake", func(t *testing.T) { f(t, kfake()) })
	t.Run("kafka", func(t *testing.T) {
		k := sharedKafka.Get(t)
		app := proctest.SharedName(t, appName)
		prefix := app + "-"
		f(t, &broker{name: "kafka", kafka: k, app: app, events: prefix + eventsTopic,
			env: []string{envAppName + "=" + app, envTopicPrefix + "=" + prefix}})
	})
}

// kfake is the broker of a test that runs on kfake only: a `mephisto
// broker` of its own, and the app's own names.
func kfake() *broker { return &broker{name: "kfake", app: appName, events: eventsTopic} }

// start gives the cluster its broker: on kfake a `mephisto broker` of the
// test's own, on Apache Kafka the shared one.
func (b *broker) start(t *testing.T, logDir string) (addr string, p *proc) {
	t.Helper()
	if b.kafka != nil {
		return b.kafka.Bootstrap(), b.kafka.Proc(0)
	}
	listen := freeAddr(t, false)
	p = startProc(t, logDir, nil, "broker", mephistoBin, "broker", "--listen", listen, "--data-dir", t.TempDir())
	addr, _ = p.WaitListeningT(t, 30*time.Second, listen)
	return addr, p
}

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "clustertest",
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/clustertest/testapp", Out: &testappBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "clustertest: %v\n", err)
		code = 1
	}
	os.Exit(code)
}
