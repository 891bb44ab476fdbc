package eostest

import (
	"fmt"
	"strconv"
	"strings"
)

// What the test app and the driver agree on: the app's names, the input
// record's format and the aggregate the app keeps per key.

// The app's default name and its topics and table. On a broker the
// tests share, EnvAppName replaces AppName and EnvTopicPrefix goes in
// front of every topic's name.
const (
	AppName         = "eostest"
	InputTopic      = "data"
	EchoTopic       = "echo"
	AggregatesTopic = "aggregates"
	Table           = "aggs"

	EnvAppName     = "EOSTEST_APP_NAME"
	EnvTopicPrefix = "EOSTEST_TOPIC_PREFIX"
)

// FormatInput is the value of input record seq: "seq:value", with value
// ValueOf(seq). seq numbers the driver's records, 0, 1, 2, … over every
// key, so that each one can be told from every other in the outputs.
func FormatInput(seq int64) string {
	return strconv.FormatInt(seq, 10) + ":" + strconv.FormatInt(ValueOf(seq), 10)
}

// ParseInput parses an input (or echo) value: its sequence number and the
// number it carries.
func ParseInput(s string) (seq, value int64, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("input %q: want seq:value", s)
	}
	if seq, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("input %q: sequence number: %w", s, err)
	}
	if value, err = strconv.ParseInt(b, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("input %q: value: %w", s, err)
	}
	return seq, value, nil
}

// ValueOf is the number input seq carries: in [-1000, 1000], scrambled
// (splitmix64) so that a key's minimum and maximum move as its inputs
// arrive, and its sum goes up and down.
func ValueOf(seq int64) int64 {
	z := uint64(seq) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int64(z%2001) - 1000
}

// Aggregate is what the app keeps per key in table Table, and sends to
// AggregatesTopic after every input: the count, sum, minimum and maximum
// of the key's values so far, and the sequence number of the last input
// it reflects. The zero Aggregate is that of no input.
type Aggregate struct {
	Count int64 `json:"count"`
	Sum   int64 `json:"sum"`
	Min   int64 `json:"min"`
	Max   int64 `json:"max"`
	Last  int64 `json:"last"`
}

// Add returns a with input seq, carrying value, added.
func (a Aggregate) Add(seq, value int64) Aggregate {
	if a.Count == 0 || value < a.Min {
		a.Min = value
	}
	if a.Count == 0 || value > a.Max {
		a.Max = value
	}
	a.Count++
	a.Sum += value
	a.Last = seq
	return a
}

func (a Aggregate) String() string {
	return fmt.Sprintf("{count %d sum %d min %d max %d last %d}", a.Count, a.Sum, a.Min, a.Max, a.Last)
}
