package main

// Driver tests: newApp's topology run by mephistotest, with no broker, no
// disk and no clock of its own — the split and count agents, the
// word_counts table, the error policies and the commits, exactly.

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// driven is newApp on a test driver, with typed handles on its topics.
type driven struct {
	d            *mephistotest.Driver
	app          *mephisto.App
	lines, words *mephisto.Topic[string, string]
}

// drive builds newApp and starts a driver on it. Declaring a topic again
// with the same codecs shares the app's declaration (and a codec that
// disagreed would fail the driver's validation).
func drive(t *testing.T) driven {
	t.Helper()
	app := newApp()
	w := driven{app: app,
		lines: mephisto.NewTopic(app, "lines", codec.String(), codec.String()),
		words: mephisto.NewTopic(app, "words", codec.String(), codec.String())}
	w.d = mephistotest.New(t, app)
	return w
}

// counts returns word_counts as committed: what a node restoring it
// from its changelog loads. (newApp hands out no handle on the table, so
// the test reads it with mephistotest.TableRows instead of Get.)
func (w driven) counts(t *testing.T) map[string]int64 {
	t.Helper()
	return mephistotest.TableRows(w.d, "word_counts", codec.String(), codec.Int64())
}

// changelog names table's changelog topic, as the app's topology says.
func changelog(t *testing.T, app *mephisto.App, table string) string {
	t.Helper()
	for _, info := range app.Topology().Tables {
		if info.Name == table {
			return info.Changelog
		}
	}
	t.Fatalf("the app declares no table %s", table)
	return ""
}

// partitionOf returns the partition of the last record of topic keyed
// key.
func (w driven) partitionOf(t *testing.T, topic, key string) int32 {
	t.Helper()
	rs := w.d.Raw(topic)
	for i := len(rs) - 1; i >= 0; i-- {
		if string(rs[i].Key) == key {
			return rs[i].Partition
		}
	}
	t.Fatalf("no record keyed %q in %s", key, topic)
	return -1
}

// TestDriverWordCount: every line is split into lower-cased words, each
// sent keyed by itself (so all of one word's records share a partition),
// and counted exactly once.
func TestDriverWordCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  map[string]int64
		words int // records in words
	}{
		{"one line", []string{"the fox and the dog"}, map[string]int64{"the": 2, "fox": 1, "and": 1, "dog": 1}, 5},
		{"case and whitespace", []string{"The  FOX", "\tthe End  ", "fOx"},
			map[string]int64{"the": 2, "fox": 2, "end": 1}, 5},
		{"empty lines", []string{"", "   ", "\t"}, map[string]int64{}, 0},
		{"punctuation is part of a word", []string{"dog. dog, dog"}, map[string]int64{"dog.": 1, "dog,": 1, "dog": 1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := drive(t)
			for _, l := range tc.lines {
				mephistotest.Pipe(w.d, w.lines, "", l)
			}
			if got := w.counts(t); !maps.Equal(got, tc.want) {
				t.Errorf("word_counts = %v, want %v", got, tc.want)
			}
			recs := mephistotest.Records(w.d, w.words)
			if len(recs) != tc.words {
				t.Errorf("%d records in words, want %d", len(recs), tc.words)
			}
			part := map[string]int32{}
			for _, r := range recs {
				if r.Key != r.Value || r.Key != strings.ToLower(r.Key) {
					t.Errorf("words record %q=%q: want a lower-cased word keyed by itself", r.Key, r.Value)
				}
				if p, ok := part[r.Key]; ok && p != r.Partition {
					t.Errorf("%q on partitions %d and %d: one word, one partition", r.Key, p, r.Partition)
				}
				part[r.Key] = r.Partition
			}
			if n := w.d.Metric("mephisto_events_in_total", "topic", "lines"); n != float64(len(tc.lines)) {
				t.Errorf("events in from lines = %v, want %d", n, len(tc.lines))
			}
			if n := w.d.Metric("mephisto_events_in_total", "topic", "words"); n != float64(tc.words) {
				t.Errorf("events in from words = %v, want %d", n, tc.words)
			}
		})
	}
}

// TestDriverBatch: a backlog processed at once commits once per partition
// that had work, and the write-back cache writes one changelog record per
// word per commit, where the same lines piped one at a time write one per
// line.
func TestDriverBatch(t *testing.T) {
	const n = 100
	for _, tc := range []struct {
		name      string
		batch     bool
		changelog int // records per word
	}{
		{"piped one at a time", false, n},
		{"in one batch", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := drive(t)
			pipe := func() {
				for range n {
					mephistotest.Pipe(w.d, w.lines, "", "the fox")
				}
			}
			commits := w.d.Metric("mephisto_commits_total")
			if tc.batch {
				w.d.Batch(pipe)
			} else {
				pipe()
			}
			if got, want := w.counts(t), map[string]int64{"the": n, "fox": n}; !maps.Equal(got, want) {
				t.Errorf("word_counts = %v, want %v", got, want)
			}
			per := map[string]int{}
			for _, r := range w.d.Raw(changelog(t, w.app, "word_counts")) {
				per[string(r.Key)]++
			}
			if want := map[string]int{"the": tc.changelog, "fox": tc.changelog}; !maps.Equal(per, want) {
				t.Errorf("changelog records per word = %v, want %v", per, want)
			}
			busy := map[int32]bool{w.partitionOf(t, "lines", ""): true,
				w.partitionOf(t, "words", "the"): true, w.partitionOf(t, "words", "fox"): true}
			if tc.batch {
				if got := w.d.Metric("mephisto_commits_total") - commits; got != float64(len(busy)) {
					t.Errorf("%v commits for the batch, want %d: one per partition with work", got, len(busy))
				}
			}
		})
	}
}

