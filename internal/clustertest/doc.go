// Package clustertest holds Mephisto's multi-process cluster tests (issue
// 3): a broker and three workers of the test app in ./testapp run as real
// OS processes, gossiping over loopback, and the tests crash, restart and
// partition them while a producer keeps sending, then check the tables
// against the truth of what Kafka acknowledged.
//
//	go test -count=1 -timeout 15m ./internal/clustertest/
//
// Every test runs twice, from the same code (issue 10): subtest kfake on
// a dev broker (`mephisto broker`) of its own, subtest kafka on Apache
// Kafka in KRaft mode (internal/proctest), one broker the package's tests
// share — each test's app, consumer group and topics are named after it
// there (the test app reads CLUSTERTEST_APP_NAME and
// CLUSTERTEST_TOPIC_PREFIX). The kafka subtests skip, saying why, without
// Java 17 and Maven or with MEPHISTO_KAFKA_OFF set.
//
// TestGossipPartition needs root and tc (it drops one node's gossip packets
// on the loopback device); it skips, saying why, without them. It runs on
// kfake only, to keep the real-Kafka tier's time down.
//
// With MEPHISTO_FAILOVER_OUT set, TestKillNineFailover writes the measured
// failover time (kill -9 of a worker to every partition processing again)
// to that file, in seconds, as one line ("2.345\n"); the time on Apache
// Kafka goes to that name with ".kafka" appended.
//
// Every process's stdout and stderr go to files under
// $TMPDIR/mephisto-clustertest-logs/<test>/; they are kept if the test
// fails (the tail of each stderr is also logged) or if
// CLUSTERTEST_KEEP_LOGS is set.
package clustertest
