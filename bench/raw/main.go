// Command raw is the raw-client baseline of the Mephisto benchmarks: the
// same Kafka work as a Mephisto workload done with bare sarama, no state,
// no actors, no commit protocol. The harness (bench/cmd/mephisto-bench)
// runs it as a separate process, next to the Mephisto worker it is compared
// with, and reads one JSON line from its stdout:
//
//	{"records":1000000,"seconds":1.93,"peak_rss":52428800,"cpu_seconds":2.4}
//
// seconds runs from the first record received to the last record done
// (read, acknowledged or counted, by mode), so group joins and connection
// set-up are not counted.
//
// Modes (the first argument):
//
//	read       a consumer group reads --n records of --topic (the count baseline)
//	pass       a consumer group reads --topic, upper-cases each value and an async
//	           producer sends it to --out; done when --n sends are acknowledged
//	changelog  a plain consumer reads every partition of --topic from oldest to
//	           the high watermark (the recover baseline)
//	wordcount  two hops: a consumer group splits the lines of --topic into words
//	           sent to --out keyed by word; a second group counts the words of
//	           --out in memory; done when --n words are counted
//
// Clients start from kafka.ClientConfig, Mephisto's own sarama settings
// (fetch sizes, max wait, idempotent acks=all producer), so that the
// comparison is about what Mephisto adds, not about client tuning.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/kafka"
)

