package main

// Driver tests: newApp's topology run by mephistotest, with no broker —
// the group-by through the repartition topic, count-orders and its
// order_count table, the error policies and a crash, exactly.

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/mephistotest"
)

// repartition is the internal topic GroupBy declares: <app>-<name>-repartition.
const repartition = "orders-orders-by-account-repartition"

// driven is newApp on a test driver, with typed handles on its topics.
type driven struct {
	d         *mephistotest.Driver
	app       *mephisto.App
	orders    *mephisto.Topic[string, Order]
	byAccount *mephisto.Topic[string, Order]
}

// drive builds newApp and starts a driver on it. Declaring a topic again
// with the same codecs shares the app's declaration (a codec that
// disagreed would fail the driver's validation).
func drive(t *testing.T) driven {
	t.Helper()
	app := newApp()
	o := driven{app: app,
		orders:    mephisto.NewTopic(app, "orders", codec.String(), codec.JSON[Order]()),
		byAccount: mephisto.NewTopic(app, repartition, codec.String(), codec.JSON[Order]())}
	o.d = mephistotest.New(t, app)
	return o
}

// counts returns order_count as committed: what a node restoring it
// from its changelog loads. (newApp hands out no handle on the table, so
// the test reads it with mephistotest.TableRows instead of Get.)
func (o driven) counts(t *testing.T) map[string]int64 {
	t.Helper()
	return mephistotest.TableRows(o.d, "order_count", codec.String(), codec.Int64())
}

// partitionOf returns the partition of the last record of topic keyed key.
func (o driven) partitionOf(t *testing.T, topic, key string) int32 {
	t.Helper()
	rs := o.d.Raw(topic)
	for i := len(rs) - 1; i >= 0; i-- {
		if string(rs[i].Key) == key {
			return rs[i].Partition
		}
	}
	t.Fatalf("no record keyed %q in %s", key, topic)
	return -1
}

// TestDriverOrdersByAccount: orders keyed by order id land on many
// partitions; the group-by re-keys each by its account, unchanged, so
// that every order of one account is counted on one partition.
func TestDriverOrdersByAccount(t *testing.T) {
	o := drive(t)
	in := []struct {
		id string
		o  Order
	}{
		{"o1", Order{AccountID: "a1", ProductID: "p1", Amount: 2, Price: 9.5}},
		{"o2", Order{AccountID: "a2", ProductID: "p2", Amount: 1, Price: 20}},
		{"o3", Order{AccountID: "a1", ProductID: "p3", Amount: 5, Price: 1.25}},
		{"o4", Order{AccountID: "a3", ProductID: "p1", Amount: 1, Price: 9.5}},
		{"o5", Order{AccountID: "a1", ProductID: "p4", Amount: 3, Price: 99.99}},
		{"o6", Order{AccountID: "a2", ProductID: "p1", Amount: 4, Price: 9.5}},
	}
	for _, r := range in {
		mephistotest.Pipe(o.d, o.orders, r.id, r.o)
	}
	if got, want := o.counts(t), map[string]int64{"a1": 3, "a2": 2, "a3": 1}; !maps.Equal(got, want) {
		t.Errorf("order_count = %v, want %v", got, want)
	}

	a1 := map[int32]bool{}
	for _, r := range mephistotest.Records(o.d, o.orders) {
		if r.Value.AccountID == "a1" {
			a1[r.Partition] = true
		}
	}
	if len(a1) < 2 {
		t.Fatalf("a1's orders are all on partition %v: the test needs them spread", a1)
	}
	got := mephistotest.Records(o.d, o.byAccount)
	if len(got) != len(in) {
		t.Fatalf("%d records in %s, want %d", len(got), repartition, len(in))
	}
	part := map[string]int32{}
	for i, r := range got { // one source partition each here: production order is input order
		if r.Key != in[i].o.AccountID || r.Value != in[i].o {
			t.Errorf("%s[%d] = %s %+v, want %s %+v", repartition, i, r.Key, r.Value, in[i].o.AccountID, in[i].o)
		}
		if p, ok := part[r.Key]; ok && p != r.Partition {
			t.Errorf("account %s on partitions %d and %d: one account, one partition", r.Key, p, r.Partition)
		}
		part[r.Key] = r.Partition
	}
	if n := o.d.Metric("mephisto_events_in_total", "topic", repartition); n != float64(len(in)) {
		t.Errorf("events in from %s = %v, want %d", repartition, n, len(in))
	}
}

