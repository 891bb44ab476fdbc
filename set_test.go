package mephisto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
)

// TestSetTables: an agent adds and discards members of a partitioned set
// table and of a global one from every partition; both end with the same
// sets, readable over HTTP (a JSON array) and, for the global one, from
// outside a handler.
func TestSetTables(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("sets", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(4), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	follows := mephisto.NewTopic(app, "follows", codec.String(), codec.String())
	local := mephisto.NewSetTable(app, "following", codec.String(), codec.String())
	global := mephisto.NewSetGlobalTable(app, "followers", codec.String(), codec.String())
	checks := make(chan string, 100)
	// "a>b" makes a follow b, "a!b" unfollow; the key is a.
	mephisto.NewAgent(app, "follow", follows, func(ctx mephisto.Context, who, op string) error {
		sep := strings.IndexAny(op, ">!")
		whom := op[sep+1:]
		if op[sep] == '>' {
			if err := local.Add(ctx, who, whom); err != nil {
				return err
			}
			return global.Add(ctx, whom, who)
		}
		if err := local.Discard(ctx, who, whom); err != nil {
			return err
		}
		ok, err := local.Contains(ctx, who, whom)
		if err != nil || ok {
			checks <- fmt.Sprintf("%s still follows %s after Discard (%v)", who, whom, err)
		}
		return global.Discard(ctx, whom, who)
	})
	runApp(t, app)
	var recs [][2]string
	for i := range 20 {
		a := fmt.Sprintf("u%02d", i)
		for _, f := range []string{"x", "y", "z"} {
			recs = append(recs, [2]string{a, a + ">" + f})
		}
		if i%2 == 0 {
			recs = append(recs, [2]string{a, a + "!y"})
		}
	}
	produce(t, b.Addr(), "follows", recs)

	waitFor(t, 60*time.Second, "set tables hold every follow", func() (bool, string) {
		for i := range 20 {
			a := fmt.Sprintf("u%02d", i)
			want := []any{"x", "y", "z"}
			if i%2 == 0 {
				want = []any{"x", "z"}
			}
			code, body, err := getJSON(fmt.Sprintf("http://%s/tables/following/%s", app.WebAddr(), a))
			if err != nil || code != 200 {
				return false, fmt.Sprintf("%s: HTTP %d %v", a, code, err)
			}
			if got, _ := json.Marshal(body["value"]); string(got) != mustJSON(want) {
				return false, fmt.Sprintf("following/%s = %s, want %s", a, got, mustJSON(want))
			}
		}
		for f, n := range map[string]int{"x": 20, "y": 10, "z": 20} {
			ms, err := global.Members(context.Background(), f)
			if err != nil {
				return false, err.Error()
			}
			if len(ms) != n || !slices.IsSorted(ms) {
				return false, fmt.Sprintf("followers/%s = %v, want %d sorted members", f, ms, n)
			}
		}
		ok, err := global.Contains(context.Background(), "y", "u01")
		return ok && err == nil, fmt.Sprintf("u01 not among y's followers (%v)", err)
	})
	select {
	case why := <-checks:
		t.Error(why)
	default:
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
