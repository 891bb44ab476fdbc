//go:build race

package agenttest_test

// raceEnabled is true under -race, so that the test app the tests build is
// race-checked too.
const raceEnabled = true
