// Command wordcount is Mephisto's "hello world": it counts the words of
// the lines sent to a topic, in a durable, partitioned table.
//
// The topology is two agents and one table:
//
//	lines (topic) ──▶ split ──▶ words (topic, keyed by word) ──▶ count ──▶ word_counts (table)
//
// The split agent breaks each line into lower-cased words (strings.Fields)
// and sends each word, keyed by itself, to the words topic. Keying by the
// word repartitions the stream: every occurrence of one word lands on one
// partition, so the count agent can keep that word's count in the
// partition's shard of the word_counts table without any locking.
//
// Run it from the repository root (no Kafka needed: with no --brokers the
// worker starts an embedded development broker on 127.0.0.1:9092, and
// serves HTTP on 127.0.0.1:6066):
//
//	make run
//	# or, by hand, with a generator sending 5 random lines a second:
//	WORDCOUNT_RATE=5 go run ./examples/wordcount worker --data-dir ./.run/wordcount-data
//
// then, from another terminal:
//
//	go run ./examples/wordcount send lines "the fox and the dog" --brokers 127.0.0.1:9092
//	curl -s http://127.0.0.1:6066/tables/word_counts/fox
//	curl -s http://127.0.0.1:6066/metrics
//	go run ./examples/wordcount agents
//	go run ./examples/wordcount tables
//
// WORDCOUNT_RATE (lines per second; unset or 0: off) starts a generator
// task that sends random lines from a small built-in corpus and, every two
// seconds, logs a few counts it reads back from the worker's own HTTP
// endpoint, so you can watch them move.
package main

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/examples/internal/hints"
)

// rateEnv names the environment variable that turns the generator on.
const rateEnv = "WORDCOUNT_RATE"

// sentences is the generator's corpus.
var sentences = []string{
	"The quick brown fox jumps over the lazy dog",
	"A journey of a thousand miles begins with a single step",
	"The dog barks and the fox runs into the woods",
	"All that glitters is not gold",
	"To be or not to be that is the question",
	"The early bird catches the worm",
	"Brown dogs and lazy cats sleep in the sun",
	"It was the best of times it was the worst of times",
}

// demo is the start-up guide and the generator: it logs the counts of a
// few words.
var demo = hints.Demo{
	Name: "wordcount", Table: "word_counts", Keys: []string{"the", "fox", "dog", "be", "times"},
	SendArgs: `send lines "hello world"`, RateEnv: rateEnv, Unit: "lines",
}

// console receives the start-up guide (tests redirect it).
var console io.Writer = os.Stderr

func main() {
	newApp().Main()
}

// newApp declares the wordcount app. opts override its configuration (the
// tests point it at their own broker and directories).
func newApp(opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New("wordcount", opts...)

	lines := mephisto.NewTopic(app, "lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())

	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _ string, line string) error {
		for _, w := range strings.Fields(strings.ToLower(line)) {
			// Inside a handler Send is part of the event's effects:
			// released only if the handler succeeds.
			if err := words.Send(ctx, w, w); err != nil {
				return err
			}
		}
		return nil
	})

	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		return counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	})

	// The guide prints, once the worker is ready, where to look and what
	// to try; the generator sends random lines at the rate WORDCOUNT_RATE
	// sets. Outside a handler, SendValue waits for the broker's
	// acknowledgement.
	app.Task("guide", func(ctx context.Context) error { return demo.Guide(ctx, app, console) })
	app.Task("generator", func(ctx context.Context) error {
		return demo.Generate(ctx, app, lines.Name(), func(ctx context.Context) error {
			return lines.SendValue(ctx, sentences[rand.IntN(len(sentences))])
		})
	})
	return app
}
