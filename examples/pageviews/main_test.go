package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// guideOut collects what the guide task prints, for every test.
var guideOut = &proctest.Buffer{}

func TestMain(m *testing.M) {
	console = guideOut
	os.Exit(m.Run())
}

// The acceptance check of the example, as OS processes: one worker
// process on the dev broker (`mephisto broker`) and on Apache Kafka. Views
// with explicit timestamps arrive in rounds, one round per minute of event
// time; after each check every page's windows over HTTP equal a model,
// and page_views_closed holds every closed minute once. Midway the worker
// is killed with SIGKILL and restarted on its data dir; later it is
// stopped, its data dir wiped, and it rebuilds the same windows from the
// changelog.
//
// The rounds make the result independent of how the partitions
// interleave: a round's views are stamped in the first 10 s of its
// minute, so no view of one round makes one of the next late (a minute
// closes 10 s after the next one starts), and every page has views in
// every round, so every partition's stream time is in the last round's
// first 10 s once it is processed: the minutes closed are exactly those
// two or more rounds back.

const (
	pvPartitions = 4
	pvNodeID     = "pv1"
)

// pvModel is what the worker must show: per page, the count of each
// minute (by its start, unix ms), the stream time, the closes due.
type pvModel struct {
	rng    *rand.Rand
	t0     time.Time
	counts map[string]map[int64]int64
	stream int64
	late   int
}

func newModel(t0 time.Time) *pvModel {
	return &pvModel{rng: rand.New(rand.NewPCG(13, 8)), t0: t0, counts: map[string]map[int64]int64{}}
}

const (
	sizeMS  = int64(windowSize / time.Millisecond)
	graceMS = int64(windowGrace / time.Millisecond)
	keepMS  = int64(windowKeep / time.Millisecond)
)

// view returns the record of a view of page at t, and counts it unless it
// is late.
func (m *pvModel) view(page string, t time.Time) extest.Record {
	v, _ := json.Marshal(PageView{ID: page, User: users[m.rng.IntN(len(users))]})
	ms := t.UnixMilli()
	start := ms - ms%sizeMS
	if start+sizeMS+graceMS <= m.stream {
		m.late++
	} else {
		if m.counts[page] == nil {
			m.counts[page] = map[int64]int64{}
		}
		m.counts[page][start]++
		m.stream = max(m.stream, ms)
	}
	return extest.Record{Key: []byte(page), Value: v, Timestamp: t}
}

// round returns 1 to 7 views of every page (at least one each) in the
// first 10 s of minute r.
func (m *pvModel) round(r int) []extest.Record {
	var recs []extest.Record
	for range 2 + m.rng.IntN(6) {
		for _, p := range pages {
			if m.rng.IntN(3) > 0 || len(recs) < len(pages) {
				at := m.t0.Add(time.Duration(r)*time.Minute + time.Duration(m.rng.IntN(10_000))*time.Millisecond)
				recs = append(recs, m.view(p, at))
			}
		}
	}
	// Within a round the order does not matter; shuffling it makes the
	// stream time on each partition move back and forth.
	m.rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	return recs
}

// pvWindow is one window as GET /tables/page_views/{id} answers it.
type pvWindow struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Value int64 `json:"value"`
}

// live returns page's windows that are not expired, in start order.
func (m *pvModel) live(page string) []pvWindow {
	var ws []pvWindow
	for start, n := range m.counts[page] {
		if start+sizeMS+keepMS > m.stream {
			ws = append(ws, pvWindow{start, start + sizeMS, n})
		}
	}
	slices.SortFunc(ws, func(a, b pvWindow) int { return int(a.Start - b.Start) })
	return ws
}

// closes returns every close due by now, as "id start end count".
func (m *pvModel) closes() []string {
	var cs []string
	for page, wins := range m.counts {
		for start, n := range wins {
			if start+sizeMS+graceMS <= m.stream {
				cs = append(cs, fmt.Sprintf("%s %d %d %d", page, start, start+sizeMS, n))
			}
		}
	}
	slices.Sort(cs)
	return cs
}

// windowsOver returns page's windows as the worker at web serves them.
func windowsOver(web, page, query string) (int, []pvWindow, error) {
	code, body, err := proctest.Get(web, "/tables/page_views/"+page+query)
	if err != nil || code != 200 {
		return code, nil, fmt.Errorf("GET %s: HTTP %d %s %v", page, code, body, err)
	}
	var ans struct {
		Table, Key string
		Windows    []pvWindow
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return code, nil, fmt.Errorf("%s: %v", body, err)
	}
	if ans.Table != "page_views" || ans.Key != page {
		return code, nil, fmt.Errorf("answer names table %q key %q: %s", ans.Table, ans.Key, body)
	}
	return code, ans.Windows, nil
}

