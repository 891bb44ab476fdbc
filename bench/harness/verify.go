package harness

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// Checking a peer's result: the harness reads what the peer left in Kafka
// (a table's changelog, or an output topic) with its own sarama client and
// compares it with what the input implies. At-least-once allows more
// (a replay counts some events twice), never less.

// countEncoding is how a changelog encodes a count.
type countEncoding int

const (
	// int64BE: 8 bytes, big-endian (Kafka's LongSerializer, and
	// Mephisto's codec.Int64).
	int64BE countEncoding = iota
	// decimalText: a decimal integer as text (Faust's JSON values).
	decimalText
)

// decodeCount decodes one changelog value.
func decodeCount(enc countEncoding, v []byte) (int64, error) {
	if v == nil {
		return 0, errors.New("a tombstone (null value)")
	}
	switch enc {
	case int64BE:
		if len(v) != 8 {
			return 0, fmt.Errorf("%d bytes, want 8", len(v))
		}
		var n int64
		for _, b := range v {
			n = n<<8 | int64(b)
		}
		return n, nil
	case decimalText:
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a decimal integer", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("unknown encoding %d", enc)
}

// lastCounts folds changelog records into each key's last count.
type lastCounts struct {
	enc  countEncoding
	last map[string]int64
	err  error // the first undecodable record
}

func newLastCounts(enc countEncoding) *lastCounts {
	return &lastCounts{enc: enc, last: map[string]int64{}}
}

func (c *lastCounts) add(key, value []byte) {
	n, err := decodeCount(c.enc, value)
	if err != nil {
		if c.err == nil {
			c.err = fmt.Errorf("changelog value of key %q: %w", key, err)
		}
		return
	}
	c.last[string(key)] = n
}

// verifyCounts checks a count table (each key's last count) against n
// events over keys keys (keyOf, expectedCount): every key present with at
// least its count, no other key, the counts summing to at least n. It
// returns how many counts the table holds beyond n (at-least-once replays).
func verifyCounts(last map[string]int64, n, keys int) (extra int64, err error) {
	used := min(keys, n)
	var sum int64
	for j := range used {
		k := string(keyOf(j, keys))
		got, ok := last[k]
		if want := expectedCount(j, n, keys); !ok || got < want {
			return 0, fmt.Errorf("counts[%s] = %d (found %v), want %d: the table lost updates", k, got, ok, want)
		}
		sum += got
	}
	if len(last) != used {
		return 0, fmt.Errorf("the table holds %d keys, want %d", len(last), used)
	}
	return sum - int64(n), nil
}

// verifyWords checks a word-count table against the true count of every
// word; it returns the counts beyond the truth.
func verifyWords(last map[string]int64, truth map[string]int64) (extra int64, err error) {
	for w, want := range truth {
		got, ok := last[w]
		if !ok || got < want {
			return 0, fmt.Errorf("word_counts[%s] = %d (found %v), want %d: the table lost updates", w, got, ok, want)
		}
		extra += got - want
	}
	if len(last) != len(truth) {
		return 0, fmt.Errorf("the table holds %d words, want %d", len(last), len(truth))
	}
	return extra, nil
}

// passOutput checks a pass-through's output topic: every record's value
// upper-cased, every input key there as often as in the input.
type passOutput struct {
	records int64
	lower   int64 // values holding a lower-case letter
	perKey  map[string]int64
}

func newPassOutput() *passOutput { return &passOutput{perKey: map[string]int64{}} }

func (o *passOutput) add(key, value []byte) {
	o.records++
	o.perKey[string(key)]++
	for _, c := range value {
		if 'a' <= c && c <= 'z' {
			o.lower++
			break
		}
	}
}

// verify checks the output of n events over keys keys; it returns the
// records beyond n.
func (o *passOutput) verify(n, keys, valueSize int) (extra int64, err error) {
	if o.records < int64(n) {
		return 0, fmt.Errorf("the output holds %d records, want at least %d", o.records, n)
	}
	if o.lower > 0 {
		return 0, fmt.Errorf("%d output values are not upper-cased", o.lower)
	}
	used := min(keys, n)
	for j := range used {
		k := string(keyOf(j, keys))
		if got, want := o.perKey[k], expectedCount(j, n, keys); got < want {
			return 0, fmt.Errorf("the output holds %d records of key %s, want %d", got, k, want)
		}
	}
	if len(o.perKey) != used {
		return 0, fmt.Errorf("the output holds %d keys, want %d", len(o.perKey), used)
	}
	return o.records - int64(n), nil
}

// readTopic reads every partition of topic from its oldest offset to its
// high watermark now and calls fn with each record (one partition after
// the other).
func (k *kclient) readTopic(topic string, fn func(key, value []byte)) error {
	return k.readTopicP(topic, func(_ int32, key, value []byte) { fn(key, value) })
}

// readTopicP is readTopic, fn also given each record's partition.
func (k *kclient) readTopicP(topic string, fn func(p int32, key, value []byte)) error {
	hwm, err := k.highWatermarks(topic)
	if err != nil {
		return err
	}
	c, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		return err
	}
	defer c.Close()
	for p, end := range hwm {
		oldest, err := k.client.GetOffset(topic, int32(p), sarama.OffsetOldest)
		if err != nil {
			return err
		}
		if oldest >= end {
			continue
		}
		pc, err := c.ConsumePartition(topic, int32(p), sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
		err = func() error {
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					fn(m.Partition, m.Key, m.Value)
					if m.Offset >= end-1 {
						return nil
					}
				case e := <-pc.Errors():
					return fmt.Errorf("read %s/%d: %w", topic, p, e)
				case <-time.After(30 * time.Second):
					return fmt.Errorf("read %s/%d: nothing for 30s before offset %d", topic, p, end)
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// readCounts reads a count table's changelog into each key's last count.
func (k *kclient) readCounts(topic string, enc countEncoding) (map[string]int64, error) {
	c := newLastCounts(enc)
	if err := k.readTopic(topic, c.add); err != nil {
		return nil, err
	}
	return c.last, c.err
}
