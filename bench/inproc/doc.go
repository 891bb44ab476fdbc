// Package inproc holds in-process Go benchmarks of Mephisto's workloads,
// for profiling: the worker runs inside the test binary (App.Run), so
// go test's -cpuprofile and -memprofile see it. The numbers of record come
// from bench/cmd/mephisto-bench (separate processes); these exist to find
// out where the time goes.
//
//	MEPHISTO_BENCH_CPUPROFILE=$PWD/cpu.out go test ./bench/inproc -run '^$' -bench Count -benchtime 3x -o inproc.test
//	go tool pprof -top inproc.test cpu.out
//
// MEPHISTO_BENCH_CPUPROFILE profiles the runs only, not the preloading
// (go test's own -cpuprofile would include it; with it, -tagfocus
// run=worker keeps the worker's goroutines, but not the GC they cause).
//
// MEPHISTO_BENCH_HEAPPROFILE=FILE writes a heap profile taken near the
// peak of the live heap (go tool pprof -sample_index=inuse_space).
//
// By default the broker is embedded in the test process too (its CPU then
// shows up in the profile under kfake). To profile the worker alone, run
// `mephisto broker --listen 127.0.0.1:9099` in another terminal and set
// MEPHISTO_BENCH_BROKERS=127.0.0.1:9099. MEPHISTO_BENCH_N sets the events
// per iteration (default 200,000), MEPHISTO_BENCH_KEYS the distinct keys
// (default 10,000). MEPHISTO_BENCH_LOG=FILE appends the worker's log (debug
// level) to FILE, to see where a run's time goes.
package inproc
