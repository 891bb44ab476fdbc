package main

// Driver tests: newApp's topology run by mephistotest, with no broker, on
// the driver's clock — process merging into the global table from every
// partition, processor and result_processor sharing through the results
// topic into results_seen, the user-count timer reading the global table
// (fired by d.Advance), the error policies and crashes.

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// driven is newApp on a test driver, with typed handles on its topics.
type driven struct {
	d       *mephistotest.Driver
	app     *mephisto.App
	users   *mephisto.Topic[string, User]
	results *mephisto.Topic[string, string]
	logs    *bytes.Buffer // the app's log
	updates string        // the global table's updates topic
}

// drive builds newApp, logging to a buffer, and starts a driver on it.
// Declaring a topic again with the same codecs shares the app's
// declaration (a codec that disagreed would fail the driver's
// validation).
func drive(t *testing.T) *driven {
	t.Helper()
	logs := &bytes.Buffer{}
	app := newApp(mephisto.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	g := &driven{app: app, logs: logs, updates: appName + "-" + globalName + "-updates",
		users:   mephisto.NewTopic(app, usersTopic, codec.String(), codec.JSON[User]()),
		results: mephisto.NewTopic(app, resultTopic, codec.String(), codec.String())}
	g.d = mephistotest.New(t, app)
	return g
}

// table returns a table as committed: what a node restoring it from its
// changelog loads. (newApp hands out no handle on its tables, so the test
// reads them with mephistotest.TableRows; the timer reads the global
// table with Get.)
func (g *driven) table(t *testing.T, name string) map[string]int64 {
	t.Helper()
	return mephistotest.TableRows(g.d, name, codec.String(), codec.Int64())
}

var loggedRE = regexp.MustCompile(`msg="user count" user_count=(\d+)`)

// logged returns the counts the user-count timer logged, in order.
func (g *driven) logged() string {
	var out []string
	for _, m := range loggedRE.FindAllStringSubmatch(g.logs.String(), -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

// partitionOf returns the partition of the last record of topic keyed key.
func (g *driven) partitionOf(t *testing.T, topic, key string) int32 {
	t.Helper()
	rs := g.d.Raw(topic)
	for i := len(rs) - 1; i >= 0; i-- {
		if string(rs[i].Key) == key {
			return rs[i].Partition
		}
	}
	t.Fatalf("no record keyed %q in %s", key, topic)
	return -1
}

// TestDriverGlobalUsers: every user event, on whichever partition, is one
// Merge sent to the grain owning "users", which adds them up: the global
// count is exact; the results topic carries each event to
// result_processor on the user's partition, counted per user; the timer
// logs the count every second, 0 before any event.
func TestDriverGlobalUsers(t *testing.T) {
	g := drive(t)
	g.d.Advance(reportEvery)
	if got := g.logged(); got != "0" {
		t.Errorf("logged %q before any event, want 0", got)
	}

	events := []User{{"u1", "Ann"}, {"u2", "Bob"}, {"u1", "Ann"}, {"u3", "Cem"}, {"u1", "Ann"}}
	for _, u := range events {
		mephistotest.Pipe(g.d, g.users, u.ID, u)
	}
	if got, want := g.table(t, globalName), map[string]int64{countKey: 5}; !maps.Equal(got, want) {
		t.Errorf("%s = %v, want %v", globalName, got, want)
	}
	if got, want := g.table(t, seenTable), map[string]int64{"u1": 3, "u2": 1, "u3": 1}; !maps.Equal(got, want) {
		t.Errorf("%s = %v, want %v", seenTable, got, want)
	}
	from := map[int32]bool{}
	for _, r := range g.d.Raw(usersTopic) {
		from[r.Partition] = true
	}
	if len(from) < 2 {
		t.Fatalf("every event on partition %v: the test needs them spread", from)
	}
	updates := g.d.Raw(g.updates)
	if len(updates) != len(events) {
		t.Errorf("%d records in %s, want one Merge per event: %d", len(updates), g.updates, len(events))
	}
	for _, r := range updates {
		if string(r.Key) != countKey || r.Partition != updates[0].Partition {
			t.Errorf("%s: %q on partition %d, want every Merge keyed %s on one partition", g.updates, r.Key, r.Partition, countKey)
		}
	}
	var results []string
	for _, r := range mephistotest.Records(g.d, g.results) {
		if r.Key != r.Value {
			t.Errorf("results: %q=%q, want a user id keyed by itself", r.Key, r.Value)
		}
		results = append(results, r.Value)
	}
	if fmt.Sprint(results) != "[u1 u2 u1 u3 u1]" {
		t.Errorf("results = %v, want the events' ids in order", results)
	}

	g.d.Advance(reportEvery)
	mephistotest.Pipe(g.d, g.users, "u2", User{"u2", "Bob"})
	g.d.Advance(2 * reportEvery)
	if got := g.logged(); got != "0 5 6 6" {
		t.Errorf("logged %q, want 0 5 6 6: one line a second, the count as it was", got)
	}
	if n := g.d.Metric("mephisto_timer_runs_total", "timer", "user-count"); n != 4 {
		t.Errorf("the timer ran %v times in 4 s, want 4", n)
	}
}

// TestDriverGlobalUsersFaults: process and processor consume one topic in
// one grain, so a failure of either restarts the grain and re-runs both on
// the records since its last commit. process failing fewer times than the
// app's attempts (3) is retried and counted once. processor failing every
// attempt dead-letters its record (the user is not in results_seen), but
// each attempt of the record had run process first, and the Merges those
// sent were produced: the count takes one per attempt (at least once).
func TestDriverGlobalUsersFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		agent    string
		n        int
		count    int64
		seen     map[string]int64
		dead     bool // whether agent dead-letters the event
		restarts float64
	}{
		{"process fails twice: retried", "process", 2, 1, map[string]int64{"u1": 1}, false, 2},
		{"processor fails every attempt", "processor", 3, 4, map[string]int64{}, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := drive(t)
			g.d.Fail(tc.agent, tc.n, nil)
			mephistotest.Pipe(g.d, g.users, "u1", User{"u1", "Ann"})
			p := g.partitionOf(t, usersTopic, "u1")
			grain := fmt.Sprintf("partition/%s/%d", appName, p)
			if n := g.d.Metric("mephisto_grain_restarts_total", "grain", grain); n != tc.restarts {
				t.Errorf("%s restarted %v times, want %v", grain, n, tc.restarts)
			}
			if got := g.table(t, globalName)[countKey]; got != tc.count {
				t.Errorf("user count = %d, want %d", got, tc.count)
			}
			if got := g.table(t, seenTable); !maps.Equal(got, tc.seen) {
				t.Errorf("%s = %v, want %v", seenTable, got, tc.seen)
			}
			for _, a := range []string{"process", "processor", "result_processor"} {
				dls := g.d.DeadLetters(a)
				if a != tc.agent || !tc.dead {
					if len(dls) != 0 {
						t.Errorf("dead letters of %s = %+v, want none", a, dls)
					}
					continue
				}
				want := map[string]string{"mephisto.agent": a, "mephisto.error": "failed 3 times, last: mephistotest: agent " + a + " fails on purpose",
					"mephisto.topic": usersTopic, "mephisto.partition": fmt.Sprint(p), "mephisto.offset": "0"}
				if len(dls) != 1 || string(dls[0].Key) != "u1" || string(dls[0].Value) != `{"id":"u1","name":"Ann"}` || !maps.Equal(dls[0].Headers, want) {
					t.Errorf("dead letters of %s = %+v, want u1's event with headers %v", a, dls, want)
				}
			}

			mephistotest.Pipe(g.d, g.users, "u2", User{"u2", "Bob"})
			if got := g.table(t, globalName)[countKey]; got != tc.count+1 {
				t.Errorf("after the fault: user count = %d, want %d", got, tc.count+1)
			}
			want := maps.Clone(tc.seen)
			want["u2"] = 1
			if got := g.table(t, seenTable); !maps.Equal(got, want) {
				t.Errorf("after the fault: %s = %v, want %v", seenTable, got, want)
			}
		})
	}
}

