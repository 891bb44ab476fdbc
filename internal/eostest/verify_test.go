package eostest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// The verifier: it reads the input and every output topic read
// committed, to its end, and checks each record against what an exact run
// of the input produces.

// rec is one record read from a topic.
type rec struct {
	partition  int32
	offset     int64
	key, value string
}

func (r rec) at(topic string) string { return fmt.Sprintf("%s/%d@%d", topic, r.partition, r.offset) }

// readTimeout bounds the read of one partition.
const readTimeout = time.Minute

// read returns every record of topic a read-committed consumer is given,
// partition by partition, each in offset order.
func (c *cluster) read(topic string) ([]rec, error) {
	client, _ := c.kafka()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	var out []rec
	for p := range int32(numPartitions) {
		oldest, end, err := kafka.Bounds(client, topic, p)
		if err != nil {
			return nil, err
		}
		if end, err = kafka.DataEnd(client, topic, p, oldest, end); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		err = kafka.ReadRange(ctx, consumer, topic, p, oldest, end, func(m *sarama.ConsumerMessage) error {
			out = append(out, rec{partition: m.Partition, offset: m.Offset, key: string(m.Key), value: string(m.Value)})
			return nil
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read %s/%d [%d, %d): %w", topic, p, oldest, end, err)
		}
	}
	return out, nil
}

// input is one record of the input topic.
type input struct {
	rec
	seq, n int64 // its sequence number and the number it carries
}

// findings are what one check found wrong, counted, with the first few
// described.
type findings struct {
	n     int
	first []string
}

func (f *findings) add(format string, args ...any) {
	f.n++
	if len(f.first) < 5 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f findings) String() string {
	if f.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, first: %s", f.n, strings.Join(f.first, "; "))
}

// verdict is what the verifier found.
type verdict struct {
	inputs  int
	keys    int
	perKey  map[string][]Aggregate // the exact run's aggregates of every key, in order
	final   map[string]Aggregate   // every key's last one
	missing findings               // records the driver had acknowledged that the input lacks
	badIn   findings               // input records that are not the driver's

	echoes     int
	echoLost   findings // inputs without an echo
	echoDup    findings // echoes beyond the first of an input
	echoBad    findings // echoes of no input, or not equal to their input
	aggregates int
	aggWrong   findings // keys whose aggregates are not exactly the exact run's sequence
	aggLost    findings // aggregates of the exact run missing from the topic
	aggDup     findings // aggregates of the exact run the topic holds more than once
	aggOff     findings // aggregates the exact run never produces
	changelog  int
	clOff      findings // changelog values the exact run's sequence does not hold
	clBack     findings // changelog values that go back in a key's sequence
	clLast     findings // keys whose changelog does not end at the exact run's final aggregate
}

// verify reads the topics and checks them; d is the stopped driver.
func (c *cluster) verify(d *driver) verdict {
	c.t.Helper()
	v := verdict{perKey: map[string][]Aggregate{}, final: map[string]Aggregate{}}
	ins, err := c.read(c.input)
	if err != nil {
		c.t.Fatalf("read the input: %v", err)
	}
	bySeq := map[int64]input{}
	var order []input // the good ones, as read
	for _, r := range ins {
		seq, n, err := ParseInput(r.value)
		switch {
		case err != nil:
			v.badIn.add("%s: %v", r.at(c.input), err)
			continue
		case n != ValueOf(seq) || kafka.Partition([]byte(r.key), numPartitions) != r.partition:
			v.badIn.add("%s: %s=%s is not the driver's record", r.at(c.input), r.key, r.value)
			continue
		}
		if prev, dup := bySeq[seq]; dup {
			v.badIn.add("%s: input %d again, first at %s", r.at(c.input), seq, prev.at(c.input))
			continue
		}
		in := input{rec: r, seq: seq, n: n}
		bySeq[seq] = in
		order = append(order, in)
		// Records are read partition by partition in offset order, and a
		// key lives on one partition: this is the key's input order.
		agg := v.final[r.key].Add(seq, n)
		v.perKey[r.key] = append(v.perKey[r.key], agg)
		v.final[r.key] = agg
	}
	v.inputs, v.keys = len(bySeq), len(v.perKey)
	for seq := range d.sent.Load() {
		if _, ok := bySeq[seq]; !ok && !d.failed[seq] {
			v.missing.add("input %d", seq)
		}
	}

	echoes, err := c.read(c.echo)
	if err != nil {
		c.t.Fatalf("read the echoes: %v", err)
	}
	v.echoes = len(echoes)
	seen := map[int64]rec{}
	for _, r := range echoes {
		seq, _, err := ParseInput(r.value)
		in, ok := bySeq[seq]
		switch {
		case err != nil:
			v.echoBad.add("%s: %v", r.at(c.echo), err)
			continue
		case !ok || in.key != r.key || in.rec.value != r.value:
			v.echoBad.add("%s: %s=%s echoes no input", r.at(c.echo), r.key, r.value)
			continue
		}
		if first, dup := seen[seq]; dup {
			v.echoDup.add("input %d (%s) echoed at %s and %s", seq, in.at(c.input), first.at(c.echo), r.at(c.echo))
			continue
		}
		seen[seq] = r
	}
	for _, in := range order {
		if _, ok := seen[in.seq]; !ok {
			v.echoLost.add("input %s=%s at %s", in.key, in.rec.value, in.at(c.input))
		}
	}

	aggs, err := c.read(c.aggregates)
	if err != nil {
		c.t.Fatalf("read the aggregates: %v", err)
	}
	v.aggregates = len(aggs)
	got := map[string][]rec{}
	for _, r := range aggs {
		got[r.key] = append(got[r.key], r)
	}
	for _, k := range slices.Sorted(mapsKeys(got, v.perKey)) {
		want, recs := v.perKey[k], got[k]
		count := make([]int, len(want)) // how often each of the exact run's aggregates is on the topic
		wrong := ""
		for i, r := range recs {
			var a Aggregate
			if err := json.Unmarshal([]byte(r.value), &a); err != nil {
				v.aggOff.add("%s: %s: %v", r.at(c.aggregates), k, err)
				wrong = fmt.Sprintf("%s: undecodable", r.at(c.aggregates))
				continue
			}
			if wrong == "" && (i >= len(want) || a != want[i]) {
				if i >= len(want) {
					wrong = fmt.Sprintf("record %d at %s is %v, past the key's %d inputs", i+1, r.at(c.aggregates), a, len(want))
				} else {
					wrong = fmt.Sprintf("record %d at %s is %v, want %v", i+1, r.at(c.aggregates), a, want[i])
				}
			}
			if j := a.Count - 1; j >= 0 && j < int64(len(want)) && want[j] == a {
				if count[j]++; count[j] == 2 {
					v.aggDup.add("%s's aggregate %d again at %s", k, j+1, r.at(c.aggregates))
				}
				continue
			}
			v.aggOff.add("%s at %s: %v is no aggregate of the key's inputs", k, r.at(c.aggregates), a)
		}
		if wrong == "" && len(recs) < len(want) {
			wrong = fmt.Sprintf("%d records, want %d", len(recs), len(want))
		}
		if wrong != "" {
			v.aggWrong.add("%s: %s", k, wrong)
		}
		for j, n := range count {
			if n == 0 {
				v.aggLost.add("%s's aggregate %d (%v)", k, j+1, want[j])
			}
		}
	}

	cl, err := c.read(c.changelog)
	if err != nil {
		c.t.Fatalf("read the changelog: %v", err)
	}
	v.changelog = len(cl)
	last := map[string]Aggregate{}
	for _, r := range cl {
		var a Aggregate
		if err := json.Unmarshal([]byte(r.value), &a); err != nil {
			v.clOff.add("%s: %s: %v", r.at(c.changelog), r.key, err)
			continue
		}
		want := v.perKey[r.key]
		if j := a.Count - 1; j < 0 || j >= int64(len(want)) || want[j] != a {
			v.clOff.add("%s: %s = %v is no aggregate of the key's inputs", r.at(c.changelog), r.key, a)
		}
		if prev, ok := last[r.key]; ok && a.Count <= prev.Count {
			v.clBack.add("%s: %s = %v after %v", r.at(c.changelog), r.key, a, prev)
		}
		last[r.key] = a
	}
	for _, k := range slices.Sorted(mapsKeys(last, v.final)) {
		if last[k] != v.final[k] {
			v.clLast.add("%s ends at %v, want %v", k, last[k], v.final[k])
		}
	}
	return v
}

// mapsKeys iterates the keys of a and of b, each once.
func mapsKeys[A, B any](a map[string]A, b map[string]B) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, dup := a[k]; dup {
				continue
			}
			if !yield(k) {
				return
			}
		}
	}
}

