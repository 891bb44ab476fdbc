package mephisto_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/timer"
)

// t0 is a minute boundary: the windows of the tests start there.
var t0 = time.UnixMilli(1_700_000_040_000)

func at(d time.Duration) time.Time { return t0.Add(d) }

// timed is a record with an explicit timestamp.
type timed struct {
	key, value string
	at         time.Time
}

// produceAt writes recs in order, each keyed to its key's partition.
func produceAt(t testing.TB, addr, topic string, recs ...timed) {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, kafka.ClientConfig("test-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, r := range recs {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.key), Value: sarama.StringEncoder(r.value),
			Partition: kafka.Partition([]byte(r.key), int32(len(parts))), Timestamp: r.at}
		if _, _, err := p.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
}

type closed struct {
	ID    string `json:"id"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Count int64  `json:"count"`
}

// windowApp counts events per key in tumbling 10 s windows (grace 2 s,
// expiry 30 s), and sends each closed window to "closed".
func windowApp(t testing.TB, broker, dataDir string, parts int32, opts ...mephisto.WindowOption) (*mephisto.App, *mephisto.WindowedTable[string, int64]) {
	app := mephisto.New("win", mephisto.WithBrokers(broker), mephisto.WithDataDir(dataDir),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(parts), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	views := mephisto.NewTopic(app, "views", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "closed", codec.String(), codec.JSON[closed]())
	if len(opts) == 0 {
		opts = []mephisto.WindowOption{mephisto.Tumbling(10 * time.Second), mephisto.Grace(2 * time.Second), mephisto.Expires(30 * time.Second)}
	}
	counts := mephisto.NewWindowedTable(app, "views", codec.String(), codec.Int64(), opts...)
	counts.OnClose(func(ctx mephisto.Context, id string, w mephisto.Window, n int64) error {
		return out.Send(ctx, id, closed{id, w.Start.UnixMilli(), w.End.UnixMilli(), n})
	})
	mephisto.NewAgent(app, "count", views, func(ctx mephisto.Context, id, _ string) error {
		return counts.Update(ctx, id, func(n int64) int64 { return n + 1 })
	})
	return app, counts
}

type windowJSON struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Value int64 `json:"value"`
}

// windowsOf reads a key's windows over HTTP.
func windowsOf(web, table, key, query string) ([]windowJSON, error) {
	resp, err := http.Get(fmt.Sprintf("http://%s/tables/%s/%s%s", web, table, key, query))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var body struct {
		Table, Key string
		Windows    []windowJSON
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	if body.Table != table || body.Key != key {
		return nil, fmt.Errorf("answer names table %q key %q", body.Table, body.Key)
	}
	return body.Windows, nil
}

func w10(from time.Duration, n int64) windowJSON {
	return windowJSON{at(from).UnixMilli(), at(from + 10*time.Second).UnixMilli(), n}
}

// waitWindows waits until key's windows are want.
func waitWindows(t *testing.T, web, key, query string, want ...windowJSON) {
	t.Helper()
	waitFor(t, 30*time.Second, "windows of "+key+query, func() (bool, string) {
		got, err := windowsOf(web, "views", key, query)
		if err != nil {
			return false, err.Error()
		}
		if want == nil {
			want = []windowJSON{}
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("got %v, want %v", got, want)
	})
}

func closedRecords(t *testing.T, addr string) []closed {
	t.Helper()
	var out []closed
	for _, m := range readCommitted(t, addr, "closed") {
		var c closed
		if err := json.Unmarshal(m.Value, &c); err != nil {
			t.Fatalf("closed record %q: %v", m.Value, err)
		}
		if string(m.Key) != c.ID {
			t.Errorf("closed record keyed %q for id %q", m.Key, c.ID)
		}
		out = append(out, c)
	}
	sortClosed(out)
	return out
}

func waitClosed(t *testing.T, addr string, want ...closed) {
	t.Helper()
	waitFor(t, 30*time.Second, "closed windows", func() (bool, string) {
		got := closedRecords(t, addr)
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("got %v, want %v", got, want)
	})
}

func c10(id string, from time.Duration, n int64) closed {
	return closed{id, at(from).UnixMilli(), at(from + 10*time.Second).UnixMilli(), n}
}

func metricValue(t *testing.T, web, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + name + `\{[^}]*` + regexp.QuoteMeta(label) + `[^}]*\} (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestTumblingWindows: counts per window, grace, late events dropped and
// counted, each window closed once with its final count, expiry — and
// all of it again after a restart and after a wiped data dir.
func TestTumblingWindows(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	app, _ := windowApp(t, b.Addr(), dir, 1)
	runCtx, stop := context.WithCancel(context.Background())
	done := runUntil(t, app, runCtx)

	produceAt(t, b.Addr(), "views",
		timed{"a", "u1", at(1 * time.Second)}, timed{"a", "u2", at(2 * time.Second)}, timed{"b", "u1", at(3 * time.Second)},
		timed{"a", "u3", at(11 * time.Second)}, // stream time 11 s: [0,10) takes events until 12 s
		timed{"a", "u4", at(9 * time.Second)},  // late but within grace
	)
	waitWindows(t, app.WebAddr(), "a", "", w10(0, 3), w10(10*time.Second, 1))
	waitWindows(t, app.WebAddr(), "b", "", w10(0, 1))
	if got := closedRecords(t, b.Addr()); len(got) != 0 {
		t.Fatalf("closed before stream time passed end+grace: %v", got)
	}
	produceAt(t, b.Addr(), "views",
		timed{"b", "u2", at(13 * time.Second)}, // closes [0,10)
		timed{"a", "u5", at(5 * time.Second)},  // too late: dropped
	)
	waitClosed(t, b.Addr(), c10("a", 0, 3), c10("b", 0, 1))
	waitFor(t, 10*time.Second, "late event counted", func() (bool, string) {
		v := metricValue(t, app.WebAddr(), "mephisto_window_late_events_total", `table="views"`)
		return v == 1, fmt.Sprintf("late events %v", v)
	})
	waitWindows(t, app.WebAddr(), "a", "", w10(0, 3), w10(10*time.Second, 1))
	waitWindows(t, app.WebAddr(), "a", fmt.Sprintf("?at=%d", at(15*time.Second).UnixMilli()), w10(10*time.Second, 1))
	waitWindows(t, app.WebAddr(), "b", "", w10(0, 1), w10(10*time.Second, 1))

	produceAt(t, b.Addr(), "views", timed{"a", "u6", at(45 * time.Second)}) // closes [10,20), expires [0,10)
	waitClosed(t, b.Addr(), c10("a", 0, 3), c10("b", 0, 1), c10("a", 10*time.Second, 1), c10("b", 10*time.Second, 1))
	waitWindows(t, app.WebAddr(), "a", "", w10(10*time.Second, 1), w10(40*time.Second, 1))
	waitWindows(t, app.WebAddr(), "b", "", w10(10*time.Second, 1))
	stop()
	<-done

	// Restarted on the same data dir: the same windows, nothing closed twice.
	app, _ = windowApp(t, b.Addr(), dir, 1)
	runCtx, stop = context.WithCancel(context.Background())
	done = runUntil(t, app, runCtx)
	waitWindows(t, app.WebAddr(), "a", "", w10(10*time.Second, 1), w10(40*time.Second, 1))
	produceAt(t, b.Addr(), "views", timed{"b", "u3", at(55 * time.Second)}) // closes [40,50); expires [10,20)
	all := []closed{c10("a", 0, 3), c10("b", 0, 1), c10("a", 10*time.Second, 1), c10("b", 10*time.Second, 1), c10("a", 40*time.Second, 1)}
	waitClosed(t, b.Addr(), all...)
	waitWindows(t, app.WebAddr(), "a", "", w10(40*time.Second, 1))
	waitWindows(t, app.WebAddr(), "b", "", w10(50*time.Second, 1))
	stop()
	<-done

	// A wiped node rebuilds the windows and times from the changelog:
	// expired windows stay gone, and the next close happens once.
	app, _ = windowApp(t, b.Addr(), t.TempDir(), 1)
	runApp(t, app)
	waitWindows(t, app.WebAddr(), "a", "", w10(40*time.Second, 1))
	waitWindows(t, app.WebAddr(), "b", "", w10(50*time.Second, 1))
	produceAt(t, b.Addr(), "views", timed{"a", "u7", at(5 * time.Second)}, timed{"a", "u8", at(62 * time.Second)}) // late; closes [50,60)
	waitClosed(t, b.Addr(), append(all, c10("b", 50*time.Second, 1))...)
	waitWindows(t, app.WebAddr(), "a", "", w10(40*time.Second, 1), w10(60*time.Second, 1)) // [40,50) expires at 80 s
}

// runUntil runs app until ctx ends, waits until it is ready, and returns
// the channel its Run's error arrives on.
func runUntil(t *testing.T, app *mephisto.App, ctx context.Context) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	waitFor(t, 60*time.Second, "app ready", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("app.Run returned early: %v", err)
		default:
		}
		return app.Ready()
	})
	return done
}

