package kafka

import "testing"

// Expected values are those of org.apache.kafka.common.utils.Utils.murmur2
// (as published in the Kafka client's own tests), taken as positive and
// modulo the partition count the way the default partitioner does.
func TestMurmur2MatchesJavaClient(t *testing.T) {
	cases := []struct {
		key  string
		hash int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, c := range cases {
		if got := int32(murmur2([]byte(c.key))); got != c.hash {
			t.Errorf("murmur2(%q) = %d, want %d", c.key, got, c.hash)
		}
	}
}

func TestPartitionInRange(t *testing.T) {
	for n := int32(1); n < 40; n++ {
		for _, k := range []string{"", "a", "word", "\xff\xfe", "0123456789abcdef"} {
			if p := Partition([]byte(k), n); p < 0 || p >= n {
				t.Fatalf("Partition(%q, %d) = %d", k, n, p)
			}
		}
	}
}