// TestDriverGlobalUsersCrash: a grain killed before it committed restarts
// from its last commit; until then, the timer reads the committed count.
// Crashing the grain owning "users" redoes its additions from the
// replayed Merges: exact. Crashing the user's grain replays the event,
// whose Merge and result were produced before the crash and are sent
// again: both counted twice (at least once).
func TestDriverGlobalUsersCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		crash    string // the topic whose grain crashes
		replayed []string
		count    int64
		seen     int64
	}{
		{"the grain owning users", "updates", nil, 2, 2},
		{"the user's grain", usersTopic, []string{appName + "-" + globalName + "-updates " + countKey, resultTopic + " u1"}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := drive(t)
			mephistotest.Pipe(g.d, g.users, "u1", User{"u1", "Ann"})
			g.d.HoldCommits(true)
			mephistotest.Pipe(g.d, g.users, "u1", User{"u1", "Ann"})
			g.d.Advance(reportEvery)
			if got := g.logged(); got != "1" {
				t.Errorf("the timer logged %q with commits held, want the committed 1", got)
			}
			userP, ownerP := g.partitionOf(t, usersTopic, "u1"), g.partitionOf(t, g.updates, countKey)
			if userP == ownerP {
				t.Fatalf("u1 and %s share partition %d: the test needs them apart", countKey, userP)
			}
			p := ownerP
			if tc.crash == usersTopic {
				p = userP
			}
			var replayed []string
			for _, r := range g.d.Crash(p) {
				replayed = append(replayed, r.Topic+" "+string(r.Key))
			}
			g.d.HoldCommits(false)
			if fmt.Sprint(replayed) != fmt.Sprint(tc.replayed) {
				t.Errorf("the replay sent %v, want %v", replayed, tc.replayed)
			}
			if got := g.table(t, globalName)[countKey]; got != tc.count {
				t.Errorf("user count = %d, want %d", got, tc.count)
			}
			if got := g.table(t, seenTable)["u1"]; got != tc.seen {
				t.Errorf("%s[u1] = %d, want %d", seenTable, got, tc.seen)
			}
			g.d.Advance(reportEvery)
			if got, want := g.logged(), fmt.Sprintf("1 %d", tc.count); got != want {
				t.Errorf("the timer logged %q, want %q", got, want)
			}
		})
	}
}
