package mephisto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
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
	slices.SortFunc(out, func(a, b closed) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return strings.Compare(a.ID, b.ID)
	})
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
