package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
)

const (
	// appName is the test app's default name (its consumer group and the
	// prefix of its changelog topics).
	appName = "systest"
	// partitions is the partition count the workers create topics with.
	partitions = 4

	countsChangelog = appName + "-counts-changelog"
)

// Paths of the binaries TestMain builds.
var testappBin, mephistoBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mephisto-systest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testappBin = filepath.Join(dir, "testapp")
	mephistoBin = filepath.Join(dir, "mephisto")
	for out, pkg := range map[string]string{
		testappBin:  "github.com/mephistohq/mephisto/internal/systest/testapp",
		mephistoBin: "github.com/mephistohq/mephisto/cmd/mephisto",
	} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "systest: go build %s: %v\n", pkg, err)
			return 1
		}
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Child processes.

// logBuf collects a child's output; it is safe for concurrent use.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// proc is a child OS process. It is killed (SIGKILL) when the test ends if
// still running, and its output is dumped if the test failed.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdout logBuf
	stderr logBuf
	done   chan struct{} // closed once the process has exited
	state  *os.ProcessState
}

// childEnv is the test's environment without MEPHISTO_* variables, which
// the binaries would read as flag defaults.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEPHISTO_") && !strings.HasPrefix(kv, "SYSTEST_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func startProc(t testing.TB, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = childEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Logf("started %s (pid %d): %s %s", name, p.cmd.Process.Pid, filepath.Base(path), strings.Join(args, " "))
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	// Cleanups run last-registered first: kill, then dump.
	t.Cleanup(func() {
		if t.Failed() {
			p.dump()
		}
	})
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die after SIGKILL", name, p.cmd.Process.Pid)
			}
		}
	})
	return p
}

// dump logs the tail of the process's output and saves all of it to a file.
func (p *proc) dump() {
	const tail = 12 << 10
	for _, s := range []struct {
		what string
		buf  *logBuf
	}{{"stdout", &p.stdout}, {"stderr", &p.stderr}} {
		out := s.buf.String()
		if out == "" {
			continue
		}
		dir := filepath.Join(os.TempDir(), "mephisto-systest-logs", strings.ReplaceAll(p.t.Name(), "/", "_"))
		file := filepath.Join(dir, p.name+"."+s.what)
		if os.MkdirAll(dir, 0o755) == nil && os.WriteFile(file, []byte(out), 0o644) == nil {
			p.t.Logf("full %s of %s saved in %s", s.what, p.name, file)
		}
		if len(out) > tail {
			out = "[…]" + out[len(out)-tail:]
		}
		p.t.Logf("---- %s of %s (%s) ----\n%s", s.what, p.name, p.describeExit(), out)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) describeExit() string {
	if !p.exited() {
		return "running"
	}
	return p.state.String()
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// waitExit waits for the process to exit and returns its exit code, or -1
// and the signal if a signal ended it.
func (p *proc) waitExit(timeout time.Duration) (code int, sig syscall.Signal) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	ws := p.state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1, ws.Signal()
	}
	return ws.ExitStatus(), 0
}

// kill9 kills the process with SIGKILL and waits for it to be gone.
func (p *proc) kill9() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	if _, sig := p.waitExit(10 * time.Second); sig != syscall.SIGKILL {
		p.t.Fatalf("%s: %s, want killed by SIGKILL", p.name, p.describeExit())
	}
}

// stop sends SIGTERM and requires a clean exit (code 0).
func (p *proc) stop() {
	p.t.Helper()
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code, _ := p.waitExit(60 * time.Second); code != 0 {
		p.t.Fatalf("%s after SIGTERM: %s, want exit status 0", p.name, p.describeExit())
	}
	p.t.Logf("%s stopped cleanly in %v", p.name, time.Since(start).Round(time.Millisecond))
}

