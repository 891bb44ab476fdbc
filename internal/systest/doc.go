// Package systest holds Mephisto's system tests: every worker and every
// broker is a real, separate OS process (the test app in ./testapp and the
// dev broker of cmd/mephisto), table state is real Pebble on disk, and
// crashes are real SIGKILLs — sent by the tests, or by the worker itself at
// a commit-protocol fault point (MEPHISTO_FAULTPOINT).
//
// The tests build both binaries once (TestMain), talk to workers only over
// their public surfaces (flags, signals, exit codes, stderr, HTTP, Kafka),
// and inspect a dead worker's data dir with package state.
//
//	go test -count=1 ./internal/systest/
package systest
