package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mephistohq/mephisto/window"
)

// ErrPoison marks a record that can never succeed (it cannot be decoded,
// or what it produces cannot be written): its error policy applies at once
// instead of after the retries.
var ErrPoison = errors.New("poison record")

// ErrTooLarge is returned by a send or table write whose record would be
// over the producer's size limit (Config.MaxRecordBytes). It wraps
// ErrPoison: retrying cannot make the record fit.
var ErrTooLarge = fmt.Errorf("%w: record over the producer's size limit", ErrPoison)

// ErrPartitionStopped is returned for records delivered to a partition
// whose error policy stopped it. Test for it with errors.Is.
var ErrPartitionStopped = errors.New("partition stopped by its agent's error policy")

// ErrDeferred is returned by a commit that cannot happen yet (a batch is
// still filling): the records stay and the commit is tried again later.
var ErrDeferred = errors.New("commit deferred")

// Policy decides what happens to a record that cannot be decoded or whose
// handler keeps failing.
type Policy int

const (
	// DeadLetter copies the record to the agent's dead-letter topic and
	// goes on.
	DeadLetter Policy = iota
	// Skip counts the record and goes on.
	Skip
	// Stop stops the partition.
	Stop
)

// String returns the policy's name as used in flags and output.
func (p Policy) String() string {
	switch p {
	case DeadLetter:
		return "dead-letter"
	case Skip:
		return "skip"
	case Stop:
		return "stop"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Agent is what a partition knows of an agent: its input and how to run
// and fail it. The typed API builds one per declared agent.
type Agent struct {
	Name            string
	Topic           string
	Policy          Policy
	DeadLetterTopic string // for DeadLetter
	// Concurrency is how many handlers of the agent may run at once on
	// one partition (≤ 1: one, on the partition's own turn). Handlers that
	// run concurrently may read tables but not write them.
	Concurrency int
	// Batch is set for agents that take batches.
	Batch *Batch
	// Replies is set for agents whose handler returns a result (SetReply).
	Replies bool
	// Run decodes ev's record and calls the handler. An error wrapping
	// ErrPoison applies the error policy at once.
	Run func(ev *Event) error
}

// Batch is how a batch agent takes its records: Run adds each record's
// item to the batch (Event.AddToBatch), and Flush gets the batch when it
// holds N items or Within has passed since its first.
type Batch struct {
	N      int
	Within time.Duration
	Flush  func(ev *Event, items []any) error
}

// Table is what a partition knows of a table.
type Table struct {
	Name      string
	Changelog string // the compacted topic that holds every write
	Index     int    // position in the app's table list, and of its shard in Event.Shard
	// KeyCodec and ValueCodec name the codecs (for listings).
	KeyCodec, ValueCodec string
	// KeyText parses a key given as text (an HTTP path) into its encoding.
	KeyText func(string) ([]byte, error)
	// ValueJSON renders an encoded value as JSON.
	ValueJSON func([]byte) (json.RawMessage, error)
	// OnChange, if set, is told of each change applied to a copy of the
	// table on this node (value nil: the key was deleted): by the grain
	// once a commit's Pebble batch holds it, by a standby's or a global
	// copy's tailer once its batch does. Not during a shard's recovery. An
	// error (a change it cannot decode) is logged.
	OnChange func(partition int32, key, value []byte) error
	// Window is set for a windowed table: its rows are keyed by
	// window.Key, and the partition keeps its stream time and window
	// index (see Windows).
	Window *window.Spec
	// OnClose, if set, is called once per key and window of a windowed
	// table when the window closes (key is the row's window key), in the
	// partition's turn with an Event whose sends go out with the event
	// that closed it. An error fails the partition, which retries the
	// close after a restart; it never counts against a record.
	OnClose func(ev *Event, key []byte, r window.Range) error
	// CloseOnWallClock also closes (and expires) a windowed table's
	// windows when the app's clock passes them, at the commit interval's
	// tick, so that a partition without events still closes its windows.
	CloseOnWallClock bool
}
