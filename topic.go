package mephisto

import (
	"context"
	"fmt"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/codec"
)

// topicDef is what the runtime knows of a topic, whatever its types.
type topicDef struct {
	name                 string
	keyCodec, valueCodec string
	internal             bool
	// textKey/textValue encode command-line text with the topic's codecs
	// (the `send` command).
	textKey, textValue func(string) ([]byte, error)
}

// Topic is a typed Kafka topic: keys of type K and values of type V, each
// with its codec.
type Topic[K, V any] struct {
	app *App
	def *topicDef
	kc  codec.Codec[K]
	vc  codec.Codec[V]
}

// NewTopic declares a topic. If it does not exist when a worker starts, it
// is created with the app's partition count. Declaring the same name twice
// returns a topic sharing the first declaration (the codecs must agree).
func NewTopic[K, V any](app *App, name string, kc codec.Codec[K], vc codec.Codec[V]) *Topic[K, V] {
	return newTopic(app, name, kc, vc, false)
}

func newTopic[K, V any](app *App, name string, kc codec.Codec[K], vc codec.Codec[V], internal bool) *Topic[K, V] {
	d := &topicDef{
		name: name, keyCodec: kc.Name(), valueCodec: vc.Name(), internal: internal,
		textKey:   textEncoder(kc),
		textValue: textEncoder(vc),
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if old, ok := app.topics[name]; ok {
		if old.keyCodec != d.keyCodec || old.valueCodec != d.valueCodec {
			app.errs = append(app.errs, fmt.Errorf("topic %s declared twice with different codecs (%s/%s and %s/%s)",
				name, old.keyCodec, old.valueCodec, d.keyCodec, d.valueCodec))
		}
		d = old
	} else {
		app.topics[name] = d
	}
	return &Topic[K, V]{app: app, def: d, kc: kc, vc: vc}
}

func textEncoder[T any](c codec.Codec[T]) func(string) ([]byte, error) {
	return func(s string) ([]byte, error) {
		v, err := codec.ParseText(c, s)
		if err != nil {
			return nil, err
		}
		return c.Encode(v)
	}
}

// Name returns the topic's name.
func (t *Topic[K, V]) Name() string { return t.def.name }

// KeyCodec returns the codec of the topic's keys.
func (t *Topic[K, V]) KeyCodec() codec.Codec[K] { return t.kc }

// ValueCodec returns the codec of the topic's values.
func (t *Topic[K, V]) ValueCodec() codec.Codec[V] { return t.vc }

// Send produces a record to the topic, on the partition its key hashes to
// (the Java client's murmur2, so Mephisto and Kafka Streams agree).
//
// Inside an agent handler (ctx derived from the handler's Context) the
// record is part of the event's effects: it is released only if the
// handler succeeds, and the input offset is not committed before the
// brokers acknowledge it. Outside a handler Send waits for the
// acknowledgement; it needs a running worker (else ErrNotRunning).
func (t *Topic[K, V]) Send(ctx context.Context, key K, value V) error {
	kb, err := t.kc.Encode(key)
	if err != nil {
		return fmt.Errorf("topic %s: encode key: %w", t.def.name, err)
	}
	vb, err := t.vc.Encode(value)
	if err != nil {
		return fmt.Errorf("topic %s: encode value: %w", t.def.name, err)
	}
	return t.app.sendRaw(ctx, t.def.name, kb, vb, true)
}

// SendValue produces a record without a key. Inside a handler it goes to
// the partition the event came from (modulo the topic's partition count),
// which keeps per-partition order; outside, to partition 0.
func (t *Topic[K, V]) SendValue(ctx context.Context, value V) error {
	vb, err := t.vc.Encode(value)
	if err != nil {
		return fmt.Errorf("topic %s: encode value: %w", t.def.name, err)
	}
	return t.app.sendRaw(ctx, t.def.name, nil, vb, false)
}

// sendRaw routes a record: staged in the event's effects inside a handler,
// produced synchronously otherwise.
func (a *App) sendRaw(ctx context.Context, topic string, key, value []byte, keyed bool) error {
	if ev := partition.From(ctx); ev != nil {
		return ev.Send(topic, key, value, keyed)
	}
	n := a.running()
	if n == nil {
		return fmt.Errorf("send to %s: %w", topic, ErrNotRunning)
	}
	_, err := n.SendSync(ctx, topic, key, value, keyed)
	return err
}
