package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ToJSON renders a decoded value as compact JSON for HTTP and command-line
// output:
//
//   - A proto.Message is rendered with protojson (the protobuf JSON mapping,
//     lowerCamelCase field names), compacted so the output is stable. A nil
//     message pointer is rendered as null.
//   - A []byte that is valid UTF-8 is rendered as a JSON string of its text;
//     any other []byte is rendered as a JSON string holding its standard
//     base64 encoding (as encoding/json does). A nil []byte is rendered as
//     null. The two string forms are not marked, so readers that need to
//     tell them apart should use the "bytes" codec's raw output instead.
//   - Everything else, including nil, is rendered with encoding/json.
func ToJSON(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case proto.Message:
		if !v.ProtoReflect().IsValid() { // typed nil, e.g. (*pb.Order)(nil)
			return json.RawMessage("null"), nil
		}
		b, err := protojson.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("codec: to json: %w", err)
		}
		// protojson deliberately varies its whitespace; normalise it.
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return nil, fmt.Errorf("codec: to json: %w", err)
		}
		return buf.Bytes(), nil
	case []byte:
		if v == nil {
			return json.RawMessage("null"), nil
		}
		if utf8.Valid(v) {
			return marshalJSON(string(v))
		}
		return marshalJSON(v) // base64
	default:
		return marshalJSON(v)
	}
}

func marshalJSON(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: to json: %w", err)
	}
	return b, nil
}
