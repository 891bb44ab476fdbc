// Command mephisto-bench runs Mephisto's benchmarks (issue #5) and prints
// the results as a markdown table.
//
// Every workload runs against `mephisto broker` and against Apache Kafka
// (when Java and Maven are there), each broker in a separate process, and
// each workload is measured next to the raw sarama client doing the same
// Kafka work and next to the peers — Kafka Streams and Faust doing the same
// work — in the same run. From the repository root:
//
//	go run ./bench/cmd/mephisto-bench                       # all workloads, 1,000,000 events, 3 runs (make bench)
//	go run ./bench/cmd/mephisto-bench -n 50000 -runs 3 ...  # what make bench-quick runs
//	go run ./bench/cmd/mephisto-bench -workloads count,pass -n 200000
//	go run ./bench/cmd/mephisto-bench -brokers kafka -peers streams -workloads count
//
// The table goes to stdout and, with -out, to a file (with a header naming
// the date, machine, commit and command). Progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mephistohq/mephisto/bench/harness"
)

func main() {
	var o harness.Options
	var workloads, out, brokers, peers string
	flag.StringVar(&o.Root, "root", ".", "repository root to build from")
	flag.IntVar(&o.N, "n", 1_000_000, "events per throughput workload")
	flag.IntVar(&o.Runs, "runs", 3, "runs per workload (min / median / max are over the runs)")
	flag.IntVar(&o.Keys, "keys", 10_000, "distinct keys of count, failover and latency")
	flag.IntVar(&o.ValueSize, "value-size", 100, "input value size in bytes")
	flag.IntVar(&o.Windows, "windows", 20, "count-tumbling, count-hopping: how many 1-minute windows the input's event times span")
	flag.IntVar(&o.RecoverRecords, "recover-records", 0, "changelog records of the recover workloads (default -n)")
	flag.IntVar(&o.FailoverRuns, "failover-runs", 0, "runs of the failover workload (default -runs)")
	flag.IntVar(&o.LatencyRuns, "latency-runs", 0, "runs of the latency workload (default -runs)")
	flag.IntVar(&o.FailoverRate, "failover-rate", 5000, "events/s of load during failover")
	flag.DurationVar(&o.FailoverWarmup, "failover-warmup", 5*time.Second, "load before the kill in failover")
	flag.DurationVar(&o.LatencyDuration, "latency-duration", 10*time.Second, "how long the latency workload produces")
	flag.DurationVar(&o.AskDuration, "ask-duration", 0, "how long each path of the ask workload makes sequential round trips, per run (default: half of -latency-duration)")
	flag.Float64Var(&o.LatencyRate, "latency-rate", 0, "latency workload input rate, events/s (default: half of count's median)")
	flag.StringVar(&workloads, "workloads", "", "comma-separated workloads (default all: "+strings.Join(harness.Workloads, ",")+")")
	flag.StringVar(&o.WorkDir, "work-dir", "", "directory for binaries, logs and data (default: a temporary one)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work dir (logs, data) afterwards")
	flag.StringVar(&out, "out", "", "also write the report (with a header) to this markdown file")
	flag.StringVar(&brokers, "brokers", "", "comma-separated brokers every workload runs on: kfake (mephisto broker), kafka (Apache Kafka, KRaft) (default both when Java and Maven can start Apache Kafka, else kfake)")
	flag.StringVar(&peers, "peers", strings.Join(harness.Peers, ","), "comma-separated peers next to Mephisto: streams (Kafka Streams), faust; none for no peers")
	flag.IntVar(&o.PeerOpts.StreamsThreads, "streams-threads", 2, "Kafka Streams num.stream.threads")
	flag.Int64Var(&o.PeerOpts.StreamsCacheBytes, "streams-cache-bytes", 10<<20, "Kafka Streams statestore.cache.max.bytes")
	flag.IntVar(&o.PeerOpts.FaustRuns, "faust-runs", 1, "how many of each workload's runs Faust takes part in (the first ones)")
	flag.StringVar(&o.PeerOpts.FaustStore, "faust-store", "rocksdb://", "Faust's table store (rocksdb:// or memory://)")
	flag.StringVar(&o.PeerOpts.FaustVenv, "faust-venv", "", "Faust's virtual environment (default: made on first use under the user cache dir)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %v\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if workloads != "" {
		o.Workloads = strings.Split(workloads, ",")
	}
	switch peers {
	case "none", "":
		o.PeerOpts.Peers = []string{}
	default:
		o.PeerOpts.Peers = strings.Split(peers, ",")
	}
	if brokers != "" {
		o.Brokers = strings.Split(brokers, ",")
	} else {
		var why string
		if o.Brokers, why = harness.DefaultBrokers(); why != "" {
			fmt.Fprintf(os.Stderr, "mephisto-bench: Apache Kafka skipped, kfake only: %s\n", why)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	command := "go run ./bench/cmd/mephisto-bench " + strings.Join(os.Args[1:], " ")
	header := fmt.Sprintf("Date: %s  \nMachine: %s  \nCommit: %s  \nCommand: `%s`\n\n",
		time.Now().Format("2006-01-02 15:04 MST"), harness.Machine(), commit(o.Root), strings.TrimSpace(command))
	rep, err := harness.Run(ctx, o)
	if rep != nil {
		fmt.Print(header)
		rep.Markdown(os.Stdout)
		if out != "" {
			if werr := rep.WriteFile(out, header); werr != nil {
				fmt.Fprintln(os.Stderr, "write report:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mephisto-bench:", err)
		os.Exit(1)
	}
}

// commit names the checked-out commit, marked dirty when the work tree has
// changes.
func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}
