// Command broker starts Apache Kafka in KRaft mode on loopback, the same
// broker the real-Kafka test tier and the benchmarks start, for trials by
// hand:
//
//	go run ./test/kafka/broker              # one broker, state in a temporary dir
//	go run ./test/kafka/broker -brokers 3   # three, each also a controller
//
// It prints the bootstrap addresses once every broker serves, and stops the
// brokers cleanly on Ctrl-C or SIGTERM. Java 17+ and Maven must be on PATH;
// the jars come from Maven Central into the local Maven cache on first use.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mephistohq/mephisto/internal/proctest"
)

func main() {
	brokers := flag.Int("brokers", 1, "how many brokers (each is also a KRaft controller)")
	dir := flag.String("dir", "", "data dirs and logs go here (default: a temporary dir, removed at the end)")
	flag.Parse()
	if err := run(*brokers, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

func run(brokers int, dir string) error {
	if brokers < 1 {
		return fmt.Errorf("-brokers must be at least 1, got %d", brokers)
	}
	if err := proctest.KafkaAvailable(); err != nil {
		return err
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "mephisto-kafka-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	k, err := proctest.StartKafka(proctest.KafkaSpec{Brokers: brokers, Dir: dir})
	if err != nil {
		return err
	}
	fmt.Printf("Apache Kafka %s listening on %s cluster-id %s (logs and data in %s; Ctrl-C stops it)\n",
		proctest.KafkaVersion(), k.Bootstrap(), k.ClusterID, dir)
	select {
	case <-stop:
	case <-k.Proc(0).Done():
		fmt.Fprintln(os.Stderr, "broker: kafka-1 exited:", k.Proc(0).DescribeExit())
	}
	return k.Stop()
}
