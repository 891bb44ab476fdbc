// Package proctest is the one harness for Mephisto's child processes: the
// process-level test suites (system, cluster, agent, CLI, examples) and the
// benchmark harness start brokers, workers and clients with it.
//
// It holds child processes with their stdout and stderr in files (Start,
// Run, Proc; Environ builds their environment, WaitListening waits for a
// `mephisto broker`), free loopback addresses for them (FreeAddr), one
// wait on a condition with a deadline (Poll), the binaries' build (Build,
// BuildMain), the HTTP probes of a node (Get, Ready, Cluster and the
// checks of its plan, Formed, Metric), a buffer safe for concurrent use
// and a logger that writes to a test's log.
//
// What can fail returns an error, so that a program that is not a test
// (bench/harness) can use it. The test layer is thin and named after it:
// a function or method whose name ends in T takes the test first and fails
// it instead of returning an error (StartT, RunT, FreeAddrT, WaitForT,
// p.StopT, p.KillT, …); LogDir and Logger are for tests only. The package
// does not import testing: TB is the part of testing.TB it uses.
//
// Nothing here sleeps blindly: every wait is a condition with a deadline.
package proctest

// TB is the part of testing.TB the helpers use; a *testing.T, a
// *testing.B and a testing.TB all are one.
type TB interface {
	Helper()
	Name() string
	Log(args ...any)
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}
