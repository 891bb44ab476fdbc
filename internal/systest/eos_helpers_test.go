package systest

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
)

// What the exactly-once tests need on top of the harness: reads at either
// isolation level that stop at the last record a consumer is given (a
// transactional log ends with a marker, which no consumer is given), the
// changelog as committed transactions left it, and the worker's log lines.

// eosGuarantee is the environment that runs a worker exactly-once.
const eosGuarantee = "MEPHISTO_PROCESSING_GUARANTEE=exactly_once"

// eosWorker starts a worker under exactly-once with the extra environment
// and flags.
func (e *env) eosWorker(name, dataDir string, extraEnv []string, extra ...string) *workerProc {
	e.t.Helper()
	return e.startWorker(name, dataDir, append([]string{eosGuarantee}, extraEnv...), extra...)
}

// clRecord is one record of a changelog (a table row's value at offset).
type clRecord struct {
	offset int64
	key    string
	value  int64
}

// scanAt reads every partition of topic from from(p, oldest) to the end a
// consumer at isolation level iso sees (read committed: the last stable
// offset, before which every transaction is decided) and calls f on each
// record it is given. It returns, per partition, the log start and the
// offset after the last record given (kafka.DataEnd: markers and, read
// committed, aborted records are not given).
func scanAt(t testing.TB, addr, topic string, iso sarama.IsolationLevel, from func(p int32, oldest int64) int64,
	f func(p int32, m *sarama.ConsumerMessage) error) (starts, ends [partitions]int64) {
	t.Helper()
	cfg := kafka.ConsumerConfig("systest-eos-reader")
	cfg.Consumer.IsolationLevel = iso
	client, err := sarama.NewClient(addrs(addr), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for p := int32(0); p < partitions; p++ {
		oldest, end, err := kafka.Bounds(client, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		start := max(from(p, oldest), oldest)
		if end, err = kafka.DataEnd(client, topic, p, start, end); err != nil {
			t.Fatal(err)
		}
		starts[p], ends[p] = oldest, end
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = kafka.ReadRange(ctx, consumer, topic, p, start, end, func(m *sarama.ConsumerMessage) error { return f(p, m) })
		cancel()
		if err != nil {
			t.Fatalf("read %s/%d (isolation %d) from %d to %d: %v", topic, p, iso, start, end, err)
		}
	}
	return starts, ends
}

// readChangelog returns the records of a counts-like changelog (int64
// values, no tombstones) a consumer at isolation level iso is given, per
// partition, from the log start.
func readChangelog(t testing.TB, addr, topic string, iso sarama.IsolationLevel) [partitions][]clRecord {
	t.Helper()
	var out [partitions][]clRecord
	scanAt(t, addr, topic, iso, fromOldest, func(p int32, m *sarama.ConsumerMessage) error {
		if m.Value == nil {
			return fmt.Errorf("unexpected tombstone for %q at %d", m.Key, m.Offset)
		}
		n, err := codec.Int64().Decode(m.Value)
		if err != nil {
			return err
		}
		out[p] = append(out[p], clRecord{offset: m.Offset, key: string(m.Key), value: n})
		return nil
	})
	return out
}

// latest returns the last value per key of recs whose offset is in
// [lo, hi].
func latest(recs []clRecord, lo, hi int64) map[string]int64 {
	out := map[string]int64{}
	for _, r := range recs {
		if r.offset >= lo && r.offset <= hi {
			out[r.key] = r.value
		}
	}
	return out
}

// after returns the records of recs beyond offset off.
func after(recs []clRecord, off int64) []clRecord {
	var out []clRecord
	for _, r := range recs {
		if r.offset > off {
			out = append(out, r)
		}
	}
	return out
}

// rowsOf returns the rows of d that belong to partition p.
func rowsOf(d diskState, p int) map[string]int64 {
	out := map[string]int64{}
	for k, v := range d.rows {
		if int(kafka.Partition([]byte(k), partitions)) == p {
			out[k] = v
		}
	}
	return out
}

// diffRows describes how two row sets differ ("" if equal), naming got and
// want as the caller says.
func diffRows(got, want map[string]int64) string {
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var d []string
	for k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case gok && !wok:
			d = append(d, fmt.Sprintf("%s=%d (want none)", k, g))
		case !gok && wok:
			d = append(d, fmt.Sprintf("%s missing (want %d)", k, w))
		case g != w:
			d = append(d, fmt.Sprintf("%s=%d want %d", k, g, w))
		}
	}
	sort.Strings(d)
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("… (%d keys differ)", len(d)))
	}
	return strings.Join(d, ", ")
}