// TestDriverFaults: a handler failing fewer times than the app's attempts
// (3) is retried by restarting its grain, its effects applied once; one
// failing every attempt goes to its agent's error policy, the default
// DeadLetter: the record, its own headers and its coordinates go to
// wordcount-<agent>-dead-letters, and the records behind it go on.
func TestDriverFaults(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		inject   func(*mephistotest.Driver)
		agent    string // whose grain fails
		restarts float64
		dead     string // how the dead letter's error begins, "" for none
	}{
		{"count fails twice: retried", func(d *mephistotest.Driver) { d.Fail("count", 2, boom) }, "count", 2, ""},
		{"count panics three times: dead letter", func(d *mephistotest.Driver) { d.Panic("count", 3) }, "count", 3,
			"failed 3 times, last: handler panicked: mephistotest: agent count panics on purpose"},
		{"split fails three times: dead letter", func(d *mephistotest.Driver) { d.Fail("split", 3, boom) }, "split", 3,
			"failed 3 times, last: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := drive(t)
			tc.inject(w.d)
			// A header of the producer's travels with a dead letter; one
			// posing as Mephisto's does not.
			w.d.PipeRaw("lines", []byte("l1"), []byte("fox"), mephistotest.Header("trace", "t-1"), mephistotest.Header("mephisto.agent", "forged"))

			topic, key := "words", "fox"
			if tc.agent == "split" {
				topic, key = "lines", "l1"
			}
			p := w.partitionOf(t, topic, key)
			grain := fmt.Sprintf("partition/wordcount/%d", p)
			if n := w.d.Metric("mephisto_grain_restarts_total", "grain", grain); n != tc.restarts {
				t.Errorf("%s restarted %v times, want %v", grain, n, tc.restarts)
			}
			want := map[string]int64{"fox": 1}
			if tc.dead != "" {
				want = map[string]int64{}
			}
			if got := w.counts(t); !maps.Equal(got, want) {
				t.Errorf("word_counts = %v, want %v", got, want)
			}
			for _, a := range []string{"split", "count"} {
				dls := w.d.DeadLetters(a)
				if a != tc.agent || tc.dead == "" {
					if len(dls) != 0 {
						t.Errorf("dead letters of %s = %+v, want none", a, dls)
					}
					continue
				}
				if len(dls) != 1 {
					t.Fatalf("dead letters of %s = %+v, want one", a, dls)
				}
				dl := dls[0]
				wantValue := "fox"
				wantHeaders := map[string]string{"mephisto.agent": a, "mephisto.error": dl.Error, "mephisto.topic": topic,
					"mephisto.partition": fmt.Sprint(p), "mephisto.offset": "0"}
				if a == "split" {
					wantHeaders["trace"] = "t-1"
				}
				if string(dl.Key) != key || string(dl.Value) != wantValue || !strings.HasPrefix(dl.Error, tc.dead) || dl.Topic != topic ||
					dl.Partition != p || dl.Offset != 0 || !maps.Equal(dl.Headers, wantHeaders) {
					t.Errorf("dead letter = %q=%q %+v, want %q=%q with headers %v", dl.Key, dl.Value, dl, key, wantValue, wantHeaders)
				}
				if n := w.d.Metric("mephisto_dead_letters_total", "agent", a); n != 1 {
					t.Errorf("dead letters of %s counted %v, want 1", a, n)
				}
			}

			// The fault is spent and the partition goes on.
			mephistotest.Pipe(w.d, w.lines, "l2", "fox")
			want["fox"]++
			if got := w.counts(t); !maps.Equal(got, want) {
				t.Errorf("after the fault: word_counts = %v, want %v", got, want)
			}
		})
	}
}

// TestDriverCrash: a grain killed before it committed restarts from its
// last commit. Its table writes since are lost and redone from the
// replayed records, so crashing count's grain loses nothing and counts
// nothing twice; but what split sent before the crash was produced, and
// its replay sends it again: crashing split's grain counts the line's
// words twice (at least once).
func TestDriverCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		crash    string // the topic whose grain crashes: lines (split) or words (count)
		replayed int    // records the replay sends
		fox      int64
	}{
		{"count's grain", "words", 0, 3},
		{"split's grain", "lines", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := drive(t)
			mephistotest.Pipe(w.d, w.lines, "", "fox")
			w.d.HoldCommits(true)
			mephistotest.Pipe(w.d, w.lines, "", "fox fox")
			if got := w.counts(t); got["fox"] != 1 {
				t.Fatalf("fox = %d with commits held, want the committed 1", got["fox"])
			}
			lineP, foxP := w.partitionOf(t, "lines", ""), w.partitionOf(t, "words", "fox")
			if lineP == foxP {
				t.Fatalf("the line and fox share partition %d: the test needs them apart", lineP)
			}
			p := foxP
			if tc.crash == "lines" {
				p = lineP
			}
			replayed := w.d.Crash(p)
			w.d.HoldCommits(false)
			if len(replayed) != tc.replayed {
				t.Errorf("the replay sent %d records, want %d", len(replayed), tc.replayed)
			}
			for _, r := range replayed {
				if r.Topic != "words" || string(r.Key) != "fox" {
					t.Errorf("the replay sent %s %q, want words fox", r.Topic, r.Key)
				}
			}
			if got, want := w.counts(t), map[string]int64{"fox": tc.fox}; !maps.Equal(got, want) {
				t.Errorf("word_counts = %v, want %v", got, want)
			}
		})
	}
}
