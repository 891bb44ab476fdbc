package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// Broker kinds, as -brokers takes them: the dev broker and Apache Kafka.
// A run measures every selected workload on each, one after the other.
const (
	brokerKfake = "kfake" // `mephisto broker` (franz-go's kfake), a process of its own
	brokerKafka = "kafka" // Apache Kafka in KRaft mode, one broker (internal/proctest.StartKafka)
)

// Brokers lists every broker kind, in the order they run.
var Brokers = []string{brokerKfake, brokerKafka}

// DefaultBrokers returns the broker kinds a run uses when none are named:
// both when Apache Kafka can start here, else kfake alone and why not.
func DefaultBrokers() ([]string, string) {
	if err := proctest.KafkaAvailable(); err != nil {
		return []string{brokerKfake}, err.Error()
	}
	return Brokers, ""
}

// brokerTitle names a broker kind in the report.
func brokerTitle(kind string) string {
	switch kind {
	case brokerKfake:
		return "the dev broker (`mephisto broker`, kfake)"
	case brokerKafka:
		return fmt.Sprintf("Apache Kafka %s (KRaft, one broker)", proctest.KafkaVersion())
	}
	return kind
}

// startKafkaBroker starts a one-broker Apache Kafka with its data under dir.
func startKafkaBroker(dir, name string) (*broker, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("Apache Kafka: java is not on PATH")
	}
	spec := proctest.KafkaSpec{Name: name, Brokers: 1, Dir: filepath.Join(dir, name+"-data"), LogDir: dir}
	k, err := proctest.StartKafka(spec)
	if err != nil {
		// Once more, on fresh ports and a fresh cluster id: a free port
		// can be taken by another process before the broker binds it (and
		// before c253c7b a random cluster id starting with '-' failed the
		// format).
		spec.Name += "-retry"
		spec.Dir += "-retry"
		if k, err = proctest.StartKafka(spec); err != nil {
			return nil, err
		}
	}
	return &broker{Proc: k.Proc(0), addr: k.Bootstrap(), kind: brokerKafka, kafka: k}, nil
}
