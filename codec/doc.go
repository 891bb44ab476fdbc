// Package codec provides typed serializers for Mephisto streams, tables and
// the command-line tools.
//
// A [Codec] turns values of a Go type T into bytes and back. Mephisto uses
// one codec for the keys and one for the values of every topic and table, so
// a stream of orders keyed by customer id might use [Int64] for keys and
// [JSON] for values:
//
//	keys := codec.Int64()
//	values := codec.JSON[Order]()
//
// # Built-in codecs
//
// Every codec has a short [Codec.Name] that is used on the wire and in docs:
//
//   - "string" ([String]): the raw bytes of the string. Any byte sequence
//     decodes, including invalid UTF-8.
//   - "bytes" ([Bytes]): the bytes themselves. Decode returns a copy, so the
//     result stays valid after the transport reuses its buffer.
//   - "int64" ([Int64]): exactly 8 bytes, big-endian two's complement, so the
//     byte order of non-negative values matches their numeric order.
//   - "json" ([JSON]): the encoding/json representation of T.
//   - "proto" ([Proto]): the protocol buffers binary wire format of a
//     generated message type.
//
// Every Decode failure satisfies errors.Is(err, [ErrDecode]) and, where there
// is one, also wraps the underlying error (for example a *json.SyntaxError).
//
// # Command-line text and JSON output
//
// [ParseText] turns text typed on a command line (by the send command, for
// instance) into a value. Codecs that have a natural text form implement
// [TextParser]: Int64 parses decimal numbers and Proto parses protobuf JSON.
// Other codecs fall back to decoding the bytes of the text, so JSON codecs
// read JSON and the String and Bytes codecs take the text verbatim.
//
// [ToJSON] renders any decoded value as JSON for HTTP and command-line
// output.
//
// # Writing your own codec
//
// Any type with Name, Encode and Decode methods is a Codec; there is nothing
// to register. Implement [TextParser] as well if the values have a friendlier
// text form than their wire bytes. A codec for float64 might look like this:
//
//	type float64Codec struct{}
//
//	func (float64Codec) Name() string { return "float64" }
//
//	func (float64Codec) Encode(v float64) ([]byte, error) {
//		return binary.BigEndian.AppendUint64(nil, math.Float64bits(v)), nil
//	}
//
//	func (float64Codec) Decode(b []byte) (float64, error) {
//		if len(b) != 8 {
//			return 0, fmt.Errorf("codec float64: want 8 bytes, got %d: %w", len(b), codec.ErrDecode)
//		}
//		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
//	}
//
//	func (float64Codec) ParseText(s string) (float64, error) {
//		return strconv.ParseFloat(s, 64)
//	}
//
// Custom codecs should follow the same rules as the built-in ones:
//
//   - Decode must not panic on any input and should wrap [ErrDecode] in its
//     errors, so callers can tell bad data from other failures.
//   - Decode must not keep or return the slice it is given; transports reuse
//     their buffers once Decode returns.
//   - Encode should be deterministic when the codec is used for keys, since
//     keys decide partitioning and table lookups.
//   - Codecs should be safe for concurrent use by multiple goroutines.
package codec