func wj(start, end time.Duration, n int64) windowJSON {
	return windowJSON{at(start).UnixMilli(), at(end).UnixMilli(), n}
}

func cw(id string, start, end time.Duration, n int64) closed {
	return closed{id, at(start).UnixMilli(), at(end).UnixMilli(), n}
}

// TestHoppingWindows: an event counts in size/step windows, each closing
// on its own.
func TestHoppingWindows(t *testing.T) {
	b := startBroker(t)
	app, _ := windowApp(t, b.Addr(), t.TempDir(), 1, mephisto.Hopping(20*time.Second, 5*time.Second), mephisto.Expires(time.Minute))
	runApp(t, app)
	s := time.Second
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(1 * s)}, timed{"a", "u", at(6 * s)})
	waitWindows(t, app.WebAddr(), "a", "", wj(-15*s, 5*s, 1), wj(-10*s, 10*s, 2), wj(-5*s, 15*s, 2), wj(0, 20*s, 2), wj(5*s, 25*s, 1))
	waitWindows(t, app.WebAddr(), "a", fmt.Sprintf("?at=%d", at(4*s).UnixMilli()), wj(-15*s, 5*s, 1), wj(-10*s, 10*s, 2), wj(-5*s, 15*s, 2), wj(0, 20*s, 2))
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(15 * s)}) // closes [-15,5), [-10,10) and [-5,15)
	waitClosed(t, b.Addr(), cw("a", -15*s, 5*s, 1), cw("a", -10*s, 10*s, 2), cw("a", -5*s, 15*s, 2))
	waitWindows(t, app.WebAddr(), "a", "", wj(-15*s, 5*s, 1), wj(-10*s, 10*s, 2), wj(-5*s, 15*s, 2), wj(0, 20*s, 3), wj(5*s, 25*s, 2),
		wj(10*s, 30*s, 1), wj(15*s, 35*s, 1))
}

