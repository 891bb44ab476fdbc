package mephistotest_test

// The tests in this file are the code of README.md's "Testing your app"
// and of docs/testing.md: TestDocSnippets checks that every Go block of
// those two texts is a run of lines of this file (indentation aside), so
// that what the docs show is what `go test ./mephistotest/` compiles and
// runs.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// newApp is the README's program ("A program"), its last line, app.Main(),
// replaced by returning what a test needs.
func newApp() (*mephisto.App, *mephisto.Topic[string, string], *mephisto.Table[string, int64]) {
	app := mephisto.New("wordcount")
	lines := mephisto.NewTopic(app, "lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "word_counts", codec.String(), codec.Int64())

	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _ string, line string) error {
		for _, w := range strings.Fields(strings.ToLower(line)) {
			if err := words.Send(ctx, w, w); err != nil { // keyed by word
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, word, _ string) error {
		return counts.Update(ctx, word, func(n int64) int64 { return n + 1 })
	})
	return app, lines, counts
}

// TestSplitAndCount is the README's test.
func TestSplitAndCount(t *testing.T) {
	app, lines, counts := newApp()
	d := mephistotest.New(t, app)
	mephistotest.Pipe(d, lines, "", "The fox and the dog")
	mephistotest.Pipe(d, lines, "", "the end")
	for word, want := range map[string]int64{"the": 3, "fox": 1, "end": 1, "cat": 0} {
		if n, err := counts.Get(d.Context(), word); err != nil || n != want {
			t.Errorf("count of %q = %d, %v; want %d", word, n, err, want)
		}
	}
}

// docs/testing.md, "Every Pipe runs to completion".
func TestGuideRunsToCompletion(t *testing.T) {
	app, lines, counts := newApp()
	d := mephistotest.New(t, app)
	mephistotest.Pipe(d, lines, "", "to be or not to be")
	if n := len(d.Raw("words")); n != 6 {
		t.Errorf("%d records in words, want 6", n)
	}
	if n := len(d.Raw("wordcount-word_counts-changelog")); n != 4 {
		t.Errorf("%d changelog records, want 4: one per word written, at the commit", n)
	}
	d.Batch(func() {
		for range 100 {
			mephistotest.Pipe(d, lines, "", "be")
		}
	})
	if n, _ := counts.Get(d.Context(), "be"); n != 102 {
		t.Errorf("be = %d, want 102", n)
	}
	if n := len(d.Raw("wordcount-word_counts-changelog")); n != 5 {
		t.Errorf("%d changelog records, want 5: the batch wrote be once, in one commit", n)
	}
	if n := d.Metric("mephisto_events_in_total", "topic", "lines"); n != 101 {
		t.Errorf("%v lines in, want 101", n)
	}
}

// docs/testing.md, "Records in".
func TestGuideRecordOptions(t *testing.T) {
	app := mephisto.New("stamps")
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	out := mephisto.NewTopic(app, "out", codec.String(), codec.String())
	mephisto.NewAgent(app, "stamp", in, func(ctx mephisto.Context, key, value string) error {
		ev := ctx.Event()
		trace := ""
		for _, h := range ev.Headers {
			if h.Key == "trace" {
				trace = string(h.Value)
			}
		}
		return out.Send(ctx, key, fmt.Sprintf("%s from partition %d, trace %s", value, ev.Partition, trace))
	})

	d := mephistotest.New(t, app)
	at := d.Now().Add(-time.Hour)
	mephistotest.Pipe(d, in, "k", "v", mephistotest.At(at), mephistotest.Header("trace", "t1"), mephistotest.ToPartition(5))
	got := mephistotest.Records(d, out)
	if len(got) != 1 || got[0].Value != "v from partition 5, trace t1" || !got[0].Timestamp.Equal(at) {
		t.Fatalf("out = %+v", got)
	}
}

// docs/testing.md, "Reading state".
func TestGuideReads(t *testing.T) {
	app := mephisto.New("views")
	views := mephisto.NewTopic(app, "views", codec.String(), codec.String()) // page → user
	perUser := mephisto.NewTable(app, "per_user", codec.String(), codec.Int64())
	total := mephisto.NewGlobalTable(app, "total", codec.String(), codec.Int64(), mephisto.MergeWith(mephisto.Sum[int64]))
	perMinute := mephisto.NewWindowedTable(app, "per_minute", codec.String(), codec.Int64(),
		mephisto.Tumbling(time.Minute), mephisto.Expires(time.Hour))
	byUser := mephisto.GroupBy(views, "by-user", func(_, user string) string { return user }, codec.String())
	mephisto.NewAgent(app, "count", views, func(ctx mephisto.Context, page, _ string) error {
		if err := total.Merge(ctx, "views", 1); err != nil {
			return err
		}
		return perMinute.Update(ctx, page, func(n int64) int64 { return n + 1 })
	})
	mephisto.NewAgent(app, "per_user", byUser, func(ctx mephisto.Context, user, _ string) error {
		return perUser.Update(ctx, user, func(n int64) int64 { return n + 1 })
	})

	d := mephistotest.New(t, app)
	t0 := d.Now()
	mephistotest.Pipe(d, views, "home", "ann", mephistotest.At(t0.Add(10*time.Second)))
	mephistotest.Pipe(d, views, "home", "bob", mephistotest.At(t0.Add(70*time.Second)))
	mephistotest.Pipe(d, views, "docs", "ann", mephistotest.At(t0.Add(80*time.Second)))

	var users []string
	err := perUser.Range(d.Context(), func(user string, n int64) bool {
		users = append(users, fmt.Sprintf("%s=%d", user, n))
		return true
	})
	if err != nil || fmt.Sprint(users) != "[ann=2 bob=1]" {
		t.Errorf("per user: %v, %v", users, err)
	}
	if n, err := total.Get(d.Context(), "views"); err != nil || n != 3 {
		t.Errorf("total = %d, %v; want 3", n, err)
	}
	ws, err := perMinute.Windows(d.Context(), "home", t0, t0.Add(time.Hour))
	if err != nil || len(ws) != 2 || ws[0].Value != 1 || !ws[1].Window.Start.Equal(t0.Add(time.Minute)) {
		t.Errorf("home's windows: %+v, %v", ws, err)
	}
	if n, ok, err := perMinute.At(d.Context(), "docs", t0.Add(90*time.Second)); err != nil || !ok || n != 1 {
		t.Errorf("docs at 1m30s = %d, %v, %v; want 1", n, ok, err)
	}
}

// docs/testing.md, "The clock".
func TestGuideAdvance(t *testing.T) {
	app := mephisto.New("clock")
	clicks := mephisto.NewTopic(app, "clicks", codec.String(), codec.String())
	batches := mephisto.NewTopic(app, "batches", codec.String(), codec.Int64())
	closed := mephisto.NewTopic(app, "closed", codec.String(), codec.Int64())
	reports := mephisto.NewTopic(app, "reports", codec.String(), codec.String())
	perMinute := mephisto.NewWindowedTable(app, "per_minute", codec.String(), codec.Int64(),
		mephisto.Tumbling(time.Minute), mephisto.CloseOnClock())
	perMinute.OnClose(func(ctx mephisto.Context, page string, _ mephisto.Window, n int64) error {
		return closed.Send(ctx, page, n)
	})
	mephisto.NewAgent(app, "count", clicks, func(ctx mephisto.Context, page, _ string) error {
		return perMinute.Update(ctx, page, func(n int64) int64 { return n + 1 })
	})
	mephisto.NewBatchAgent(app, "bulk", clicks, 100, 5*time.Second, func(ctx mephisto.Context, batch []mephisto.KV[string, string]) error {
		return batches.Send(ctx, "size", int64(len(batch)))
	})
	app.Timer("heartbeat", 10*time.Second, func(ctx context.Context) error { return reports.Send(ctx, "heartbeat", "ok") })
	app.Crontab("hourly", "0 * * * *", func(ctx context.Context) error { return reports.Send(ctx, "hourly", "ok") })

	d := mephistotest.New(t, app)
	t0 := d.Now()
	mephistotest.Pipe(d, clicks, "home", "ann")
	mephistotest.Pipe(d, clicks, "home", "bob")
	if n := len(mephistotest.Records(d, batches)) + len(mephistotest.Records(d, closed)); n != 0 {
		t.Fatalf("%d batches or closes before the clock moved", n)
	}
	d.Advance(5 * time.Second) // the batch's 5 s are up
	if got := mephistotest.Records(d, batches); len(got) != 1 || got[0].Value != 2 {
		t.Errorf("batches = %+v, want one of 2", got)
	}
	d.Advance(time.Hour) // no more clicks: the clock closes the first minute
	if got := mephistotest.Records(d, closed); len(got) != 1 || got[0].Key != "home" || got[0].Value != 2 {
		t.Errorf("closed = %+v, want home=2", got)
	}
	got := mephistotest.Records(d, reports)
	if n := len(got); n != 361 {
		t.Errorf("%d reports in 1h5s, want 360 heartbeats and 1 hourly", n)
	}
	if last := got[len(got)-1]; last.Key != "hourly" || !last.Timestamp.Equal(t0.Add(time.Hour)) {
		t.Errorf("last report %+v, want hourly at 01:00", last)
	}
	if n := d.Metric("mephisto_timer_runs_total", "timer", "heartbeat"); n != 360 {
		t.Errorf("%v heartbeat runs, want 360", n)
	}
}

// docs/testing.md, "Replies".
func TestGuideAsk(t *testing.T) {
	app := mephisto.New("adder", mephisto.WithMaxAttempts(2))
	adding := mephisto.NewTopic(app, "adding", codec.String(), codec.JSON[[2]int]())
	add := mephisto.NewReplyAgent(app, "add", adding, func(_ mephisto.Context, _ string, ab [2]int) (int, error) {
		if ab[0] < 0 || ab[1] < 0 {
			return 0, errors.New("negative")
		}
		return ab[0] + ab[1], nil
	})

	d := mephistotest.New(t, app)
	if sum, err := add.Ask(d.Context(), "k", [2]int{4, 4}); err != nil || sum != 8 {
		t.Errorf("4+4 = %d, %v", sum, err)
	}
	_, err := add.Ask(d.Context(), "k", [2]int{-1, 4})
	if !errors.Is(err, mephisto.ErrRemote) || !strings.Contains(err.Error(), "negative") {
		t.Errorf("-1+4: %v, want ErrRemote", err)
	}
	if dl := d.DeadLetters("add"); len(dl) != 1 {
		t.Errorf("dead letters %+v, want the failed request", dl)
	}
}

// docs/testing.md, "Failures".
func TestGuideFailures(t *testing.T) {
	app, lines, counts := newApp() // MaxAttempts 3, policy DeadLetter
	d := mephistotest.New(t, app)

	d.Fail("count", 2, errors.New("disk full"))
	mephistotest.Pipe(d, lines, "", "fox")
	if n, _ := counts.Get(d.Context(), "fox"); n != 1 {
		t.Errorf("fox = %d, want 1: the third attempt succeeded, and counted once", n)
	}

	d.Panic("count", 3)
	mephistotest.Pipe(d, lines, "", "dog")
	dl := d.DeadLetters("count")
	if len(dl) != 1 || string(dl[0].Value) != "dog" || dl[0].Topic != "words" || !strings.Contains(dl[0].Error, "panic") {
		t.Fatalf("dead letters = %+v", dl)
	}
	if dl[0].Headers["mephisto.agent"] != "count" || dl[0].Headers["mephisto.offset"] != fmt.Sprint(dl[0].Offset) {
		t.Errorf("dead letter headers %v", dl[0].Headers)
	}
	if n, _ := counts.Get(d.Context(), "dog"); n != 0 {
		t.Errorf("dog = %d, want 0", n)
	}
	grain := fmt.Sprintf("partition/wordcount/%d", dl[0].Partition)
	if n := d.Metric("mephisto_grain_restarts_total", "grain", grain); n != 3 {
		t.Errorf("%s restarted %v times, want 3: once per failure", grain, n)
	}
	if n := d.Metric("mephisto_dead_letters_total", "agent", "count"); n != 1 {
		t.Errorf("%v dead letters counted, want 1", n)
	}
}

// docs/testing.md, "Failures": an undecodable record and the Stop policy.
func TestGuidePoisonStop(t *testing.T) {
	app := mephisto.New("totals")
	amounts := mephisto.NewTopic(app, "amounts", codec.String(), codec.Int64())
	total := mephisto.NewTable(app, "total", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "sum", amounts, func(ctx mephisto.Context, account string, n int64) error {
		return total.Update(ctx, account, func(sum int64) int64 { return sum + n })
	}, mephisto.OnError(mephisto.Stop))

	d := mephistotest.New(t, app, mephistotest.Partitions(1))
	d.PipeRaw("amounts", []byte("ann"), []byte("12")) // two bytes: codec.Int64 wants 8
	mephistotest.Pipe(d, amounts, "ann", 5)
	if err := d.Stopped(0); !errors.Is(err, mephisto.ErrPartitionStopped) {
		t.Errorf("partition 0: %v, want stopped", err)
	}
	if n, _ := total.Get(d.Context(), "ann"); n != 0 {
		t.Errorf("ann = %d, want 0: the partition stopped before the 5", n)
	}
}

// docs/testing.md, "Crashes".
func TestGuideCrash(t *testing.T) {
	app, lines, counts := newApp()
	d := mephistotest.New(t, app, mephistotest.Partitions(1))
	mephistotest.Pipe(d, lines, "", "fox")
	d.HoldCommits(true)
	mephistotest.Pipe(d, lines, "", "fox") // processed, not committed
	if n, _ := counts.Get(d.Context(), "fox"); n != 1 {
		t.Errorf("fox = %d, want the committed 1", n)
	}
	replayed := d.Crash(0)
	d.HoldCommits(false)
	if len(replayed) != 1 || replayed[0].Topic != "words" || string(replayed[0].Key) != "fox" {
		t.Errorf("the replay produced %+v, want split's word again", replayed)
	}
	if n, _ := counts.Get(d.Context(), "fox"); n != 3 {
		t.Errorf("fox = %d, want 3: the word sent twice is counted twice", n)
	}
}

// docs/testing.md, "Pages".
func TestGuidePage(t *testing.T) {
	app, lines, counts := newApp()
	page := mephisto.TableRoute(counts, "word", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := counts.Get(r.Context(), r.PathValue("word"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, n)
	}))
	app.Page("GET /count/{word}", page)

	d := mephistotest.New(t, app)
	mephistotest.Pipe(d, lines, "", "the fox")
	mux := http.NewServeMux()
	mux.Handle("GET /count/{word}", page)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/count/fox", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "1\n" {
		t.Errorf("GET /count/fox: %d %q", rec.Code, rec.Body)
	}
}

