package proctest

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// SharedKafka is a test package's Apache Kafka cluster: started by the
// first test that asks for it, shared by the package's tests (each uses
// topics and groups of its own), stopped by Close from TestMain. A package
// starts one JVM, not one per test.
type SharedKafka struct {
	// Spec is what to start; Dir defaults to a temporary directory that
	// Close removes.
	Spec KafkaSpec

	once   sync.Once
	k      *Kafka
	dir    string
	err    error
	failed atomic.Bool // a test that used the cluster failed: keep its logs
}

// Get returns the running cluster, starting it on first use. Where the
// real-Kafka tier cannot run (no Java or Maven, or MEPHISTO_KAFKA_OFF) it
// skips t with the reason; if the cluster fails to start it fails t.
func (s *SharedKafka) Get(t TB) *Kafka {
	t.Helper()
	if err := KafkaAvailable(); err != nil {
		t.Skipf("real-Kafka tier skipped: %v", err)
	}
	s.once.Do(func() {
		spec := s.Spec
		if spec.Dir == "" {
			s.dir, s.err = os.MkdirTemp("", "mephisto-kafka-")
			if s.err != nil {
				return
			}
			spec.Dir = s.dir
		}
		s.k, s.err = StartKafka(spec)
	})
	if s.err != nil {
		t.Fatalf("start Apache Kafka %s: %v", KafkaVersion(), s.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.failed.Store(true)
		}
	})
	return s.k
}

// Close stops the cluster if it was started and removes its temporary
// directory — unless a test that used it failed: then it keeps the
// brokers' logs and data and says where. It returns an error if the
// brokers did not stop cleanly.
func (s *SharedKafka) Close() error {
	var err error
	if s.k != nil {
		if err = s.k.Stop(); err != nil {
			err = fmt.Errorf("stop Apache Kafka: %w (its logs are in %s)", err, s.k.spec.LogDir)
		}
	}
	switch {
	case s.dir == "" || err != nil:
	case s.failed.Load():
		fmt.Fprintf(os.Stderr, "a test on the shared Apache Kafka failed: its brokers' logs and data are in %s\n", s.dir)
	default:
		_ = os.RemoveAll(s.dir)
	}
	return err
}

// StartKafkaT starts a cluster of the test's own, in directories of the
// test's, stopped when the test ends; it skips t where the real-Kafka tier
// cannot run.
func StartKafkaT(t TB, spec KafkaSpec) *Kafka {
	t.Helper()
	if err := KafkaAvailable(); err != nil {
		t.Skipf("real-Kafka tier skipped: %v", err)
	}
	if spec.Dir == "" {
		spec.Dir = t.TempDir()
	}
	k, err := StartKafka(spec)
	if err != nil {
		t.Fatalf("start Apache Kafka %s: %v", KafkaVersion(), err)
	}
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("stop Apache Kafka: %v", err)
		}
	})
	return k
}

var (
	sharedNamesMu sync.Mutex
	sharedNames   = map[string]int{} // uses of each name in this process
)

// nonName matches what a topic or group name should not hold.
var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// SharedName returns a name for test t's consumer group, changelogs and
// topics on a broker that tests share: prefix-<t's name> in lower case
// with every run of other characters a '-' (TestFoo/bar → prefix-foo-bar),
// and -2, -3 … when this process named that test before (go test
// -count), so that a test run again starts from a fresh group and empty
// topics.
func SharedName(t TB, prefix string) string {
	name := strings.TrimPrefix(t.Name(), "Test")
	name = prefix + "-" + strings.Trim(nonName.ReplaceAllString(strings.ToLower(name), "-"), "-")
	sharedNamesMu.Lock()
	defer sharedNamesMu.Unlock()
	sharedNames[name]++
	if n := sharedNames[name]; n > 1 {
		return fmt.Sprintf("%s-%d", name, n)
	}
	return name
}
