package codec

import (
	"errors"
)

// Codec turns values of T into bytes and back.
//
// Implementations must be safe for concurrent use, and Decode must not
// retain b after it returns. See the package documentation for how to write
// one.
type Codec[T any] interface {
	// Name identifies the codec on the wire and in docs ("string", "bytes",
	// "int64", "json", "proto").
	Name() string
	// Encode returns the wire bytes of v.
	Encode(v T) ([]byte, error)
	// Decode parses wire bytes produced by Encode. Every failure satisfies
	// errors.Is(err, ErrDecode).
	Decode(b []byte) (T, error)
}

// TextParser is implemented by codecs whose values can be typed on a command
// line (used by the send CLI). The codecs in this package report ParseText
// failures wrapping [ErrDecode].
type TextParser[T any] interface {
	// ParseText turns human-typed text into a value.
	ParseText(s string) (T, error)
}

// ErrDecode is wrapped by every Decode (and ParseText) failure of the codecs
// in this package; test for it with errors.Is.
var ErrDecode = errors.New("codec: cannot decode")

// ParseText turns command-line text into a T. It uses c's ParseText method if
// c implements [TextParser][T], and otherwise decodes the bytes of s with
// c.Decode.
func ParseText[T any](c Codec[T], s string) (T, error) {
	if p, ok := c.(TextParser[T]); ok {
		return p.ParseText(s)
	}
	return c.Decode([]byte(s))
}

// decodeError reports a failure to decode or parse. It wraps both ErrDecode
// and, if there is one, the underlying cause, without repeating ErrDecode's
// text in the message.
type decodeError struct {
	msg   string // e.g. "codec json: decode main.Order"
	cause error  // may be nil
}

func (e *decodeError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *decodeError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrDecode}
	}
	return []error{ErrDecode, e.cause}
}

// newDecodeError returns an error with message "msg: cause" that satisfies
// errors.Is for both ErrDecode and cause. cause may be nil.
func newDecodeError(msg string, cause error) error {
	return &decodeError{msg: msg, cause: cause}
}

// Borrower is implemented by codecs whose encoding of a value is the
// value's own memory (String): Borrow returns it without copying, for
// callers that only read the bytes while the value lives, such as a table
// looking a key up. The bytes must never be modified.
type Borrower[T any] interface {
	Borrow(v T) []byte
}
