package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// guideOut collects what the guide task prints, for the in-process tests.
var guideOut = &proctest.Buffer{}

// Paths of the binaries TestMain builds: the example, and the dev broker
// (`mephisto broker`) the three-node test runs on.
var exampleBin, mephistoBin string

func TestMain(m *testing.M) {
	console = guideOut
	// The nodes are built without -race (three race-checked workers on
	// two CI cores are slow to form a group); the example's code is
	// race-checked in-process by TestGlobalUsers.
	code := proctest.BuildMain(m, "globalusers",
		proctest.Binary{Pkg: ".", Name: "globalusers", Out: &exampleBin},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &mephistoBin})
	if err := sharedKafka.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "globalusers: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// userEvents returns n user events over ids users (u0001 …), keyed by
// user id, JSON as on the users topic, and how many events each id has.
func userEvents(rng *rand.Rand, n, ids int) ([]extest.Record, map[string]int64) {
	recs := make([]extest.Record, n)
	truth := map[string]int64{}
	for i := range recs {
		u := User{ID: fmt.Sprintf("u%04d", 1+rng.IntN(ids))}
		u.Name = "name of " + u.ID
		v, _ := json.Marshal(u) // two strings: it always encodes
		recs[i] = extest.Record{Key: []byte(u.ID), Value: v}
		truth[u.ID]++
	}
	return recs, truth
}

// userCount GETs http://web/user_count/ and returns its user_count.
func userCount(web string) (int64, error) {
	code, body, err := proctest.Get(web, countPage)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET %s: HTTP %d %s", countPage, code, strings.TrimSpace(string(body)))
	}
	var v map[string]int64
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("GET %s: %v: %s", countPage, err, body)
	}
	n, ok := v["user_count"]
	if !ok || len(v) != 1 {
		return 0, fmt.Errorf(`GET %s: %s, want {"user_count": N}`, countPage, body)
	}
	return n, nil
}

var userCountRE = regexp.MustCompile(`msg="user count" user_count=(\d+)`)

// TestGlobalUsers runs the app in-process, one node on an embedded
// broker: after 300 user events the page, the timer's log line and
// results_seen all say so exactly, and the guide names the page.
func TestGlobalUsers(t *testing.T) {
	b := extest.StartBroker(t)
	logs := &proctest.Buffer{}
	app := newApp(append(extest.Options(t, b.Addr()),
		mephisto.WithPartitions(8), mephisto.WithLogger(proctest.Logger(t, logs)))...)
	extest.RunApp(t, app)
	web := app.WebAddr()

	if n, err := userCount(web); err != nil || n != 0 {
		t.Errorf("before any event: user_count %d (%v), want 0", n, err)
	}
	const events = 300
	recs, truth := userEvents(rand.New(rand.NewPCG(1, 1)), events, 40)
	extest.Produce(t, b.Addr(), usersTopic, recs)
	proctest.WaitForT(t, extest.Timeout, fmt.Sprintf("%s says %d", countPage, events), func() (bool, string) {
		n, err := userCount(web)
		if err != nil {
			return false, err.Error()
		}
		if n > events {
			t.Fatalf("user_count %d > %d events, without a failure", n, events)
		}
		return n == events, fmt.Sprintf("user_count %d", n)
	})
	proctest.WaitForT(t, extest.Timeout, seenTable+" equals the truth", func() (bool, string) {
		return extest.TableEquals(web, seenTable, truth)
	})
	proctest.WaitForT(t, extest.Timeout, "the timer logs the count", func() (bool, string) {
		m := userCountRE.FindAllStringSubmatch(logs.String(), -1)
		if len(m) == 0 {
			return false, "no user count logged yet"
		}
		last := m[len(m)-1][1]
		return last == strconv.Itoa(events), "last logged user_count=" + last
	})
	if code, _, _ := proctest.Get(web, countPage+"x"); code == http.StatusOK {
		t.Errorf("GET %sx: HTTP 200, want only %s served", countPage, countPage)
	}
	want := fmt.Sprintf("curl -s http://%s%s", web, countPage)
	proctest.WaitForT(t, extest.Timeout, "the guide", func() (bool, string) {
		return strings.Contains(guideOut.String(), want), "guide so far: " + guideOut.String()
	})
}

// TestCommands: the binary lists the example's agents and tables, and
// send parses a user as JSON.
func TestCommands(t *testing.T) {
	extest.CheckCommands(t, exampleBin,
		[]string{globalName + "-apply", "process", "processor", "result_processor"},
		[]string{globalName, seenTable})
	r := extest.Exec(t, exampleBin, nil, "send", usersTopic, "not json", "--key", "u1", "--brokers", "127.0.0.1:1")
	if r.Code != 2 {
		t.Errorf("send users 'not json': exit %d, want 2\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
