package hints

import "testing"

func TestRateFromEnv(t *testing.T) {
	const env = "HINTS_TEST_RATE"
	for _, tc := range []struct {
		env  string
		want float64
		ok   bool
	}{
		{"", 0, true}, {"0", 0, true}, {"5", 5, true}, {"0.5", 0.5, true},
		{"-1", 0, false}, {"fast", 0, false}, {"NaN", 0, false}, {"+Inf", 0, false},
	} {
		t.Setenv(env, tc.env)
		got, err := RateFromEnv(env)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("%s=%q: got %v, %v; want %v, ok=%v", env, tc.env, got, err, tc.want, tc.ok)
		}
	}
}
