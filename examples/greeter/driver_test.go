package main

// Driver tests: newApp's reply agent greet and its table greeted run by
// mephistotest, with no broker, through the Kafka path (Ask). The PID path
// needs actors, which the driver does not run: it says so
// (mephistotest.ErrNotDriven). The welcome task is not run here: it logs
// the PID of the announcer it spawns, and under the driver a spawned
// channel agent has none (PID() is nil).

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// greeted returns the table greeted as committed: what a node restoring
// it from its changelog loads. (newApp hands out no handle on the table,
// so the test reads it with mephistotest.TableRows instead of Get.)
func greeted(t *testing.T, d *mephistotest.Driver, app *mephisto.App) map[string]int64 {
	t.Helper()
	return mephistotest.TableRows(d, "greeted", codec.String(), codec.Int64())
}

// TestDriverGreet: every request is answered "hello, <name>"; only a
// greeting keyed by the name is counted in greeted.
func TestDriverGreet(t *testing.T) {
	g := newApp(nil, nil)
	d := mephistotest.New(t, g.app)
	for _, tc := range []struct{ key, name string }{
		{"world", "world"},
		{"faust", "faust"},
		{"world", "world"},
		{"", "gretchen"},          // unkeyed, as `ask` without --key: answered, not counted
		{"someone", "else"},       // keyed by another name: answered, not counted
		{"Ünïcode", "Ünïcode"},    // any string
		{"world", "hello, world"}, // not world's greeting
	} {
		if got, err := g.greet.Ask(d.Context(), tc.key, tc.name); err != nil || got != "hello, "+tc.name {
			t.Errorf("Ask(%q, %q) = %q, %v; want %q", tc.key, tc.name, got, err, "hello, "+tc.name)
		}
	}
	if got, want := greeted(t, d, g.app), map[string]int64{"world": 2, "faust": 1, "Ünïcode": 1}; !maps.Equal(got, want) {
		t.Errorf("greeted = %v, want %v", got, want)
	}
}

// TestDriverGreetFaults: a handler failing fewer times than the app's
// attempts (3) is retried, its table write made once; one failing every
// attempt answers the asker with the error (ErrRemote) and dead-letters
// the request, uncounted; a request that is not JSON is dead-lettered
// without a retry. The next greeting is answered and counted.
func TestDriverGreetFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inject   func(*mephistotest.Driver)
		raw      string // piped as the request, keyed world; "" asks world "world"
		restarts float64
		err      string // how the error begins, "" for a greeting
	}{
		{"fails twice: retried", func(d *mephistotest.Driver) { d.Fail("greet", 2, nil) }, "", 2, ""},
		{"fails three times", func(d *mephistotest.Driver) { d.Fail("greet", 3, errors.New("no greeting today")) }, "", 3,
			"failed 3 times, last: no greeting today"},
		{"panics three times", func(d *mephistotest.Driver) { d.Panic("greet", 3) }, "", 3,
			"failed 3 times, last: handler panicked: mephistotest: agent greet panics on purpose"},
		{"not JSON", func(*mephistotest.Driver) {}, "world", 0,
			"poison record: agent greet: value: codec json: decode string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newApp(nil, nil, mephisto.WithMaxAttempts(3))
			d := mephistotest.New(t, g.app)
			tc.inject(d)
			value := tc.raw
			if value == "" {
				value = `"world"`
				got, err := g.greet.Ask(d.Context(), "world", "world")
				switch {
				case tc.err == "" && (err != nil || got != "hello, world"):
					t.Errorf("Ask = %q, %v; want hello, world", got, err)
				case tc.err != "" && (!errors.Is(err, mephisto.ErrRemote) || !strings.Contains(err.Error(), tc.err)):
					t.Errorf("Ask = %q, %v; want ErrRemote: %s…", got, err, tc.err)
				}
			} else {
				d.PipeRaw("greetings", []byte("world"), []byte(tc.raw))
			}
			p := d.Raw("greetings")[0].Partition
			grain := fmt.Sprintf("partition/greeter/%d", p)
			if n := d.Metric("mephisto_grain_restarts_total", "grain", grain); n != tc.restarts {
				t.Errorf("%s restarted %v times, want %v", grain, n, tc.restarts)
			}
			want := map[string]int64{"world": 1}
			dls := d.DeadLetters("greet")
			if tc.err == "" {
				if len(dls) != 0 {
					t.Errorf("dead letters = %+v, want none", dls)
				}
			} else {
				want = map[string]int64{}
				if len(dls) != 1 {
					t.Fatalf("dead letters = %+v, want one", dls)
				}
				dl := dls[0]
				wantHeaders := map[string]string{"mephisto.agent": "greet", "mephisto.error": dl.Error, "mephisto.topic": "greetings",
					"mephisto.partition": fmt.Sprint(p), "mephisto.offset": "0"}
				if string(dl.Key) != "world" || string(dl.Value) != value || !strings.HasPrefix(dl.Error, tc.err) ||
					dl.Topic != "greetings" || dl.Partition != p || dl.Offset != 0 || !maps.Equal(dl.Headers, wantHeaders) {
					t.Errorf("dead letter %q=%q %v, want world=%s from greetings/%d@0 with error %q…", dl.Key, dl.Value, dl.Headers, value, p, tc.err)
				}
			}
			if got := greeted(t, d, g.app); !maps.Equal(got, want) {
				t.Errorf("greeted = %v, want %v", got, want)
			}

			if got, err := g.greet.Ask(d.Context(), "world", "world"); err != nil || got != "hello, world" {
				t.Errorf("the next Ask = %q, %v; want hello, world", got, err)
			}
			want["world"]++
			if got := greeted(t, d, g.app); !maps.Equal(got, want) {
				t.Errorf("after the next Ask: greeted = %v, want %v", got, want)
			}
		})
	}
}