// readTable reads key of the aggregates table through node n: found is
// false on 404; any answer but 200 and 404 (503 while a partition moves)
// is an error.
func (n *node) readTable(key string) (a Aggregate, found bool, err error) {
	code, body, err := proctest.Get(n.web, "/tables/"+Table+"/"+key)
	if err != nil {
		return a, false, err
	}
	switch code {
	case http.StatusOK:
		var resp struct {
			Table string    `json:"table"`
			Key   string    `json:"key"`
			Value Aggregate `json:"value"`
			Stale bool      `json:"stale"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return a, false, fmt.Errorf("%s via %s: %v: %s", key, n.id, err, body)
		}
		if resp.Table != Table || resp.Key != key || resp.Stale {
			return a, false, fmt.Errorf("asked %s for %s/%s, got %s", n.id, Table, key, body)
		}
		return resp.Value, true, nil
	case http.StatusNotFound:
		return a, false, nil
	default:
		return a, false, fmt.Errorf("%s via %s: HTTP %d %s", key, n.id, code, strings.TrimSpace(string(body)))
	}
}

// tableCheck is what every node serves for every key, against the exact
// run's final aggregates.
type tableCheck struct {
	reads int
	wrong findings // served values that are not the final aggregate
	below findings // served values reflecting fewer inputs than the key had
}

// checkTables reads every key of final through every node.
func (c *cluster) checkTables(final map[string]Aggregate) (tableCheck, error) {
	var tc tableCheck
	for _, n := range c.nodes {
		for _, k := range slices.Sorted(mapsKeys(final, final)) {
			a, found, err := n.readTable(k)
			if err != nil {
				return tc, err
			}
			tc.reads++
			want := final[k]
			switch {
			case !found:
				tc.wrong.add("%s via %s: not found, want %v", k, n.id, want)
				tc.below.add("%s via %s: not found, want %v", k, n.id, want)
			case a != want:
				tc.wrong.add("%s via %s: %v, want %v", k, n.id, a, want)
				if a.Count < want.Count {
					tc.below.add("%s via %s: %v, want %v", k, n.id, a, want)
				}
			}
		}
	}
	return tc, nil
}