// TestDriverOrdersErrors: a record the group-by cannot decode goes to its
// dead letters at once (no retry); a count-orders that fails every
// attempt (3) dead-letters the re-keyed order. Either way the order is
// not counted, its coordinates are in the dead letter, and the next order
// of the account is.
func TestDriverOrdersErrors(t *testing.T) {
	good := Order{AccountID: "a1", ProductID: "p1", Amount: 2, Price: 9.5}
	goodJSON := `{"account_id":"a1","product_id":"p1","amount":2,"price":9.5}`
	for _, tc := range []struct {
		name       string
		inject     func(*mephistotest.Driver)
		value      string // piped to orders, keyed o1
		agent      string // whose dead letter it is
		topic, key string // the dead letter's source
		errPrefix  string
		restarts   float64
	}{
		{"not JSON", func(*mephistotest.Driver) {}, "not json", "orders-by-account", "orders", "o1",
			"poison record: agent orders-by-account: value: codec json: decode main.Order", 0},
		{"count-orders fails", func(d *mephistotest.Driver) { d.Fail("count-orders", 3, errors.New("boom")) }, goodJSON,
			"count-orders", repartition, "a1", "failed 3 times, last: boom", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := drive(t)
			tc.inject(o.d)
			o.d.PipeRaw("orders", []byte("o1"), []byte(tc.value))
			p := o.partitionOf(t, tc.topic, tc.key)
			dls := o.d.DeadLetters(tc.agent)
			if len(dls) != 1 {
				t.Fatalf("dead letters of %s = %+v, want one", tc.agent, dls)
			}
			dl := dls[0]
			want := map[string]string{"mephisto.agent": tc.agent, "mephisto.error": dl.Error, "mephisto.topic": tc.topic,
				"mephisto.partition": fmt.Sprint(p), "mephisto.offset": "0"}
			if string(dl.Key) != tc.key || string(dl.Value) != tc.value || !strings.HasPrefix(dl.Error, tc.errPrefix) ||
				dl.Topic != tc.topic || dl.Partition != p || dl.Offset != 0 || !maps.Equal(dl.Headers, want) {
				t.Errorf("dead letter %q=%q %+v, want %q=%q from %s/%d@0 with error %q…", dl.Key, dl.Value, dl.Headers,
					tc.key, tc.value, tc.topic, p, tc.errPrefix)
			}
			if n := o.d.Metric("mephisto_dead_letters_total", "agent", tc.agent); n != 1 {
				t.Errorf("dead letters of %s counted %v, want 1", tc.agent, n)
			}
			grain := fmt.Sprintf("partition/orders/%d", p)
			if n := o.d.Metric("mephisto_grain_restarts_total", "grain", grain); n != tc.restarts {
				t.Errorf("%s restarted %v times, want %v", grain, n, tc.restarts)
			}
			if got := o.counts(t); len(got) != 0 {
				t.Errorf("order_count = %v, want nothing counted", got)
			}

			mephistotest.Pipe(o.d, o.orders, "o2", good)
			if got, want := o.counts(t), map[string]int64{"a1": 1}; !maps.Equal(got, want) {
				t.Errorf("after the bad order: order_count = %v, want %v", got, want)
			}
		})
	}
}

// TestDriverOrdersCrash: a grain killed before it committed restarts from
// its last commit. Crashing count-orders' grain loses nothing and counts
// nothing twice (its writes are redone from the replayed records); but
// the group-by's re-keyed orders were produced before the crash, and its
// replay sends them again: crashing the orders' grain counts them twice
// (at least once).
func TestDriverOrdersCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		crash    string // the topic whose grain crashes
		replayed int
		a1       int64
	}{
		{"count-orders' grain", repartition, 0, 3},
		{"the group-by's grain", "orders", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := drive(t)
			// o1, o8 and o12 share a partition, which a1 does not.
			mephistotest.Pipe(o.d, o.orders, "o1", Order{AccountID: "a1", Amount: 1})
			o.d.HoldCommits(true)
			mephistotest.Pipe(o.d, o.orders, "o8", Order{AccountID: "a1", Amount: 2})
			mephistotest.Pipe(o.d, o.orders, "o12", Order{AccountID: "a1", Amount: 3})
			if got := o.counts(t); got["a1"] != 1 {
				t.Fatalf("a1 = %d with commits held, want the committed 1", got["a1"])
			}
			orderP, accountP := o.partitionOf(t, "orders", "o8"), o.partitionOf(t, repartition, "a1")
			if orderP == accountP || o.partitionOf(t, "orders", "o12") != orderP {
				t.Fatalf("o8 and o12 on %d and %d, a1 on %d: the test needs the orders together, apart from the account",
					orderP, o.partitionOf(t, "orders", "o12"), accountP)
			}
			p := accountP
			if tc.crash == "orders" {
				p = orderP
			}
			replayed := o.d.Crash(p)
			o.d.HoldCommits(false)
			if len(replayed) != tc.replayed {
				t.Errorf("the replay sent %d records, want %d", len(replayed), tc.replayed)
			}
			for _, r := range replayed {
				if r.Topic != repartition || string(r.Key) != "a1" {
					t.Errorf("the replay sent %s %q, want %s a1", r.Topic, r.Key, repartition)
				}
			}
			if got, want := o.counts(t), map[string]int64{"a1": tc.a1}; !maps.Equal(got, want) {
				t.Errorf("order_count = %v, want %v", got, want)
			}
		})
	}
}
