package eostest

import "testing"

func TestInputRoundTrip(t *testing.T) {
	for _, seq := range []int64{0, 1, 41, 1 << 40} {
		got, n, err := ParseInput(FormatInput(seq))
		if err != nil || got != seq || n != ValueOf(seq) {
			t.Errorf("ParseInput(FormatInput(%d)) = %d, %d, %v", seq, got, n, err)
		}
		if v := ValueOf(seq); v < -1000 || v > 1000 {
			t.Errorf("ValueOf(%d) = %d, out of [-1000, 1000]", seq, v)
		}
	}
	for _, bad := range []string{"", "7", "x:1", "1:y"} {
		if _, _, err := ParseInput(bad); err == nil {
			t.Errorf("ParseInput(%q): no error", bad)
		}
	}
}

func TestAggregateAdd(t *testing.T) {
	var a Aggregate
	for i, v := range []int64{5, -3, 9, 0} {
		a = a.Add(int64(10+i), v)
	}
	if want := (Aggregate{Count: 4, Sum: 11, Min: -3, Max: 9, Last: 13}); a != want {
		t.Errorf("aggregate %v, want %v", a, want)
	}
	if one := (Aggregate{}).Add(3, 7); one != (Aggregate{Count: 1, Sum: 7, Min: 7, Max: 7, Last: 3}) {
		t.Errorf("one input: %v", one)
	}
}
