package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/mephistohq/mephisto/actors"
	"github.com/mephistohq/mephisto/kafka"
)

// Errors of requests to agents; the root package exports them.
var (
	ErrTimeout  = actors.ErrTimeout
	ErrNodeDead = actors.ErrNodeDead
	ErrNoOwner  = actors.ErrNoOwner
	ErrRemote   = actors.ErrRemote
	ErrNoRemote = actors.ErrNoRemote
)

// Ask produces a request to topic and waits for its reply on this node's
// partition of the reply topic. Without a key (or keyed false) the
// request goes to partition idx, modulo the topic's count.
func (rt *Node) Ask(ctx context.Context, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	if rt.requests == nil {
		return nil, fmt.Errorf("ask on %s: the node is still starting", topic)
	}
	return ask(ctx, rt.requests, topic, key, value, keyed, idx)
}

// ask asks through r, with the errors of requests: ErrRemote when the
// handler failed, ErrTimeout when ctx ended first.
func ask(ctx context.Context, r *kafka.Requester, topic string, key, value []byte, keyed bool, idx int32) ([]byte, error) {
	v, err := r.Ask(ctx, topic, key, value, keyed, idx)
	var re *kafka.ReplyError
	switch {
	case err == nil:
		return v, nil
	case errors.As(err, &re):
		return v, fmt.Errorf("%w: %s", ErrRemote, re.Text)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return nil, err
}