// checkPebbleIsCommitted checks that Pebble holds only what committed
// transactions wrote: each partition's stored changelog offset is the
// offset of a committed changelog record (or none), and its rows are
// exactly the last committed value per key up to that offset.
func checkPebbleIsCommitted(t testing.TB, d diskState, committed [partitions][]clRecord) {
	t.Helper()
	for p := range partitions {
		chg := d.parts[p].chg
		if chg >= 0 {
			found := false
			for _, r := range committed[p] {
				if r.offset == chg {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("partition %d: Pebble's changelog offset %d is not the offset of a record of a committed transaction", p, chg)
			}
		}
		if dr := diffRows(rowsOf(d, p), latest(committed[p], 0, chg)); dr != "" {
			t.Errorf("partition %d: Pebble's rows are not the committed changelog up to its offset %d: %s", p, chg, dr)
		}
	}
}

// countBelow counts the records of sent per key whose offset in their
// partition is below next[partition], and returns the counts of each
// partition.
func countBelow(sent []*record, next [partitions]int64) [partitions]map[string]int64 {
	var out [partitions]map[string]int64
	for p := range out {
		out[p] = map[string]int64{}
	}
	for _, r := range sent {
		if r.offset < next[r.partition] {
			out[r.partition][r.key]++
		}
	}
	return out
}

// checkKafkaConsistent checks the transactions' invariant in Kafka itself:
// for every partition, the committed changelog's last value per key counts
// exactly the input records below the group's committed offset, which the
// same transactions committed.
func checkKafkaConsistent(t testing.TB, committed [partitions][]clRecord, group [partitions]int64, sent []*record) {
	t.Helper()
	want := countBelow(sent, group)
	for p := range partitions {
		if dr := diffRows(latest(committed[p], 0, 1<<62), want[p]); dr != "" {
			t.Errorf("partition %d: the committed changelog disagrees with the input below the group's committed offset %d: %s", p, group[p], dr)
		}
	}
}

// checkCommittedNotBehind checks that the group's committed offsets are
// never behind what Pebble holds (exactly-once: the transaction commits
// the offsets, and Pebble is written after it) and returns them.
func checkCommittedNotBehind(t testing.TB, addr, group, topic string, d diskState) [partitions]int64 {
	t.Helper()
	c := committedOffsets(t, addr, group, topic)
	for p := range partitions {
		if c[p] < d.parts[p].src+1 {
			t.Errorf("partition %d: committed offset %d in Kafka is behind Pebble's source offset %d: Pebble holds what no transaction committed",
				p, c[p], d.parts[p].src)
		}
	}
	t.Logf("committed offsets of %s in Kafka: %v", topic, c)
	return c
}

// countCommitted counts the records of topic per key that a read_committed
// consumer is given.
func countCommitted(t testing.TB, addr, topic string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	scanAt(t, addr, topic, sarama.ReadCommitted, fromOldest, func(_ int32, m *sarama.ConsumerMessage) error {
		out[string(m.Key)]++
		return nil
	})
	return out
}

// countUncommitted is countCommitted read_uncommitted: aborted
// transactions' records included.
func countUncommitted(t testing.TB, addr, topic string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	scanAt(t, addr, topic, sarama.ReadUncommitted, fromOldest, func(_ int32, m *sarama.ConsumerMessage) error {
		out[string(m.Key)]++
		return nil
	})
	return out
}

// waitCaughtUpEOS waits until the group has committed every record of
// topics a read_committed consumer is given (the harness's waitCaughtUp
// compares with the high watermark, which a transactional topic's last
// marker keeps one past the last record). List upstream topics first: an
// upstream topic committed in full committed its outputs with it, in the
// same transactions.
func waitCaughtUpEOS(t testing.TB, addr, group string, topics ...string) {
	t.Helper()
	waitFor(t, 90*time.Second, fmt.Sprintf("group caught up on %v (read committed)", topics), func() (bool, string) {
		for _, topic := range topics {
			c := committedOffsets(t, addr, group, topic)
			_, end := scanEnds(t, addr, topic)
			for p := range partitions {
				if end[p] > 0 && c[p] != end[p] {
					return false, fmt.Sprintf("%s: committed %v, last record given + 1 %v", topic, c, end)
				}
			}
		}
		return true, ""
	})
}

// scanEnds returns each partition's log start and the offset after its
// last record a read_committed consumer is given, without reading them.
func scanEnds(t testing.TB, addr, topic string) (starts, ends [partitions]int64) {
	t.Helper()
	cfg := kafka.ConsumerConfig("systest-eos-ends")
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(addrs(addr), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for p := int32(0); p < partitions; p++ {
		oldest, end, err := kafka.Bounds(client, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		if end, err = kafka.DataEnd(client, topic, p, oldest, end); err != nil {
			t.Fatal(err)
		}
		starts[p], ends[p] = oldest, end
	}
	return starts, ends
}

// logRecord is one line of a worker's text log: its message and
// attributes.
type logRecord struct {
	msg   string
	attrs map[string]string
}

var logAttr = regexp.MustCompile(`([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logLines returns the worker log's lines whose message is msg.
func logLines(log, msg string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		r := logRecord{attrs: map[string]string{}}
		for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			r.attrs[m[1]] = v
		}
		r.msg = r.attrs["msg"]
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// checkReplays checks what worker log says it replayed of table's shards
// at its start: exactly the committed changelog records beyond Pebble's
// offsets in d, partition by partition (a partition with none replays
// nothing: an aborted transaction's records are never replayed), and never
// a wipe.
func checkReplays(t testing.TB, log, table string, d diskState, committed [partitions][]clRecord) {
	t.Helper()
	if strings.Contains(log, "wiping the shard") {
		t.Errorf("the restarted worker wiped a shard: %s", grepLines(log, "wiping the shard"))
	}
	var got [partitions][]logRecord
	for _, r := range logLines(log, "recovering table shard from changelog") {
		if r.attrs["table"] != table {
			continue
		}
		p, err := strconv.Atoi(r.attrs["partition"])
		if err != nil || p < 0 || p >= partitions {
			t.Errorf("recovery line with partition %q", r.attrs["partition"])
			continue
		}
		got[p] = append(got[p], r)
	}
	for p := range partitions {
		tail := after(committed[p], d.parts[p].chg)
		if len(tail) == 0 {
			if len(got[p]) > 0 {
				t.Errorf("partition %d: the restarted worker replayed %s's changelog %v, but no committed record is beyond Pebble's offset %d",
					p, table, got[p][0].attrs, d.parts[p].chg)
			}
			continue
		}
		from, to := strconv.FormatInt(d.parts[p].chg+1, 10), strconv.FormatInt(tail[len(tail)-1].offset+1, 10)
		if len(got[p]) == 0 {
			t.Errorf("partition %d: the restarted worker's log does not say it replayed %s's changelog from %s to %s (%d committed records beyond Pebble)",
				p, table, from, to, len(tail))
			continue
		}
		// The first line is the start's; a grain restarted later replays
		// again from where its store then is.
		if a := got[p][0].attrs; a["from"] != from || a["to"] != to {
			t.Errorf("partition %d: the restarted worker replayed %s's changelog from %s to %s, want from %s to %s (the committed tail beyond Pebble)",
				p, table, a["from"], a["to"], from, to)
		}
	}
}

// grepLines returns the lines of log that contain s.
func grepLines(log, s string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// waitDecided waits until no transaction is open on any partition of
// topic: its last stable offset has reached its high watermark. A killed
// worker's open transactions stay open until the broker times them out
// (--transaction-timeout) or a successor fences them, and a read committed
// consumer is given nothing beyond the first of them — not even records
// of other transactions committed since.
func waitDecided(t testing.TB, addr, topic string) {
	t.Helper()
	plain, err := sarama.NewClient(addrs(addr), kafka.ConsumerConfig("systest-eos-hwm"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	cfg := kafka.ConsumerConfig("systest-eos-lso")
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	committed, err := sarama.NewClient(addrs(addr), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer committed.Close()
	waitFor(t, 60*time.Second, "every transaction on "+topic+" decided", func() (bool, string) {
		for p := int32(0); p < partitions; p++ {
			_, hwm, err := kafka.Bounds(plain, topic, p)
			if err != nil {
				return false, err.Error()
			}
			_, lso, err := kafka.Bounds(committed, topic, p)
			if err != nil {
				return false, err.Error()
			}
			if lso < hwm {
				return false, fmt.Sprintf("%s/%d: last stable offset %d, high watermark %d", topic, p, lso, hwm)
			}
		}
		return true, ""
	})
}
