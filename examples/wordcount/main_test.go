package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/examples/internal/extest"
	"github.com/mephistohq/mephisto/internal/proctest"
)

// guideOut collects what the guide task prints, for every test.
var guideOut = &proctest.Buffer{}

func TestMain(m *testing.M) {
	console = guideOut
	os.Exit(m.Run())
}

// corpus returns n lines in mixed case with irregular whitespace, and the
// exact count of every lower-cased word in them.
func corpus(n int) ([]extest.Record, map[string]int64) {
	vocab := strings.Fields("the quick brown fox jumps over the lazy dog while seven wizards quietly hex jolly bugs")
	seps := []string{" ", "  ", "\t", " \t "}
	var recs []extest.Record
	truth := map[string]int64{}
	for i := range n {
		var b strings.Builder
		b.WriteString(seps[i%len(seps)]) // leading whitespace
		for j := range 1 + i%7 {
			w := vocab[(i*7+j*3)%len(vocab)]
			truth[w]++
			switch (i + j) % 3 {
			case 1:
				w = strings.ToUpper(w)
			case 2:
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			if j > 0 {
				b.WriteString(seps[(i+j)%len(seps)])
			}
			b.WriteString(w)
		}
		recs = append(recs, extest.Record{Value: []byte(b.String())})
	}
	return recs, truth
}

// TestWordCount runs the app in-process against an embedded broker, feeds
// it a known corpus and checks every count.
func TestWordCount(t *testing.T) {
	b := extest.StartBroker(t)
	app := newApp(extest.Options(t, b.Addr())...)
	extest.RunApp(t, app)

	recs, truth := corpus(500)
	extest.Produce(t, b.Addr(), "lines", recs)
	proctest.WaitForT(t, extest.Timeout, "word_counts equal the truth", func() (bool, string) {
		return extest.TableEquals(app.WebAddr(), "word_counts", truth)
	})
	if code, _, _ := extest.TableValue(app.WebAddr(), "word_counts", "neverwritten"); code != 404 {
		t.Errorf("a word never sent: HTTP %d, want 404", code)
	}

	// The guide printed, once ready, where to look.
	want := fmt.Sprintf("curl -s http://%s/tables/word_counts/the", app.WebAddr())
	proctest.WaitForT(t, extest.Timeout, "the guide", func() (bool, string) {
		return strings.Contains(guideOut.String(), want), "guide so far: " + guideOut.String()
	})
}

var countsRE = regexp.MustCompile(`msg=counts the=(\d+) fox=(\d+) dog=(\d+) be=(\d+) times=(\d+)`)

// TestGenerator checks that WORDCOUNT_RATE starts a generator whose logged
// counts, read back over HTTP, move.
func TestGenerator(t *testing.T) {
	t.Setenv(rateEnv, "50")
	b := extest.StartBroker(t)
	logs := &proctest.Buffer{}
	app := newApp(append(extest.Options(t, b.Addr()), mephisto.WithLogger(proctest.Logger(t, logs)))...)
	extest.RunApp(t, app)
	proctest.WaitForT(t, extest.Timeout, "two counts lines, with 'the' growing", func() (bool, string) {
		var the []int
		for _, m := range countsRE.FindAllStringSubmatch(logs.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			the = append(the, n)
		}
		for i := 1; i < len(the); i++ {
			if the[i-1] > 0 && the[i] > the[i-1] {
				return true, ""
			}
		}
		return false, fmt.Sprintf("counts of 'the' logged so far: %v", the)
	})
}

// TestBinary builds the example and drives it as a user would: its
// commands, a worker process, `send`, HTTP, and SIGTERM.
func TestBinary(t *testing.T) {
	bin := extest.Build(t, "wordcount")

	extest.CheckCommands(t, bin, []string{"split", "count"}, []string{"word_counts"})

	b := extest.StartBroker(t)
	w, web := extest.StartWorker(t, bin, b.Addr(), []string{rateEnv + "="})

	for _, line := range []string{"The fox saw the other FOX", "fox\tand  dog"} {
		r := extest.Exec(t, bin, nil, "send", "lines", line, "--brokers", b.Addr())
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sent to lines partition ") {
			t.Fatalf("send lines %q: exit %d\n%s%s", line, r.Code, r.Stdout, r.Stderr)
		}
	}
	truth := map[string]int64{"the": 2, "fox": 3, "saw": 1, "other": 1, "and": 1, "dog": 1}
	proctest.WaitForT(t, extest.Timeout, "word_counts equal the truth", func() (bool, string) {
		return extest.TableEquals(web, "word_counts", truth)
	})
	guide := fmt.Sprintf("curl -s http://%s/tables/word_counts/the", web)
	proctest.WaitForT(t, extest.Timeout, "the guide on stderr", func() (bool, string) {
		return strings.Contains(w.Stderr(), guide), "no " + guide
	})
	if !strings.Contains(w.Stderr(), bin+" send lines \"hello world\" --brokers "+b.Addr()) {
		t.Errorf("the guide does not show how to send a line with this binary and broker")
	}

	w.StopT(t, extest.Timeout)
}
