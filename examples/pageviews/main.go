// Command pageviews counts the views of each page per minute in a
// windowed table, and announces each minute's final count when its window
// closes: Faust's windowing example, with Faust's names.
//
// The topology is one repartition, one agent and one windowed table:
//
//	page_views (topic) ──group by id──▶ page_views-by-id ──▶ count_page_views ──▶ page_views (windowed table)
//	                                                                              │ on close
//	                                                                              ▼
//	                                                                 page_views_closed (topic)
//
// A view is JSON {"id": "<page>", "user": "<user>"}; its event time is the
// record's timestamp. The table keeps one count per page and minute
// (tumbling windows of 60 s). A minute takes late views for a grace of
// 10 s after it ends, by the partition's stream time (the latest event time
// it has seen); a view older than that is dropped and counted in
// mephisto_window_late_events_total{table="page_views"}. When a minute
// closes, {"id","start","end","count"} (start and end in unix ms) is sent to
// page_views_closed, keyed by the page id — once per page and minute, also
// across a crash (at_least_once may send a close again after a crash;
// exactly_once never does). Closed minutes stay readable for an hour, then
// are deleted.
//
// Run it from the repository root (no Kafka needed: with no --brokers the
// worker starts an embedded development broker on 127.0.0.1:9092, and
// serves HTTP on 127.0.0.1:6066):
//
//	PAGEVIEWS_RATE=20 go run ./examples/pageviews worker --data-dir ./.run/pageviews-data
//
// then, from another terminal:
//
//	go run ./examples/pageviews send page_views '{"id":"home","user":"ann"}' --key home --brokers 127.0.0.1:9092
//	curl -s http://127.0.0.1:6066/tables/page_views/home            # every live minute of the page
//	curl -s "http://127.0.0.1:6066/tables/page_views/home?at=$(date +%s000)"   # the current minute
//	kcat -C -b 127.0.0.1:9092 -t page_views_closed -f '%k %s\n'    # the closed minutes
//
// PAGEVIEWS_RATE (views per second; unset or 0: off) starts a generator
// task that sends random views of a few pages, stamped with the wall clock,
// and logs a few current counts it reads back over HTTP.
package main

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/examples/internal/hints"
)

// PageView is one view of a page by a user.
type PageView struct {
	ID   string `json:"id"`
	User string `json:"user"`
}

// Closed is the final count of a page's views in one window, sent when the
// window closes.
type Closed struct {
	ID    string `json:"id"`
	Start int64  `json:"start"` // unix ms, inclusive
	End   int64  `json:"end"`   // unix ms, exclusive
	Count int64  `json:"count"`
}

// The windows of the page_views table.
const (
	windowSize  = time.Minute
	windowGrace = 10 * time.Second
	windowKeep  = time.Hour
)

// rateEnv names the environment variable that turns the generator on.
const rateEnv = "PAGEVIEWS_RATE"

var (
	pages = []string{"home", "pricing", "docs", "blog", "signup"}
	users = []string{"ann", "bob", "cho", "dee", "eve", "fay"}
)

// demo is the start-up guide and the generator.
var demo = hints.Demo{
	Name: "pageviews", Table: "page_views", Keys: pages,
	SendArgs: `send page_views '{"id":"home","user":"ann"}' --key home`,
	RateEnv:  rateEnv, Unit: "page views",
}

// console receives the start-up guide (tests redirect it).
var console io.Writer = os.Stderr

func main() {
	newApp().app.Main()
}

// pageviews is the app and what its tests read.
type pageviews struct {
	app    *mephisto.App
	views  *mephisto.Topic[string, PageView]
	closed *mephisto.Topic[string, Closed]
	counts *mephisto.WindowedTable[string, int64]
}

// newApp declares the pageviews app. opts override its configuration (the
// tests point it at their own broker and directories).
func newApp(opts ...mephisto.Option) *pageviews {
	app := mephisto.New("pageviews", opts...)

	views := mephisto.NewTopic(app, "page_views", codec.String(), codec.JSON[PageView]())
	closed := mephisto.NewTopic(app, "page_views_closed", codec.String(), codec.JSON[Closed]())

	// Faust: app.Table('page_views', default=int).tumbling(60.0,
	// expires=timedelta(hours=1)), with a grace period Faust lacks.
	counts := mephisto.NewWindowedTable(app, "page_views", codec.String(), codec.Int64(),
		mephisto.Tumbling(windowSize), mephisto.Grace(windowGrace), mephisto.Expires(windowKeep),
		mephisto.TimeFromRecord())

	// The close callback runs in the grain that owns the page, as part of
	// the event that moved stream time past the window: its send is
	// committed with it.
	counts.OnClose(func(ctx mephisto.Context, id string, w mephisto.Window, n int64) error {
		return closed.Send(ctx, id, Closed{ID: id, Start: w.Start.UnixMilli(), End: w.End.UnixMilli(), Count: n})
	})

	// Faust: async for view in views.group_by(PageView.id). A forwarded
	// record keeps its input's timestamp, so the count is by the view's
	// time, not the hop's.
	byID := mephisto.GroupBy(views, "page_views-by-id", func(_ string, v PageView) string { return v.ID }, codec.String())
	mephisto.NewAgent(app, "count_page_views", byID, func(ctx mephisto.Context, id string, _ PageView) error {
		return counts.Update(ctx, id, func(n int64) int64 { return n + 1 })
	})

	// The guide prints, once the worker is ready, where to look and what
	// to try; the generator sends random views at the rate PAGEVIEWS_RATE
	// sets, stamped now by the producer.
	app.Task("guide", func(ctx context.Context) error { return demo.Guide(ctx, app, console) })
	app.Task("generator", func(ctx context.Context) error {
		return demo.Generate(ctx, app, views.Name(), func(ctx context.Context) error {
			v := PageView{ID: pages[rand.IntN(len(pages))], User: users[rand.IntN(len(users))]}
			return views.Send(ctx, v.ID, v)
		})
	})
	return &pageviews{app: app, views: views, closed: closed, counts: counts}
}
