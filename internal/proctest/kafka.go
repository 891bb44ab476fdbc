package proctest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Apache Kafka, the real broker: the project's tests and benchmarks start
// it in KRaft mode from the jars Maven resolves for test/kafka/pom.xml
// (kafka_2.13 and its dependencies, fetched from Maven Central into the
// local Maven cache on first use). Every broker of a cluster is broker and
// controller at once, on free loopback ports, with a data dir of its own.

// KafkaOff, set to any non-empty value in the environment, turns the
// real-Kafka tier off: KafkaAvailable reports it, and the tests skip it.
const KafkaOff = "MEPHISTO_KAFKA_OFF"

// KafkaVersionEnv overrides the Apache Kafka version test/kafka/pom.xml
// pins (its kafka.version property), to try another release.
const KafkaVersionEnv = "MEPHISTO_KAFKA_VERSION"

// KafkaSpec says what Apache Kafka cluster to start.
type KafkaSpec struct {
	// Name prefixes the brokers' names in messages and log files
	// (default "kafka": kafka-1, kafka-2, …).
	Name string
	// Brokers is how many brokers (each also a KRaft controller); default
	// 1. Three give replication factor 3 and transaction logs with
	// min.insync.replicas 2.
	Brokers int
	// Dir holds each broker's data dir and configuration (required).
	Dir string
	// LogDir receives the brokers' output (default Dir).
	LogDir string
	// Config holds server properties that override the defaults (see
	// kafkaDefaults), for every broker.
	Config map[string]string
	// JVM holds extra JVM options. The default heap is 512 MiB.
	JVM []string
	// SASLSSL, when set, gives every broker a second client listener,
	// SASL_SSL, next to the PLAINTEXT one the other tests use: TLS with
	// this certificate, and SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
	// for its users. Kafka.SecureAddrs lists its addresses.
	SASLSSL *KafkaSASLSSL
}

// KafkaSASLSSL configures a SASL_SSL listener (see KafkaSpec.SASLSSL).
type KafkaSASLSSL struct {
	// CertPEM is the brokers' certificate chain and KeyPEM its key
	// (PKCS#8, unencrypted); the certificate must be valid for 127.0.0.1.
	CertPEM, KeyPEM []byte
	// Users are the SASL users: PLAIN users live in the listener's JAAS
	// configuration, SCRAM users are added when the data dirs are
	// formatted.
	Users []KafkaUser
}

// KafkaUser is a SASL user of a SASL_SSL listener.
type KafkaUser struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Name      string
	Password  string // letters and digits only (it goes into JAAS and format arguments unquoted)
}

// saslSSLProps returns the server properties of the SASL_SSL listener,
// with the keystore written into dir.
func (s *KafkaSASLSSL) props(dir string) (map[string]string, error) {
	keystore := filepath.Join(dir, "sasl-ssl-keystore.pem")
	if err := os.WriteFile(keystore, append(append([]byte(nil), s.KeyPEM...), s.CertPEM...), 0o600); err != nil {
		return nil, err
	}
	var plain []string
	for _, u := range s.Users {
		if u.Mechanism == "PLAIN" {
			plain = append(plain, fmt.Sprintf("user_%s=%q", u.Name, u.Password))
		}
	}
	if len(plain) == 0 {
		plain = append(plain, `user_nobody="nobody"`) // PLAIN needs a user to be enabled
	}
	const scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	return map[string]string{
		"sasl.enabled.mechanisms":                               "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
		"listener.name.sasl_ssl.plain.sasl.jaas.config":         "org.apache.kafka.common.security.plain.PlainLoginModule required " + strings.Join(plain, " ") + ";",
		"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
		"listener.name.sasl_ssl.ssl.keystore.type":              "PEM",
		"listener.name.sasl_ssl.ssl.keystore.location":          keystore,
	}, nil
}

