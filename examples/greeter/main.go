// Command greeter shows Mephisto's two ways of messaging an agent, and an
// agent spawned at run time.
//
// The reply agent greet reads names (JSON strings, keyed by the name) from
// the topic greetings, counts them in the table greeted, and replies
// "hello, <name>".
// A task started with the worker spawns the channel agent announcer (with
// SpawnChannelAgent: a supervised actor, with a PID, created while the node
// runs), then greets each name of GREETER_NAMES (comma-separated; default
// "world,faust,gretchen") both ways and hands every reply to the announcer,
// which logs it:
//
//   - Through Kafka (durable): greet.Ask(ctx, name, name) produces a record
//     to greetings with a reply-to header (this node's partition of the
//     topic greeter-replies) and a correlation id, and waits for the reply
//     record. Whichever node owns the name's partition answers; the request
//     survives a crash of that node (its new owner processes it). A few
//     milliseconds. Cast sends without waiting; Map and Join ask many at
//     once. The CLI's `ask` is the same path from outside the cluster.
//
//   - By PID (direct): greet.PID(name) looks up, in the current assignment,
//     the actor (grain) that processes the name's partition, wherever it
//     runs, and greet.Request(ctx, pid, name, name) sends it the request
//     (over protoactor remote, or in process when the grain is local) and
//     waits for the answer. Tens of microseconds in process, about a tenth
//     of a millisecond between processes on one machine, no Kafka round
//     trip; but nothing durable records the request: if the owner dies, Request fails at once with
//     ErrNodeDead (when gossip declares it dead) and the caller retries,
//     with a fresh PID or through Kafka. PIDs need the actor system
//     reachable: the worker command does it (--actor, default 127.0.0.1:0);
//     a program calling App.Run passes mephisto.WithActorAddr.
//
// Run a worker (embedded broker), then ask from another terminal:
//
//	go run ./examples/greeter worker
//	go run ./examples/greeter ask greet '"world"'                # prints "hello, world"
//	go run ./examples/greeter ask greet '"world"' --key world    # the same, and counted
//	curl -s localhost:6066/tables/greeted/world                  # how often world was greeted
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// namesEnv names the environment variable listing whom the task greets.
const namesEnv = "GREETER_NAMES"

var defaultNames = []string{"world", "faust", "gretchen"}

// Reply is a greeting the task received, as the announcer gets it.
type Reply struct {
	Name string
	Path string // "pid" or "kafka"
	Text string
	Took time.Duration
}

// greeter is the declared app.
type greeter struct {
	app   *mephisto.App
	greet *mephisto.ReplyAgent[string, string, string]
	// announced, if set, sees every reply the announcer handles (tests).
	announced func(Reply)
	// announcer is the channel agent, once the task spawned it.
	announcer chan *mephisto.ChannelAgent[string, Reply]
}

func main() {
	newApp(namesFromEnv(), nil).app.Main()
}

// namesFromEnv returns the names of GREETER_NAMES (unset: the defaults).
func namesFromEnv() []string {
	s, ok := os.LookupEnv(namesEnv)
	if !ok {
		return defaultNames
	}
	var names []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// newApp declares the greeter app; the task greets names. announced, if
// not nil, sees every reply the announcer handles. opts override the
// configuration (tests point the app at their broker).
func newApp(names []string, announced func(Reply), opts ...mephisto.Option) *greeter {
	app := mephisto.New("greeter", opts...)
	g := &greeter{app: app, announced: announced, announcer: make(chan *mephisto.ChannelAgent[string, Reply], 1)}
	greetings := mephisto.NewTopic(app, "greetings", codec.String(), codec.JSON[string]())
	greeted := mephisto.NewTable(app, "greeted", codec.String(), codec.Int64())
	g.greet = mephisto.NewReplyAgent(app, "greet", greetings, func(ctx mephisto.Context, key, name string) (string, error) {
		// The handler runs in the grain of the key's partition, whichever
		// path the request took, so it may use the table — for keys of that
		// partition: a greeting keyed by the name is counted. (An unkeyed
		// one, like `ask` without --key, lands on any partition: it is
		// answered, not counted.)
		if key == name {
			if err := greeted.Update(ctx, name, func(n int64) int64 { return n + 1 }); err != nil {
				return "", err
			}
		}
		return "hello, " + name, nil
	})
	app.Task("welcome", func(ctx context.Context) error { return g.welcome(ctx, names) })
	return g
}

func (g *greeter) log() *slog.Logger {
	if l := g.app.Config().Logger; l != nil {
		return l
	}
	return slog.Default()
}

// welcome spawns the announcer, then greets each name by PID and through
// Kafka and hands the replies to the announcer.
func (g *greeter) welcome(ctx context.Context, names []string) error {
	log := g.log().With("task", "welcome")
	if err := waitReady(ctx, g.app); err != nil {
		return err
	}
	// An agent created while the node runs: a channel and its consumer.
	replies := mephisto.NewChannel[string, Reply](g.app, "replies")
	announcer, err := mephisto.SpawnChannelAgent(g.app, "announcer", replies, func(_ mephisto.Context, _ string, r Reply) error {
		log.Info("greeted", "name", r.Name, "path", r.Path, "reply", r.Text, "took", r.Took)
		if g.announced != nil {
			g.announced(r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spawn the announcer: %w", err)
	}
	g.announcer <- announcer
	log.Info("spawned the announcer", "pid", announcer.PID().Address+"/"+announcer.PID().Id)

	for _, name := range names {
		// By PID: look the grain up, then ask it directly.
		start := time.Now()
		text, err := g.byPID(ctx, name)
		if err != nil {
			return fmt.Errorf("greet %s by PID: %w", name, err)
		}
		if err := replies.Send(ctx, name, Reply{Name: name, Path: "pid", Text: text, Took: time.Since(start)}); err != nil {
			return err
		}
		// Through Kafka.
		start = time.Now()
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		text, err = g.greet.Ask(actx, name, name)
		cancel()
		if err != nil {
			return fmt.Errorf("greet %s through Kafka: %w", name, err)
		}
		if err := replies.Send(ctx, name, Reply{Name: name, Path: "kafka", Text: text, Took: time.Since(start)}); err != nil {
			return err
		}
	}
	return nil
}

// byPID requests a greeting from the grain that owns name's partition.
// The direct path is not durable, so the caller retries: while the
// partition has no owner (a rebalance) or its owner just died, look the PID
// up again.
func (g *greeter) byPID(ctx context.Context, name string) (string, error) {
	for attempt := 1; ; attempt++ {
		pid, err := g.greet.PID(name)
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var text string
			text, err = g.greet.Request(rctx, pid, name, name)
			cancel()
			if err == nil {
				return text, nil
			}
		}
		retry := errors.Is(err, mephisto.ErrNoOwner) || errors.Is(err, mephisto.ErrNodeDead) || errors.Is(err, mephisto.ErrTimeout)
		if !retry || attempt == 10 || ctx.Err() != nil {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// waitReady waits until the worker is ready (its partitions assigned and
// loaded: PIDs resolve) or ctx ends.
func waitReady(ctx context.Context, app *mephisto.App) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := app.Ready(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
