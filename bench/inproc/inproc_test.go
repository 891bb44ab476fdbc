package inproc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/bench/benchapp"
	"github.com/mephistohq/mephisto/kafka"
)

const partitions = 8

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// brokerAddr returns MEPHISTO_BENCH_BROKERS or starts an embedded broker.
func brokerAddr(b *testing.B) string {
	if addr := os.Getenv("MEPHISTO_BENCH_BROKERS"); addr != "" {
		return addr
	}
	br, err := kafka.StartBroker(kafka.BrokerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br.Addr()
}

// eventValue is the 100-byte value of every input event.
func eventValue(int) []byte {
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	return value
}

// preload creates topic (if missing) and writes n records to it, keyed
// among keys distinct keys, with values from value.
func preload(b *testing.B, addr, topic string, n, keys int, value func(i int) []byte) []int64 {
	return preloadStamped(b, addr, topic, n, keys, value, nil)
}

// preloadStamped is preload with record i's timestamp ts(i) (nil: the
// producer's clock).
func preloadStamped(b *testing.B, addr, topic string, n, keys int, value func(i int) []byte, ts func(i int) time.Time) []int64 {
	return preloadRecords(b, addr, topic, n, func(i int) ([]byte, []byte, time.Time) {
		var t time.Time
		if ts != nil {
			t = ts(i)
		}
		return fmt.Appendf(nil, "k%015d", i%keys), value(i), t
	})
}

// preloadRecords creates topic (if missing) and writes n records to it,
// record i being rec(i) (a zero time: the producer's clock), each on the
// partition kafka.Partition picks for its key. It returns the topic's
// high watermarks.
func preloadRecords(b *testing.B, addr, topic string, n int, rec func(i int) (key, value []byte, ts time.Time)) []int64 {
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("inproc-preload"))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		b.Fatal(err)
	}
	pcfg := sarama.NewConfig()
	pcfg.Version = kafka.Version
	pcfg.Producer.RequiredAcks = sarama.WaitForLocal
	pcfg.Producer.Partitioner = sarama.NewManualPartitioner
	pcfg.Producer.Flush.Bytes = 512 << 10
	pcfg.Producer.MaxMessageBytes = 512 << 10
	pcfg.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer([]string{addr}, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for e := range p.Errors() {
			b.Error(e)
		}
	}()
	for i := range n {
		k, v, ts := rec(i)
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Partition: kafka.Partition(k, partitions),
			Key: sarama.ByteEncoder(k), Value: sarama.ByteEncoder(v), Timestamp: ts}
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	return highWatermarks(b, client, topic)
}

