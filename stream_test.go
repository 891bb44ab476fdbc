package mephisto_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// TestStreamOperations: Through forwards to a topic consumed further on;
// Filter drops events; Echo copies to several topics; Event metadata is
// the record's.
func TestStreamOperations(t *testing.T) {
	b := startBroker(t)
	// One partition: the table keys ("mid:k") differ from the event keys,
	// and writes follow the event's partition (as in Faust).
	app := mephisto.New("streams", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	mid := mephisto.NewTopic(app, "mid", codec.String(), codec.String())
	copyA := mephisto.NewTopic(app, "copy-a", codec.String(), codec.String())
	copyB := mephisto.NewTopic(app, "copy-b", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	inc := func(prefix string) mephisto.Handler[string, string] {
		return func(ctx mephisto.Context, k, _ string) error {
			if ev := ctx.Event(); ev.Offset < 0 || !strings.HasPrefix(ev.Topic, prefix) || string(ev.Key) != k {
				t.Errorf("event metadata %+v for key %s", ev, k)
			}
			return counts.Update(ctx, prefix+":"+k, func(n int64) int64 { return n + 1 })
		}
	}
	through := mephisto.Through(in, "in-through", mid)
	mephisto.NewAgent(app, "keep", through, mephisto.Filter(func(_ string, v string) bool { return v != "drop" },
		mephisto.Echo(inc("mid"), copyA, copyB)))
	mephisto.NewAgent(app, "a", copyA, inc("copy-a"))
	mephisto.NewAgent(app, "b", copyB, inc("copy-b"))
	runApp(t, app)
	produce(t, b.Addr(), "in", [][2]string{{"k", "x"}, {"k", "drop"}, {"k", "y"}})
	waitFor(t, 30*time.Second, "filtered and echoed counts", func() (bool, string) {
		return tableEquals(app.WebAddr(), "counts", map[string]int64{"mid:k": 2, "copy-a:k": 2, "copy-b:k": 2})
	})
}
