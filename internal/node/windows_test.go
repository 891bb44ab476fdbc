package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mephistohq/mephisto/window"
)

func TestWindowRowsWire(t *testing.T) {
	rows := []WindowRow{
		{window.Range{Start: -60000, End: 0}, []byte("1")},
		{window.Range{Start: 1_700_000_040_000, End: 1_700_000_100_000}, nil},
		{window.Range{Start: 5, End: 6}, []byte(`{"n":2}`)},
	}
	got, err := decodeWindowRows(encodeWindowRows(rows))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", rows) {
		t.Fatalf("round trip:\n got %q\nwant %q", got, rows)
	}
	enc := encodeWindowRows(rows)
	for n := 1; n < len(enc); n++ {
		if rs, err := decodeWindowRows(enc[:n]); err == nil && len(rs) == len(rows) {
			t.Fatalf("a reply cut at %d bytes decodes whole", n)
		} else if err != nil && !errors.Is(err, ErrRemote) {
			t.Fatalf("cut at %d: %v, want ErrRemote", n, err)
		}
	}
}