// waitCommitted waits until group has committed hwm on every partition.
func waitCommitted(b *testing.B, admin sarama.ClusterAdmin, group, topic string, hwm []int64, errc <-chan error) {
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
		if err == nil {
			done := true
			for q := range ps {
				blk := resp.GetBlock(topic, int32(q))
				if hwm[q] > 0 && (blk == nil || blk.Offset < hwm[q]) { // an empty partition has nothing to commit
					done = false
				}
			}
			if done {
				return
			}
		}
		select {
		case err := <-errc:
			b.Fatalf("worker stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatal("timed out")
}

// benchmarkMode runs the bench app in mode over n preloaded events per
// iteration, a fresh group and data dir each time, and reports events/s.
func benchmarkMode(b *testing.B, mode string, opts ...mephisto.Option) {
	n, keys := envInt("MEPHISTO_BENCH_N", 200_000), envInt("MEPHISTO_BENCH_KEYS", 10_000)
	addr := brokerAddr(b)
	topic := fmt.Sprintf("in-%s-%d", mode, time.Now().UnixNano())
	hwm := preload(b, addr, topic, n, keys, eventValue)
	benchmarkApp(b, addr, topic, hwm, n, func(name string) (*mephisto.App, error) {
		return benchapp.New(mode, name, topic, name+"-out", append(appOptions(b, addr), opts...)...)
	})
}

// benchmarkApp runs the app mk declares (named name, its group) through
// the n records preloaded to topic (high watermarks hwm) per iteration,
// from App.Run to the group's commit of hwm, and reports events/s.
func benchmarkApp(b *testing.B, addr, topic string, hwm []int64, n int, mk func(name string) (*mephisto.App, error)) {
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("inproc-admin"))
	if err != nil {
		b.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	var elapsed time.Duration
	defer profile(b)()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		name := fmt.Sprintf("%s-%d", topic, i)
		app, err := mk(name)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		run(ctx, app, errc)
		waitCommitted(b, admin, name, topic, hwm, errc)
		elapsed += time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
}

// appOptions configures an app for the benchmarks: the broker at addr, a
// fresh data dir, no HTTP, no logs.
func appOptions(b *testing.B, addr string) []mephisto.Option {
	return []mephisto.Option{mephisto.WithBrokers(addr), mephisto.WithDataDir(b.TempDir()), mephisto.WithWebAddr(""),
		mephisto.WithNodeID("inproc"), mephisto.WithLogger(benchLogger())}
}

// run starts app.Run in a goroutine labelled run=worker, so that pprof
// can separate the worker from the rest (go tool pprof -tagfocus
// run=worker); goroutines the worker starts inherit the label.
func run(ctx context.Context, app *mephisto.App, errc chan<- error) {
	go pprof.Do(ctx, pprof.Labels("run", "worker"), func(ctx context.Context) { errc <- app.Run(ctx) })
}

// profile starts the CPU profile (MEPHISTO_BENCH_CPUPROFILE) and the heap
// watcher (MEPHISTO_BENCH_HEAPPROFILE) if asked, and returns what stops
// them.
func profile(b *testing.B) (stop func()) {
	var stops []func()
	if path := os.Getenv("MEPHISTO_BENCH_CPUPROFILE"); path != "" {
		// A profile of the runs only, without the preloading.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		})
	}
	if path := os.Getenv("MEPHISTO_BENCH_HEAPPROFILE"); path != "" {
		stops = append(stops, watchHeap(b, path))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// BenchmarkCount is the count workload in process (10,000 keys by
// default; MEPHISTO_BENCH_KEYS=1000000 for count-1m-keys).
func BenchmarkCount(b *testing.B) { benchmarkMode(b, "count") }

// BenchmarkPass is the pass-through workload in process.
func BenchmarkPass(b *testing.B) { benchmarkMode(b, "pass") }

// BenchmarkCountEOS is count under exactly_once (count-eos): every
// partition commits through a transaction.
func BenchmarkCountEOS(b *testing.B) {
	benchmarkMode(b, "count", mephisto.ProcessingGuarantee(mephisto.ExactlyOnce))
}

// BenchmarkPassEOS is pass under exactly_once (pass-eos).
func BenchmarkPassEOS(b *testing.B) {
	benchmarkMode(b, "pass", mephisto.ProcessingGuarantee(mephisto.ExactlyOnce))
}

// BenchmarkCountTumbling is count-tumbling (issue 13, see
// bench/harness/windowed.go) in process: count into a windowed table of
// 1-minute tumbling windows (grace 10 s, expires 2 min), the events
// stamped across 20 windows of event time so that windows close and
// expire all along, and a close callback that tallies each closed
// window's count in memory.
func BenchmarkCountTumbling(b *testing.B) { benchmarkWindowed(b, false) }

// BenchmarkCountHopping is count-hopping: the same with hopping windows
// of 1 minute every 15 s (4 windows per event).
func BenchmarkCountHopping(b *testing.B) { benchmarkWindowed(b, true) }

func benchmarkWindowed(b *testing.B, hopping bool) {
	n, keys := envInt("MEPHISTO_BENCH_N", 200_000), envInt("MEPHISTO_BENCH_KEYS", 10_000)
	w := benchapp.Window{Size: time.Minute, Grace: 10 * time.Second, Expires: 2 * time.Minute}
	if hopping {
		w.Hopping, w.Step = true, w.Size/4
	}
	const windows = 20
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Hour)
	span := windows * w.Size
	addr := brokerAddr(b)
	topic := fmt.Sprintf("in-windowed-%d", time.Now().UnixNano())
	hwm := preloadStamped(b, addr, topic, n, keys, eventValue, func(i int) time.Time {
		return base.Add(time.Duration(int64(i) * int64(span) / int64(n)))
	})
	var closes atomic.Int64
	benchmarkApp(b, addr, topic, hwm, n, func(name string) (*mephisto.App, error) {
		app, counts := benchapp.NewWindowed(name, topic, w, appOptions(b, addr)...)
		tally := map[string]int64{}
		var mu sync.Mutex
		counts.OnClose(func(_ mephisto.Context, key string, _ mephisto.Window, v int64) error {
			mu.Lock()
			tally[key] += v
			mu.Unlock()
			closes.Add(1)
			return nil
		})
		return app, nil
	})
	if closes.Load() == 0 {
		b.Fatal("no window closed")
	}
}

// BenchmarkRecover rebuilds the count table from a changelog of
// MEPHISTO_BENCH_N records over MEPHISTO_BENCH_KEYS keys into an empty data
// dir, timed from App.Run to ready, and reports records/s.
func BenchmarkRecover(b *testing.B) {
	n, keys := envInt("MEPHISTO_BENCH_N", 200_000), envInt("MEPHISTO_BENCH_KEYS", 10_000)
	addr := brokerAddr(b)
	name := fmt.Sprintf("rec-%d", time.Now().UnixNano())
	preload(b, addr, name+"-in", 0, 1, eventValue)
	preload(b, addr, name+"-counts-changelog", n, keys, func(i int) []byte {
		return binary.BigEndian.AppendUint64(nil, uint64(i/keys+1))
	})
	var elapsed time.Duration
	defer profile(b)()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		app, err := benchapp.New("count", name, name+"-in", "", appOptions(b, addr)...)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		run(ctx, app, errc)
		for ok := false; !ok; ok, _ = app.Ready() {
			select {
			case err := <-errc:
				b.Fatalf("worker stopped: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "records/s")
}

// watchHeap samples the heap every 50ms and writes a heap profile to path
// whenever the live heap reaches a new high (by 10% or more), so that the
// file ends up describing the peak. It reports the peak as a metric.
func watchHeap(b *testing.B, path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	var peak uint64
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak+peak/10 {
				peak = ms.HeapAlloc
				if f, err := os.Create(path); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	}
}

// benchLogger discards the worker's logs, or writes them to the file
// MEPHISTO_BENCH_LOG (to see where a run's time goes).
func benchLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if path := os.Getenv("MEPHISTO_BENCH_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			w = f
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