// pvRun is the worker of one subtest and what it is checked against.
type pvRun struct {
	t         *testing.T
	bin       string
	brokers   string
	guarantee string
	web       string
	dataDir   string
	logDir    string
	runs      int
	w         *proctest.Proc
	m         *pvModel
}

func (r *pvRun) start() {
	r.runs++
	r.w = proctest.StartT(r.t, proctest.Spec{Name: fmt.Sprintf("pageviews-run%d", r.runs), Path: r.bin,
		Args: []string{"worker", "--brokers", r.brokers, "--node-id", pvNodeID, "--web", r.web, "--gossip", "",
			"--data-dir", r.dataDir, "--partitions", strconv.Itoa(pvPartitions), "--commit-interval", "50ms",
			"--processing-guarantee", r.guarantee},
		Env:    proctest.Environ([]string{rateEnv + "="}, "MEPHISTO_"),
		LogDir: r.logDir})
	extest.WaitReady(r.t, r.w, r.web)
}

// send produces the rounds from..to (inclusive), waiting after every
// second round until the worker has caught up, so that no round closes
// the minutes of one still in flight.
func (r *pvRun) send(from, to int) {
	r.t.Helper()
	for i := from; i <= to; i++ {
		extest.Produce(r.t, r.brokers, "page_views", r.m.round(i))
		if (i-from)%2 == 1 || i == to {
			r.waitWindows(fmt.Sprintf("round %d", i))
		}
	}
}

// waitWindows waits until every page's windows over HTTP equal the model.
func (r *pvRun) waitWindows(when string) {
	r.t.Helper()
	proctest.WaitForT(r.t, extest.Timeout, when+": every page's windows over HTTP", func() (bool, string) {
		if r.w.Exited() {
			r.t.Fatalf("worker exited: %s", r.w.DescribeExit())
		}
		for _, p := range pages {
			_, got, err := windowsOver(r.web, p, "")
			if err != nil {
				return false, err.Error()
			}
			if want := r.m.live(p); !slices.Equal(got, want) {
				return false, fmt.Sprintf("%s: windows %v, want %v", p, got, want)
			}
		}
		return true, ""
	})
}

