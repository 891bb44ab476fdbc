package agenttest_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/agenttest"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// The brokers a test runs on: kfake (a `mephisto broker` process of the
// test's own, as always) and Apache Kafka (the package's one cluster,
// shared by every test, so each test names its own app and topics).

// sharedKafka is the package's Apache Kafka: one JVM broker for all the
// tests, started by the first that asks for it and stopped by TestMain.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "agenttest-kafka"}}

// broker is where a subtest's workers and clients run.
type broker struct {
	name  string          // "kfake" or "kafka"
	kafka *proctest.Kafka // nil on kfake
	// topicPrefix goes in front of the input topics' names (adding and
	// tally); env tells the test app that and its app name (both empty on
	// kfake: app atest, topics adding and tally).
	topicPrefix string
	env         []string
}

// eachBroker runs f as subtest kfake and as subtest kafka. On Apache
// Kafka the app (so the consumer group and its topics) is named after
// the test (the cluster is shared); the subtest skips, saying why, where
// the real-Kafka tier cannot run.
func eachBroker(t *testing.T, f func(t *testing.T, b *broker)) {
	t.Run("kfake", func(t *testing.T) {
		f(t, &broker{name: "kfake"})
	})
	t.Run("kafka", func(t *testing.T) {
		k := sharedKafka.Get(t)
		app := proctest.SharedName(t, "atest")
		prefix := app + "-"
		f(t, &broker{name: "kafka", kafka: k, topicPrefix: prefix,
			env: []string{agenttest.EnvAppName + "=" + app, agenttest.EnvTopicPrefix + "=" + prefix}})
	})
}

// start gives the cluster its broker: on kfake a `mephisto broker` of the
// test's own, on Apache Kafka the shared one.
func (b *broker) start(t *testing.T, logDir string) (addr string, p *proc) {
	t.Helper()
	if b.kafka != nil {
		return b.kafka.Bootstrap(), b.kafka.Proc(0)
	}
	listen := freeAddr(t, false)
	p = startProc(t, logDir, "broker", mephistoBin, nil, "broker", "--listen", listen, "--data-dir", t.TempDir())
	addr, _ = p.WaitListeningT(t, 30*time.Second, listen)
	return addr, p
}

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "agenttest",
		// The test app is race-checked when the tests are: its tasks and
		// the library's messaging paths run in it.
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/agenttest/testapp", Name: "atest", Out: &testappBin, Race: true},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "agenttest: %v\n", err)
		code = 1
	}
	os.Exit(code)
}
