//go:build !race

package proctest

// raceEnabled is true when this process was built with -race.
const raceEnabled = false
