// Command testapp is the Mephisto side of the interoperability tests in
// internal/interop: it exchanges JSON records with clients of other
// languages on shared topics.
//
// Orders arrive as JSON on topic orders, keyed by account, produced by a
// foreign client with its own default partitioner; agent tally adds each
// order's amount to table totals[account] — with no repartitioning, so a
// record the foreign client put on another partition than Mephisto's
// partitioner would give its key is counted in the wrong shard and the
// totals read back by key come out wrong — and sends a JSON receipt keyed
// by account to topic receipts, which the foreign client reads.
//
// INTEROP_TOPIC_PREFIX, if set, prefixes both topics' names; the app is
// named by INTEROP_APP_NAME (default "interop").
package main

import (
	"os"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// Order is one order as the foreign client writes it.
type Order struct {
	ID      int64  `json:"id"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// Receipt is what Mephisto answers for each order.
type Receipt struct {
	Order     int64  `json:"order"`
	Account   string `json:"account"`
	Total     int64  `json:"total"`
	Partition int32  `json:"partition"`
}

func main() {
	name := os.Getenv("INTEROP_APP_NAME")
	if name == "" {
		name = "interop"
	}
	prefix := os.Getenv("INTEROP_TOPIC_PREFIX")
	app := mephisto.New(name)
	orders := mephisto.NewTopic(app, prefix+"orders", codec.String(), codec.JSON[Order]())
	receipts := mephisto.NewTopic(app, prefix+"receipts", codec.String(), codec.JSON[Receipt]())
	totals := mephisto.NewTable(app, "totals", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "tally", orders, func(ctx mephisto.Context, account string, o Order) error {
		var total int64
		err := totals.Update(ctx, account, func(n int64) int64 { total = n + o.Amount; return total })
		if err != nil {
			return err
		}
		return receipts.Send(ctx, account, Receipt{Order: o.ID, Account: account, Total: total, Partition: ctx.Event().Partition})
	})
	app.Main()
}
