package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type order struct {
	ID    int64             `json:"id"`
	Items []string          `json:"items,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
}

// roundTrip encodes v with c, decodes the result and compares it with want
// using eq.
func roundTrip[T any](t *testing.T, c Codec[T], v T, eq func(a, b T) bool) {
	t.Helper()
	b, err := c.Encode(v)
	if err != nil {
		t.Fatalf("%s Encode(%v): %v", c.Name(), v, err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatalf("%s Decode(%x): %v", c.Name(), b, err)
	}
	if !eq(got, v) {
		t.Fatalf("%s round trip: got %v, want %v", c.Name(), got, v)
	}
}

func deepEqual[T any](a, b T) bool { return reflect.DeepEqual(a, b) }

func protoEqual[T proto.Message](a, b T) bool { return proto.Equal(a, b) }

func TestNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{String().Name(), "string"},
		{Bytes().Name(), "bytes"},
		{Int64().Name(), "int64"},
		{JSON[order]().Name(), "json"},
		{Proto[*wrapperspb.StringValue]().Name(), "proto"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("Name() = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, v := range []string{"", "hello", "héllo wörld ✓", "\xff\xfe not utf-8", "nul\x00byte"} {
		roundTrip(t, String(), v, deepEqual)
	}
}

func TestStringWireFormat(t *testing.T) {
	b, err := String().Encode("abc")
	if err != nil || string(b) != "abc" {
		t.Fatalf("Encode(abc) = %q, %v; want raw bytes", b, err)
	}
	for _, in := range [][]byte{nil, {}, {0xff, 0x00, 0x80}} {
		got, err := String().Decode(in)
		if err != nil {
			t.Errorf("Decode(%x): unexpected error %v", in, err)
		}
		if got != string(in) {
			t.Errorf("Decode(%x) = %q, want %q", in, got, in)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	for _, v := range [][]byte{nil, {}, []byte("hello"), {0, 1, 2, 0xff}} {
		roundTrip(t, Bytes(), v, deepEqual)
	}
}

func TestBytesDecodeCopies(t *testing.T) {
	buf := []byte("reused")
	got, err := Bytes().Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	if string(got) != "reused" {
		t.Fatalf("Decode result changed with its input: %q", got)
	}
	if got, _ := Bytes().Decode(nil); got != nil {
		t.Errorf("Decode(nil) = %#v, want nil", got)
	}
	if got, _ := Bytes().Decode([]byte{}); got == nil || len(got) != 0 {
		t.Errorf("Decode([]byte{}) = %#v, want empty non-nil", got)
	}
}

func TestInt64RoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 42, 1 << 40, math.MaxInt64, math.MinInt64} {
		roundTrip(t, Int64(), v, deepEqual)
	}
}

func TestInt64WireFormat(t *testing.T) {
	tests := []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{1, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{258, []byte{0, 0, 0, 0, 0, 0, 1, 2}},
		{-1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{math.MaxInt64, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		got, err := Int64().Encode(tt.v)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("Encode(%d) = %x, %v; want %x", tt.v, got, err, tt.want)
		}
	}
}

func TestInt64ByteOrderMatchesNumericOrder(t *testing.T) {
	vals := []int64{0, 1, 2, 255, 256, 65535, 1 << 32, 1<<62 + 7, math.MaxInt64}
	for i := 1; i < len(vals); i++ {
		a, _ := Int64().Encode(vals[i-1])
		b, _ := Int64().Encode(vals[i])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("Encode(%d) = %x not below Encode(%d) = %x", vals[i-1], a, vals[i], b)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	roundTrip(t, JSON[order](), order{}, deepEqual)
	roundTrip(t, JSON[order](), order{ID: 7, Items: []string{"a", "b"}, Tags: map[string]string{"k": "v"}}, deepEqual)
	roundTrip(t, JSON[*order](), &order{ID: 1}, deepEqual)
	roundTrip(t, JSON[string](), "quoted \"text\"", deepEqual)
	roundTrip(t, JSON[map[string]int](), map[string]int{"a": 1}, deepEqual)
	roundTrip(t, JSON[[]float64](), []float64{1.5, -2}, deepEqual)
}

func TestJSONWireFormat(t *testing.T) {
	b, err := JSON[order]().Encode(order{ID: 3, Items: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":3,"items":["x"]}`; string(b) != want {
		t.Errorf("Encode = %s, want %s", b, want)
	}
}

func TestJSONEncodeError(t *testing.T) {
	_, err := JSON[float64]().Encode(math.NaN())
	var uv *json.UnsupportedValueError
	if !errors.As(err, &uv) {
		t.Fatalf("Encode(NaN) error = %v, want wrapped *json.UnsupportedValueError", err)
	}
	if !strings.Contains(err.Error(), "codec json: encode float64") {
		t.Errorf("error %q does not name the codec and type", err)
	}
}

