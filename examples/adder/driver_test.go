package main

// Driver tests: newApp's reply agent run by mephistotest, with no broker —
// its replies to Ask, Join, KVJoin, Map and SendReplyTo, its error policy
// (the reply carries the error, the request goes to the dead letters), a
// crash that answers a request twice, and the PID path the driver does
// not drive.

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/mephistotest"
)

// TestDriverAsk: each request is answered with a+b, on the partition of
// its key.
func TestDriverAsk(t *testing.T) {
	app, adding := newApp()
	d := mephistotest.New(t, app)
	for i, tc := range []struct {
		key  string
		req  Add
		want int
	}{
		{"k", Add{A: 4, B: 4}, 8},
		{"some-key", Add{A: 40, B: 2}, 42},
		{"k", Add{A: -3, B: 3}, 0},
		{"", Add{A: 1 << 40, B: -1}, 1<<40 - 1},
		{"k", Add{}, 0},
	} {
		got, err := adding.Ask(d.Context(), tc.key, tc.req)
		if err != nil || got != tc.want {
			t.Errorf("Ask(%q, %+v) = %d, %v; want %d", tc.key, tc.req, got, err, tc.want)
		}
		if reqs := d.Raw("adding"); len(reqs) != i+1 || string(reqs[i].Key) != tc.key {
			t.Fatalf("requests in adding: %+v; want %d, the last keyed %q", reqs, i+1, tc.key)
		}
	}
	// One key, one partition: the three requests keyed k went together.
	var parts []int32
	for _, r := range d.Raw("adding") {
		if string(r.Key) == "k" {
			parts = append(parts, r.Partition)
		}
	}
	if len(parts) != 3 || parts[0] != parts[1] || parts[1] != parts[2] {
		t.Errorf("requests keyed k on partitions %v, want three on one", parts)
	}
	if n := d.Metric("mephisto_events_in_total", "topic", "adding"); n != 5 {
		t.Errorf("events in from adding = %v, want 5", n)
	}
}

