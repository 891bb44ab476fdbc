// Package clustertest holds Mephisto's multi-process cluster tests (issue
// 3): a dev broker (`mephisto broker`) and three workers of the test app in
// ./testapp run as real OS processes, gossiping over loopback, and the
// tests crash, restart and partition them while a producer keeps sending,
// then check the tables against the truth of what Kafka acknowledged.
//
//	go test -count=1 -timeout 15m ./internal/clustertest/
//
// TestGossipPartition needs root and tc (it drops one node's gossip packets
// on the loopback device); it skips, saying why, without them.
//
// With MEPHISTO_FAILOVER_OUT set, TestKillNineFailover writes the measured
// failover time (kill -9 of a worker to every partition processing again)
// to that file, in seconds, as one line ("2.345\n").
//
// Every process's stdout and stderr go to files under
// $TMPDIR/mephisto-clustertest-logs/<test>/; they are kept if the test
// fails (the tail of each stderr is also logged) or if
// CLUSTERTEST_KEEP_LOGS is set.
package clustertest
