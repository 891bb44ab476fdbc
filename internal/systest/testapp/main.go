// Command testapp is the Mephisto app the system tests in
// internal/systest run as real worker processes.
//
// It declares two pipelines:
//
//   - events → agent count → table counts: every record of topic events
//     adds 1 to counts[key] (a single hop);
//   - lines → agent split → words → agent wordcount → table word_counts:
//     split sends every whitespace-separated word of a line to topic words,
//     keyed by the word, and wordcount adds 1 to word_counts[word] (two hops,
//     through a topic the app itself produces to).
//
// The app's name is "systest" unless SYSTEST_APP_NAME says otherwise (the
// tests use that to write a data dir as another app, and to give each test
// a consumer group and changelogs of its own on a shared broker), and
// SYSTEST_TOPIC_PREFIX, if set, prefixes the names of the three topics.
package main

import (
	"os"
	"strings"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

func main() {
	name := os.Getenv("SYSTEST_APP_NAME")
	if name == "" {
		name = "systest"
	}
	app := mephisto.New(name)
	prefix := os.Getenv("SYSTEST_TOPIC_PREFIX")

	events := mephisto.NewTopic(app, prefix+"events", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, key, _ string) error {
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})

	lines := mephisto.NewTopic(app, prefix+"lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, prefix+"words", codec.String(), codec.String())
	wordCounts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _ string, line string) error {
		for _, w := range strings.Fields(line) {
			if err := words.Send(ctx, w, w); err != nil {
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "wordcount", words, func(ctx mephisto.Context, word, _ string) error {
		return wordCounts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	})

	app.Main()
}
