package main

// Driver tests: newApp's pipeline run by mephistotest, with no broker, on
// the driver's clock: d.Advance fires the feed and summary timers, the
// channel agent clean runs at once on the timer's goroutine, count counts
// in word_counts and yields to its sinks (the log and the topic counted).
// The summary reads its counts over HTTP, which the driver does not serve:
// it logs "?" for them here.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// driven is newApp on a test driver.
type driven struct {
	*pipeline
	d       *mephistotest.Driver
	counted *mephisto.Topic[string, WordCount]
	logs    *bytes.Buffer // the app's log, debug and up
}

// drive builds newApp, logging to a buffer, and starts a driver on it.
// Declaring counted again with the same codecs shares the app's
// declaration.
func drive(t *testing.T) driven {
	t.Helper()
	logs := &bytes.Buffer{}
	p := newApp(mephisto.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	w := driven{pipeline: p, logs: logs, counted: mephisto.NewTopic(p.app, "counted", codec.String(), codec.JSON[WordCount]())}
	w.d = mephistotest.New(t, p.app)
	return w
}

// counts returns word_counts as committed: what a node restoring it
// from its changelog loads. (newApp hands out no handle on the table, so
// the test reads it with mephistotest.TableRows instead of Get.)
func (w driven) counts(t *testing.T) map[string]int64 {
	t.Helper()
	return mephistotest.TableRows(w.d, "word_counts", codec.String(), codec.Int64())
}

// firstLine is what corpus[0] counts.
var firstLine = map[string]int64{"the": 2, "quick": 1, "brown": 1, "fox": 1, "jumps": 1, "over": 1, "lazy": 1, "dog": 1}

var summaryRE = regexp.MustCompile(`msg=summary lines_fed_here=(\d+) `)

// TestDriverPipelineTimers: each second the feed timer sends the next
// corpus line through the channel raw; clean drops its punctuation and
// case and what is empty; count counts every word and yields each count
// to both sinks, in order. The OnLeader summary runs every ten seconds
// (the driver is the only node, so the leader), after the feed due at the
// same instant.
func TestDriverPipelineTimers(t *testing.T) {
	w := drive(t)
	for _, step := range []struct {
		advance   time.Duration
		fed       int64
		words     int // records in words so far
		summaries int64
	}{
		{999 * time.Millisecond, 0, 0, 0},
		{time.Millisecond, 1, 9, 0}, // corpus[0]
		{time.Second, 2, 9, 0},      // corpus[1] is empty
		{7 * time.Second, 9, 55, 0},
		{time.Second, 10, 55, 1}, // corpus[1] again, and the summary
		{2 * time.Second, 12, 65, 1},
	} {
		w.d.Advance(step.advance)
		at := w.d.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if n := w.fed.Load(); n != step.fed {
			t.Errorf("at %v: %d lines fed, want %d", at, n, step.fed)
		}
		if n := len(w.d.Raw("words")); n != step.words {
			t.Errorf("at %v: %d records in words, want %d", at, n, step.words)
		}
		if n := w.summaries.Load(); n != step.summaries {
			t.Errorf("at %v: %d summaries, want %d", at, n, step.summaries)
		}
		if at == time.Second {
			if got := w.counts(t); !maps.Equal(got, firstLine) {
				t.Errorf("at 1s: word_counts = %v, want %v", got, firstLine)
			}
		}
	}
	for timer, want := range map[string]float64{"feed": 12, "summary": 1} {
		if n := w.d.Metric("mephisto_timer_runs_total", "timer", timer); n != want {
			t.Errorf("timer %s ran %v times in 12 s, want %v", timer, n, want)
		}
	}
	if m := summaryRE.FindAllStringSubmatch(w.logs.String(), -1); len(m) != 1 || m[0][1] != "10" {
		t.Errorf("summaries logged %q, want one with lines_fed_here=10\n%s", m, w.logs.String())
	}

	// corpus[0..7], then corpus[0..3], by hand.
	want := map[string]int64{
		"the": 11, "quick": 2, "brown": 3, "fox": 2, "jumps": 2, "over": 2, "lazy": 3, "dog": 2,
		"to": 4, "be": 4, "or": 2, "not": 3, "that": 3, "is": 3, "question": 2,
		"all": 1, "glitters": 1, "gold": 1,
		"early": 1, "bird": 1, "catches": 1, "worm": 1, "second": 1, "mouse": 1, "gets": 1, "cheese": 1,
		"dogs": 1, "and": 1, "cats": 1, "sleep": 1, "in": 1, "sun": 1,
	}
	if got := w.counts(t); !maps.Equal(got, want) {
		t.Errorf("word_counts = %v, want %v", got, want)
	}
	// The topic sink: one record per word counted, without a key, on the
	// partition of the word's record; each word's counts going 1, 2, … up
	// to the table's.
	part := map[string]int32{}
	for _, r := range w.d.Raw("words") {
		part[string(r.Key)] = r.Partition
	}
	last := map[string]int64{}
	for _, r := range mephistotest.Records(w.d, w.counted) {
		wc := r.Value
		if r.Key != "" || r.Partition != part[wc.Word] || wc.Count != last[wc.Word]+1 {
			t.Errorf("counted: %q=%+v on partition %d after %d, want no key, partition %d, count %d",
				r.Key, wc, r.Partition, last[wc.Word], part[wc.Word], last[wc.Word]+1)
		}
		last[wc.Word] = wc.Count
	}
	if !maps.Equal(last, want) {
		t.Errorf("counted ends at %v, want %v", last, want)
	}
	// The function sink logged each of them, at debug level.
	if n := strings.Count(w.logs.String(), "msg=counted "); n != 65 {
		t.Errorf("the log sink logged %d counts, want 65", n)
	}
}

// TestDriverPipelineFaults: count failing fewer times than the app's
// attempts (3) is retried, each word counted and sunk once; failing every
// attempt, the word's record goes to pipeline-count-dead-letters, is
// neither counted nor sunk, and the rest of the line is.
func TestDriverPipelineFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inject   func(*mephistotest.Driver)
		restarts float64
		dead     string // how the dead letter's error begins, "" for none
	}{
		{"fails twice: retried", func(d *mephistotest.Driver) { d.Fail("count", 2, errors.New("boom")) }, 2, ""},
		{"panics three times: dead letter", func(d *mephistotest.Driver) { d.Panic("count", 3) }, 3,
			"failed 3 times, last: handler panicked: mephistotest: agent count panics on purpose"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := drive(t)
			tc.inject(w.d)
			w.d.Advance(time.Second)

			var restarts float64
			parts := map[int32]bool{}
			for _, r := range w.d.Raw("words") {
				if !parts[r.Partition] {
					parts[r.Partition] = true
					restarts += w.d.Metric("mephisto_grain_restarts_total", "grain", fmt.Sprintf("partition/pipeline/%d", r.Partition))
				}
			}
			if restarts != tc.restarts {
				t.Errorf("count's grains restarted %v times, want %v", restarts, tc.restarts)
			}
			want := maps.Clone(firstLine)
			dls := w.d.DeadLetters("count")
			if tc.dead == "" && len(dls) != 0 {
				t.Errorf("dead letters = %+v, want none", dls)
			}
			if tc.dead != "" {
				if len(dls) != 1 {
					t.Fatalf("dead letters = %+v, want one", dls)
				}
				dl := dls[0]
				word := string(dl.Key)
				src := w.d.Raw("words")
				i := 0
				for i < len(src) && (src[i].Partition != dl.Partition || src[i].Offset != dl.Offset) {
					i++
				}
				if i == len(src) || string(src[i].Key) != word || string(dl.Value) != word || dl.Topic != "words" ||
					!strings.HasPrefix(dl.Error, tc.dead) || dl.Headers["mephisto.agent"] != "count" {
					t.Fatalf("dead letter %q=%q %+v, want a word of words, from count", dl.Key, dl.Value, dl.Headers)
				}
				if want[word]--; want[word] == 0 {
					delete(want, word)
				}
			}
			if got := w.counts(t); !maps.Equal(got, want) {
				t.Errorf("word_counts = %v, want %v", got, want)
			}
			sunk := map[string]int64{}
			for _, r := range mephistotest.Records(w.d, w.counted) {
				sunk[r.Value.Word]++
			}
			if !maps.Equal(sunk, want) {
				t.Errorf("counted holds %v per word, want %v", sunk, want)
			}
		})
	}
}