func TestProtoRoundTrip(t *testing.T) {
	roundTrip(t, Proto[*wrapperspb.StringValue](), wrapperspb.String("hello"), protoEqual)
	roundTrip(t, Proto[*wrapperspb.StringValue](), wrapperspb.String(""), protoEqual)
	roundTrip(t, Proto[*wrapperspb.Int64Value](), wrapperspb.Int64(-5), protoEqual)
	s, err := structpb.NewStruct(map[string]any{"name": "ada", "n": 3.0, "ok": true, "list": []any{"x", 1.0}})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, Proto[*structpb.Struct](), s, protoEqual)
}

func TestProtoDecodeReturnsNewMessage(t *testing.T) {
	c := Proto[*wrapperspb.StringValue]()
	b, _ := c.Encode(wrapperspb.String("a"))
	m1, err1 := c.Decode(b)
	m2, err2 := c.Decode(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if m1 == m2 {
		t.Fatal("Decode returned the same message twice")
	}
	empty, err := c.Decode(nil)
	if err != nil || empty == nil || empty.GetValue() != "" {
		t.Fatalf("Decode(nil) = %v, %v; want empty message", empty, err)
	}
}

func TestProtoEncodeDeterministic(t *testing.T) {
	fields := map[string]any{}
	for _, k := range strings.Split("a b c d e f g h i j k l m n o p", " ") {
		fields[k] = k
	}
	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	c := Proto[*structpb.Struct]()
	first, err := c.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if b, _ := c.Encode(s); !bytes.Equal(b, first) {
			t.Fatal("Encode is not deterministic")
		}
	}
}

func TestProtoPanicsOnInterfaceType(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Proto[proto.Message]() did not panic")
		}
	}()
	Proto[proto.Message]()
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		decode  func([]byte) error
		in      []byte
		wantMsg string // substring of the error message
	}{
		{"int64 nil", decodeErr(Int64()), nil, "codec int64: decode: want 8 bytes, got 0"},
		{"int64 short", decodeErr(Int64()), []byte{1, 2, 3}, "got 3"},
		{"int64 long", decodeErr(Int64()), make([]byte, 9), "got 9"},
		{"json nil", decodeErr(JSON[order]()), nil, "codec json: decode codec.order: unexpected end of JSON input"},
		{"json empty", decodeErr(JSON[order]()), []byte{}, "codec json: decode codec.order"},
		{"json syntax", decodeErr(JSON[order]()), []byte(`{"id":`), "codec json: decode codec.order"},
		{"json type", decodeErr(JSON[order]()), []byte(`{"id":"seven"}`), "codec json: decode codec.order"},
		{"json pointer type", decodeErr(JSON[*order]()), []byte(`[`), "codec json: decode *codec.order"},
		{"json trailing", decodeErr(JSON[int]()), []byte(`1 2`), "codec json: decode int"},
		{"proto garbage", decodeErr(Proto[*wrapperspb.StringValue]()), []byte{0xff, 0xff, 0xff}, "codec proto: decode google.protobuf.StringValue"},
		{"proto truncated", decodeErr(Proto[*wrapperspb.StringValue]()), []byte{0x0a, 0x05, 'a'}, "codec proto: decode google.protobuf.StringValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode(tt.in)
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%x) error = %v, want ErrDecode", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestJSONDecodeErrorWrapsCause(t *testing.T) {
	_, err := JSON[order]().Decode([]byte(`{"id":`))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Errorf("error %v does not wrap *json.SyntaxError", err)
	}
	_, err = JSON[order]().Decode([]byte(`{"id":"x"}`))
	var ute *json.UnmarshalTypeError
	if !errors.As(err, &ute) {
		t.Errorf("error %v does not wrap *json.UnmarshalTypeError", err)
	}
}

