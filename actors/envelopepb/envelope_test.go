package envelopepb

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzEnvelopeDecode: whatever bytes arrive from the network, decoding an
// envelope never panics, and what decodes re-encodes to an equal message.
func FuzzEnvelopeDecode(f *testing.F) {
	seed, _ := proto.Marshal(&Envelope{Agent: "adding", Codec: "string/json", Key: []byte("k"),
		Value: []byte(`{"a":1,"b":2}`), Headers: []*Header{{Key: "h", Value: []byte("v")}},
		ReplyTo: "pid", CorrelationId: "c1"})
	other, _ := proto.Marshal(wrapperspb.String("not an envelope"))
	for _, s := range [][]byte{seed, other, nil, {0xff}, {0x0a, 0xff, 0xff, 0xff, 0x0f}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var env Envelope
		if err := proto.Unmarshal(data, &env); err != nil {
			return // refused with an error: fine
		}
		again, err := proto.Marshal(&env)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var back Envelope
		if err := proto.Unmarshal(again, &back); err != nil || !proto.Equal(&env, &back) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
