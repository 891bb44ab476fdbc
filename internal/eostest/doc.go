// Package eostest holds Mephisto's exactly-once chaos test, after Kafka
// Streams' StreamsEosTest and its EosTestDriver: real worker processes
// are killed with SIGKILL, again and again, while they process a known
// input, and a verifier then checks every record they wrote.
//
//	go test -count=1 ./internal/eostest/
//
// The app (./testapp, built by TestMain with the `mephisto` binary) reads
// numbered input records — key a key id, value "seq:value", seq numbering
// every record the driver writes — keeps per key the count, sum, minimum
// and maximum of the values (and the last seq) in one table of a JSON
// struct, and for every input sends an echo of it to one topic and the
// key's updated aggregate to another. The record format and the
// aggregate are in this package (record.go), shared by the app and the
// test.
//
// TestChaos starts three nodes of the app as OS processes (`worker`,
// gossiping over loopback so that a dead node's partitions move in
// seconds, six partitions, a commit every 100ms) and waits until they
// form one cluster. A driver then produces at a steady 100 records/s
// over 48 keys, eight on each partition, while for chaosDuration (a
// minute) a random node is killed with kill -9 every 2-5 s and started
// again on its data dir up to 2 s later. Then the driver stops, and the
// test waits — conditions with deadlines — for one cluster again, the
// consumer group's lag to reach 0 and every output partition's last
// stable offset to reach its end (no transaction open). The verifier
// reads the input, the echo and aggregates topics and the table's
// changelog read_committed to their ends (kafka.Bounds, DataEnd,
// ReadRange) and checks each record:
//
//   - every acknowledged input is in the input topic, and every input
//     has exactly one echo: none lost, none duplicated;
//   - each key's records on the aggregates topic are exactly the
//     sequence an exact run produces: the i-th is the aggregate of the
//     key's first i inputs (in the input partition's order);
//   - every changelog value is one of that sequence, going forward, and
//     each key's changelog ends at the final aggregate;
//   - every node serves every key's final aggregate (GET
//     /tables/aggs/{key}, through each node, proxied to the owner).
//
// It logs its figures: inputs, kills, restarts, outputs verified,
// duplicates and losses, and the times.
//
// Every run is made under both processing guarantees, as subtests:
// exactly_once must pass every check; at_least_once must lose nothing
// (every input echoed, every key served with all its inputs) and has its
// duplicates and the aggregates it repeats or over-counts logged, not
// failed on. And on both brokers: kfake (a `mephisto broker` process of
// the run's own) and Apache Kafka in KRaft mode, three brokers (the
// transaction log with replication factor 3 and min.insync.replicas 2),
// shared by the package's runs, each of which names its app, group,
// transactional ids and topics after itself (proctest.SharedName; the
// app reads EOSTEST_APP_NAME and EOSTEST_TOPIC_PREFIX). The kafka
// subtests skip, saying why, without Java 17 and Maven or with
// MEPHISTO_KAFKA_OFF set. The four runs are parallel subtests; with
// go test's default -parallel on two cores two run at a time, and the
// package takes about three and a half minutes (each run some 70-85 s,
// the Kafka cluster's start 15 s).
//
// Every process's stdout and stderr go to files under
// $TMPDIR/mephisto-eostest-logs/<test>/; they are kept if the test fails
// (the tail of each is also logged) or if EOSTEST_KEEP_LOGS is set. Each
// kill is logged with the node, its pid and the partitions it was active
// for, so that a failure can be traced to the incarnation that wrote the
// record in question.
package eostest
