// Command globalusers is the Faust question "how do I share a table
// between agents, a timer and a web page?" answered in Mephisto: a global
// table counts every user event on every node, a page serves the count
// from the node's own copy, a timer logs it, and a second pair of agents
// shares results the other way, through a topic.
//
//	users (topic, JSON, key: user id) ──▶ process   ──▶ globalusers["users"] += 1  (global table)
//	                                  └─▶ processor ──▶ results (topic, key: user id)
//	                                                      ──▶ result_processor ──▶ results_seen (table)
//
//	GET /user_count/  {"user_count": N}     this node's copy of globalusers["users"]
//	timer user-count  logs it every second  on every node
//
// Every node keeps all of globalusers. The increments do not race: Merge
// sends each one to the grain that owns the key "users", which adds them
// up one at a time and writes the sum to the table's changelog, from
// which every node's copy is fed. So with any number of nodes the count
// is never below the number of events (at least once: a node killed
// before it committed may have some counted twice), where Faust's
// `global_table['users'] += 1` on several workers loses some.
// results_seen is an ordinary partitioned table: each user's count lives
// on the node that owns the user's partition, read with
// GET /tables/results_seen/<user id> from any node.
//
// Run it from the repository root (no Kafka needed: with no --brokers the
// worker starts an embedded development broker on 127.0.0.1:9092, and
// serves HTTP on 127.0.0.1:6066):
//
//	GLOBALUSERS_RATE=5 go run ./examples/globalusers worker --data-dir ./.run/globalusers-data
//
// then, from another terminal:
//
//	go run ./examples/globalusers send users '{"id":"u1","name":"Ann"}' --key u1 --brokers 127.0.0.1:9092
//	curl -s http://127.0.0.1:6066/user_count/
//	curl -s http://127.0.0.1:6066/tables/results_seen/u1
//	curl -s http://127.0.0.1:6066/cluster     # global_tables: how far behind this node's copy is
//
// Three nodes share the work (and each answers /user_count/ from its own
// copy):
//
//	go run ./cmd/mephisto broker --listen 127.0.0.1:9092 --data-dir .run/broker &
//	go build -o .run/globalusers ./examples/globalusers
//	.run/globalusers worker --brokers 127.0.0.1:9092 --node-id n1 --web 127.0.0.1:6066 --gossip 127.0.0.1:7946 --data-dir .run/gu1 &
//	.run/globalusers worker --brokers 127.0.0.1:9092 --node-id n2 --web 127.0.0.1:6067 --gossip 127.0.0.1:7947 --data-dir .run/gu2 &
//	.run/globalusers worker --brokers 127.0.0.1:9092 --node-id n3 --web 127.0.0.1:6068 --gossip 127.0.0.1:7948 --data-dir .run/gu3 &
//
// GLOBALUSERS_RATE (users per second; unset or 0: off) starts a generator
// task that sends users of twenty ids and, every two seconds, logs how
// often result_processor has seen a few of them.
package main

