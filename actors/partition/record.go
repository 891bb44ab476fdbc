// Package partition is what one partition of a Mephisto app does, without
// doing any I/O: it runs the agents' handlers on the partition's records,
// keeps their table writes and sends as effects of each event, applies the
// error policies, and decides what a commit must write. The grain
// (package actors) and the test driver execute its decisions against
// Kafka and Pebble, or in memory.
//
// It imports no Kafka client, no Pebble, no actor system and no network
// code, so every rule can be traced step by step in a test.
package partition

import (
	"fmt"
	"time"
)

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record of one of the partition's input topics.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64 // -1 for a message sent straight to the grain's PID
	Timestamp time.Time
	Key       []byte // nil for a null key
	Value     []byte // nil for a null value
	Headers   []Header
}

// Header returns the value of the first header named key ("" if none).
func (r *Record) Header(key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Output is a record to produce.
type Output struct {
	Topic     string
	Partition int32
	Key       []byte // nil for a null key
	Value     []byte // nil for a tombstone
	Headers   []Header
	// Timestamp is the record's event time: a handler's sends carry
	// their input record's, as Kafka Streams' forwards do, so that a
	// windowed table downstream of a group-by counts the event's time,
	// not the hop's. Zero lets the producer stamp it (changelogs).
	Timestamp time.Time
	// From is the input record whose handler (of agent Agent) produced
	// the output, so that a failure to produce it can be laid at that
	// record's door; nil for changelog records and direct messages.
	From  *Record
	Agent int
}

// Size estimates the bytes the output takes in a produce request, as a
// producer counts them against its limit (a record's framing is a few
// dozen bytes at most).
func (o *Output) Size() int {
	n := len(o.Topic) + len(o.Key) + len(o.Value) + recordOverhead
	for _, h := range o.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// recordOverhead bounds a record's framing in a produce request.
const recordOverhead = 128

// ProduceError is an output the driver could not produce. Permanent says
// that trying again cannot help (the record is too large or invalid for
// the broker): the input record it came from then gets its agent's error
// policy, as a record that cannot be decoded does.
type ProduceError struct {
	Output    Output
	Err       error
	Permanent bool
}

func (e *ProduceError) Error() string {
	return fmt.Sprintf("produce to %s/%d: %v", e.Output.Topic, e.Output.Partition, e.Err)
}

func (e *ProduceError) Unwrap() error { return e.Err }

// Router picks the partition of a record for topic: by key (Kafka's
// murmur2) when keyed and the key is not nil, else fallback modulo the
// topic's partition count. It fails for a topic it cannot find.
type Router func(topic string, key []byte, keyed bool, fallback int32) (int32, error)

// Record headers of requests through Kafka (Ask) and of their replies, and
// of dead letters.
const (
	HeaderReplyTo       = "mephisto.reply-to"       // "<topic>" or "<topic>:<partition>"
	HeaderCorrelationID = "mephisto.correlation-id" // matches a reply to its request
	HeaderError         = "mephisto.error"          // set on a reply when the handler failed, and on a dead letter
	HeaderAgent         = "mephisto.agent"          // dead letters: the agent that gave up
	HeaderTopic         = "mephisto.topic"          // dead letters: the source topic
	HeaderPartition     = "mephisto.partition"      // dead letters: the source partition
	HeaderOffset        = "mephisto.offset"         // dead letters: the source offset
	HeaderDropped       = "mephisto.dropped"        // dead letters: what could not be kept of the record
)
