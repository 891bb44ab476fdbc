// Command adder is Faust's adder example: the agent `adding` reads JSON
// requests {"a":int,"b":int} from the topic `adding` and replies a+b.
//
// Run a worker (embedded broker), then ask it from another terminal:
//
//	go run ./examples/adder worker
//	go run ./examples/adder ask adding '{"a":4,"b":4}'     # prints 8
//
// From Go code on a running node, the same agent answers through Kafka
// (durable) or straight at the PID of the grain owning the key (fast):
//
//	sum, err := adding.Ask(ctx, "k", Add{A: 4, B: 4})
//	pid, _ := adding.PID("k")
//	sum, err = adding.Request(ctx, pid, "k", Add{A: 4, B: 4})
package main

import (
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// Add is a request to add two numbers.
type Add struct {
	A int `json:"a"`
	B int `json:"b"`
}

// newApp declares the adder app; tests build it in-process.
func newApp(opts ...mephisto.Option) (*mephisto.App, *mephisto.ReplyAgent[string, Add, int]) {
	app := mephisto.New("adder", opts...)
	topic := mephisto.NewTopic(app, "adding", codec.String(), codec.JSON[Add]())
	adding := mephisto.NewReplyAgent(app, "adding", topic, func(_ mephisto.Context, _ string, req Add) (int, error) {
		return req.A + req.B, nil
	})
	return app, adding
}

func main() {
	app, _ := newApp()
	app.Main()
}