// TestSessionWindows: events less than the gap apart make one session;
// an event bridging two sessions merges them; a session closes once
// stream time passes its last event plus the gap plus the grace.
func TestSessionWindows(t *testing.T) {
	b := startBroker(t)
	sum := func(a, b int64) int64 { return a + b }
	app, _ := windowApp(t, b.Addr(), t.TempDir(), 1, mephisto.Session(5*time.Second, sum), mephisto.Grace(10*time.Second), mephisto.Expires(time.Minute))
	runApp(t, app)
	s, ms := time.Second, time.Millisecond
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(0)}, timed{"a", "u", at(3 * s)}, timed{"a", "u", at(20 * s)})
	waitClosed(t, b.Addr(), cw("a", 0, 3*s+ms, 2))
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(12 * s)})
	waitWindows(t, app.WebAddr(), "a", "", wj(0, 3*s+ms, 2), wj(12*s, 12*s+ms, 1), wj(20*s, 20*s+ms, 1))
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(16 * s)}) // bridges [12,12] and [20,20]
	waitWindows(t, app.WebAddr(), "a", "", wj(0, 3*s+ms, 2), wj(12*s, 20*s+ms, 3))
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(40 * s)})
	waitClosed(t, b.Addr(), cw("a", 0, 3*s+ms, 2), cw("a", 12*s, 20*s+ms, 3))
	waitWindows(t, app.WebAddr(), "a", "", wj(0, 3*s+ms, 2), wj(12*s, 20*s+ms, 3), wj(40*s, 40*s+ms, 1))
}