// checkCloses requires page_views_closed, read committed, to hold exactly
// the closes due, each once, keyed by its page.
func (r *pvRun) checkCloses(when string) {
	r.t.Helper()
	want := r.m.closes()
	proctest.WaitForT(r.t, extest.Timeout, when+": every close once on page_views_closed", func() (bool, string) {
		var got []string
		for _, recs := range extest.ReadTopic(r.t, r.brokers, "page_views_closed", sarama.ReadCommitted) {
			for _, m := range recs {
				var c Closed
				if err := json.Unmarshal(m.Value, &c); err != nil || string(m.Key) != c.ID {
					r.t.Fatalf("close %q keyed %q: %v (want JSON {id,start,end,count} keyed by id)", m.Value, m.Key, err)
				}
				got = append(got, fmt.Sprintf("%s %d %d %d", c.ID, c.Start, c.End, c.Count))
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return true, ""
		}
		return false, fmt.Sprintf("%d closes, want %d:\n got %q\nwant %q", len(got), len(want), got, want)
	})
}

// waitCommitted waits until the app's consumer group has committed every
// partition of topics up to its end: nothing of them is left to replay.
func (r *pvRun) waitCommitted(topics ...string) {
	r.t.Helper()
	client, err := sarama.NewClient(strings.Split(r.brokers, ","), kafka.ClientConfig("pageviews-test-offsets"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		r.t.Fatal(err)
	}
	proctest.WaitForT(r.t, extest.Timeout, fmt.Sprintf("%v committed to their ends", topics), func() (bool, string) {
		for p := range int32(pvPartitions) {
			next, err := kafka.CommittedOffsets(admin, "pageviews", topics, p)
			if err != nil {
				return false, err.Error()
			}
			for _, topic := range topics {
				end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
				if err != nil {
					return false, err.Error()
				}
				if next[topic] != end {
					return false, fmt.Sprintf("%s/%d committed up to %d of %d", topic, p, next[topic], end)
				}
			}
		}
		return true, ""
	})
}

// waitLate waits until the worker has counted n late events.
func (r *pvRun) waitLate(n int) {
	r.t.Helper()
	proctest.WaitForT(r.t, extest.Timeout, fmt.Sprintf("%d late views counted", n), func() (bool, string) {
		sum, _, err := proctest.Metric(r.web, "mephisto_window_late_events_total", map[string]string{"table": "page_views"})
		if err != nil {
			return false, err.Error()
		}
		if int(sum) > n {
			r.t.Fatalf("%v late views counted, want %d", sum, n)
		}
		return int(sum) == n, fmt.Sprintf("%v late views counted", sum)
	})
}

func TestPageViewsProcesses(t *testing.T) {
	t.Parallel()
	var bin, brokerBin string
	if err := proctest.Build(t.TempDir(),
		proctest.Binary{Pkg: ".", Name: "pageviews", Out: &bin, Race: true},
		proctest.Binary{Pkg: "github.com/mephistohq/mephisto/cmd/mephisto", Out: &brokerBin}); err != nil {
		t.Fatal(err)
	}
	extest.CheckCommands(t, bin, []string{"page_views-by-id", "count_page_views"}, []string{"page_views"})
	kfake := func(t *testing.T) string {
		listen := proctest.FreeAddrT(t, false)
		p := proctest.StartT(t, proctest.Spec{Name: "broker", Path: brokerBin,
			Args:   []string{"broker", "--listen", listen, "--data-dir", t.TempDir()},
			Env:    proctest.Environ(nil, "MEPHISTO_"),
			LogDir: proctest.LogDir(t, "pageviews")})
		addr, _ := p.WaitListeningT(t, 30*time.Second, listen)
		return addr
	}
	apache := func(t *testing.T) string {
		return proctest.StartKafkaT(t, proctest.KafkaSpec{Name: "pageviews-kafka", LogDir: proctest.LogDir(t, "pageviews")}).Bootstrap()
	}
	for _, tc := range []struct {
		name      string
		broker    func(*testing.T) string
		guarantee string
	}{
		// At least once, the worker is killed once what it was sent is
		// processed and committed: it must lose nothing and resend
		// nothing. Killed in the middle of a round, at least once may
		// count and close again what it replays; exactly once may not.
		{"kfake/at_least_once", kfake, "at_least_once"},
		{"kfake/exactly_once", kfake, "exactly_once"},
		{"kafka/exactly_once", apache, "exactly_once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Event time starts three hours back, so that the last round
			// (70 minutes on) is still in the past: a broker may refuse
			// records stamped in the future, or delete old ones early.
			t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
			r := &pvRun{t: t, bin: bin, brokers: tc.broker(t), guarantee: tc.guarantee,
				web: proctest.FreeAddrT(t, false), dataDir: filepath.Join(t.TempDir(), "data"),
				logDir: proctest.LogDir(t, "pageviews"), m: newModel(t0)}
			r.start()

			// Minutes 0 to 5; then two views of minute 2, closed since
			// minute 3:10 of stream time: dropped and counted.
			r.send(0, 5)
			extest.Produce(t, r.brokers, "page_views", []extest.Record{
				r.m.view(pages[0], t0.Add(2*time.Minute+30*time.Second)),
				r.m.view(pages[1], t0.Add(2*time.Minute+59*time.Second)),
			})
			if r.m.late != 2 {
				t.Fatalf("the model counts %d late views, want 2", r.m.late)
			}
			r.waitLate(2)
			r.waitWindows("after the late views")
			r.checkCloses("minutes 0-5")
			// ?at= keeps the window holding the instant.
			at := t0.Add(4*time.Minute + 30*time.Second).UnixMilli()
			if _, got, err := windowsOver(r.web, pages[2], fmt.Sprintf("?at=%d", at)); err != nil ||
				len(got) != 1 || got[0].Start != t0.Add(4*time.Minute).UnixMilli() || got[0].Value != r.m.counts[pages[2]][got[0].Start] {
				t.Errorf("?at=%d: %v %v, want the minute 4 window of %s only", at, got, err, pages[2])
			}

			// Minutes 6 and 7, then kill -9: in the middle of processing
			// them (exactly once), or once they are committed.
			extest.Produce(t, r.brokers, "page_views", r.m.round(6))
			extest.Produce(t, r.brokers, "page_views", r.m.round(7))
			if tc.guarantee == "at_least_once" {
				r.waitWindows("round 7")
				// The count is committed; the group-by's input offsets
				// too, or a restart forwards those views again.
				r.waitCommitted("page_views", "pageviews-page_views-by-id-repartition")
			}
			r.w.KillT(t)
			r.start()
			r.waitWindows("after kill -9 and a restart")
			r.send(8, 10)
			r.checkCloses("minutes 0-10, across kill -9")

			// Minute 70: the minutes ending an hour or more before stream
			// time expire, and are served no more.
			r.send(70, 70)
			if n := len(r.m.live(pages[0])); n != 2 {
				t.Fatalf("the model keeps %d windows of %s at minute 70, want 2 (minutes 10 and 70)", n, pages[0])
			}
			r.checkCloses("minute 70")

			// A wiped node rebuilds the same windows from the changelog,
			// the expired ones not among them, and closes nothing again.
			r.w.StopT(t, extest.Timeout)
			if err := os.RemoveAll(r.dataDir); err != nil {
				t.Fatal(err)
			}
			r.start()
			r.waitWindows("after a wipe")
			r.send(71, 71)
			r.checkCloses("after a wipe and minute 71")
			r.w.StopT(t, extest.Timeout)
		})
	}
}