// scramArgs are the format tool's arguments that add the SCRAM users.
func (s *KafkaSASLSSL) scramArgs() []string {
	var args []string
	for _, u := range s.Users {
		if strings.HasPrefix(u.Mechanism, "SCRAM-") {
			args = append(args, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", u.Mechanism, u.Name, u.Password))
		}
	}
	return args
}

// Kafka is a running Apache Kafka cluster started by StartKafka.
type Kafka struct {
	spec      KafkaSpec
	classpath string
	ClusterID string
	nodes     []*kafkaNode
}

type kafkaNode struct {
	id               int
	addr, controller string // host:port of the PLAINTEXT and CONTROLLER listeners
	secure           string // host:port of the SASL_SSL listener, if any
	dir, props       string // data dir and server.properties
	proc             *Proc
}

// kafkaDefaults are the server properties of a test broker: quick to form
// groups (no initial rebalance delay, the 1 s session timeouts the suites
// use allowed), a log cleaner that wakes every second so that compaction
// happens within a test, and internal topics replicated as far as the
// cluster allows.
func kafkaDefaults(n int) map[string]string {
	rf := strconv.Itoa(min(n, 3))
	isr := strconv.Itoa(min(n, 2))
	return map[string]string{
		"num.partitions":                                   "1",
		"auto.create.topics.enable":                        "true",
		"offsets.topic.replication.factor":                 rf,
		"offsets.topic.num.partitions":                     "10",
		"transaction.state.log.replication.factor":         rf,
		"transaction.state.log.min.isr":                    isr,
		"transaction.state.log.num.partitions":             "10",
		"default.replication.factor":                       rf,
		"min.insync.replicas":                              "1",
		"group.initial.rebalance.delay.ms":                 "0",
		"group.min.session.timeout.ms":                     "1000",
		"log.cleaner.backoff.ms":                           "1000",
		"log.retention.check.interval.ms":                  "1000",
		"log.segment.delete.delay.ms":                      "1000",
		"share.coordinator.state.topic.replication.factor": rf,
		"share.coordinator.state.topic.min.isr":            isr,
	}
}

// kafkaLog4j keeps a broker's output to what helps read a failed test:
// warnings, and the line that says the server started (which StartKafka
// waits for).
const kafkaLog4j = `status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_ERR
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
`

// kafkaStarted is the line a broker logs once it serves.
var kafkaStarted = regexp.MustCompile(`Kafka Server started`)

var (
	kafkaCPOnce sync.Once
	kafkaCP     string
	kafkaCPErr  error
)

// KafkaAvailable reports whether StartKafka can run here: nil when Java
// and Maven are on PATH and Maven resolved Apache Kafka's jars; otherwise
// an error that says why (the tests skip the real-Kafka tier with it).
func KafkaAvailable() error {
	_, err := kafkaClasspath()
	return err
}

// KafkaClasspath is the classpath of Apache Kafka's jars (the broker's and
// the Java client's, kafka-clients), for Java programs the tests run
// against a broker.
func KafkaClasspath() (string, error) { return kafkaClasspath() }

// KafkaVersion is the Apache Kafka version StartKafka runs.
func KafkaVersion() string {
	if v := os.Getenv(KafkaVersionEnv); v != "" {
		return v
	}
	pom, err := kafkaPom()
	if err != nil {
		return "unknown"
	}
	b, _ := os.ReadFile(pom)
	if m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "unknown"
}

// kafkaPom finds test/kafka/pom.xml in the module this process runs in
// (a test runs in its package's directory: go.mod is above it).
func kafkaPom() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			pom := filepath.Join(dir, "test", "kafka", "pom.xml")
			if _, err := os.Stat(pom); err != nil {
				return "", fmt.Errorf("no %s: %w", pom, err)
			}
			return pom, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("test/kafka/pom.xml not found: not inside the Mephisto module")
		}
		dir = parent
	}
}

// kafkaClasspath returns the classpath of Apache Kafka's jars, asking
// Maven once per pom and version (the answer is cached in the user's
// cache dir, and Maven runs under a file lock, so that test packages
// running at once don't resolve it together).
func kafkaClasspath() (string, error) {
	kafkaCPOnce.Do(func() { kafkaCP, kafkaCPErr = resolveKafkaClasspath() })
	return kafkaCP, kafkaCPErr
}