// TestSlidingWindows: Kafka Streams' sliding windows — one ending at each
// event, one starting just after it while later events fall in it.
func TestSlidingWindows(t *testing.T) {
	b := startBroker(t)
	app, _ := windowApp(t, b.Addr(), t.TempDir(), 1, mephisto.Sliding(10*time.Second), mephisto.Grace(time.Hour), mephisto.Expires(time.Hour))
	runApp(t, app)
	s, ms := time.Second, time.Millisecond
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(0)}, timed{"a", "u", at(5 * s)}, timed{"a", "u", at(20 * s)},
		timed{"a", "u", at(8 * s)}) // out of order
	waitWindows(t, app.WebAddr(), "a", "",
		wj(-10*s, ms, 1), wj(-5*s, 5*s+ms, 2), wj(-2*s, 8*s+ms, 3), wj(ms, 10*s+2*ms, 2), wj(5*s+ms, 15*s+2*ms, 1), wj(10*s, 20*s+ms, 1))
}

// TestCloseOnClock: a partition with no more events still closes (and
// expires) its windows when the app's clock passes them.
func TestCloseOnClock(t *testing.T) {
	b := startBroker(t)
	clock := timer.NewFake(at(0))
	app, _ := windowApp(t, b.Addr(), t.TempDir(), 1, mephisto.Tumbling(10*time.Second), mephisto.Grace(2*time.Second),
		mephisto.Expires(30*time.Second), mephisto.CloseOnClock())
	app.Configure(mephisto.WithClock(clock))
	runApp(t, app)
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(time.Second)}, timed{"b", "u", at(9 * time.Second)})
	waitWindows(t, app.WebAddr(), "a", "", w10(0, 1))
	clock.Advance(12 * time.Second)
	waitClosed(t, b.Addr(), c10("a", 0, 1), c10("b", 0, 1))
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(5 * time.Second)}) // late: the clock closed its window
	waitFor(t, 10*time.Second, "late event counted", func() (bool, string) {
		v := metricValue(t, app.WebAddr(), "mephisto_window_late_events_total", `table="views"`)
		return v == 1, fmt.Sprintf("late events %v", v)
	})
	clock.Advance(30 * time.Second)
	waitWindows(t, app.WebAddr(), "a", "")
	waitWindows(t, app.WebAddr(), "b", "")
}

// TestWindowsAcrossNodes: two nodes share the partitions, each partition
// with its own stream time; every node answers every key's windows (the
// owner's, proxied); when one node leaves, the other takes its partitions
// over from its standby copies, serves the same windows (the expired
// ones never), and closes the next windows once.
func TestWindowsAcrossNodes(t *testing.T) {
	b := startBroker(t)
	seed := freeGossipAddr(t)
	ctxs := make([]context.CancelFunc, 2)
	dones := make([]chan error, 2)
	apps := make([]*mephisto.App, 2)
	for i, id := range []string{"n1", "n2"} {
		gossip := seed
		if i > 0 {
			gossip = freeGossipAddr(t)
		}
		apps[i], _ = windowApp(t, b.Addr(), t.TempDir(), 4)
		apps[i].Configure(mephisto.WithNodeID(id), mephisto.WithGossip(gossip), mephisto.WithJoin(seed),
			mephisto.WithSessionTimeout(6*time.Second), mephisto.WithStandbys(1))
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i], dones[i] = cancel, make(chan error, 1)
		go func() { dones[i] <- apps[i].Run(ctx) }()
	}
	stopped := make([]bool, 2)
	t.Cleanup(func() {
		for i := range apps {
			if !stopped[i] {
				ctxs[i]()
				<-dones[i]
			}
		}
	})
	waitFor(t, 60*time.Second, "both nodes in one plan and ready", func() (bool, string) {
		for _, app := range apps {
			if ok, why := app.Ready(); !ok {
				return false, why
			}
			v, err := getCluster(app.WebAddr())
			if err != nil || len(v.Nodes) != 2 {
				return false, fmt.Sprintf("plan %+v %v", v, err)
			}
		}
		return true, ""
	})
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	var evs []timed
	for _, s := range []time.Duration{1, 2, 11, 45} {
		for _, k := range keys {
			evs = append(evs, timed{k, "u", at(s * time.Second)})
		}
	}
	produceAt(t, b.Addr(), "views", evs...)
	var want []closed
	for _, k := range keys {
		want = append(want, c10(k, 0, 2), c10(k, 10*time.Second, 1))
	}
	sortClosed(want)
	waitClosed(t, b.Addr(), want...)
	for _, app := range apps {
		for _, k := range keys {
			waitWindows(t, app.WebAddr(), k, "", w10(10*time.Second, 1), w10(40*time.Second, 1))
		}
	}
	ctxs[0]()
	stopped[0] = true
	if err := <-dones[0]; err != nil {
		t.Fatalf("n1: %v", err)
	}
	for _, k := range keys {
		waitWindows(t, apps[1].WebAddr(), k, "", w10(10*time.Second, 1), w10(40*time.Second, 1))
	}
	evs = evs[:0]
	for _, k := range keys {
		evs = append(evs, timed{k, "u", at(55 * time.Second)})
		want = append(want, c10(k, 40*time.Second, 1))
	}
	produceAt(t, b.Addr(), "views", evs...)
	sortClosed(want)
	waitClosed(t, b.Addr(), want...)
	for _, k := range keys {
		waitWindows(t, apps[1].WebAddr(), k, "", w10(40*time.Second, 1), w10(50*time.Second, 1))
	}
}

