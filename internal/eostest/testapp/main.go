// Command testapp is the Mephisto app the exactly-once chaos test in
// internal/eostest runs as real worker processes.
//
// App "eostest": every record of topic data (key: a key id; value
// "seq:value", see eostest.FormatInput) is, in agent process, one step of
// its key's aggregate in table aggs (count, sum, min and max of the
// values, and the last seq; JSON), then echoed unchanged to topic echo
// and followed by the key's new aggregate on topic aggregates. Run
// exactly once, each input has one echo, and the i-th aggregate of a key
// on aggregates is the aggregate of the key's first i inputs.
//
// On a broker the tests share (Apache Kafka) each test names its own app
// and topics: EOSTEST_APP_NAME replaces "eostest" (the consumer group,
// the transactional ids and the changelog's prefix) and
// EOSTEST_TOPIC_PREFIX is put in front of every topic's name.
package main

import (
	"os"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/eostest"
)

func main() {
	name := eostest.AppName
	if n := os.Getenv(eostest.EnvAppName); n != "" {
		name = n
	}
	prefix := os.Getenv(eostest.EnvTopicPrefix)
	app := mephisto.New(name)
	data := mephisto.NewTopic(app, prefix+eostest.InputTopic, codec.String(), codec.String())
	echo := mephisto.NewTopic(app, prefix+eostest.EchoTopic, codec.String(), codec.String())
	aggregates := mephisto.NewTopic(app, prefix+eostest.AggregatesTopic, codec.String(), codec.JSON[eostest.Aggregate]())
	aggs := mephisto.NewTable(app, eostest.Table, codec.String(), codec.JSON[eostest.Aggregate]())
	mephisto.NewAgent(app, "process", data, func(ctx mephisto.Context, key, value string) error {
		seq, n, err := eostest.ParseInput(value)
		if err != nil {
			return err
		}
		a, err := aggs.Get(ctx, key)
		if err != nil {
			return err
		}
		a = a.Add(seq, n)
		if err := aggs.Set(ctx, key, a); err != nil {
			return err
		}
		if err := echo.Send(ctx, key, value); err != nil {
			return err
		}
		return aggregates.Send(ctx, key, a)
	})
	app.Main()
}
