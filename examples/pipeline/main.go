// Command pipeline is a word count fed by a timer through an in-memory
// channel, with an agent that yields to sinks:
//
//	feed (timer, every second) ──▶ raw (channel) ──▶ clean (channel agent)
//	    ──▶ words (topic, keyed by word) ──▶ count (agent, table word_counts)
//	    ──yield──▶ sinks: log (SinkFunc) and counted (SinkTopic)
//	summary (timer, OnLeader, every 10 seconds) logs a few counts
//
// The parts:
//
//   - The timer feed sends the next line of a small built-in corpus to the
//     channel raw every second, on every worker. A channel lives inside one
//     node: nothing sent to it survives a restart, and no Kafka is involved
//     until clean sends on.
//   - The channel agent clean lower-cases each line, splits it into words
//     (letters and digits; punctuation dropped), drops what is empty, and
//     sends each word, keyed by itself, to the topic words: from here on the
//     pipeline is durable and partitioned.
//   - The agent count adds 1 to word_counts[word] in the grain of the word's
//     partition and yields {"word":…,"count":…}; every result goes to the
//     sinks in order: a function that logs it (at debug level) and the
//     topic counted. Sends made by sinks are effects of the event, released
//     only if the handler succeeds, like the handler's own.
//   - The timer summary runs on one node of the cluster only (OnLeader: the
//     node active for partition 0) and logs the counts of a few words, read
//     over HTTP from the node's own endpoint, which answers for any key.
//
// Timers run on the app's clock: tests pass mephisto.WithClock with a
// *timer.Fake and move time by hand (see main_test.go).
//
// Run it (embedded broker), then look:
//
//	go run ./examples/pipeline worker
//	curl -s localhost:6066/tables/word_counts/the
//	go run ./examples/pipeline agents       # count's sinks: func:log, topic:counted
package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/examples/internal/hints"
)

// Timer periods.
const (
	feedEvery    = time.Second
	summaryEvery = 10 * time.Second
)

// corpus is what the feed timer sends, one line per run, in order, then
// again from the start. Empty lines and punctuation are cleaned away.
var corpus = []string{
	"The quick brown fox jumps over the lazy dog.",
	"",
	"To be, or not to be: that is the question!",
	"   ",
	"All that glitters is NOT gold.",
	"... --- ...",
	"The early bird catches the worm; the second mouse gets the cheese.",
	"Brown dogs and lazy cats sleep in the sun",
}

// reported are the words the summary logs.
var reported = []string{"the", "be", "brown", "lazy"}

// WordCount is what count yields: a word and its new count.
type WordCount struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

// pipeline is the declared app and what its timers did on this node.
type pipeline struct {
	app       *mephisto.App
	fed       atomic.Int64 // lines the feed timer sent to raw
	summaries atomic.Int64 // summary timer runs (on the leader)
}

func main() {
	newApp().app.Main()
}

// words splits a line into lower-cased words of letters and digits.
func words(line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// newApp declares the pipeline; opts override its configuration (tests
// point it at their broker and clock).
func newApp(opts ...mephisto.Option) *pipeline {
	app := mephisto.New("pipeline", opts...)
	p := &pipeline{app: app}
	raw := mephisto.NewChannel[string, string](app, "raw")
	wordsTopic := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counted := mephisto.NewTopic(app, "counted", codec.String(), codec.JSON[WordCount]())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())

	mephisto.NewChannelAgent(app, "clean", raw, func(ctx mephisto.Context, _ string, line string) error {
		for _, w := range words(line) { // an empty line has none
			if err := wordsTopic.Send(ctx, w, w); err != nil {
				return err
			}
		}
		return nil
	})

	mephisto.NewAgentWithSinks(app, "count", wordsTopic,
		func(ctx mephisto.Context, word, _ string, yield func(WordCount) error) error {
			var n int64
			if err := counts.Update(ctx, word, func(c int64) int64 { n = c + 1; return n }); err != nil {
				return err
			}
			return yield(WordCount{Word: word, Count: n})
		},
		[]mephisto.Sink[WordCount]{
			mephisto.SinkFunc("log", func(_ mephisto.Context, wc WordCount) error {
				p.log().Debug("counted", "word", wc.Word, "count", wc.Count)
				return nil
			}),
			mephisto.SinkTopic(counted),
		})

	app.Timer("feed", feedEvery, func(ctx context.Context) error {
		// Runs of one timer never overlap: no lock needed for the counter's
		// read-then-add.
		line := corpus[p.fed.Load()%int64(len(corpus))]
		if err := raw.Send(ctx, "", line); err != nil {
			return err
		}
		p.fed.Add(1)
		return nil
	})

	app.Timer("summary", summaryEvery, func(ctx context.Context) error {
		attrs := []any{"lines_fed_here", p.fed.Load()}
		for _, w := range reported {
			attrs = append(attrs, w, hints.ReadCount(ctx, httpClient, app.WebAddr(), "word_counts", w))
		}
		p.log().Info("summary", attrs...)
		p.summaries.Add(1)
		return nil
	}, mephisto.OnLeader())
	return p
}

func (p *pipeline) log() *slog.Logger { return hints.Logger(p.app) }

var httpClient = &http.Client{Timeout: 2 * time.Second}
