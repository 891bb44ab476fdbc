// Command testapp is the Mephisto app the multi-process agent tests in
// internal/agenttest run as real worker processes and as CLI clients.
//
// App "atest":
//
//   - reply agent adding on topic adding (string key, JSON {"a":int,"b":int})
//     replies a+b;
//   - agent tally on topic tally (string key, int64 value) adds the value to
//     tallies[key].
//
// ATEST_APP_NAME replaces the app's name and ATEST_TOPIC_PREFIX goes in
// front of the topics' names: each test names its own on a shared broker.
//
// Two tasks, off unless their environment variable is set, exercise the
// messaging API from inside a worker and report what they saw as JSON
// (the types of package agenttest):
//
//   - ATEST_JOIN=1: once ready, Join and Map over adding, then a few Asks;
//     the report goes to $ATEST_OUT.
//   - ATEST_PID=1: once another node owns partitions, requests by PID to its
//     grains (Request, SendPID, a protobuf message of a type grains do not
//     know, one of a type the other program never registered) and round
//     trips by PID and through Kafka; the report goes to $ATEST_OUT.
//     Then it waits for the file $ATEST_GO (the test creates it after
//     killing the other node), requests by the old PID again, and reports
//     how that failed, and how long until the key was reachable by PID
//     again, to $ATEST_OUT.dead.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/actors/envelopepb"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/internal/agenttest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Add is a request to the adding agent.
type Add struct {
	A int `json:"a"`
	B int `json:"b"`
}

func main() {
	name := "atest"
	if n := os.Getenv(agenttest.EnvAppName); n != "" {
		name = n
	}
	prefix := os.Getenv(agenttest.EnvTopicPrefix)
	app := mephisto.New(name)
	addingTopic := mephisto.NewTopic(app, prefix+"adding", codec.String(), codec.JSON[Add]())
	adding := mephisto.NewReplyAgent(app, "adding", addingTopic, func(_ mephisto.Context, _ string, r Add) (int, error) {
		return r.A + r.B, nil
	})
	tallyTopic := mephisto.NewTopic(app, prefix+"tally", codec.String(), codec.Int64())
	tallies := mephisto.NewTable(app, "tallies", codec.String(), codec.Int64())
	tally := mephisto.NewAgent(app, "tally", tallyTopic, func(ctx mephisto.Context, key string, n int64) error {
		return tallies.Update(ctx, key, func(v int64) int64 { return v + n })
	})
	app.Task("join", func(ctx context.Context) error {
		if os.Getenv(agenttest.EnvJoin) != "1" {
			return nil
		}
		return joinTask(ctx, app, adding)
	})
	app.Task("pid", func(ctx context.Context) error {
		if os.Getenv(agenttest.EnvPID) != "1" {
			return nil
		}
		return pidTask(ctx, app, adding, tally)
	})
	app.Main()
}

func logger(app *mephisto.App) *slog.Logger {
	if l := app.Config().Logger; l != nil {
		return l
	}
	return slog.Default()
}

