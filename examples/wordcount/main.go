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
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

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

// reported are the words whose counts the generator logs.
var reported = []string{"the", "fox", "dog", "be", "times"}

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

	app.Task("guide", func(ctx context.Context) error { return guide(ctx, app) })
	app.Task("generator", func(ctx context.Context) error { return generate(ctx, app, lines) })
	return app
}

// guide prints, once the worker is ready, where to look and what to try.
func guide(ctx context.Context, app *mephisto.App) error {
	hints.WaitReady(ctx, app, 30*time.Second)
	if ctx.Err() != nil {
		return nil
	}
	// The send hint names the brokers this worker uses, so that it is
	// right whatever the flags.
	cfg := app.Config()
	brokers := cfg.EmbeddedBroker
	if len(cfg.Brokers) > 0 {
		brokers = strings.Join(cfg.Brokers, ",")
	} else if strings.HasSuffix(brokers, ":0") {
		brokers = "<the embedded broker's address, logged above>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  wordcount is running.\n")
	if web := app.WebAddr(); web != "" {
		fmt.Fprintf(&b, "    counts:    curl -s http://%s/tables/word_counts/the\n", web)
		fmt.Fprintf(&b, "    metrics:   http://%s/metrics\n", web)
		fmt.Fprintf(&b, "    readiness: http://%s/readyz\n", web)
	}
	fmt.Fprintf(&b, "    send:      %s send lines \"hello world\" --brokers %s\n", hints.SelfCommand("wordcount"), brokers)
	if os.Getenv(rateEnv) == "" {
		fmt.Fprintf(&b, "    generate:  set %s=5 to send 5 random lines a second\n", rateEnv)
	}
	fmt.Fprintln(&b)
	_, err := io.WriteString(console, b.String())
	return err
}

// generate sends random lines at the rate set by WORDCOUNT_RATE and every
// two seconds logs a few counts read from the worker's HTTP endpoint.
func generate(ctx context.Context, app *mephisto.App, lines *mephisto.Topic[string, string]) error {
	rate, err := hints.RateFromEnv(rateEnv)
	if err != nil || rate == 0 {
		return err
	}
	log := hints.Logger(app)
	log.Info("generator on", "lines_per_second", rate, "env", rateEnv)
	send := time.NewTicker(max(time.Duration(float64(time.Second)/rate), time.Microsecond))
	defer send.Stop()
	report := time.NewTicker(2 * time.Second)
	defer report.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-send.C:
			// Outside a handler, SendValue waits for the broker's
			// acknowledgement.
			if err := lines.SendValue(ctx, sentences[rand.IntN(len(sentences))]); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send to %s: %w", lines.Name(), err)
			}
		case <-report.C:
			web := app.WebAddr()
			if web == "" {
				continue
			}
			attrs := make([]any, 0, 2*len(reported))
			for _, w := range reported {
				attrs = append(attrs, w, hints.ReadCount(ctx, client, web, "word_counts", w))
			}
			log.Info("counts", attrs...)
		}
	}
}
