// Command orders is Faust's introduction example in Mephisto: it counts
// orders per account, repartitioning the order stream by account first.
//
// Orders arrive as JSON on the orders topic, keyed by order id, so the
// orders of one account are spread over every partition. GroupBy
// repartitions them by account id through an internal topic
// (orders-orders-by-account-repartition), after which every order of one
// account is on one partition, and the count-orders agent can keep a
// per-account count in the order_count table without any locking:
//
//	orders (key: order id) ──▶ orders-by-account ──▶ repartition topic (key: account id)
//	                                                   ──▶ count-orders ──▶ order_count (table)
//
// Run it from the repository root (no Kafka needed: with no --brokers the
// worker starts an embedded development broker on 127.0.0.1:9092, and
// serves HTTP on 127.0.0.1:6066):
//
//	ORDERS_RATE=5 go run ./examples/orders worker --data-dir ./.run/orders-data
//
// then, from another terminal:
//
//	go run ./examples/orders send orders '{"account_id":"a1","product_id":"p1","amount":2,"price":9.5}' --key o1 --brokers 127.0.0.1:9092
//	curl -s http://127.0.0.1:6066/tables/order_count/a1
//	go run ./examples/orders agents
//
// ORDERS_RATE (orders per second; unset or 0: off) starts a generator task
// that sends random orders of five accounts and, every two seconds, logs
// their counts as read back from the worker's own HTTP endpoint.
package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/examples/internal/hints"
)

// Order is one order, as JSON on the orders topic.
type Order struct {
	AccountID string  `json:"account_id"`
	ProductID string  `json:"product_id"`
	Amount    int     `json:"amount"`
	Price     float64 `json:"price"`
}

// rateEnv names the environment variable that turns the generator on.
const rateEnv = "ORDERS_RATE"

// accounts and products are what the generator's orders are made of.
var (
	accounts = []string{"a1", "a2", "a3", "a4", "a5"}
	products = []string{"p1", "p2", "p3", "p4"}
)

// demo is the start-up guide and the generator: it logs the counts of
// every account.
var demo = hints.Demo{
	Name: "orders", Table: "order_count", Keys: accounts,
	SendArgs: `send orders '{"account_id":"a1","product_id":"p1","amount":2,"price":9.5}' --key o1`,
	RateEnv:  rateEnv, Unit: "orders",
}

// console receives the start-up guide (tests redirect it).
var console io.Writer = os.Stderr

func main() {
	newApp().Main()
}

// newApp declares the orders app. opts override its configuration (the
// tests point it at their own broker and directories).
func newApp(opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New("orders", opts...)

	orders := mephisto.NewTopic(app, "orders", codec.String(), codec.JSON[Order]())
	orderCount := mephisto.NewTable(app, "order_count", codec.String(), codec.Int64())

	// Faust: async for order in stream.group_by(Order.account_id)
	byAccount := mephisto.GroupBy(orders, "orders-by-account",
		func(_ string, o Order) string { return o.AccountID }, codec.String())

	mephisto.NewAgent(app, "count-orders", byAccount, func(ctx mephisto.Context, account string, _ Order) error {
		return orderCount.Update(ctx, account, func(n int64) int64 { return n + 1 })
	})

	// The guide prints, once the worker is ready, where to look and what
	// to try; the generator sends random orders, keyed by order id, at the
	// rate ORDERS_RATE sets. Outside a handler, Send waits for the
	// broker's acknowledgement.
	app.Task("guide", func(ctx context.Context) error { return demo.Guide(ctx, app, console) })
	app.Task("generator", func(ctx context.Context) error {
		run, n := rand.Uint32(), 1 // order ids of this run: o<run>-<n>
		return demo.Generate(ctx, app, orders.Name(), func(ctx context.Context) error {
			o := Order{
				AccountID: accounts[rand.IntN(len(accounts))],
				ProductID: products[rand.IntN(len(products))],
				Amount:    1 + rand.IntN(5),
				Price:     float64(100+rand.IntN(9900)) / 100,
			}
			if err := orders.Send(ctx, fmt.Sprintf("o%08x-%d", run, n), o); err != nil {
				return err
			}
			n++
			return nil
		})
	})
	return app
}