func sortClosed(cs []closed) {
	slices.SortFunc(cs, func(a, b closed) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// TestWindowCloseExactlyOnce: under exactly-once a window's close is sent
// once, though the partition fails after it was sent and replays the
// event that closed it; and a close callback that fails restarts the
// partition and is retried, without sending the record that closed the
// window to its error policy.
func TestWindowCloseExactlyOnce(t *testing.T) {
	eosBrokers(t, nil, func(t *testing.T, addr string) {
		app := mephisto.New("win-eos", mephisto.WithBrokers(addr), mephisto.WithDataDir(t.TempDir()),
			mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
			mephisto.WithCommitInterval(50*time.Millisecond), mephisto.ProcessingGuarantee(mephisto.ExactlyOnce))
		views := mephisto.NewTopic(app, "views", codec.String(), codec.String())
		out := mephisto.NewTopic(app, "closed", codec.String(), codec.JSON[closed]())
		counts := mephisto.NewWindowedTable(app, "views", codec.String(), codec.Int64(), mephisto.Tumbling(10*time.Second), mephisto.Expires(time.Minute))
		var closeFails, boomFails atomic.Int32
		counts.OnClose(func(ctx mephisto.Context, id string, w mephisto.Window, n int64) error {
			if id == "c" && closeFails.Add(1) == 1 {
				return errors.New("the close callback fails once")
			}
			return out.Send(ctx, id, closed{id, w.Start.UnixMilli(), w.End.UnixMilli(), n})
		})
		mephisto.NewAgent(app, "count", views, func(ctx mephisto.Context, id, v string) error {
			if v == "boom" && boomFails.Add(1) == 1 {
				return errors.New("the handler fails once")
			}
			return counts.Update(ctx, id, func(n int64) int64 { return n + 1 })
		}, mephisto.OnError(mephisto.DeadLetter))
		runApp(t, app)
		produceAt(t, addr, "views", timed{"a", "u", at(time.Second)}, timed{"c", "u", at(2 * time.Second)},
			timed{"b", "u", at(13 * time.Second)},    // closes [0,10) of a and c: c's close fails once
			timed{"b", "boom", at(14 * time.Second)}, // fails once, after a's close was sent
			timed{"a", "u", at(25 * time.Second)})
		waitClosed(t, addr, c10("a", 0, 1), c10("c", 0, 1), c10("b", 10*time.Second, 2))
		waitWindows(t, app.WebAddr(), "b", "", w10(10*time.Second, 2))
		if n := metricValue(t, app.WebAddr(), "mephisto_dead_letters_total", `agent="count"`); n != 0 {
			t.Errorf("%v dead letters: a close callback's failure went to the record's error policy", n)
		}
		if closeFails.Load() < 2 || boomFails.Load() < 2 {
			t.Errorf("close tried %d times, boom handled %d times: want each retried", closeFails.Load(), boomFails.Load())
		}
	})
}

// TestWindowReads: in a handler, Get is the event's window, Delta the one
// before, At any instant's, Windows every live one in a range; outside a
// handler the same reads see the committed windows, and Now the app
// clock's window.
func TestWindowReads(t *testing.T) {
	b := startBroker(t)
	clock := timer.NewFake(at(25 * time.Second))
	app, counts := windowApp(t, b.Addr(), t.TempDir(), 2, mephisto.Tumbling(10*time.Second), mephisto.Expires(time.Minute))
	app.Configure(mephisto.WithClock(clock))
	probe := mephisto.NewTopic(app, "probe", codec.String(), codec.String())
	answers := mephisto.NewTopic(app, "answers", codec.String(), codec.String())
	mephisto.NewAgent(app, "probe", probe, func(ctx mephisto.Context, id, _ string) error {
		cur, err := counts.Get(ctx, id)
		if err != nil {
			return err
		}
		prev, err := counts.Delta(ctx, id, 10*time.Second)
		if err != nil {
			return err
		}
		first, ok, err := counts.At(ctx, id, at(time.Second))
		if err != nil {
			return err
		}
		all, err := counts.Windows(ctx, id, at(0), at(time.Minute))
		if err != nil {
			return err
		}
		var ws []string
		for _, w := range all {
			ws = append(ws, fmt.Sprintf("%d:%d", w.Window.Start.Sub(t0)/time.Second, w.Value))
		}
		return answers.Send(ctx, id, fmt.Sprintf("get=%d delta=%d at1=%d/%v windows=%v", cur, prev, first, ok, ws))
	})
	runApp(t, app)
	produceAt(t, b.Addr(), "views", timed{"a", "u", at(1 * time.Second)}, timed{"a", "u", at(2 * time.Second)},
		timed{"a", "u", at(12 * time.Second)}, timed{"a", "u", at(25 * time.Second)})
	waitWindows(t, app.WebAddr(), "a", "", w10(0, 2), w10(10*time.Second, 1), w10(20*time.Second, 1))
	produceAt(t, b.Addr(), "probe", timed{"a", "", at(15 * time.Second)}, timed{"zz", "", at(15 * time.Second)})
	want := map[string]string{
		"a":  "get=1 delta=2 at1=2/true windows=[0:2 10:1 20:1]",
		"zz": "get=0 delta=0 at1=0/false windows=[]",
	}
	waitFor(t, 30*time.Second, "probe answers", func() (bool, string) {
		got := map[string]string{}
		for _, m := range readCommitted(t, b.Addr(), "answers") {
			got[string(m.Key)] = string(m.Value)
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("got %v, want %v", got, want)
	})

	ctx := context.Background()
	ws, err := counts.Windows(ctx, "a", at(5*time.Second), at(15*time.Second))
	if err != nil || len(ws) != 2 || ws[0].Value != 2 || ws[1].Value != 1 || !ws[1].Window.Contains(at(10*time.Second)) {
		t.Errorf("Windows outside a handler = %+v, %v", ws, err)
	}
	if v, err := counts.Now(ctx, "a"); err != nil || v != 1 { // the clock is at 25 s
		t.Errorf("Now outside a handler = %d, %v; want 1", v, err)
	}
	if v, ok, err := counts.At(ctx, "a", at(3*time.Second)); err != nil || !ok || v != 2 {
		t.Errorf("At outside a handler = %d %v %v; want 2", v, ok, err)
	}
	if v, ok, err := counts.At(ctx, "a", at(35*time.Second)); err != nil || ok || v != 0 {
		t.Errorf("At of a window never written = %d %v %v", v, ok, err)
	}
	if err := counts.Update(ctx, "a", func(n int64) int64 { return n }); !errors.Is(err, mephisto.ErrNotInAgent) {
		t.Errorf("Update outside a handler: %v, want ErrNotInAgent", err)
	}
}
