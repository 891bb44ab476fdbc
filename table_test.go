package mephisto

import (
	"reflect"
	"testing"
)

func TestValueType(t *testing.T) {
	type point struct{ X, Y int }
	type named struct {
		Name string
		At   [2]point
	}
	type withSlice struct{ Tags []string }
	for _, c := range []struct {
		v    any
		want bool
	}{
		{int64(0), true}, {"", true}, {3.5, true}, {true, true}, {[4]byte{}, true},
		{point{}, true}, {named{}, true},
		{[]byte(nil), false}, {map[string]int{}, false}, {&point{}, false},
		{withSlice{}, false}, {[]int{}, false}, {[1][]int{}, false},
	} {
		if got := valueType(reflect.TypeOf(c.v)); got != c.want {
			t.Errorf("valueType(%T) = %v, want %v", c.v, got, c.want)
		}
	}
}