// runCmd runs a short-lived command to completion and returns its exit
// code and output.
func runCmd(t testing.TB, name string, env []string, path string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startProc(t, name, env, path, args...)
	code, sig := p.waitExit(60 * time.Second)
	if sig != 0 {
		t.Fatalf("%s: killed by %v", name, sig)
	}
	return code, p.stdout.String(), p.stderr.String()
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// The broker.

type brokerProc struct {
	*proc
	addr, dataDir, clusterID string
}

var listeningRE = regexp.MustCompile(`broker listening on (\S+) cluster-id (\S+)`)

// startBroker runs `mephisto broker` on addr with dataDir and waits until it
// says it listens.
func startBroker(t testing.TB, name, addr, dataDir string) *brokerProc {
	t.Helper()
	b := &brokerProc{dataDir: dataDir}
	b.proc = startProc(t, name, nil, mephistoBin, "broker", "--listen", addr, "--data-dir", dataDir)
	waitFor(t, 30*time.Second, name+" listening", func() (bool, string) {
		if b.exited() {
			t.Fatalf("%s exited: %s\n%s", name, b.describeExit(), b.stderr.String())
		}
		m := listeningRE.FindStringSubmatch(b.stdout.String())
		if m == nil {
			return false, "no 'broker listening' line on stdout yet"
		}
		b.addr, b.clusterID = m[1], m[2]
		return true, ""
	})
	if b.addr != addr {
		t.Fatalf("%s listens on %s, want %s", name, b.addr, addr)
	}
	return b
}

// newBroker starts a broker on a free port with a fresh data dir.
func newBroker(t testing.TB) *brokerProc {
	t.Helper()
	return startBroker(t, "broker", freeAddr(t), t.TempDir())
}

// ---------------------------------------------------------------------------
// Workers.

type workerProc struct {
	*proc
	web, dataDir string
}

// startWorker runs `testapp worker` against brokers with dataDir. extra
// flags come last, so they override the defaults.
func startWorker(t testing.TB, name, brokers, dataDir string, env []string, extra ...string) *workerProc {
	t.Helper()
	w := &workerProc{web: freeAddr(t), dataDir: dataDir}
	args := append([]string{"worker", "--brokers", brokers, "--data-dir", dataDir, "--web", w.web,
		"--partitions", strconv.Itoa(partitions), "--commit-interval", "100ms", "--node-id", "n1"}, extra...)
	w.proc = startProc(t, name, env, testappBin, args...)
	return w
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (w *workerProc) get(path string) (int, []byte, error) {
	resp, err := httpClient.Get("http://" + w.web + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// ready returns /readyz's answer.
func (w *workerProc) ready() (bool, string) {
	code, body, err := w.get("/readyz")
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, fmt.Sprintf("/readyz: HTTP %d %s", code, strings.TrimSpace(string(body)))
}

func (w *workerProc) waitReady(timeout time.Duration) {
	w.t.Helper()
	waitFor(w.t, timeout, w.name+" ready", func() (bool, string) {
		if w.exited() {
			w.t.Fatalf("%s exited before it was ready: %s", w.name, w.describeExit())
		}
		return w.ready()
	})
}

// table reads the committed values of keys over HTTP; a key never written
// (404) reads as 0.
func (w *workerProc) table(table string, keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		code, body, err := w.get("/tables/" + table + "/" + k)
		if err != nil {
			return nil, err
		}
		switch code {
		case http.StatusOK:
			var v struct {
				Table, Key string
				Value      int64
			}
			if err := json.Unmarshal(body, &v); err != nil {
				return nil, fmt.Errorf("%s/%s: %v: %s", table, k, err, body)
			}
			if v.Table != table || v.Key != k {
				return nil, fmt.Errorf("%s/%s: answer names %s/%s", table, k, v.Table, v.Key)
			}
			out[k] = v.Value
		case http.StatusNotFound:
			out[k] = 0
		default:
			return nil, fmt.Errorf("%s/%s: HTTP %d %s", table, k, code, strings.TrimSpace(string(body)))
		}
	}
	return out, nil
}

// waitTable waits until the worker serves exactly want for table.
func (w *workerProc) waitTable(timeout time.Duration, table string, want map[string]int64) {
	w.t.Helper()
	keys := keysOf(want)
	waitFor(w.t, timeout, fmt.Sprintf("%s: %s == expected (%d keys, total %d)", w.name, table, len(want), sum(want)), func() (bool, string) {
		if w.exited() {
			w.t.Fatalf("%s exited: %s", w.name, w.describeExit())
		}
		got, err := w.table(table, keys)
		if err != nil {
			return false, err.Error()
		}
		if d := diff(got, want); d != "" {
			return false, d
		}
		return true, ""
	})
}

// waitTableAtLeast waits until the worker serves at least want[k] for
// every key k of table.
func (w *workerProc) waitTableAtLeast(timeout time.Duration, table string, want map[string]int64) map[string]int64 {
	w.t.Helper()
	keys := keysOf(want)
	var got map[string]int64
	waitFor(w.t, timeout, fmt.Sprintf("%s: %s >= truth (%d keys)", w.name, table, len(want)), func() (bool, string) {
		if w.exited() {
			w.t.Fatalf("%s exited: %s", w.name, w.describeExit())
		}
		var err error
		if got, err = w.table(table, keys); err != nil {
			return false, err.Error()
		}
		for _, k := range keys {
			if got[k] < want[k] {
				return false, fmt.Sprintf("%s = %d < %d", k, got[k], want[k])
			}
		}
		return true, ""
	})
	return got
}

func keysOf(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// diff describes how got differs from want ("" if equal on want's keys).
func diff(got, want map[string]int64) string {
	var d []string
	for _, k := range keysOf(want) {
		if got[k] != want[k] {
			d = append(d, fmt.Sprintf("%s=%d want %d", k, got[k], want[k]))
		}
	}
	if len(d) == 0 {
		return ""
	}
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("… (%d keys differ)", len(d)))
	}
	return fmt.Sprintf("got total %d, want %d: %s", sum(got), sum(want), strings.Join(d, ", "))
}

// ---------------------------------------------------------------------------
// Input.

// record is one produced record; partition and offset are set once the
// broker acknowledged it.
type record struct {
	key, value string
	partition  int32
	offset     int64
}

var eventKeys = func() []string {
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%02d", i)
	}
	return keys
}()

// makeEvents returns n records for topic events, keyed by a pseudo-random
// choice among eventKeys.
func makeEvents(n int, seed uint64) []*record {
	r := rand.New(rand.NewPCG(seed, 1))
	recs := make([]*record, n)
	for i := range recs {
		recs[i] = &record{key: eventKeys[r.IntN(len(eventKeys))], value: "e" + strconv.Itoa(i), offset: -1}
	}
	return recs
}

// makeLines returns n records for topic lines, each of 1 to 5 words, and
// how often each word occurs.
func makeLines(n int, seed uint64) ([]*record, map[string]int64) {
	r := rand.New(rand.NewPCG(seed, 2))
	truth := map[string]int64{}
	for i := 0; i < 30; i++ {
		truth[fmt.Sprintf("w%02d", i)] = 0
	}
	recs := make([]*record, n)
	for i := range recs {
		words := make([]string, 1+r.IntN(5))
		for j := range words {
			words[j] = fmt.Sprintf("w%02d", r.IntN(30))
			truth[words[j]]++
		}
		recs[i] = &record{key: "line-" + strconv.Itoa(i), value: strings.Join(words, " "), offset: -1}
	}
	return recs, truth
}

// countKeys counts records per key (every eventKey present, maybe 0).
func countKeys(recs ...[]*record) map[string]int64 {
	truth := map[string]int64{}
	for _, k := range eventKeys {
		truth[k] = 0
	}
	for _, rs := range recs {
		for _, r := range rs {
			truth[r.key]++
		}
	}
	return truth
}

type producer struct {
	t      testing.TB
	client sarama.Client
	sp     sarama.SyncProducer
	once   sync.Once

	stopping atomic.Bool    // set by close: background sends stop between batches
	inflight sync.WaitGroup // background sends
}

// newProducer connects a producer (Mephisto's client configuration:
// idempotent, acks=all) to the broker at addr.
func newProducer(t testing.TB, addr string) *producer {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("systest-producer"))
	if err != nil {
		t.Fatalf("producer: connect to %s: %v", addr, err)
	}
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		t.Fatalf("producer: %v", err)
	}
	p := &producer{t: t, client: client, sp: sp}
	t.Cleanup(p.close)
	return p
}