import (
	"context"
	"encoding/json"
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

// User is one event of the users topic, as JSON.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// The names the example is built from (the seed scenario).
const (
	appName     = "globalusers"
	usersTopic  = "users"
	resultTopic = "results"
	globalName  = "globalusers"  // the global table
	countKey    = "users"        // its one key: the number of user events
	seenTable   = "results_seen" // result_processor's table: events per user id
	countPage   = "/user_count/"
)

// reportEvery is how often the timer logs the count.
const reportEvery = time.Second

// rateEnv names the environment variable that turns the generator on.
const rateEnv = "GLOBALUSERS_RATE"

// names are the generator's users: ids u1 … u20.
var names = []string{"Ann", "Bob", "Cem", "Dev", "Eva", "Fox", "Gus", "Hal", "Ida", "Joe",
	"Kim", "Lea", "Max", "Nia", "Oli", "Pia", "Quy", "Rex", "Sam", "Tea"}

// demo is the generator (and its report of results_seen); the guide is
// guide below, which names the page too.
var demo = hints.Demo{
	Name: appName, Table: seenTable, Keys: []string{"u1", "u2", "u3"},
	SendArgs: `send users '{"id":"u1","name":"Ann"}' --key u1`,
	RateEnv:  rateEnv, Unit: "users",
}

// console receives the start-up guide (tests redirect it).
var console io.Writer = os.Stderr

func main() {
	newApp().Main()
}

// newApp declares the globalusers app. opts override its configuration
// (the tests point it at their own broker and directories).
func newApp(opts ...mephisto.Option) *mephisto.App {
	app := mephisto.New(appName, append([]mephisto.Option{mephisto.WithPartitions(8)}, opts...)...)

	users := mephisto.NewTopic(app, usersTopic, codec.String(), codec.JSON[User]())
	results := mephisto.NewTopic(app, resultTopic, codec.String(), codec.String())

	// Faust: app.GlobalTable('globalusers', default=int). A missing key
	// reads as the zero value, 0; Merge adds with Sum.
	global := mephisto.NewGlobalTable(app, globalName, codec.String(), codec.Int64(),
		mephisto.MergeWith(mephisto.Sum[int64]))
	seen := mephisto.NewTable(app, seenTable, codec.String(), codec.Int64())

	// Faust: global_table['users'] += 1. The increment is sent to the
	// grain owning "users" with the handler's other effects, when this
	// event's partition commits.
	mephisto.NewAgent(app, "process", users, func(ctx mephisto.Context, _ string, _ User) error {
		return global.Merge(ctx, countKey, 1)
	})

	// The other way to share: send to a topic another agent consumes.
	// Keyed by user id, so result_processor sees every event of one user
	// on one partition and counts them without locks.
	mephisto.NewAgent(app, "processor", users, func(ctx mephisto.Context, _ string, u User) error {
		return results.Send(ctx, u.ID, u.ID)
	})
	mephisto.NewAgent(app, "result_processor", results, func(ctx mephisto.Context, id, _ string) error {
		return seen.Update(ctx, id, func(n int64) int64 { return n + 1 })
	})

	// Faust: @app.page('/user_count/') returning
	// web.json({'user_count': global_table['users']}). A global table
	// reads locally anywhere: this is this node's copy. {$} matches
	// the path exactly, as Faust's route does.
	app.PageFunc("GET "+countPage+"{$}", func(w http.ResponseWriter, r *http.Request) {
		n, err := global.Get(r.Context(), countKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"user_count": n})
	})

	// Faust: @app.timer(interval=1.0). Every node logs its own copy.
	app.Timer("user-count", reportEvery, func(ctx context.Context) error {
		n, err := global.Get(ctx, countKey)
		if err != nil {
			return err
		}
		hints.Logger(app).Info("user count", "user_count", n)
		return nil
	})

	app.Task("guide", func(ctx context.Context) error { return guide(ctx, app, console) })
	app.Task("generator", func(ctx context.Context) error {
		return demo.Generate(ctx, app, users.Name(), func(ctx context.Context) error {
			i := rand.IntN(len(names))
			id := fmt.Sprintf("u%d", i+1)
			return users.Send(ctx, id, User{ID: id, Name: names[i]})
		})
	})
	return app
}

// guide prints to w, once app is ready, where to look and what to try.
func guide(ctx context.Context, app *mephisto.App, w io.Writer) error {
	hints.WaitReady(ctx, app, 30*time.Second)
	if ctx.Err() != nil {
		return nil
	}
	cfg := app.Config()
	brokers := cfg.EmbeddedBroker
	if len(cfg.Brokers) > 0 {
		brokers = strings.Join(cfg.Brokers, ",")
	} else if strings.HasSuffix(brokers, ":0") {
		brokers = "<the embedded broker's address, logged above>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  %s is running.\n", appName)
	if web := app.WebAddr(); web != "" {
		fmt.Fprintf(&b, "    user count:  curl -s http://%s%s\n", web, countPage)
		fmt.Fprintf(&b, "    one user:    curl -s http://%s/tables/%s/u1\n", web, seenTable)
		fmt.Fprintf(&b, "    copies' lag: curl -s http://%s/cluster\n", web)
	}
	fmt.Fprintf(&b, "    send:        %s %s --brokers %s\n", hints.SelfCommand(appName), demo.SendArgs, brokers)
	if os.Getenv(rateEnv) == "" {
		fmt.Fprintf(&b, "    generate:    set %s=5 to send 5 random users a second\n", rateEnv)
	}
	fmt.Fprintln(&b)
	_, err := io.WriteString(w, b.String())
	return err
}
