//go:build race

package extest

// raceEnabled is true when the tests run with -race, so that the example
// binaries they build are race-checked too.
const raceEnabled = true