// result is the JSON line printed on success.
type result struct {
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	PeakRSS    int64   `json:"peak_rss"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: raw read|pass|changelog|wordcount --brokers B --topic T [--out T2] [--group G] [--n N]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	topic := fs.String("topic", "in", "input topic")
	out := fs.String("out", "", "output topic (pass, wordcount)")
	group := fs.String("group", "raw", "consumer group id (read, pass, wordcount)")
	n := fs.Int64("n", 0, "records to wait for (read, pass: input records; wordcount: words)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	_ = fs.Parse(os.Args[2:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	bs := strings.Split(*brokers, ",")
	var (
		r   result
		err error
	)
	switch mode {
	case "read":
		r, err = read(ctx, bs, *topic, *group, *n)
	case "pass":
		r, err = pass(ctx, bs, *topic, *out, *group, *n)
	case "changelog":
		r, err = changelog(ctx, bs, *topic)
	case "wordcount":
		r, err = wordcount(ctx, bs, *topic, *out, *group, *n)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raw:", err)
		os.Exit(1)
	}
	r.PeakRSS, r.CPUSeconds = selfStats()
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// consumerConfig is Mephisto's client configuration, read-only: no offset
// commits (nothing here is measured by its commits).
func consumerConfig(id string) *sarama.Config {
	cfg := kafka.ClientConfig(id)
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

// span records the first and last moment of a measured stretch.
type span struct {
	once  sync.Once
	first time.Time
	last  atomic.Int64 // unix nanos
}

func (s *span) begin() { s.once.Do(func() { s.first = time.Now() }) }
func (s *span) end()   { s.last.Store(time.Now().UnixNano()) }
func (s *span) seconds() float64 {
	return time.Unix(0, s.last.Load()).Sub(s.first).Seconds()
}

// groupHandler runs fn for every message of every claim.
type groupHandler func(sarama.ConsumerGroupSession, *sarama.ConsumerMessage)

func (groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h(s, m)
	}
	return nil
}

// consume runs a consumer group on topic until ctx ends.
func consume(ctx context.Context, brokers []string, group, topic string, h groupHandler) (func() error, error) {
	g, err := sarama.NewConsumerGroup(brokers, group, consumerConfig("raw-"+group))
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	return func() error {
		err := <-errc
		return errors.Join(err, g.Close())
	}, nil
}

// waitFor waits until done is closed or ctx ends.
func waitFor(ctx context.Context, done <-chan struct{}, what string, got func() int64) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: timed out after %d records", what, got())
	}
}

func read(ctx context.Context, brokers []string, topic, group string, n int64) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sp span
	var count atomic.Int64
	done := make(chan struct{})
	stop, err := consume(ctx, brokers, group, topic, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		sp.begin()
		if count.Add(1) == n {
			sp.end()
			close(done)
		}
	})
	if err != nil {
		return result{}, err
	}
	err = waitFor(ctx, done, "read "+topic, count.Load)
	cancel()
	_ = stop()
	return result{Records: n, Seconds: sp.seconds()}, err
}

// upper upper-cases ASCII letters of b in place: benchapp.Upper, copied so
// that this binary links nothing of Mephisto but its Kafka helpers.
func upper(b []byte) []byte {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return b
}

func pass(ctx context.Context, brokers []string, topic, out, group string, n int64) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prod, err := sarama.NewAsyncProducer(brokers, kafka.ClientConfig("raw-"+group+"-producer"))
	if err != nil {
		return result{}, err
	}
	var sp span
	var acked atomic.Int64
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		for range prod.Successes() {
			if acked.Add(1) == n {
				sp.end()
				close(done)
			}
		}
	}()
	go func() {
		for e := range prod.Errors() {
			select {
			case errc <- e.Err:
			default:
			}
		}
	}()
	stop, err := consume(ctx, brokers, group, topic, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		sp.begin()
		// The consumer's buffers are its own: copy, as a codec would.
		v := upper(append([]byte(nil), m.Value...))
		prod.Input() <- &sarama.ProducerMessage{Topic: out, Partition: kafka.Partition(m.Key, partitionsOf(m)),
			Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(v)}
	})
	if err != nil {
		return result{}, err
	}
	select {
	case <-done:
	case err = <-errc:
	case <-ctx.Done():
		err = fmt.Errorf("pass: timed out after %d acknowledged", acked.Load())
	}
	cancel()
	_ = stop()
	prod.AsyncClose()
	return result{Records: n, Seconds: sp.seconds()}, err
}

// partitionsOf is the partition count of the benchmark topics (the output
// topic has as many partitions as the input).
func partitionsOf(*sarama.ConsumerMessage) int32 { return 8 }

func changelog(ctx context.Context, brokers []string, topic string) (result, error) {
	client, err := sarama.NewClient(brokers, consumerConfig("raw-changelog"))
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return result{}, err
	}
	defer consumer.Close()
	ps, err := client.Partitions(topic)
	if err != nil {
		return result{}, err
	}
	var sp span
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		oldest, hwm, err := kafka.Bounds(client, topic, p)
		if err != nil {
			return result{}, err
		}
		if oldest >= hwm {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = kafka.ReadRange(ctx, consumer, topic, p, oldest, hwm, func(*sarama.ConsumerMessage) error {
				sp.begin()
				count.Add(1)
				sp.end()
				return nil
			})
		}()
	}
	wg.Wait()
	return result{Records: count.Load(), Seconds: sp.seconds()}, errors.Join(errs...)
}

func wordcount(ctx context.Context, brokers []string, lines, words, group string, n int64) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prod, err := sarama.NewAsyncProducer(brokers, kafka.ClientConfig("raw-"+group+"-producer"))
	if err != nil {
		return result{}, err
	}
	go func() {
		for range prod.Successes() {
		}
	}()
	errc := make(chan error, 1)
	go func() {
		for e := range prod.Errors() {
			select {
			case errc <- e.Err:
			default:
			}
		}
	}()
	var sp span
	// Hop 1: lines → words, keyed by word.
	stop1, err := consume(ctx, brokers, group+"-split", lines, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		sp.begin()
		for _, w := range strings.Fields(strings.ToLower(string(m.Value))) {
			k := []byte(w)
			prod.Input() <- &sarama.ProducerMessage{Topic: words, Partition: kafka.Partition(k, 8),
				Key: sarama.ByteEncoder(k), Value: sarama.ByteEncoder(k)}
		}
	})
	if err != nil {
		return result{}, err
	}
	// Hop 2: count words in memory, one map per partition.
	var counted atomic.Int64
	var mu sync.Mutex
	counts := map[int32]map[string]int64{}
	done := make(chan struct{})
	stop2, err := consume(ctx, brokers, group+"-count", words, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		mu.Lock()
		c := counts[m.Partition]
		if c == nil {
			c = map[string]int64{}
			counts[m.Partition] = c
		}
		c[string(m.Key)]++
		mu.Unlock()
		if counted.Add(1) == n {
			sp.end()
			close(done)
		}
	})
	if err != nil {
		return result{}, err
	}
	select {
	case <-done:
	case err = <-errc:
	case <-ctx.Done():
		err = fmt.Errorf("wordcount: timed out after %d words counted", counted.Load())
	}
	cancel()
	_ = stop1()
	_ = stop2()
	prod.AsyncClose()
	return result{Records: n, Seconds: sp.seconds()}, err
}

// selfStats returns this process's peak RSS (VmHWM, bytes) and CPU time.
func selfStats() (int64, float64) {
	var rss int64
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					rss = kb * 1024
				}
			}
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return rss, cpu.Seconds()
}