func resolveKafkaClasspath() (string, error) {
	if v := os.Getenv(KafkaOff); v != "" {
		return "", fmt.Errorf("the real-Kafka tier is off (%s=%s)", KafkaOff, v)
	}
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("the real-Kafka tier needs Java 17+ and Maven: %s is not on PATH", tool)
		}
	}
	if err := javaAtLeast(17); err != nil {
		return "", err
	}
	pom, err := kafkaPom()
	if err != nil {
		return "", err
	}
	body, err := os.ReadFile(pom)
	if err != nil {
		return "", err
	}
	version := os.Getenv(KafkaVersionEnv)
	sum := sha256.Sum256(append(body, version...))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "mephisto")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	cpFile := filepath.Join(cache, "kafka-classpath-"+hex.EncodeToString(sum[:8]))
	lock, err := os.OpenFile(cpFile+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	if cp, err := os.ReadFile(cpFile); err == nil && jarsExist(string(cp)) {
		return string(cp), nil
	}
	args := []string{"-B", "-q", "-f", pom, "dependency:build-classpath", "-Dmdep.outputFile=" + cpFile}
	if version != "" {
		args = append(args, "-Dkafka.version="+version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mvn", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mvn could not resolve Apache Kafka's jars for %s (is Maven Central reachable?): %v\n%s", pom, err, tailString(out, 4<<10))
	}
	cp, err := os.ReadFile(cpFile)
	if err != nil || !jarsExist(string(cp)) {
		return "", fmt.Errorf("mvn wrote no usable classpath to %s", cpFile)
	}
	return string(cp), nil
}