// waitFor polls cond every 20ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func ready(app *mephisto.App) bool {
	ok, _ := app.Ready()
	return ok
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// joinTask runs Join and Map over adding once the worker is ready.
func joinTask(ctx context.Context, app *mephisto.App, adding *mephisto.ReplyAgent[string, Add, int]) error {
	log := logger(app).With("task", "join")
	if err := waitFor(ctx, 90*time.Second, "the worker to be ready", func() bool { return ready(app) }); err != nil {
		return err
	}
	rep := agenttest.JoinReport{Node: app.Config().NodeID}
	values := make([]Add, agenttest.JoinValues)
	for i := range values {
		values[i] = Add{A: i, B: agenttest.JoinB}
	}
	jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	got, err := adding.Join(jctx, values...)
	rep.Join = got
	if err != nil {
		rep.JoinErr = err.Error()
	}
	log.Info("Join done", "results", got, "err", err, "took", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for r := range adding.Map(jctx, values...) {
		mr := agenttest.MapResult{Index: r.Index, Value: r.Value}
		if r.Err != nil {
			mr.Err = r.Err.Error()
		}
		rep.Map = append(rep.Map, mr)
	}
	log.Info("Map done", "results", len(rep.Map), "took", time.Since(start).Round(time.Millisecond))
	for i := range 20 {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		_, err := adding.Ask(actx, fmt.Sprintf("ask-%d", i), Add{A: i, B: i})
		acancel()
		if err != nil {
			return fmt.Errorf("ask %d: %w", i, err)
		}
		rep.AskMillis = append(rep.AskMillis, millis(time.Since(t0)))
	}
	return agenttest.WriteJSON(os.Getenv(agenttest.EnvOut), rep)
}

// pidTask requests by PID across nodes, then (after the test killed the
// other node) to the dead node.
func pidTask(ctx context.Context, app *mephisto.App, adding *mephisto.ReplyAgent[string, Add, int],
	tally *mephisto.Agent[string, int64]) error {
	log := logger(app).With("task", "pid")
	out := os.Getenv(agenttest.EnvOut)
	if err := waitFor(ctx, 90*time.Second, "the worker to be ready", func() bool { return ready(app) }); err != nil {
		return err
	}
	self := app.ActorSystem().Address()
	rep := agenttest.PIDReport{Node: app.Config().NodeID, SelfActor: self}

	// Keys whose grain runs on another node: one per such grain.
	type target struct {
		key string
		pid *actor.PID
	}
	var remote []target
	err := waitFor(ctx, 90*time.Second, "another node to own partitions", func() bool {
		remote = remote[:0]
		seen := map[string]bool{}
		for i := range 64 {
			key := fmt.Sprintf("key-%d", i)
			pid, err := adding.PID(key)
			if err != nil || pid.Address == self || seen[pid.Id] {
				continue
			}
			seen[pid.Id] = true
			remote = append(remote, target{key, pid})
		}
		return len(remote) > 0 && ready(app)
	})
	if err != nil {
		return err
	}
	// Each grain answers once the other node has loaded its partition:
	// retry until then.
	for i, tg := range remote {
		want := Add{A: i + 1, B: 100}
		p := agenttest.Probe{Key: tg.key, PID: pidString(tg.pid), Addr: tg.pid.Address, Want: want.A + want.B}
		err := waitFor(ctx, 60*time.Second, "the grain of "+tg.key+" to answer", func() bool {
			rep.Attempts++
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			t0 := time.Now()
			got, err := adding.Request(rctx, tg.pid, tg.key, want)
			p.Millis, p.Got = millis(time.Since(t0)), got
			if err != nil {
				p.Err = err.Error()
				log.Info("request by PID failed; retrying", "key", tg.key, "pid", tg.pid, "err", err)
				return false
			}
			p.Err = ""
			return true
		})
		if err != nil {
			p.Err += " (" + err.Error() + ")"
		}
		rep.Remote = append(rep.Remote, p)
	}
	first := remote[0]

	// SendPID: a table write on the other node, without a reply.
	rep.SendPIDKey, rep.SendPIDAmount = first.key, 7
	if pid, err := tally.PID(first.key); err != nil {
		rep.SendPIDErr = "PID: " + err.Error()
	} else if err := tally.SendPID(pid, first.key, rep.SendPIDAmount); err != nil {
		rep.SendPIDErr = err.Error()
	}

	// A protobuf message of a type grains do not know.
	res, err := app.ActorSystem().Root.RequestFuture(first.pid, wrapperspb.String("hello, grain"), 5*time.Second).Result()
	rep.UnknownReplyType = fmt.Sprintf("%T", res)
	if err != nil {
		rep.UnknownErr = err.Error()
	}
	if env, ok := res.(*envelopepb.Envelope); ok {
		rep.UnknownError = env.Error
	}
	log.Info("unknown message type answered", "reply_type", rep.UnknownReplyType, "error", rep.UnknownError, "err", err)
	rep.After = probe(ctx, adding, first.key, first.pid, Add{A: 20, B: 22})

	// A message of a type the other node's program never registered.
	foreign, err := foreignMessage()
	if err != nil {
		return err
	}
	t0 := time.Now()
	res, err = app.ActorSystem().Root.RequestFuture(first.pid, foreign, 2*time.Second).Result()
	rep.ForeignMillis = millis(time.Since(t0))
	rep.ForeignReplyType = fmt.Sprintf("%T", res)
	if err != nil {
		rep.ForeignErr = err.Error()
	}
	foreignEnd := time.Now()
	log.Info("foreign message type answered", "reply_type", rep.ForeignReplyType, "err", err)
	rep.AfterForeign = probe(ctx, adding, first.key, first.pid, Add{A: 5, B: 5})
	rep.AfterForeignOK = rep.AfterForeign
	rep.AfterForeignTries = 1
	if rep.AfterForeign.Err != "" {
		_ = waitFor(ctx, 30*time.Second, "the grain answering again", func() bool {
			rep.AfterForeignTries++
			rep.AfterForeignOK = probe(ctx, adding, first.key, first.pid, Add{A: 5, B: 5})
			return rep.AfterForeignOK.Err == ""
		})
	}
	rep.AfterForeignSeconds = time.Since(foreignEnd).Seconds()

	// Round trips: by PID, and through Kafka, to the other node's keys.
	for i := range 200 {
		tg := remote[i%len(remote)]
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		_, err := adding.Request(rctx, tg.pid, tg.key, Add{A: i, B: 1})
		cancel()
		if err != nil {
			return fmt.Errorf("request %d by PID: %w", i, err)
		}
		rep.PIDMillis = append(rep.PIDMillis, millis(time.Since(t0)))
	}
	for i := range 50 {
		tg := remote[i%len(remote)]
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		_, err := adding.Ask(actx, tg.key, Add{A: i, B: 1})
		cancel()
		if err != nil {
			return fmt.Errorf("ask %d: %w", i, err)
		}
		rep.AskMillis = append(rep.AskMillis, millis(time.Since(t0)))
	}
	if err := agenttest.WriteJSON(out, rep); err != nil {
		return err
	}
	log.Info("first report written; waiting for the go file", "file", os.Getenv(agenttest.EnvGo))

	// The test kills the other node, then creates the go file.
	goFile := os.Getenv(agenttest.EnvGo)
	if err := waitFor(ctx, 5*time.Minute, "the go file", func() bool {
		_, err := os.Stat(goFile)
		return err == nil
	}); err != nil {
		return err
	}
	dead := agenttest.DeadReport{Key: first.key, PID: pidString(first.pid)}
	const timeout = 5 * time.Second
	rctx, cancel := context.WithTimeout(ctx, timeout)
	dead.Start = time.Now()
	dead.Deadline = dead.Start.Add(timeout)
	got, err := adding.Request(rctx, first.pid, first.key, Add{A: 1, B: 2})
	dead.End = time.Now()
	cancel()
	dead.Got = got
	if err != nil {
		dead.Err = err.Error()
	}
	dead.IsNodeDead = errors.Is(err, mephisto.ErrNodeDead)
	dead.IsTimeout = errors.Is(err, mephisto.ErrTimeout)
	dead.IsNoOwner = errors.Is(err, mephisto.ErrNoOwner)
	dead.IsRemote = errors.Is(err, mephisto.ErrRemote)
	log.Info("request to the killed node's PID", "err", err, "took", dead.End.Sub(dead.Start).Round(time.Millisecond))
	if _, err := adding.PID(first.key); err != nil {
		dead.LookupErr, dead.LookupIsDead = err.Error(), errors.Is(err, mephisto.ErrNodeDead)
	}
	// Once the partition moved (to this node, the only one left), looking
	// the PID up again reaches the new owner.
	err = waitFor(ctx, 60*time.Second, "the key reachable by PID again", func() bool {
		pid, err := adding.PID(first.key)
		if err == nil {
			dead.Recovered = probe(ctx, adding, first.key, pid, Add{A: 3, B: 4})
			if dead.Recovered.Err == "" {
				return true
			}
		}
		dead.RecoverErrs++
		return false
	})
	dead.RecoveredAfter = time.Since(dead.End).Seconds()
	if err != nil {
		dead.Recovered.Err += " (" + err.Error() + ")"
	}
	return agenttest.WriteJSON(out+agenttest.DeadSuffix, dead)
}

// probe requests key by pid once, with a 2s limit.
func probe(ctx context.Context, adding *mephisto.ReplyAgent[string, Add, int], key string, pid *actor.PID, v Add) agenttest.Probe {
	p := agenttest.Probe{Key: key, PID: pidString(pid), Addr: pid.Address, Want: v.A + v.B}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t0 := time.Now()
	got, err := adding.Request(rctx, pid, key, v)
	p.Millis, p.Got = millis(time.Since(t0)), got
	if err != nil {
		p.Err = err.Error()
	}
	return p
}

// foreignMessage returns a message of the type atest.foreign.Foreign,
// built at run time and registered nowhere: the program receiving it has
// never heard of it.
func foreignMessage() (proto.Message, error) {
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("atest/foreign.proto"),
		Package: proto.String("atest.foreign"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Foreign"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("text"), JsonName: proto.String("text"), Number: proto.Int32(1),
				Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
	}
	f, err := protodesc.NewFile(fd, nil)
	if err != nil {
		return nil, err
	}
	md := f.Messages().Get(0)
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("text"), protoreflect.ValueOfString("from another program"))
	return m, nil
}

func pidString(pid *actor.PID) string { return pid.Address + "/" + pid.Id }
