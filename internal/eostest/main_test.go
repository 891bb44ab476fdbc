package eostest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

func TestMain(m *testing.M) {
	code := proctest.BuildMain(m, "eostest",
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/internal/eostest/testapp", Out: &testappBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "eostest: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// sharedKafka is the package's Apache Kafka: three brokers (each also a
// KRaft controller), so that the transaction coordinators' log and the
// consumer offsets are replicated as in production (replication factor
// 3, min.insync.replicas 2 for the transaction log), shared by the
// subtests, started by the first that asks and stopped by TestMain.
var sharedKafka = proctest.SharedKafka{Spec: proctest.KafkaSpec{Name: "eostest-kafka", Brokers: kafkaBrokers}}

// kafkaBrokers is how many brokers sharedKafka has.
const kafkaBrokers = 3

// broker is where one run's workers run: its address and the names the
// run gives its app and topics there.
type broker struct {
	name  string // "kfake" or "kafka"
	addr  string // bootstrap, comma-separated
	app   string // app name: consumer group, transactional ids, changelog prefix
	topic string // prefix of the app's topics
	proc  *proctest.Proc
}

// env tells the test app the broker's names.
func (b *broker) env() []string {
	return []string{EnvAppName + "=" + b.app, EnvTopicPrefix + "=" + b.topic}
}

// kfake starts a `mephisto broker` of the run's own (in memory: it is
// never killed) and names the app as the test app does by default.
func kfake(t *testing.T, logDir string) *broker {
	t.Helper()
	listen := proctest.FreeAddrT(t, false)
	p := proctest.StartT(t, proctest.Spec{Name: "broker", Path: mephistoBin, Args: []string{"broker", "--listen", listen},
		Env: proctest.Environ(nil, "MEPHISTO_", "EOSTEST_"), LogDir: logDir})
	addr, _ := p.WaitListeningT(t, 30*time.Second, listen)
	return &broker{name: "kfake", addr: addr, app: AppName, proc: p}
}

// onKafka is a run's view of the shared Apache Kafka: the app and its
// topics named after the test.
func onKafka(t *testing.T, k *proctest.Kafka) *broker {
	app := proctest.SharedName(t, AppName)
	return &broker{name: "kafka", addr: k.Bootstrap(), app: app, topic: app + "-"}
}
