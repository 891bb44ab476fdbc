package codec_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/mephistohq/mephisto/codec"
)

// float64Codec is a user-defined codec: 8 bytes, big-endian IEEE 754 bits.
type float64Codec struct{}

func (float64Codec) Name() string { return "float64" }

func (float64Codec) Encode(v float64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v)), nil
}

func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("codec float64: want 8 bytes, got %d: %w", len(b), codec.ErrDecode)
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

func (float64Codec) ParseText(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("codec float64: %w: %w", codec.ErrDecode, err)
	}
	return v, nil
}

func Example_customCodec() {
	var c codec.Codec[float64] = float64Codec{}

	v, err := codec.ParseText(c, "2.5")
	if err != nil {
		panic(err)
	}
	b, _ := c.Encode(v)
	fmt.Printf("%x\n", b)

	_, err = c.Decode([]byte{1, 2})
	fmt.Println(errors.Is(err, codec.ErrDecode))
	// Output:
	// 4004000000000000
	// true
}

func ExampleInt64() {
	c := codec.Int64()
	b, _ := c.Encode(258)
	fmt.Printf("%x\n", b)

	_, err := c.Decode([]byte{1, 2, 3})
	fmt.Println(err)
	// Output:
	// 0000000000000102
	// codec int64: decode: want 8 bytes, got 3
}

func ExampleJSON() {
	type Order struct {
		ID    int64  `json:"id"`
		Buyer string `json:"buyer"`
	}
	c := codec.JSON[Order]()
	b, _ := c.Encode(Order{ID: 1, Buyer: "ada"})
	fmt.Println(string(b))

	_, err := c.Decode([]byte(`{"id":"one"}`))
	fmt.Println(errors.Is(err, codec.ErrDecode))
	// Output:
	// {"id":1,"buyer":"ada"}
	// true
}

func ExampleToJSON() {
	for _, v := range []any{[]byte("text"), []byte{0xff, 0xfe}, map[string]int{"n": 1}} {
		out, _ := codec.ToJSON(v)
		fmt.Println(string(out))
	}
	// Output:
	// "text"
	// "//4="
	// {"n":1}
}
