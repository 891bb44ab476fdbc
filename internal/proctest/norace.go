//go:build !race

package proctest

// Race is true when this process was built with -race.
const Race = false
