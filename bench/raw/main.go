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
//	pass-txn   pass under exactly-once, by hand (see txn.go): a transactional producer
//	           per input partition; records and input offsets committed in one
//	           transaction per partition every --commit-interval (at once, at most
//	           every tenth of it, once caught up); done when --n records are committed
//	changelog  a plain consumer reads every partition of --topic from oldest to
//	           the high watermark (the recover baseline)
//	wordcount  two hops: a consumer group splits the lines of --topic into words
//	           sent to --out keyed by word; a second group counts the words of
//	           --out in memory; done when --n words are counted
//	respond    the responder of a request/reply through two topics (the ask
//	           baseline): a consumer group reads requests from --topic and an
//	           async producer sends each value back, keyed by the request's
//	           correlation-id header, to the topic:partition its reply-to header
//	           names; runs until SIGTERM, then prints the count answered
//	ask        the requester: reads its partition of the reply topic --out from
//	           its end, then sends sequential requests to --topic (--value-size
//	           bytes, keyed, one key per partition in rotation) with a sync
//	           producer, each with reply-to and correlation-id headers, and waits
//	           for each reply; after --warmup of round trips not timed (the
//	           first also waits for the responder to join its group) it times
//	           --duration of round trips (produce → reply read) and adds them
//	           to its JSON line as "latencies_ms"
//
// Clients start from kafka.ClientConfig, Mephisto's own sarama settings
// (fetch sizes, max wait, idempotent acks=all producer), so that the
// comparison is about what Mephisto adds, not about client tuning.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	// LatenciesMs are the round trips of ask, in milliseconds.
	LatenciesMs []float64 `json:"latencies_ms,omitempty"`
	// Transactions and CommitSeconds are pass-txn's committed
	// transactions and the time its partitions spent committing them
	// (summed over partitions).
	Transactions  int64   `json:"transactions,omitempty"`
	CommitSeconds float64 `json:"commit_seconds,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: raw read|pass|pass-txn|changelog|wordcount|respond|ask --brokers B --topic T [--out T2] [--group G] [--n N] [--duration D] [--value-size S]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	topic := fs.String("topic", "in", "input topic")
	out := fs.String("out", "", "output topic (pass, wordcount; ask: the reply topic)")
	group := fs.String("group", "raw", "consumer group id (read, pass, wordcount, respond)")
	n := fs.Int64("n", 0, "records to wait for (read, pass: input records; wordcount: words)")
	duration := fs.Duration("duration", 5*time.Second, "how long ask times round trips")
	warmup := fs.Duration("warmup", time.Second, "how long ask makes round trips before it starts timing")
	valueSize := fs.Int("value-size", 100, "request value size in bytes (ask)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	interval := fs.Duration("commit-interval", 500*time.Millisecond, "how often pass-txn commits a partition's transaction (Mephisto's default)")
	_ = fs.Parse(os.Args[2:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if mode == "respond" { // runs until the harness stops it
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
	}
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
	case "pass-txn":
		r, err = passTxn(ctx, bs, *topic, *out, *group, *n, *interval)
	case "changelog":
		r, err = changelog(ctx, bs, *topic)
	case "wordcount":
		r, err = wordcount(ctx, bs, *topic, *out, *group, *n)
	case "respond":
		r, err = respond(ctx, bs, *topic, *group)
	case "ask":
		r, err = ask(ctx, bs, *topic, *out, *duration, *warmup, *valueSize)
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

// consumerConfig is Mephisto's client configuration, read-only (no offset
// commits: nothing here is measured by its commits), with the fetch size
// at which a bare consumer reads fastest on the dev broker, 4 MiB
// (Mephisto's group consumer fetches 1 MiB per partition to bound its
// memory; with 1 MiB a bare consumer reads up to half as fast, which would
// flatter Mephisto's ratios).
func consumerConfig(id string) *sarama.Config {
	cfg := kafka.ClientConfig(id)
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Fetch.Default = 4 << 20
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

// groupHandler runs onMsg for every message of every claim, and onSetup
// (if set) once the group has assigned the claims.
type groupHandler struct {
	onSetup func()
	onMsg   func(sarama.ConsumerGroupSession, *sarama.ConsumerMessage)
}

func (h groupHandler) Setup(sarama.ConsumerGroupSession) error {
	if h.onSetup != nil {
		h.onSetup()
	}
	return nil
}

func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.onMsg(s, m)
	}
	return nil
}

// consume runs a consumer group on topic until ctx ends.
// The clock of a measured run starts at onSetup: the moment the claims are
// assigned and reading can begin, as Mephisto's starts at its first /readyz
// (the first record would be too late: a fetch response is decoded whole
// before its first record is handed out, up to 4 MiB per partition).
func consume(ctx context.Context, brokers []string, group, topic string, onSetup func(),
	onMsg func(sarama.ConsumerGroupSession, *sarama.ConsumerMessage)) (func() error, error) {
	h := groupHandler{onSetup: onSetup, onMsg: onMsg}
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
	stop, err := consume(ctx, brokers, group, topic, sp.begin, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
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
	stop, err := consume(ctx, brokers, group, topic, sp.begin, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
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
	oldest, hwm := make([]int64, len(ps)), make([]int64, len(ps))
	for i, p := range ps {
		if oldest[i], hwm[i], err = kafka.Bounds(client, topic, p); err != nil {
			return result{}, err
		}
	}
	// The clock starts when reading starts, as Mephisto's does (its
	// "recovering table shard" line follows the same Bounds).
	sp.begin()
	for i, p := range ps {
		oldest, hwm := oldest[i], hwm[i]
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
	stop1, err := consume(ctx, brokers, group+"-split", lines, sp.begin, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
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
	stop2, err := consume(ctx, brokers, group+"-count", words, nil, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
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

// Headers of the raw request/reply (the same roles as Mephisto's
// mephisto.reply-to and mephisto.correlation-id).
const (
	headerReplyTo       = "reply-to"       // "<topic>:<partition>"
	headerCorrelationID = "correlation-id" // matches a reply to its request
)

func header(m *sarama.ConsumerMessage, key string) []byte {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return h.Value
		}
	}
	return nil
}

// respond answers every request on topic until ctx ends: the value goes
// back, keyed by the correlation id, to the partition the request names.
func respond(ctx context.Context, brokers []string, topic, group string) (result, error) {
	prod, err := sarama.NewAsyncProducer(brokers, kafka.ClientConfig("raw-"+group+"-producer"))
	if err != nil {
		return result{}, err
	}
	var sp span
	var answered atomic.Int64
	errc := make(chan error, 1)
	go func() {
		for range prod.Successes() {
			answered.Add(1)
			sp.end()
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
	stop, err := consume(ctx, brokers, group, topic, nil, func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		sp.begin()
		to, corr := string(header(m, headerReplyTo)), header(m, headerCorrelationID)
		i := strings.LastIndexByte(to, ':')
		p, err := strconv.Atoi(to[i+1:])
		if i <= 0 || err != nil || corr == nil {
			select {
			case errc <- fmt.Errorf("request at %s/%d/%d: reply-to %q, correlation-id %q", m.Topic, m.Partition, m.Offset, to, corr):
			default:
			}
			return
		}
		// The consumer's buffers are its own: copy, as a codec would.
		prod.Input() <- &sarama.ProducerMessage{Topic: to[:i], Partition: int32(p), Key: sarama.ByteEncoder(corr),
			Value: sarama.ByteEncoder(bytes.Clone(m.Value)), Headers: []sarama.RecordHeader{{Key: []byte(headerCorrelationID), Value: corr}}}
	})
	if err != nil {
		return result{}, err
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = stop()
	prod.AsyncClose()
	return result{Records: answered.Load(), Seconds: sp.seconds()}, err
}

// ask sends sequential requests to topic and times each round trip, from
// handing the request to the producer to reading its reply.
func ask(ctx context.Context, brokers []string, topic, replies string, d, warmup time.Duration, valueSize int) (result, error) {
	const id = "raw-ask"
	client, err := sarama.NewClient(brokers, kafka.ConsumerConfig(id+"-replies"))
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return result{}, err
	}
	defer consumer.Close()
	nreq, err := client.Partitions(topic)
	if err != nil {
		return result{}, err
	}
	nrep, err := client.Partitions(replies)
	if err != nil {
		return result{}, err
	}
	// Our partition of the reply topic, read from its current end: replies
	// to requests sent from now on are seen.
	rp := kafka.Partition([]byte(id), int32(len(nrep)))
	pc, err := consumer.ConsumePartition(replies, rp, sarama.OffsetNewest)
	if err != nil {
		return result{}, err
	}
	defer pc.AsyncClose()
	prod, err := sarama.NewSyncProducer(brokers, kafka.ClientConfig(id+"-producer"))
	if err != nil {
		return result{}, err
	}
	defer prod.Close()
	// One key per partition of the request topic, in rotation.
	keys := map[int32][]byte{}
	for i := 0; len(keys) < len(nreq); i++ {
		k := fmt.Appendf(nil, "ask%013d", i)
		if p := kafka.Partition(k, int32(len(nreq))); keys[p] == nil {
			keys[p] = k
		}
	}
	replyTo := []byte(replies + ":" + strconv.Itoa(int(rp)))
	roundTrip := func(i int, limit time.Duration) (time.Duration, error) {
		k := keys[int32(i%len(keys))]
		corr := []byte(strconv.Itoa(i))
		v := bytes.Repeat([]byte{'v'}, max(valueSize, 16))
		copy(v, fmt.Sprintf("%015d", i))
		timer := time.NewTimer(limit)
		defer timer.Stop()
		t0 := time.Now()
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % len(keys)),
			Key: sarama.ByteEncoder(k), Value: sarama.ByteEncoder(v),
			Headers: []sarama.RecordHeader{{Key: []byte(headerReplyTo), Value: replyTo}, {Key: []byte(headerCorrelationID), Value: corr}}}); err != nil {
			return 0, fmt.Errorf("request %d: %w", i, err)
		}
		for {
			select {
			case m := <-pc.Messages():
				if !bytes.Equal(header(m, headerCorrelationID), corr) {
					continue // a reply to a request we gave up on
				}
				rtt := time.Since(t0)
				if !bytes.Equal(m.Value, v) {
					return 0, fmt.Errorf("request %d: reply %q, want %q", i, m.Value, v)
				}
				return rtt, nil
			case err := <-pc.Errors():
				return 0, fmt.Errorf("request %d: read replies: %w", i, err)
			case <-timer.C:
				return 0, fmt.Errorf("request %d: no reply within %v", i, limit)
			case <-ctx.Done():
				return 0, fmt.Errorf("request %d: %w", i, ctx.Err())
			}
		}
	}
	// The first request also waits for the responder to join its group
	// (it reads from the oldest offset, so the request waits in Kafka).
	if _, err := roundTrip(0, time.Minute); err != nil {
		return result{}, fmt.Errorf("first request: %w", err)
	}
	i := 1
	for end := time.Now().Add(warmup); time.Now().Before(end); i++ {
		if _, err := roundTrip(i, 10*time.Second); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var lats []float64
	start := time.Now()
	for end := start.Add(d); time.Now().Before(end); i++ {
		rtt, err := roundTrip(i, 10*time.Second)
		if err != nil {
			return result{}, err
		}
		lats = append(lats, float64(rtt.Nanoseconds())/1e6)
	}
	return result{Records: int64(len(lats)), Seconds: time.Since(start).Seconds(), LatenciesMs: lats}, nil
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
