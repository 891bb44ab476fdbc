package codec

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Proto returns a codec named "proto" whose wire format is the protocol
// buffers binary encoding of the message. T must be a concrete generated
// message pointer type such as *pb.Order; Proto panics if T is an interface
// type (such as proto.Message itself) or its nil value does not report a
// message type, since the codec then cannot create messages to decode into.
//
// Encode marshals deterministically (map entries in key order), so equal
// messages from the same binary encode to equal bytes and can be used as
// keys. Decode allocates a new message for every call; an empty or nil input
// is a valid encoding of a message with every field unset. Decode failures
// wrap [ErrDecode] and the protobuf error.
//
// ParseText parses the protobuf JSON mapping (protojson), e.g.
// {"customerId":"42"} or, for a google.protobuf.StringValue, "hello".
func Proto[T proto.Message]() Codec[T] {
	return protoCodec[T]{typ: messageType[T]()}
}

// messageType returns the message type of T, found through the typed nil
// value of T (generated messages support ProtoReflect on a nil receiver).
func messageType[T proto.Message]() (mt protoreflect.MessageType) {
	var zero T
	defer func() {
		if r := recover(); r != nil {
			panic(fmt.Sprintf("codec: Proto[%T]: not a generated message pointer type: %v", zero, r))
		}
	}()
	if any(zero) == nil {
		panic("codec: Proto: T must be a concrete message pointer type, not an interface")
	}
	mt = zero.ProtoReflect().Type()
	if mt == nil {
		panic(fmt.Sprintf("codec: Proto[%T]: message type is unknown", zero))
	}
	return mt
}

type protoCodec[T proto.Message] struct {
	typ protoreflect.MessageType
}

var _ TextParser[proto.Message] = protoCodec[proto.Message]{}

func (protoCodec[T]) Name() string { return "proto" }

// newMessage returns a new, empty message of type T.
func (c protoCodec[T]) newMessage() T {
	return c.typ.New().Interface().(T)
}

func (c protoCodec[T]) Encode(v T) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec proto: encode %s: %w", c.typ.Descriptor().FullName(), err)
	}
	return b, nil
}

func (c protoCodec[T]) Decode(b []byte) (T, error) {
	m := c.newMessage()
	if err := proto.Unmarshal(b, m); err != nil {
		var zero T
		return zero, newDecodeError(fmt.Sprintf("codec proto: decode %s", c.typ.Descriptor().FullName()), err)
	}
	return m, nil
}

func (c protoCodec[T]) ParseText(s string) (T, error) {
	m := c.newMessage()
	if err := protojson.Unmarshal([]byte(s), m); err != nil {
		var zero T
		return zero, newDecodeError(fmt.Sprintf("codec proto: parse text %s", c.typ.Descriptor().FullName()), err)
	}
	return m, nil
}