// docs/testing.md, "What it does not drive".
func TestGuideNotDriven(t *testing.T) {
	app := mephisto.New("greeter")
	names := mephisto.NewTopic(app, "names", codec.String(), codec.String())
	greet := mephisto.NewAgent(app, "greet", names, func(mephisto.Context, string, string) error { return nil })
	poll := func(ctx context.Context) error { return names.Send(ctx, "ann", "hello") }
	app.Task("poll", poll)

	d := mephistotest.New(t, app)
	if _, err := greet.PID("ann"); !errors.Is(err, mephistotest.ErrNotDriven) {
		t.Errorf("PID: %v, want ErrNotDriven", err)
	}
	if n := len(mephistotest.Records(d, names)); n != 0 {
		t.Fatalf("%d names: the task ran", n)
	}
	if err := poll(d.Context()); err != nil { // a task is run by hand
		t.Fatal(err)
	}
	if n := d.Metric("mephisto_events_in_total", "topic", "names"); n != 1 {
		t.Errorf("greet got %v names, want 1", n)
	}
}

// TestDocSnippets checks that the README's program is newApp and that
// every Go block of the README's "Testing your app" and of
// docs/testing.md is a run of lines of this file, indentation aside.
func TestDocSnippets(t *testing.T) {
	self := readLines(t, "readme_test.go")
	readme := readText(t, "../README.md")

	program := section(t, readme, "## A program")
	blocks := goBlocks(program)
	if len(blocks) == 0 {
		t.Fatal("README.md: no Go block under ## A program")
	}
	prog := blocks[0]
	if last := prog[len(prog)-1]; !strings.HasPrefix(last, "app.Main()") {
		t.Fatalf("README.md's program ends with %q, not app.Main()", last)
	}
	if !contains(self, prog[:len(prog)-1]) {
		t.Errorf("README.md's program (## A program) is not newApp's body in readme_test.go:\n%s", strings.Join(prog, "\n"))
	}

	const sig = "func newApp() (*mephisto.App, *mephisto.Topic[string, string], *mephisto.Table[string, int64])"
	ours := section(t, readme, "## Testing your app")
	if !strings.Contains(ours, sig) || !contains(self, []string{sig + " {"}) {
		t.Errorf("README.md's Testing your app and readme_test.go disagree on newApp's signature")
	}
	guide := readText(t, "../docs/testing.md")
	for name, text := range map[string]string{"README.md (## Testing your app)": ours, "docs/testing.md": guide} {
		bs := goBlocks(text)
		if len(bs) == 0 {
			t.Errorf("%s: no Go blocks", name)
		}
		for _, b := range bs {
			if !contains(self, b) {
				t.Errorf("%s: this block is not in readme_test.go:\n%s", name, strings.Join(b, "\n"))
			}
		}
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readLines(t *testing.T, path string) []string {
	return trimLines(strings.Split(readText(t, path), "\n"))
}

// section returns the text from heading to the next heading of its level.
func section(t *testing.T, text, heading string) string {
	t.Helper()
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("no %q", heading)
	}
	rest := text[i+1+len(heading):]
	level := heading[:strings.IndexByte(heading, ' ')+1]
	if j := strings.Index(rest, "\n"+level); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// goBlocks returns the lines of each ```go block of text, trimmed.
func goBlocks(text string) [][]string {
	var out [][]string
	var cur []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```go":
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			out = append(out, trimLines(cur))
		case in:
			cur = append(cur, l)
		}
	}
	return out
}

func trimLines(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = strings.TrimSpace(l)
	}
	return out
}

// contains reports whether run is a run of consecutive lines of lines.
func contains(lines, run []string) bool {
	for i := 0; i+len(run) <= len(lines); i++ {
		if slices.Equal(lines[i:i+len(run)], run) {
			return true
		}
	}
	return false
}