// close stops background sends and closes the producer. (sarama panics on
// a send after Close, so a background send still running after a while
// keeps the producer open rather than crash the test binary.)
func (p *producer) close() {
	p.once.Do(func() {
		p.stopping.Store(true)
		done := make(chan struct{})
		go func() { p.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.t.Errorf("a background send is still running; leaving the producer open")
			return
		}
		_ = p.sp.Close()
		_ = p.client.Close()
	})
}

// send produces recs to topic in order, in batches of batch records, each
// on the partition its key hashes to, and records their offsets.
func (p *producer) send(topic string, recs []*record, batch int) error {
	for len(recs) > 0 {
		if p.stopping.Load() {
			return errors.New("producer closed")
		}
		n := min(batch, len(recs))
		msgs := make([]*sarama.ProducerMessage, n)
		for i, r := range recs[:n] {
			r.partition = kafka.Partition([]byte(r.key), partitions)
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Partition: r.partition,
				Key: sarama.StringEncoder(r.key), Value: sarama.StringEncoder(r.value)}
		}
		if err := p.sp.SendMessages(msgs); err != nil {
			if errs, ok := err.(sarama.ProducerErrors); ok && len(errs) > 0 {
				err = fmt.Errorf("%d of %d records failed, first: %w", len(errs), n, errs[0].Err)
			}
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		for i, r := range recs[:n] {
			r.offset = msgs[i].Offset
		}
		recs = recs[n:]
	}
	return nil
}

