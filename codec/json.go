package codec

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// JSON returns a codec named "json" whose wire format is the encoding/json
// representation of T (as produced by json.Marshal, without a trailing
// newline). Decode uses json.Unmarshal, so struct tags, custom
// json.Marshaler/json.Unmarshaler implementations and encoding/json's
// leniency (unknown fields are ignored, "null" yields the zero value) all
// apply. Decode failures, including Decode(nil) and Decode of empty input,
// wrap [ErrDecode] and the encoding/json error, and name the Go type, as in
// "codec json: decode main.Order: unexpected end of JSON input".
//
// JSON does not implement [TextParser]: [ParseText] decodes the text as JSON,
// so a JSON[string] expects a quoted string on the command line.
func JSON[T any]() Codec[T] {
	return jsonCodec[T]{typeName: reflect.TypeFor[T]().String()}
}

type jsonCodec[T any] struct {
	typeName string // Go type of T, for error messages
}

func (jsonCodec[T]) Name() string { return "json" }

func (c jsonCodec[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec json: encode %s: %w", c.typeName, err)
	}
	return b, nil
}

func (c jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, newDecodeError("codec json: decode "+c.typeName, err)
	}
	return v, nil
}
