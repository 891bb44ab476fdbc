// Command testapp is the Mephisto app the multi-process cluster tests in
// internal/clustertest run as real worker processes.
//
// App "ctest": every record of topic events (string key and value) adds 1
// to counts[key] in agent count — a single keyed hop, so for every key the
// table's value is exactly the number of records processed for it.
//
// On a broker the tests share (Apache Kafka) each test names its own app
// and topics: CLUSTERTEST_APP_NAME replaces "ctest" (the consumer group and
// the changelog's prefix) and CLUSTERTEST_TOPIC_PREFIX is put in front of
// "events".
package main

import (
	"os"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

func main() {
	name := "ctest"
	if n := os.Getenv("CLUSTERTEST_APP_NAME"); n != "" {
		name = n
	}
	app := mephisto.New(name)
	events := mephisto.NewTopic(app, os.Getenv("CLUSTERTEST_TOPIC_PREFIX")+"events", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "count", events, func(ctx mephisto.Context, key, _ string) error {
		return counts.Update(ctx, key, func(n int64) int64 { return n + 1 })
	})
	app.Main()
}