// TestDriverJoinAndReplyTo: Join, KVJoin and Map ask for every value at
// once, from a goroutine each (the driver takes them in turn), and answer
// in input order; Join's requests have no key and spread over the
// partitions by their index. SendReplyTo sends the sum, as JSON keyed
// like the request, to the topic named.
func TestDriverJoinAndReplyTo(t *testing.T) {
	app, adding := newApp()
	d := mephistotest.New(t, app)
	reqs := []Add{{A: 1, B: 2}, {A: 3, B: 4}, {A: 5, B: 6}, {A: 7, B: 8}, {A: -9, B: 9}}
	if got, err := adding.Join(d.Context(), reqs...); err != nil || fmt.Sprint(got) != "[3 7 11 15 0]" {
		t.Errorf("Join = %v, %v; want [3 7 11 15 0]", got, err)
	}
	parts := map[int32]int{}
	for _, r := range d.Raw("adding") {
		if r.Key != nil {
			t.Errorf("a request of Join keyed %q, want none", r.Key)
		}
		parts[r.Partition]++
	}
	if want := map[int32]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1}; !maps.Equal(parts, want) {
		t.Errorf("Join's requests per partition = %v, want one on each of 0…4", parts)
	}

	kvs := []mephisto.KV[string, Add]{{Key: "k", Value: Add{A: 5, B: 6}}, {Key: "some-key", Value: Add{A: 40, B: 2}}, {Key: "k", Value: Add{A: 1, B: 1}}}
	if got, err := adding.KVJoin(d.Context(), kvs...); err != nil || fmt.Sprint(got) != "[11 42 2]" {
		t.Errorf("KVJoin = %v, %v; want [11 42 2]", got, err)
	}
	byIndex := map[int]int{}
	for r := range adding.Map(d.Context(), reqs[:3]...) {
		if r.Err != nil {
			t.Errorf("Map: request %d: %v", r.Index, r.Err)
		}
		byIndex[r.Index] = r.Value
	}
	if want := map[int]int{0: 3, 1: 7, 2: 11}; !maps.Equal(byIndex, want) {
		t.Errorf("Map = %v by index, want %v", byIndex, want)
	}

	for _, req := range []Add{{A: 40, B: 2}, {A: 1, B: 1}} {
		if err := adding.SendReplyTo(d.Context(), "k", req, "sums"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range d.Raw("sums") {
		got = append(got, string(r.Key)+"="+string(r.Value))
	}
	if fmt.Sprint(got) != "[k=42 k=2]" {
		t.Errorf("sums = %v, want [k=42 k=2]", got)
	}
}

// TestDriverFaults: a handler failing fewer times than the app's attempts
// (3) is retried and the asker gets the sum; one failing every attempt
// gets the default policy, DeadLetter: the request (key, value, less the
// reply-to and correlation headers, which are Mephisto's) goes to
// adder-adding-dead-letters with its coordinates, and the asker gets the
// error (ErrRemote) at once instead of waiting for a timeout. A request
// that is not JSON goes to the dead letters without a retry. The next
// request is answered.
func TestDriverFaults(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		inject   func(*mephistotest.Driver)
		raw      string // piped as the request, keyed k; "" asks k {4, 4}
		restarts float64
		err      string // how the error begins, "" for a sum
	}{
		{"fails twice: retried", func(d *mephistotest.Driver) { d.Fail("adding", 2, boom) }, "", 2, ""},
		{"fails three times", func(d *mephistotest.Driver) { d.Fail("adding", 3, boom) }, "", 3,
			"failed 3 times, last: boom"},
		{"panics three times", func(d *mephistotest.Driver) { d.Panic("adding", 3) }, "", 3,
			"failed 3 times, last: handler panicked: mephistotest: agent adding panics on purpose"},
		{"not JSON", func(*mephistotest.Driver) {}, `{"a":4,`, 0,
			"poison record: agent adding: value: codec json: decode main.Add"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, adding := newApp(mephisto.WithMaxAttempts(3))
			d := mephistotest.New(t, app)
			tc.inject(d)
			value := tc.raw
			if value == "" {
				value = `{"a":4,"b":4}`
				got, err := adding.Ask(d.Context(), "k", Add{A: 4, B: 4})
				switch {
				case tc.err == "" && (err != nil || got != 8):
					t.Errorf("Ask = %d, %v; want 8", got, err)
				case tc.err != "" && (!errors.Is(err, mephisto.ErrRemote) || !strings.Contains(err.Error(), tc.err)):
					t.Errorf("Ask = %d, %v; want ErrRemote: %s…", got, err, tc.err)
				}
			} else {
				d.PipeRaw("adding", []byte("k"), []byte(tc.raw))
			}
			p := d.Raw("adding")[0].Partition
			grain := fmt.Sprintf("partition/adder/%d", p)
			if n := d.Metric("mephisto_grain_restarts_total", "grain", grain); n != tc.restarts {
				t.Errorf("%s restarted %v times, want %v", grain, n, tc.restarts)
			}
			dls := d.DeadLetters("adding")
			switch {
			case tc.err == "" && len(dls) != 0:
				t.Errorf("dead letters = %+v, want none", dls)
			case tc.err != "" && len(dls) != 1:
				t.Errorf("dead letters = %+v, want one", dls)
			case tc.err != "":
				dl := dls[0]
				want := map[string]string{"mephisto.agent": "adding", "mephisto.error": dl.Error, "mephisto.topic": "adding",
					"mephisto.partition": fmt.Sprint(p), "mephisto.offset": "0"}
				if string(dl.Key) != "k" || string(dl.Value) != value || !strings.HasPrefix(dl.Error, tc.err) ||
					dl.Topic != "adding" || dl.Partition != p || dl.Offset != 0 || !maps.Equal(dl.Headers, want) {
					t.Errorf("dead letter %q=%q %v, want k=%s from adding/%d@0 with error %q…", dl.Key, dl.Value, dl.Headers, value, p, tc.err)
				}
				if n := d.Metric("mephisto_dead_letters_total", "agent", "adding"); n != 1 {
					t.Errorf("dead letters counted %v, want 1", n)
				}
			}

			if got, err := adding.Ask(d.Context(), "k", Add{A: 2, B: 3}); err != nil || got != 5 {
				t.Errorf("the next Ask = %d, %v; want 5", got, err)
			}
		})
	}
}

// TestDriverCrash: a grain killed after it answered but before it
// committed processes the request again on restart, and answers it again:
// replies are at least once.
func TestDriverCrash(t *testing.T) {
	app, adding := newApp()
	d := mephistotest.New(t, app)
	d.HoldCommits(true)
	if err := adding.SendReplyTo(d.Context(), "k", Add{A: 40, B: 2}, "sums"); err != nil {
		t.Fatal(err)
	}
	if n := len(d.Raw("sums")); n != 1 {
		t.Fatalf("%d replies before the crash, want 1", n)
	}
	replayed := d.Crash(d.Raw("adding")[0].Partition)
	d.HoldCommits(false)
	if len(replayed) != 1 || replayed[0].Topic != "sums" || string(replayed[0].Key) != "k" || string(replayed[0].Value) != "42" {
		t.Errorf("the replay sent %+v, want the reply k=42 again", replayed)
	}
	if n := len(d.Raw("sums")); n != 2 {
		t.Errorf("%d replies after the crash, want 2", n)
	}
	// Committed now: a second crash replays nothing.
	if again := d.Crash(d.Raw("adding")[0].Partition); len(again) != 0 {
		t.Errorf("a crash after the commit replayed %+v, want nothing", again)
	}
}

// TestDriverPID: the direct path (a grain's PID, Request) needs actors,
// which the driver does not run: both say ErrNotDriven.
func TestDriverPID(t *testing.T) {
	app, adding := newApp()
	d := mephistotest.New(t, app)
	if pid, err := adding.PID("k"); !errors.Is(err, mephistotest.ErrNotDriven) {
		t.Errorf("PID = %v, %v; want ErrNotDriven", pid, err)
	}
	if got, err := adding.Request(d.Context(), nil, "k", Add{A: 4, B: 4}); !errors.Is(err, mephistotest.ErrNotDriven) {
		t.Errorf("Request = %d, %v; want ErrNotDriven", got, err)
	}
}