// TestDriverGreetCrash: a grain killed after it answered but before it
// committed loses the count, processes the request again on restart and
// answers it again (at least once), to the asker's reply topic and
// correlation id; counted once in the end.
func TestDriverGreetCrash(t *testing.T) {
	g := newApp(nil, nil)
	d := mephistotest.New(t, g.app)
	d.HoldCommits(true)
	if got, err := g.greet.Ask(d.Context(), "world", "world"); err != nil || got != "hello, world" {
		t.Fatalf("Ask = %q, %v", got, err)
	}
	if got := greeted(t, d, g.app); len(got) != 0 {
		t.Fatalf("greeted = %v with commits held, want nothing committed", got)
	}
	req := d.Raw("greetings")[0]
	replayed := d.Crash(req.Partition)
	d.HoldCommits(false)
	replyTo, _, _ := strings.Cut(req.Header(partition.HeaderReplyTo), ":")
	if len(replayed) != 1 || replayed[0].Topic != replyTo || string(replayed[0].Value) != `"hello, world"` ||
		replayed[0].Header(partition.HeaderCorrelationID) != req.Header(partition.HeaderCorrelationID) {
		t.Errorf("the replay sent %+v, want the reply %q to %s again", replayed, "hello, world", req.Header(partition.HeaderReplyTo))
	}
	if got, want := greeted(t, d, g.app), map[string]int64{"world": 1}; !maps.Equal(got, want) {
		t.Errorf("greeted = %v, want %v", got, want)
	}
}

// TestDriverGreetPID: the direct path needs the grains' actors, which the
// driver does not run: greet.PID says ErrNotDriven, and byPID, which
// retries only what a rebalance or a dead node causes, gives up at once.
func TestDriverGreetPID(t *testing.T) {
	g := newApp(nil, nil)
	d := mephistotest.New(t, g.app)
	if pid, err := g.greet.PID("world"); !errors.Is(err, mephistotest.ErrNotDriven) {
		t.Errorf("PID = %v, %v; want ErrNotDriven", pid, err)
	}
	if got, err := g.byPID(d.Context(), "world"); !errors.Is(err, mephistotest.ErrNotDriven) {
		t.Errorf("byPID = %q, %v; want ErrNotDriven", got, err)
	}
	if len(d.Raw("greetings")) != 0 {
		t.Errorf("the direct path wrote to greetings: %+v", d.Raw("greetings"))
	}
}