func (p *producer) mustSend(topic string, recs []*record) {
	p.t.Helper()
	if err := p.send(topic, recs, 500); err != nil {
		p.t.Fatal(err)
	}
}

// sendAsync produces in the background; wait for it with the returned
// function.
func (p *producer) sendAsync(topic string, recs []*record, batch int) (wait func()) {
	errc := make(chan error, 1)
	p.inflight.Add(1)
	go func() {
		defer p.inflight.Done()
		errc <- p.send(topic, recs, batch)
	}()
	var once sync.Once
	return func() {
		p.t.Helper()
		once.Do(func() {
			select {
			case err := <-errc:
				if err != nil {
					p.t.Fatal(err)
				}
			case <-time.After(120 * time.Second):
				p.t.Fatalf("producing to %s did not finish", topic)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// What a (dead or stopped) worker left on disk and in Kafka.

// shardState is what Pebble holds for one partition: the last source offset
// processed and the last changelog offset applied (-1: none).
type shardState struct{ src, chg int64 }

type diskState struct {
	parts [partitions]shardState
	rows  map[string]int64 // every row of the table, all partitions
}

// readDisk opens the Pebble store in dataDir (its owner must be dead) and
// reads table's rows and offsets, source being the table's input topic.
func readDisk(t testing.TB, dataDir, table, source string) diskState {
	t.Helper()
	st, err := state.Open(state.Options{Dir: filepath.Join(dataDir, "state")})
	if err != nil {
		t.Fatalf("open the dead worker's store: %v", err)
	}
	defer st.Close()
	id, err := st.TableID(table)
	if err != nil {
		t.Fatal(err)
	}
	d := diskState{rows: map[string]int64{}}
	for p := int32(0); p < partitions; p++ {
		src, ok, err := st.SourceOffset(source, p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			src = -1
		}
		chg, ok, err := st.ChangelogOffset(id, p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			chg = -1
		}
		d.parts[p] = shardState{src: src, chg: chg}
		err = st.Scan(id, p, func(k, v []byte) bool {
			n, err := codec.Int64().Decode(v)
			if err != nil {
				t.Errorf("row %s/%d/%q: %v", table, p, k, err)
			}
			if kp := kafka.Partition(k, partitions); kp != p {
				t.Errorf("row %q of %s stored in partition %d, but the key hashes to %d", k, table, p, kp)
			}
			d.rows[string(k)] = n
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("on disk: %s offsets per partition (source, changelog): %v; %d rows, total %d", table, d.parts, len(d.rows), sum(d.rows))
	return d
}

// checkDataMatchesOffsets checks the commit protocol's invariant on what a
// worker left in Pebble: for every partition, the stored rows count exactly
// the input records up to the stored source offset — the offsets are never
// ahead of the data, nor behind it. sent must be every record of the
// source topic since offset 0.
func checkDataMatchesOffsets(t testing.TB, d diskState, sent []*record) {
	t.Helper()
	want := map[string]int64{}
	var inPart [partitions]int64
	for _, r := range sent {
		if r.offset < 0 {
			t.Fatalf("record %q was not acknowledged", r.value)
		}
		if r.offset <= d.parts[r.partition].src {
			want[r.key]++
			inPart[r.partition]++
		}
	}
	var rowsIn [partitions]int64
	for k, v := range d.rows {
		rowsIn[kafka.Partition([]byte(k), partitions)] += v
	}
	for p := range partitions {
		src := d.parts[p].src
		if inPart[p] != src+1 {
			t.Fatalf("partition %d: stored source offset %d, but only %d records were produced up to it", p, src, inPart[p])
		}
		if rowsIn[p] != src+1 {
			t.Errorf("partition %d: Pebble's rows count %d records, but its stored source offset %d says %d: data and offsets disagree",
				p, rowsIn[p], src, src+1)
		}
	}
	all := map[string]int64{}
	for k := range want {
		all[k] = 0
	}
	for k := range d.rows {
		all[k] = 0
	}
	for k := range all {
		if d.rows[k] != want[k] {
			t.Errorf("key %s (partition %d): Pebble holds %d, but the records up to the stored offset count %d",
				k, kafka.Partition([]byte(k), partitions), d.rows[k], want[k])
		}
	}
}

// committedOffsets returns the consumer group's committed offsets of topic
// (-1: none).
func committedOffsets(t testing.TB, addr, group, topic string) [partitions]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{addr}, kafka.ClientConfig("systest-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		t.Fatalf("list committed offsets of group %s: %v", group, err)
	}
	var out [partitions]int64
	for i := range out {
		out[i] = -1
		if b := resp.GetBlock(topic, int32(i)); b != nil {
			out[i] = b.Offset
		}
	}
	return out
}

// checkCommittedNotAhead checks that the group's committed offsets in Kafka
// are never ahead of what Pebble holds (step c after step b), and returns
// them.
func checkCommittedNotAhead(t testing.TB, addr, topic string, d diskState) [partitions]int64 {
	t.Helper()
	c := committedOffsets(t, addr, appName, topic)
	for p := range partitions {
		if c[p] > d.parts[p].src+1 {
			t.Errorf("partition %d: committed offset %d in Kafka is ahead of Pebble's data (source offset %d)", p, c[p], d.parts[p].src)
		}
	}
	t.Logf("committed offsets of %s in Kafka: %v", topic, c)
	return c
}

// changelogTails reads, for each partition, the changelog records after the
// offset Pebble applied last, and returns the latest value per key.
func changelogTails(t testing.TB, addr, topic string, d diskState) map[string]int64 {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("systest-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	latest := map[string]int64{}
	var tails [partitions]int64
	for p := int32(0); p < partitions; p++ {
		oldest, hwm, err := kafka.Bounds(client, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		from := max(d.parts[p].chg+1, oldest)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = kafka.ReadRange(ctx, consumer, topic, p, from, hwm, func(m *sarama.ConsumerMessage) error {
			if m.Value == nil {
				return fmt.Errorf("unexpected tombstone for %q at %d", m.Key, m.Offset)
			}
			n, err := codec.Int64().Decode(m.Value)
			if err != nil {
				return err
			}
			latest[string(m.Key)] = n
			tails[p]++
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("read %s/%d: %v", topic, p, err)
		}
	}
	t.Logf("changelog %s: records after Pebble's offsets per partition: %v", topic, tails)
	return latest
}

// expectAfterRestart computes what a worker restarted on d must end with
// once it has processed sent: it first replays the changelog tail over the
// stored rows (changelog records carry values, so the latest one per key
// wins), then processes every record after the stored source offset again.
func expectAfterRestart(d diskState, tail map[string]int64, sent []*record) map[string]int64 {
	exp := countKeys()
	for k, v := range d.rows {
		exp[k] = v
	}
	for k, v := range tail {
		exp[k] = v
	}
	for _, r := range sent {
		if r.offset > d.parts[r.partition].src {
			exp[r.key]++
		}
	}
	return exp
}

// requireAtLeast fails unless got[k] >= truth[k] for every key.
func requireAtLeast(t testing.TB, what string, got, truth map[string]int64) {
	t.Helper()
	for _, k := range keysOf(truth) {
		if got[k] < truth[k] {
			t.Errorf("%s: %s = %d < truth %d: an update was lost", what, k, got[k], truth[k])
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// logEnds returns the high watermark of every partition of topic.
func logEnds(t testing.TB, client sarama.Client, topic string) [partitions]int64 {
	t.Helper()
	var out [partitions]int64
	for p := range out {
		_, hwm, err := kafka.Bounds(client, topic, int32(p))
		if err != nil {
			t.Fatal(err)
		}
		out[p] = hwm
	}
	return out
}

// waitCaughtUp waits until the consumer group has committed every record
// of topics, in order: when topics feed each other (lines → words), list
// the upstream ones first, so that an upstream topic committed in full
// (whose outputs were acknowledged before its offsets were committed)
// makes the downstream log end final.
func waitCaughtUp(t testing.TB, addr string, topics ...string) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("systest-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitFor(t, 60*time.Second, fmt.Sprintf("group caught up on %v", topics), func() (bool, string) {
		for _, topic := range topics {
			c := committedOffsets(t, addr, appName, topic)
			end := logEnds(t, client, topic)
			for p := range partitions {
				if end[p] > 0 && c[p] != end[p] {
					return false, fmt.Sprintf("%s: committed %v, log end %v", topic, c, end)
				}
			}
		}
		return true, ""
	})
}

// readTopic counts the records of topic per key.
func readTopic(t testing.TB, addr, topic string) map[string]int64 {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("systest-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	out := map[string]int64{}
	for p := int32(0); p < partitions; p++ {
		oldest, hwm, err := kafka.Bounds(client, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = kafka.ReadRange(ctx, consumer, topic, p, oldest, hwm, func(m *sarama.ConsumerMessage) error {
			out[string(m.Key)]++
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("read %s/%d: %v", topic, p, err)
		}
	}
	return out
}