// javaAtLeast checks that the java on PATH is of version major or newer
// (Apache Kafka 4 brokers need 17).
func javaAtLeast(major int) error {
	out, err := exec.Command("java", "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("java -version: %v: %s", err, tailString(out, 512))
	}
	m := regexp.MustCompile(`version "(\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("java -version printed no version: %s", tailString(out, 512))
	}
	if v, _ := strconv.Atoi(string(m[1])); v < major {
		return fmt.Errorf("the real-Kafka tier needs Java %d+, java on PATH is %s (set PATH or JAVA_HOME to a newer JDK)", major, m[1])
	}
	return nil
}

func jarsExist(cp string) bool {
	jars := strings.Split(strings.TrimSpace(cp), string(os.PathListSeparator))
	if len(jars) < 10 {
		return false
	}
	for _, j := range jars {
		if _, err := os.Stat(j); err != nil {
			return false
		}
	}
	return true
}

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// newClusterID returns a KRaft cluster id: 16 random bytes, URL-safe
// base64 without padding (what kafka-storage random-uuid prints), never
// starting with '-'.
func newClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		// kafka-storage would take an id that starts with '-' for an
		// option (Kafka's own random ids never do).
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

// StartKafka formats and starts the cluster spec describes and waits until
// every broker serves.
func StartKafka(spec KafkaSpec) (*Kafka, error) {
	cp, err := kafkaClasspath()
	if err != nil {
		return nil, err
	}
	if spec.Dir == "" {
		return nil, errors.New("start Apache Kafka: no Dir")
	}
	if spec.Brokers <= 0 {
		spec.Brokers = 1
	}
	if spec.Name == "" {
		spec.Name = "kafka"
	}
	if spec.LogDir == "" {
		spec.LogDir = spec.Dir
	}
	k := &Kafka{spec: spec, classpath: cp, ClusterID: newClusterID()}
	var voters []string
	for i := range spec.Brokers {
		addr, err := FreeAddr(false)
		if err != nil {
			return nil, err
		}
		ctrl, err := FreeAddr(false)
		if err != nil {
			return nil, err
		}
		n := &kafkaNode{id: i + 1, addr: addr, controller: ctrl,
			dir: filepath.Join(spec.Dir, fmt.Sprintf("%s-%d", spec.Name, i+1))}
		if spec.SASLSSL != nil {
			if n.secure, err = FreeAddr(false); err != nil {
				return nil, err
			}
		}
		n.props = filepath.Join(n.dir, "server.properties")
		k.nodes = append(k.nodes, n)
		voters = append(voters, fmt.Sprintf("%d@%s", n.id, ctrl))
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, err
	}
	log4j := filepath.Join(spec.Dir, spec.Name+"-log4j2.properties")
	if err := os.WriteFile(log4j, []byte(kafkaLog4j), 0o644); err != nil {
		return nil, err
	}
	props := kafkaDefaults(spec.Brokers)
	maps.Copy(props, spec.Config)
	// Format the data dirs side by side: each is a JVM start.
	errs := make([]error, len(k.nodes))
	var wg sync.WaitGroup
	for i, n := range k.nodes {
		own := map[string]string{
			"process.roles":                  "broker,controller",
			"node.id":                        strconv.Itoa(n.id),
			"controller.quorum.voters":       strings.Join(voters, ","),
			"listeners":                      "PLAINTEXT://" + n.addr + ",CONTROLLER://" + n.controller,
			"advertised.listeners":           "PLAINTEXT://" + n.addr,
			"controller.listener.names":      "CONTROLLER",
			"inter.broker.listener.name":     "PLAINTEXT",
			"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"log.dirs":                       filepath.Join(n.dir, "data"),
			"metadata.log.dir":               filepath.Join(n.dir, "meta"),
		}
		maps.Copy(own, props)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		var format []string
		if spec.SASLSSL != nil {
			own["listeners"] += ",SASL_SSL://" + n.secure
			own["advertised.listeners"] += ",SASL_SSL://" + n.secure
			own["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
			sp, err := spec.SASLSSL.props(n.dir)
			if err != nil {
				return nil, err
			}
			maps.Copy(own, sp)
			format = spec.SASLSSL.scramArgs()
		}
		if err := writeProperties(n.props, own); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A short-lived tool: the JIT's first tier is all it needs.
			args := append(k.jvm(log4j), "-XX:TieredStopAtLevel=1", "kafka.tools.StorageTool", "format", "-t", k.ClusterID, "-c", n.props)
			args = append(args, format...)
			res, err := Run(Spec{Name: fmt.Sprintf("%s-%d-format", spec.Name, n.id), Path: "java", Args: args, LogDir: spec.LogDir}, 2*time.Minute)
			if err == nil && res.Code != 0 {
				err = fmt.Errorf("exit status %d: %s%s", res.Code, tailString([]byte(res.Stdout), 2<<10), tailString([]byte(res.Stderr), 2<<10))
			}
			if err != nil {
				errs[i] = fmt.Errorf("format the data dir of %s-%d: %w", spec.Name, n.id, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i := range k.nodes {
		if err := k.start(i); err != nil {
			_ = k.Stop()
			return nil, err
		}
	}
	for i := range k.nodes {
		if err := k.waitStarted(i); err != nil {
			_ = k.Stop()
			return nil, err
		}
	}
	return k, nil
}

func (k *Kafka) jvm(log4j string) []string {
	args := []string{"-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-Djava.awt.headless=true", "-Dlog4j2.configurationFile=" + log4j}
	args = append(args, k.spec.JVM...)
	return append(args, "-cp", k.classpath)
}

func writeProperties(path string, props map[string]string) error {
	var b bytes.Buffer
	for _, key := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", key, props[key])
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// start starts broker i on its ports and data dir (a restart reuses both).
func (k *Kafka) start(i int) error {
	n := k.nodes[i]
	p, err := Start(Spec{Name: fmt.Sprintf("%s-%d", k.spec.Name, n.id), Path: "java",
		Args:   append(k.jvm(filepath.Join(k.spec.Dir, k.spec.Name+"-log4j2.properties")), "kafka.Kafka", n.props),
		LogDir: k.spec.LogDir})
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// kafkaStartTimeout bounds a broker's start: a JVM's, on a busy machine.
const kafkaStartTimeout = 2 * time.Minute

func (k *Kafka) waitStarted(i int) error {
	p := k.nodes[i].proc
	_, err := Poll(context.Background(), PollEvery, kafkaStartTimeout, p.Name()+" to start", func() (bool, string, error) {
		exited := p.Exited()
		if kafkaStarted.MatchString(p.Stderr()) {
			return true, "", nil
		}
		if exited {
			return false, "", fmt.Errorf("%s exited (%s) before it started; its log:\n%s", p.Name(), p.DescribeExit(), p.Tail(4<<10))
		}
		return false, "not started yet", nil
	})
	return err
}

// Bootstrap is the brokers' addresses, comma-separated (what --brokers
// takes).
func (k *Kafka) Bootstrap() string { return strings.Join(k.Addrs(), ",") }

// Addrs is the brokers' addresses, one per broker.
func (k *Kafka) Addrs() []string {
	out := make([]string, len(k.nodes))
	for i, n := range k.nodes {
		out[i] = n.addr
	}
	return out
}

// SecureAddrs is the brokers' SASL_SSL addresses (KafkaSpec.SASLSSL),
// one per broker; nil without that listener.
func (k *Kafka) SecureAddrs() []string {
	if k.spec.SASLSSL == nil {
		return nil
	}
	out := make([]string, len(k.nodes))
	for i, n := range k.nodes {
		out[i] = n.secure
	}
	return out
}

// Proc is broker i's process (0-based), nil while it is stopped.
func (k *Kafka) Proc(i int) *Proc { return k.nodes[i].proc }

// kafkaStopTimeout bounds a broker's clean shutdown (SIGTERM: it hands off
// leadership and closes its logs).
const kafkaStopTimeout = time.Minute

// StopBroker stops broker i cleanly (SIGTERM), killing it if it does not
// exit in time.
func (k *Kafka) StopBroker(i int) error {
	p := k.nodes[i].proc
	if p == nil {
		return nil
	}
	k.nodes[i].proc = nil
	err := p.Stop(kafkaStopTimeout)
	if err != nil && p.Exited() {
		// The JVM exits 143 (128+SIGTERM) once its shutdown hooks ran:
		// that is its clean stop.
		if code, _, _ := p.Wait(time.Second); code == 143 {
			err = nil
		}
	}
	return err
}

// KillBroker kills broker i (SIGKILL).
func (k *Kafka) KillBroker(i int) error {
	p := k.nodes[i].proc
	if p == nil {
		return nil
	}
	k.nodes[i].proc = nil
	return p.Kill()
}

// RestartBroker starts stopped broker i again on the same ports and data
// dir and waits until it serves.
func (k *Kafka) RestartBroker(i int) error {
	if k.nodes[i].proc != nil {
		return fmt.Errorf("%s-%d is running", k.spec.Name, k.nodes[i].id)
	}
	if err := k.start(i); err != nil {
		return err
	}
	return k.waitStarted(i)
}

// Stop stops every broker, one after the other: each but the last
// cleanly (SIGTERM; it hands its partitions off with the controllers'
// approval, which needs a quorum of them). The last broker of a cluster
// of several is alone by then, with no quorum to approve its controlled
// shutdown — it would wait for one for minutes — so it gets a short grace
// and is then killed, which is no error. It returns the first error.
func (k *Kafka) Stop() error {
	var errs []error
	for i := range k.nodes {
		if i == len(k.nodes)-1 && len(k.nodes) > 1 {
			if p := k.nodes[i].proc; p != nil {
				k.nodes[i].proc = nil
				_ = p.Signal(syscall.SIGTERM)
				if _, _, err := p.Wait(10 * time.Second); err != nil {
					errs = append(errs, p.Kill())
				}
			}
			continue
		}
		errs = append(errs, k.StopBroker(i))
	}
	return errors.Join(errs...)
}