func decodeErr[T any](c Codec[T]) func([]byte) error {
	return func(b []byte) error {
		_, err := c.Decode(b)
		return err
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		name string
		run  func() (any, error)
		want any
	}{
		{"string", parse(String(), "hi there"), "hi there"},
		{"string empty", parse(String(), ""), ""},
		{"bytes", parse(Bytes(), "raw\x00"), []byte("raw\x00")},
		{"int64", parse(Int64(), "42"), int64(42)},
		{"int64 negative", parse(Int64(), "-9223372036854775808"), int64(math.MinInt64)},
		{"json struct", parse(JSON[order](), `{"id":5,"items":["a"]}`), order{ID: 5, Items: []string{"a"}}},
		{"json string", parse(JSON[string](), `"quoted"`), "quoted"},
		{"proto wrapper", parse(Proto[*wrapperspb.StringValue](), `"hello"`), wrapperspb.String("hello")},
		{"proto struct", parse(Proto[*structpb.Struct](), `{"a": 1}`), mustStruct(t, map[string]any{"a": 1.0})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.run()
			if err != nil {
				t.Fatalf("ParseText: %v", err)
			}
			if m, ok := tt.want.(proto.Message); ok {
				if !proto.Equal(got.(proto.Message), m) {
					t.Fatalf("ParseText = %v, want %v", got, m)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseText = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseTextErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func() (any, error)
	}{
		{"int64 word", parse(Int64(), "seven")},
		{"int64 empty", parse(Int64(), "")},
		{"int64 space", parse(Int64(), " 1")},
		{"int64 overflow", parse(Int64(), "9223372036854775808")},
		{"json", parse(JSON[order](), `not json`)},
		{"json unquoted string", parse(JSON[string](), `hello`)},
		{"proto", parse(Proto[*wrapperspb.StringValue](), `{"value":`)},
		{"proto unknown field", parse(Proto[*wrapperspb.StringValue](), `{"nope":1}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.run(); !errors.Is(err, ErrDecode) {
				t.Fatalf("ParseText error = %v, want ErrDecode", err)
			}
		})
	}
}

// fallbackCodec implements Codec but not TextParser, to check that ParseText
// falls back to Decode.
type fallbackCodec struct{}

func (fallbackCodec) Name() string                    { return "upper" }
func (fallbackCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (fallbackCodec) Decode(b []byte) (string, error) { return strings.ToUpper(string(b)), nil }

func TestParseTextFallsBackToDecode(t *testing.T) {
	got, err := ParseText[string](fallbackCodec{}, "abc")
	if err != nil || got != "ABC" {
		t.Fatalf("ParseText = %q, %v; want ABC", got, err)
	}
}

func parse[T any](c Codec[T], s string) func() (any, error) {
	return func() (any, error) { return ParseText(c, s) }
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestToJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"string", "hi", `"hi"`},
		{"int64", int64(-3), `-3`},
		{"struct", order{ID: 1, Tags: map[string]string{"b": "2", "a": "1"}}, `{"id":1,"tags":{"a":"1","b":"2"}}`},
		{"bytes utf8", []byte("héllo"), `"héllo"`},
		{"bytes empty", []byte{}, `""`},
		{"bytes nil", []byte(nil), `null`},
		{"bytes binary", []byte{0xff, 0x00, 0x01}, `"/wAB"`},
		{"raw message", json.RawMessage(`{"a": 1}`), `{"a":1}`},
		{"proto wrapper", wrapperspb.String("x"), `"x"`},
		{"proto struct", mustStruct(t, map[string]any{"b": 2.0, "a": "s"}), `{"a":"s","b":2}`},
		{"proto int64 wrapper", wrapperspb.Int64(1 << 60), `"1152921504606846976"`},
		{"proto typed nil", (*wrapperspb.StringValue)(nil), `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToJSON(tt.in)
			if err != nil {
				t.Fatalf("ToJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("ToJSON = %s, want %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("ToJSON output %s is not valid JSON", got)
			}
		})
	}
}

func TestToJSONError(t *testing.T) {
	_, err := ToJSON(make(chan int))
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Fatalf("ToJSON(chan) error = %v, want wrapped *json.UnsupportedTypeError", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := Proto[*structpb.Struct]()
	j := JSON[order]()
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range 100 {
				roundTrip(t, c, mustStruct(t, map[string]any{"i": float64(i), "k": float64(k)}), protoEqual)
				roundTrip(t, j, order{ID: int64(i*1000 + k)}, deepEqual)
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func FuzzJSONDecode(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"id":1,"items":["a"],"tags":{"k":"v"}}`, `{"id":`, `[1,2]`, `"x"`, `{"id":1e400}`, "\xff"} {
		f.Add([]byte(s))
	}
	c := JSON[order]()
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%q) error %v does not wrap ErrDecode", b, err)
			}
			return
		}
		// Whatever decoded must re-encode stably. (Values themselves need not
		// be equal: with omitempty, nil and empty slices both vanish.)
		enc, err := c.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", v, err)
		}
		v2, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q) of encoded value: %v", enc, err)
		}
		enc2, err := c.Encode(v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding %q gave %q, %v", enc, enc2, err)
		}
	})
}

func FuzzInt64Decode(f *testing.F) {
	for _, b := range [][]byte{nil, {}, {1}, make([]byte, 7), make([]byte, 8), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, make([]byte, 9)} {
		f.Add(b)
	}
	c := Int64()
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if len(b) != 8 {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%x) error = %v, want ErrDecode", b, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(%x): %v", b, err)
		}
		if enc, _ := c.Encode(v); !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, enc)
		}
	})
}
