package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"unsafe"
)

// String returns a codec named "string" whose wire format is the raw bytes
// of the string, with no length prefix or terminator. Go strings may hold
// arbitrary bytes, so Decode accepts any input, including invalid UTF-8, and
// never fails; Decode(nil) returns "". ParseText returns the text unchanged.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

var (
	_ TextParser[string] = stringCodec{}
	_ Borrower[string]   = stringCodec{}
)

func (stringCodec) Name() string                       { return "string" }
func (stringCodec) Encode(v string) ([]byte, error)    { return []byte(v), nil }
func (stringCodec) Decode(b []byte) (string, error)    { return string(b), nil }
func (stringCodec) ParseText(s string) (string, error) { return s, nil }

// Borrow returns the bytes of v without copying them.
func (stringCodec) Borrow(v string) []byte { return unsafe.Slice(unsafe.StringData(v), len(v)) }

// Bytes returns a codec named "bytes" whose wire format is the bytes
// themselves. Encode returns v as is (the result shares v's backing array).
// Decode never fails and returns a copy of its input, so callers may keep
// the result after the transport reuses its buffer; Decode(nil) returns nil
// and Decode of an empty non-nil slice returns an empty non-nil slice.
// ParseText returns the raw bytes of the text.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

var _ TextParser[[]byte] = bytesCodec{}

func (bytesCodec) Name() string                       { return "bytes" }
func (bytesCodec) Encode(v []byte) ([]byte, error)    { return v, nil }
func (bytesCodec) Decode(b []byte) ([]byte, error)    { return bytes.Clone(b), nil }
func (bytesCodec) ParseText(s string) ([]byte, error) { return []byte(s), nil }

// Int64 returns a codec named "int64" whose wire format is exactly 8 bytes,
// the big-endian two's-complement representation of the value. Byte order
// therefore matches numeric order for non-negative values; negative values
// sort after all non-negative ones. Decode fails, wrapping [ErrDecode], on
// any input whose length is not 8 (including nil). ParseText accepts a
// base-10 integer as understood by strconv.ParseInt, such as "42" or "-7".
func Int64() Codec[int64] { return int64Codec{} }

type int64Codec struct{}

var _ TextParser[int64] = int64Codec{}

func (int64Codec) Name() string { return "int64" }

func (int64Codec) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)), nil
}

func (int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, newDecodeError(fmt.Sprintf("codec int64: decode: want 8 bytes, got %d", len(b)), nil)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func (int64Codec) ParseText(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, newDecodeError("codec int64: parse text", err)
	}
	return n, nil
}
