package main

import (
	"encoding/json"
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

// corpus returns n orders keyed by order id, spread unevenly over 23
// accounts, and the exact number of orders of each account.
func corpus(t *testing.T, n int) ([]extest.Record, map[string]int64) {
	var recs []extest.Record
	truth := map[string]int64{}
	for i := range n {
		o := Order{
			AccountID: fmt.Sprintf("acct-%d", (i*i+3*i)%23),
			ProductID: fmt.Sprintf("p%d", i%7),
			Amount:    1 + i%5,
			Price:     float64(i%1000) / 10,
		}
		v, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		truth[o.AccountID]++
		recs = append(recs, extest.Record{Key: []byte(fmt.Sprintf("order-%d", i)), Value: v})
	}
	return recs, truth
}

// TestOrders runs the app in-process against an embedded broker, feeds it
// orders keyed by order id and checks every account's count: exact only if
// GroupBy brought each account's orders to one partition.
func TestOrders(t *testing.T) {
	b := extest.StartBroker(t)
	app := newApp(extest.Options(t, b.Addr())...)
	extest.RunApp(t, app)

	recs, truth := corpus(t, 600)
	extest.Produce(t, b.Addr(), "orders", recs)
	proctest.WaitForT(t, extest.Timeout, "order_count equals the truth", func() (bool, string) {
		return extest.TableEquals(app.WebAddr(), "order_count", truth)
	})
	if code, _, _ := extest.TableValue(app.WebAddr(), "order_count", "no-such-account"); code != 404 {
		t.Errorf("an account without orders: HTTP %d, want 404", code)
	}

	want := fmt.Sprintf("curl -s http://%s/tables/order_count/a1", app.WebAddr())
	proctest.WaitForT(t, extest.Timeout, "the guide", func() (bool, string) {
		return strings.Contains(guideOut.String(), want), "guide so far: " + guideOut.String()
	})
}

var countsRE = regexp.MustCompile(`msg=counts a1=(\d+) a2=(\d+) a3=(\d+) a4=(\d+) a5=(\d+)`)

// TestGenerator checks that ORDERS_RATE starts a generator whose logged
// counts, read back over HTTP, move.
func TestGenerator(t *testing.T) {
	t.Setenv(rateEnv, "50")
	b := extest.StartBroker(t)
	logs := &proctest.Buffer{}
	app := newApp(append(extest.Options(t, b.Addr()), mephisto.WithLogger(proctest.Logger(t, logs)))...)
	extest.RunApp(t, app)
	proctest.WaitForT(t, extest.Timeout, "two counts lines, the total growing", func() (bool, string) {
		var totals []int
		for _, m := range countsRE.FindAllStringSubmatch(logs.String(), -1) {
			sum := 0
			for _, s := range m[1:] {
				n, _ := strconv.Atoi(s)
				sum += n
			}
			totals = append(totals, sum)
		}
		for i := 1; i < len(totals); i++ {
			if totals[i-1] > 0 && totals[i] > totals[i-1] {
				return true, ""
			}
		}
		return false, fmt.Sprintf("total orders logged so far: %v", totals)
	})
}

// TestBinary builds the example and drives it as a user would: its
// commands, a worker process, `send`, HTTP, and SIGTERM.
func TestBinary(t *testing.T) {
	bin := extest.Build(t, "orders")

	extest.CheckCommands(t, bin, []string{"orders-by-account", "count-orders"}, []string{"order_count"})

	b := extest.StartBroker(t)
	w, web := extest.StartWorker(t, bin, b.Addr(), []string{rateEnv + "="})

	for i, acct := range []string{"a1", "a2", "a1"} {
		key := fmt.Sprintf("o%d", i+1)
		value := fmt.Sprintf(`{"account_id":%q,"product_id":"p1","amount":2,"price":9.5}`, acct)
		r := extest.Exec(t, bin, nil, "send", "orders", value, "--key", key, "--brokers", b.Addr())
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sent to orders partition ") {
			t.Fatalf("send orders %s --key %s: exit %d\n%s%s", value, key, r.Code, r.Stdout, r.Stderr)
		}
	}
	r := extest.Exec(t, bin, nil, "send", "orders", "not json", "--key", "o4", "--brokers", b.Addr())
	if r.Code != 2 {
		t.Errorf("send orders 'not json': exit %d, want 2\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	proctest.WaitForT(t, extest.Timeout, "order_count equals the truth", func() (bool, string) {
		return extest.TableEquals(web, "order_count", map[string]int64{"a1": 2, "a2": 1})
	})
	guide := fmt.Sprintf("curl -s http://%s/tables/order_count/a1", web)
	proctest.WaitForT(t, extest.Timeout, "the guide on stderr", func() (bool, string) {
		return strings.Contains(w.Stderr(), guide), "no " + guide
	})
	if !strings.Contains(w.Stderr(), bin+" send orders '{") || !strings.Contains(w.Stderr(), "--key o1 --brokers "+b.Addr()) {
		t.Errorf("the guide does not show how to send an order with this binary and broker")
	}

	w.StopT(t, extest.Timeout)
}
