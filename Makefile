# Mephisto developer targets. Run `make help` for the list.

GO ?= go

# `make run` settings; override on the command line, e.g.
#   make run WORDCOUNT_RATE=50 RUN_ARGS='--web 127.0.0.1:6067 --embedded-broker 127.0.0.1:9093'
WORDCOUNT_RATE ?= 5
RUN_DIR ?= ./.run
RUN_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help run run-cluster test lint build clean proto

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## run the wordcount example with a generator (embedded broker 127.0.0.1:9092, HTTP 127.0.0.1:6066)
	@mkdir -p $(RUN_DIR)
	@echo "wordcount: embedded Kafka broker on 127.0.0.1:9092, HTTP on http://127.0.0.1:6066, state in $(RUN_DIR)/wordcount-data"
	@echo "  (ports taken? make run RUN_ARGS='--web 127.0.0.1:6067 --embedded-broker 127.0.0.1:9093'; stop with Ctrl-C)"
	@# Built, then exec'd rather than `go run`, so that Ctrl-C ends with the worker's clean exit status.
	$(GO) build -o $(RUN_DIR)/wordcount ./examples/wordcount
	WORDCOUNT_RATE=$(WORDCOUNT_RATE) exec $(RUN_DIR)/wordcount worker --data-dir $(RUN_DIR)/wordcount-data $(RUN_ARGS)

run-cluster: ## a dev broker and three wordcount nodes with load; prints each node's URL (kill one and watch)
	./scripts/run-cluster.sh

test: ## vet, then run every test with the race detector (with the real-Kafka tier where Java 17+ and Maven are on PATH)
	$(GO) vet ./...
	@if [ -n "$$MEPHISTO_KAFKA_OFF" ]; then echo "real-Kafka tier: off (MEPHISTO_KAFKA_OFF is set): the suites run on kfake only"; \
	elif command -v java >/dev/null && command -v mvn >/dev/null; then \
	echo "real-Kafka tier: on: the critical suites also run on Apache Kafka $$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' test/kafka/pom.xml) ($$(java -version 2>&1 | head -1)); MEPHISTO_KAFKA_OFF=1 turns it off"; \
	else echo "real-Kafka tier: SKIPPED: java or mvn is not on PATH; the suites run on kfake only (install Java 17+ and Maven to run it)"; fi
	$(GO) test -race -timeout 20m ./...

lint: ## fail if any file needs gofmt; go vet
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

build: ## build every package, and bin/mephisto, bin/wordcount, bin/orders
	$(GO) build ./...
	$(GO) build -o bin/ ./cmd/mephisto ./examples/wordcount ./examples/orders ./examples/adder

proto: ## regenerate actors/envelopepb from its .proto (needs protoc and protoc-gen-go; the generated code is committed)
	cd actors/envelopepb && protoc --go_out=. --go_opt=paths=source_relative envelope.proto

clean: ## remove bin/ and the `make run` state (./.run by default)
	rm -rf bin $(RUN_DIR)

# Benchmarks (issues #5, 10): every workload against `mephisto broker` and,
# when Java and Maven are there, against Apache Kafka, each broker in its own
# process, next to the raw sarama client and the peers (Kafka Streams from
# bench/streams, Faust from a virtual environment the harness makes) measured
# in the same run; a peer whose toolchain is missing is skipped with the
# reason. Extra flags for the harness:
#   make bench BENCH_ARGS='-workloads count,pass -keep'
#   make bench BENCH_ARGS='-brokers kfake -peers streams'   # no Apache Kafka, no Faust
BENCH_ARGS ?=

.PHONY: bench bench-quick

bench: ## all benchmark workloads on kfake and Apache Kafka, with the peers, 1,000,000 events, 3 runs each (Faust 1); table on stdout and in bench/results/bench.md
	$(GO) run ./bench/cmd/mephisto-bench -n 1000000 -runs 3 -out bench/results/bench.md $(BENCH_ARGS)

bench-quick: ## the same on 100,000 events, 3 runs each (Faust 1); table in bench/results/quick.md
	$(GO) run ./bench/cmd/mephisto-bench -n 100000 -runs 3 -failover-warmup 2s -latency-duration 3s -out bench/results/quick.md $(BENCH_ARGS)
