package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/timer"
)

// TestPipelineOnAFakeClock moves the app's clock one second at a time:
// each second the feed timer sends exactly one corpus line through the
// channel, and the table ends up with exactly the counts those lines
// imply; every count went to the counted topic through the sink; the
// OnLeader summary ran once per ten seconds.
func TestPipelineOnAFakeClock(t *testing.T) {
	b := extest.StartBroker(t)
	clock := timer.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var logs proctest.Buffer
	opts := append(extest.Options(t, b.Addr()), mephisto.WithClock(clock), mephisto.WithLogger(proctest.Logger(t, &logs)))
	p := newApp(opts...)
	extest.RunApp(t, p.app) // ready: the plan is known, so the leader is
	web := p.app.WebAddr()

	const seconds = 12
	for k := 1; k <= seconds; k++ {
		// Both timers wait on the clock before it moves.
		proctest.WaitForT(t, extest.Timeout, "the timers waiting on the clock", func() (bool, string) {
			return clock.Waiters() >= 2, fmt.Sprintf("%d waiters", clock.Waiters())
		})
		clock.Advance(time.Second)
		proctest.WaitForT(t, extest.Timeout, fmt.Sprintf("line %d fed", k), func() (bool, string) {
			n := p.fed.Load()
			if n > int64(k) {
				t.Fatalf("%d lines fed after %d seconds", n, k)
			}
			return n == int64(k), fmt.Sprintf("%d lines fed", n)
		})
	}

	// What the 12 lines fed (corpus[0..7], then corpus[0..3]) imply, by
	// hand for a few words …
	byHand := map[string]int64{"the": 11, "be": 4, "to": 4, "brown": 3, "lazy": 3, "not": 3, "fox": 2, "gold": 1, "cheese": 1}
	// … and for every word.
	want := map[string]int64{}
	var total int64
	for i := range seconds {
		for _, w := range words(corpus[i%len(corpus)]) {
			want[w]++
			total++
		}
	}
	for w, n := range byHand {
		if want[w] != n {
			t.Fatalf("words() splits the corpus wrongly: %q counted %d times, want %d", w, want[w], n)
		}
	}
	proctest.WaitForT(t, extest.Timeout, "word_counts exactly as the fed lines imply", func() (bool, string) {
		return extest.TableEquals(web, "word_counts", want)
	})
	for _, w := range []string{"zebra", "glitter", "The"} { // never fed: not a word, not whole, not lower-cased
		if code, v, _ := extest.TableValue(web, "word_counts", w); code != http.StatusNotFound {
			t.Errorf("word_counts/%s: HTTP %d %s, want 404 (never fed)", w, code, v)
		}
	}

	// The sink: one record in counted per word counted, ending at each
	// word's count.
	got := readCounted(t, b.Addr(), total)
	last := map[string]int64{}
	for _, wc := range got {
		if wc.Count != last[wc.Word]+1 {
			t.Errorf("counted: %s went from %d to %d", wc.Word, last[wc.Word], wc.Count)
		}
		last[wc.Word] = wc.Count
	}
	for w, n := range want {
		if last[w] != n {
			t.Errorf("counted ends with %s = %d, want %d", w, last[w], n)
		}
	}

	// The summary ran once, at 10s, on this node (the only one, so the
	// leader). (It runs in its own actor, concurrently with the feed's run
	// of the same second: it may log 9 or 10 lines fed.)
	proctest.WaitForT(t, extest.Timeout, "the summary logged", func() (bool, string) {
		return p.summaries.Load() == seconds/10 && strings.Contains(logs.String(), "msg=summary lines_fed_here="),
			fmt.Sprintf("%d summaries", p.summaries.Load())
	})
	if n := p.summaries.Load(); n != seconds/10 {
		t.Errorf("summary ran %d times in %d seconds, want %d", n, seconds, seconds/10)
	}
}

// readCounted reads the counted topic until it has want records (per
// partition in offset order, which is each word's order: a word is on
// one partition) and returns them.
func readCounted(t *testing.T, broker string, want int64) []WordCount {
	t.Helper()
	client, err := sarama.NewClient([]string{broker}, kafka.ClientConfig("pipeline-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var ends map[int32]int64
	proctest.WaitForT(t, extest.Timeout, fmt.Sprintf("%d records in counted", want), func() (bool, string) {
		parts, err := client.Partitions("counted")
		if err != nil {
			return false, err.Error()
		}
		ends = map[int32]int64{}
		var n int64
		for _, p := range parts {
			end, err := client.GetOffset("counted", p, sarama.OffsetNewest)
			if err != nil {
				return false, err.Error()
			}
			ends[p] = end
			n += end
		}
		if n > want {
			t.Fatalf("%d records in counted, want %d", n, want)
		}
		return n == want, fmt.Sprintf("%d records", n)
	})
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var out []WordCount
	for p, end := range ends {
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition("counted", p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			var wc WordCount
			if err := json.Unmarshal(m.Value, &wc); err != nil {
				t.Fatalf("counted/%d@%d: %v", p, m.Offset, err)
			}
			out = append(out, wc)
			if m.Offset == end-1 {
				break
			}
		}
		_ = pc.Close()
	}
	return out
}

// TestPipelineAgentsCommand: the agents command lists count's sinks.
func TestPipelineAgentsCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := newApp().app.Execute(context.Background(), []string{"agents"}, &out, &errOut); code != 0 {
		t.Fatalf("agents: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "func:log,topic:counted") {
		t.Fatalf("agents does not list count's sinks:\n%s", out.String())
	}
}
