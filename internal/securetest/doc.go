// Package securetest holds the tests of Mephisto on a secured Kafka
// (issue 15): workers and the app binary's client commands connect
// through TLS and SASL — by flag and environment, as an operator runs them
// — to the dev broker started with --tls-cert, --tls-key and --sasl, and to
// Apache Kafka's SASL_SSL listener (the real-Kafka tier, skipped where Java
// or Maven is missing). Every certificate is made at run time
// (internal/certtest); nothing secret is checked in.
//
// A third-party client, kcat, reads what a worker wrote through the same
// listener where it is installed (apt-get install kcat); the test says so
// and skips that step where it is not.
//
//	go test -count=1 ./internal/securetest/
package securetest
