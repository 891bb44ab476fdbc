package node

import (
	"github.com/mephistohq/mephisto/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one node's Prometheus metrics, in a registry of its own so
// that several nodes can run in one process.
type metrics struct {
	reg               *prometheus.Registry
	eventsIn          *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	lag               *prometheus.GaugeVec
	tableWrites       *prometheus.CounterVec
	cacheHits         *prometheus.CounterVec
	cacheMisses       *prometheus.CounterVec
	recoveryRecords   *prometheus.CounterVec
	recoveryRemaining *prometheus.GaugeVec
	restarts          *prometheus.CounterVec
	deadLetters       *prometheus.CounterVec
	skipped           *prometheus.CounterVec
	commits           prometheus.Counter
	commitSeconds     prometheus.Histogram
	stopped           prometheus.Gauge
	ready             prometheus.Gauge
	standbyLag        *prometheus.GaugeVec
	globalLag         *prometheus.GaugeVec
	recoveryLast      *prometheus.GaugeVec
	evictions         prometheus.Counter
	generation        prometheus.Gauge
	timerRuns         *prometheus.CounterVec
	gossipDropped     *prometheus.CounterVec
	txnAborts         *prometheus.CounterVec
	windowLate        *prometheus.CounterVec
}

func newMetrics(app, node string) *metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"app": app, "node": node}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "mephisto", Name: name, Help: help, ConstLabels: labels}
	}
	m := &metrics{
		reg:      reg,
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts(f("events_in_total", "Records received from Kafka.")), []string{"topic"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "mephisto", Name: "processing_seconds",
			Help: "Time an agent's handler takes per event (sampled: one event in 16).", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)}, []string{"agent"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "mephisto", Name: "commit_seconds",
			Help: "Time a partition commit takes, from its start to its store write (changelog acked, Pebble synced).", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(1e-4, 2.5, 12)}),
		lag:               prometheus.NewGaugeVec(prometheus.GaugeOpts(f("consumer_lag", "Records behind the high watermark.")), []string{"topic", "partition"}),
		tableWrites:       prometheus.NewCounterVec(prometheus.CounterOpts(f("table_writes_total", "Table writes by handlers.")), []string{"table"}),
		cacheHits:         prometheus.NewCounterVec(prometheus.CounterOpts(f("table_cache_hits_total", "Table reads served by the shard's in-memory cache.")), []string{"table"}),
		cacheMisses:       prometheus.NewCounterVec(prometheus.CounterOpts(f("table_cache_misses_total", "Table reads that went to Pebble.")), []string{"table"}),
		recoveryRecords:   prometheus.NewCounterVec(prometheus.CounterOpts(f("recovery_records_total", "Changelog records replayed into table shards.")), []string{"table"}),
		recoveryRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts(f("recovery_remaining_records", "Changelog records left to replay before the shard is ready.")), []string{"table", "partition"}),
		restarts:          prometheus.NewCounterVec(prometheus.CounterOpts(f("grain_restarts_total", "Partition grains restarted by the supervisor.")), []string{"grain"}),
		deadLetters:       prometheus.NewCounterVec(prometheus.CounterOpts(f("dead_letters_total", "Records sent to a dead-letter topic.")), []string{"agent"}),
		skipped:           prometheus.NewCounterVec(prometheus.CounterOpts(f("skipped_total", "Records skipped by the error policy.")), []string{"agent"}),
		commits:           prometheus.NewCounter(prometheus.CounterOpts(f("commits_total", "Partition commits (changelog acked, Pebble synced, offsets marked)."))),
		stopped:           prometheus.NewGauge(prometheus.GaugeOpts(f("partitions_stopped", "Partitions stopped by an error policy."))),
		ready:             prometheus.NewGauge(prometheus.GaugeOpts(f("ready", "1 when every assigned partition is recovered and processing."))),
		standbyLag:        prometheus.NewGaugeVec(prometheus.GaugeOpts(f("standby_lag_records", "Changelog records a standby shard is behind.")), []string{"table", "partition"}),
		globalLag:         prometheus.NewGaugeVec(prometheus.GaugeOpts(f("global_table_lag_records", "Changelog records this node's copy of a global table's partition is behind.")), []string{"table", "partition"}),
		recoveryLast:      prometheus.NewGaugeVec(prometheus.GaugeOpts(f("recovery_last_records", "Changelog records replayed by the shard's last recovery (a promoted standby replays only its tail).")), []string{"table", "partition"}),
		evictions:         prometheus.NewCounter(prometheus.CounterOpts(f("dead_nodes_evicted_total", "Dead nodes this node removed from the consumer group to start a rebalance at once."))),
		generation:        prometheus.NewGauge(prometheus.GaugeOpts(f("group_generation", "The consumer group generation of this node's current assignment."))),
		timerRuns:         prometheus.NewCounterVec(prometheus.CounterOpts(f("timer_runs_total", "Timer and crontab runs on this node.")), []string{"timer"}),
		gossipDropped: prometheus.NewCounterVec(prometheus.CounterOpts(f("gossip_dropped_total",
			"Gossip messages dropped: malformed, unauthenticated (not under the gossip key), or naming a member nobody can address.")), []string{"reason"}),
		txnAborts: prometheus.NewCounterVec(prometheus.CounterOpts(f("transaction_aborts_total",
			"Partition transactions that could not commit (exactly_once): fenced (another producer took the partition, or the broker timed the transaction out) or error; each partition restarts from its last commit.")), []string{"reason"}),
		windowLate: prometheus.NewCounterVec(prometheus.CounterOpts(f("window_late_events_total",
			"Events dropped by a windowed table because every window they belong to had closed (older than the window's end plus grace, by stream time).")), []string{"table"}),
	}
	for _, r := range cluster.DropReasons {
		m.gossipDropped.WithLabelValues(string(r))
	}
	reg.MustRegister(m.eventsIn, m.latency, m.lag, m.tableWrites, m.cacheHits, m.cacheMisses, m.recoveryRecords, m.recoveryRemaining,
		m.restarts, m.deadLetters, m.skipped, m.commits, m.commitSeconds, m.stopped, m.ready,
		m.standbyLag, m.globalLag, m.recoveryLast, m.evictions, m.generation, m.timerRuns, m.gossipDropped, m.txnAborts, m.windowLate,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