// TestDriverPipelineCrash: a grain of count killed before it committed
// restarts from its last commit and counts its words again from the
// replayed records of words, so the table ends exact; but the counts it
// had yielded to counted were produced, and the replay yields them again
// (at least once). Nothing upstream replays: the channel is not durable
// and the timer does not run again.
func TestDriverPipelineCrash(t *testing.T) {
	w := drive(t)
	w.d.HoldCommits(true)
	w.d.Advance(time.Second)
	if got := w.counts(t); len(got) != 0 {
		t.Fatalf("word_counts = %v with commits held, want nothing committed", got)
	}
	var p int32 = -1
	for _, r := range w.d.Raw("words") {
		if string(r.Key) == "the" {
			p = r.Partition
		}
	}
	var before []string
	for _, r := range mephistotest.Records(w.d, w.counted) {
		if r.Partition == p {
			before = append(before, fmt.Sprintf("%s=%d", r.Value.Word, r.Value.Count))
		}
	}
	var again []string
	for _, r := range w.d.Crash(p) {
		wc, err := codec.JSON[WordCount]().Decode(r.Value)
		if r.Topic != "counted" || err != nil {
			t.Fatalf("the replay sent %s %q (%v), want counted records", r.Topic, r.Value, err)
		}
		again = append(again, fmt.Sprintf("%s=%d", wc.Word, wc.Count))
	}
	w.d.HoldCommits(false)
	if len(before) < 2 || fmt.Sprint(again) != fmt.Sprint(before) {
		t.Errorf("the replay of partition %d yielded %v, want what it yielded before the crash: %v", p, again, before)
	}
	if got := w.counts(t); !maps.Equal(got, firstLine) {
		t.Errorf("word_counts = %v, want %v", got, firstLine)
	}
	if n := len(mephistotest.Records(w.d, w.counted)); n != 9+len(before) {
		t.Errorf("%d records in counted, want %d", n, 9+len(before))
	}
	if n, words := w.fed.Load(), len(w.d.Raw("words")); n != 1 || words != 9 {
		t.Errorf("%d lines fed and %d words sent, want 1 and 9", n, words)
	}
}
