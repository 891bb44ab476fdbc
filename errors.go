package mephisto

import (
	"errors"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/internal/node"
)

// The errors of Mephisto's API. Test for them with errors.Is: the errors
// returned wrap them with the details.
var (
	// ErrNotRunning: the operation needs a running worker (such as
	// Topic.Send outside a handler) and the app is not running.
	ErrNotRunning = errors.New("mephisto: app is not running")
	// ErrNotInAgent: a write (Set, Update, Delete) to a partitioned table
	// outside an agent's handler. A partitioned table is written only by
	// the grain of the event's partition; from a timer, a task or a page,
	// send a record to the topic of an agent that writes it, or use a
	// global table. (Reads work anywhere: see Table.)
	ErrNotInAgent = errors.New("mephisto: partitioned tables are written only in an agent's handler; " +
		"from elsewhere, send a record to the topic of the agent that writes the table, or use a global table")
	// ErrReadOnly: a table write from a handler that runs with
	// Concurrency > 1.
	ErrReadOnly = errors.New("mephisto: table writes need Concurrency 1 (the partition's grain)")
	// ErrNoConsumer: Channel.Send found no agent consuming the channel on
	// this node (not declared, or the worker is not running).
	ErrNoConsumer = errors.New("mephisto: no agent consumes the channel")
	// ErrNotReplyAgent: the agent does not reply (declare it with
	// NewReplyAgent).
	ErrNotReplyAgent = errors.New("mephisto: the agent does not reply")

	// ErrTimeout: no reply came within the request's time limit.
	ErrTimeout = node.ErrTimeout
	// ErrNodeDead: the node that owns the key is dead (gossip says so); the
	// request failed at once instead of waiting for a timeout.
	ErrNodeDead = node.ErrNodeDead
	// ErrNoOwner: no node is active for the key's partition right now (a
	// rebalance is under way); retry shortly.
	ErrNoOwner = node.ErrNoOwner
	// ErrPartitionMoving: a table read outside a handler (Get, Lookup,
	// Range, a TableRoute page) found no node serving the key's
	// partition: it is moving between nodes, being recovered from its
	// changelog, or its owner just died. Retry shortly, or read a standby
	// copy with AllowStale.
	ErrPartitionMoving = node.ErrMoving
	// ErrRemote wraps the error a handler returned for a request.
	ErrRemote = node.ErrRemote
	// ErrNoRemote: the node owning the key does not accept messages from
	// other nodes (started without --actor / WithActorAddr).
	ErrNoRemote = node.ErrNoRemote

	// ErrPartitionStopped: the partition's error policy (Stop) stopped it.
	ErrPartitionStopped = partition.ErrPartitionStopped
	// ErrTooLarge: a send or table write inside a handler would make a
	// record over the producer's size limit, which can never be written.
	// Returned from the handler, it applies the agent's error policy to
	// the event at once.
	ErrTooLarge = partition.ErrTooLarge
)
