package inproc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/bench/benchapp"
	"github.com/mephistohq/mephisto/kafka"
)

// driverLines are the lines of mephistotest's BenchmarkDriverWordCount
// (mephistotest/bench_test.go, benchLines): 100,000 lines of 8 words from
// a 1,000-word vocabulary, from the same seed.
func driverLines() []string {
	rng := rand.New(rand.NewPCG(1, 2))
	lines := make([]string, 100_000)
	words := make([]string, 8)
	for i := range lines {
		for j := range words {
			words[j] = fmt.Sprint("w", rng.IntN(1000))
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines
}

// BenchmarkWordCount is BenchmarkDriverWordCount's word count
// (benchapp.NewWordCount: split, then count into word_counts and send
// each new count to totals) over the same 100,000 lines on the production
// path: a real node (App.Run) on Kafka (the embedded broker in this
// process, or MEPHISTO_BENCH_BROKERS), 8 partitions, at-least-once
// commits. The lines are preloaded (not timed); each iteration starts a
// fresh app with its own group and words and totals topics, and is timed
// from App.Run to the group's commit of every line and then of every
// word (the harness's wordcount end): its start (topics created, group
// joined, partitions assigned) included. words/s and lines/s are the
// driver's units; ready-words/s times from the node's first Ready
// instead, as bench/cmd/mephisto-bench does.
//
//   - one-key: every line keyed "", as the driver's Pipe(d, w.lines, "",
//     l) does, so every line is on one partition: split runs in one
//     grain, count in eight.
//   - spread: line i keyed by its number, the lines spread over the 8
//     partitions.
//
// Every word's count is checked exactly against the input once the
// group has committed.
func BenchmarkWordCount(b *testing.B) {
	lines := driverLines()
	truth := map[string]int64{}
	for _, l := range lines {
		for _, w := range strings.Fields(l) {
			truth[w]++
		}
	}
	words := int64(8 * len(lines))
	addr := brokerAddr(b)
	for _, mode := range []string{"one-key", "spread"} {
		b.Run(mode, func(b *testing.B) {
			topic := fmt.Sprintf("lines-%d", time.Now().UnixNano())
			hwmLines := preloadLines(b, addr, topic, lines, func(i int) []byte {
				if mode == "spread" {
					return fmt.Appendf(nil, "line-%d", i)
				}
				return []byte{}
			})
			client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("inproc-admin"))
			if err != nil {
				b.Fatal(err)
			}
			admin, err := sarama.NewClusterAdminFromClient(client)
			if err != nil {
				b.Fatal(err)
			}
			defer admin.Close()
			var elapsed, fromReady time.Duration
			defer profile(b)()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				name := fmt.Sprintf("%s-%d", topic, i)
				app, counts := benchapp.NewWordCount(name, topic, name+"-words", name+"-totals", appOptions(b, addr)...)
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				run(ctx, app, errc)
				ready := waitReady(b, app.Ready, errc)
				waitCommitted(b, admin, name, topic, hwmLines, errc)
				// Every line committed: split has had every word
				// acknowledged, so the words' high watermarks are final.
				hwmWords := highWatermarks(b, client, name+"-words")
				if got := sum(hwmWords); got != words {
					b.Fatalf("%s-words holds %d records, want %d", name, got, words)
				}
				waitCommitted(b, admin, name, name+"-words", hwmWords, errc)
				end := time.Now()
				elapsed += end.Sub(start)
				fromReady += end.Sub(ready)
				b.StopTimer()
				for w, want := range truth {
					if got, err := counts.Get(ctx, w); err != nil || got != want {
						b.Fatalf("word_counts[%s] = %d, %v; want %d", w, got, err, want)
					}
				}
				cancel()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(lines))*float64(b.N)/elapsed.Seconds(), "lines/s")
			b.ReportMetric(float64(words)*float64(b.N)/elapsed.Seconds(), "words/s")
			b.ReportMetric(float64(words)*float64(b.N)/fromReady.Seconds(), "ready-words/s")
		})
	}
}

// preloadLines writes the lines to topic, line i keyed key(i), each on
// the partition kafka.Partition picks.
func preloadLines(b *testing.B, addr, topic string, lines []string, key func(i int) []byte) []int64 {
	return preloadRecords(b, addr, topic, len(lines), func(i int) ([]byte, []byte, time.Time) {
		return key(i), []byte(lines[i]), time.Time{}
	})
}

// highWatermarks returns the high watermark of every partition of topic.
func highWatermarks(b *testing.B, client sarama.Client, topic string) []int64 {
	if err := client.RefreshMetadata(topic); err != nil {
		b.Fatal(err)
	}
	hwm := make([]int64, partitions)
	for q := range int32(partitions) {
		var err error
		if hwm[q], err = client.GetOffset(topic, q, sarama.OffsetNewest); err != nil {
			b.Fatal(err)
		}
	}
	return hwm
}

func sum(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}

// waitReady polls ready until it reports true and returns when it did.
func waitReady(b *testing.B, ready func() (bool, string), errc <-chan error) time.Time {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if ok, _ := ready(); ok {
			return time.Now()
		}
		select {
		case err := <-errc:
			b.Fatalf("worker stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.Fatal("not ready after 2 minutes")
	return time.Time{}
}
