package clustertest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/kafka"
)

// TestClusterExact: three worker processes share the partitions — every
// partition has exactly one active and one standby on another node, the
// actives balanced — and after 30,000 records over 300 keys every node
// answers every key with exactly the number of records sent for it.
func TestClusterExact(t *testing.T) {
	eachBroker(t, func(t *testing.T, b *broker) {
		c := newCluster(t, b, 3)
		ids := []string{"n1", "n2", "n3"}
		var gen int32 = -1
		for _, w := range c.workers {
			v, err := w.cluster()
			if err != nil {
				t.Fatal(err)
			}
			if why := v.Check(ids, numPartitions); why != "" {
				t.Fatalf("%s's /cluster: %s", w.id, why)
			}
			if gen >= 0 && v.Generation != gen {
				t.Errorf("%s's /cluster is of generation %d, another node's of %d", w.id, v.Generation, gen)
			}
			gen = v.Generation
			perNode := map[string]int{}
			for _, p := range v.Partitions {
				perNode[p.Active]++
				if p.Group != c.app {
					t.Errorf("%s: partition %d of group %q, want %q", w.id, p.Partition, p.Group, c.app)
				}
				if len(p.Standbys) != 1 || p.Standbys[0] == p.Active || !contains(ids, p.Standbys[0]) {
					t.Errorf("%s: partition %d: active %s, standbys %v; want one standby on another node", w.id, p.Partition, p.Active, p.Standbys)
				}
			}
			lo, hi := numPartitions, 0
			for _, id := range ids {
				lo, hi = min(lo, perNode[id]), max(hi, perNode[id])
			}
			if hi-lo > 1 {
				t.Errorf("%s: actives per node %v are not balanced", w.id, perNode)
			}
			t.Logf("%s's view: generation %d, actives per node %v", w.id, v.Generation, perNode)
		}

		prod := c.newProducer(t)
		tr := newTruth()
		keys := keysNamed("key", 300)
		preload(t, prod, tr, keys, 30_000, rand.New(rand.NewPCG(1, 2)))
		want, _ := tr.snapshot()
		served := c.waitAllProcessed(90*time.Second, c.workers, viaEach(c.workers), want)
		if below, excess, exact := compare(served, want); !exact {
			t.Errorf("counts differ from the truth: %d keys below (%v), excess %d", len(below), below[:min(5, len(below))], excess)
		}
		c.checkChangelog(served)
	})
}

// TestKillNineFailover: under continuous load, one worker that is active
// for some partitions is killed with SIGKILL. The survivors take its
// partitions over: it measures the failover time, then checks that nothing
// acknowledged was lost, that what was counted twice is bounded by what
// was not committed at the kill, that the promoted standbys replayed only
// their changelog tail, and that the survivors evicted the dead node
// instead of waiting for the session timeout.
func TestKillNineFailover(t *testing.T) {
	eachBroker(t, func(t *testing.T, b *broker) {
		c := newCluster(t, b, 3)
		prod := c.newProducer(t)
		tr := newTruth()
		keys := keysNamed("key", 2000)
		preload(t, prod, tr, keys, 20_000, rand.New(rand.NewPCG(3, 4)))
		const rate = 1500
		ld := startLoad(t, prod, tr, keys, rate)
		waitFor(t, 60*time.Second, "preload processed (group lag under half a second of load)", func() (bool, string) {
			c.running(c.workers)
			end, com := c.endOffsets(c.events), c.committed()
			var lag int64
			for p := range end {
				lag += end[p] - com[p]
			}
			return lag < rate/2, fmt.Sprintf("group lag %d", lag)
		})
		// Seconds of steady state: standbys tail, commits every 100ms, and the
		// changelog grows (by about one record per key written per commit)
		// to well over a thousand records per partition, so that "a promoted
		// standby replays < 10% of it" means something.
		steady := time.Now().Add(5 * time.Second)
		waitFor(t, 15*time.Second, "5s of steady load", func() (bool, string) {
			c.running(c.workers)
			return time.Now().After(steady), "loading"
		})

		before, err := c.worker("n1").cluster()
		if err != nil {
			t.Fatal(err)
		}
		perNode := map[string][]int32{}
		standbyOf := map[int32][]string{}
		for _, p := range before.Partitions {
			perNode[p.Active] = append(perNode[p.Active], p.Partition)
			standbyOf[p.Partition] = p.Standbys
		}
		// The victim: the node whose death the standby placement covers
		// worst. With 2 survivors each must end with numPartitions/2 actives,
		// so survivor s takes need(s) = numPartitions/2 - actives(s) of the
		// victim's partitions, warm only for those it is standby of: at least
		// |victim's| - Σ min(need(s), warm(s)) of them go to a node without a
		// standby copy, unless the assignor also moves survivors' own
		// partitions to make room. Killing that node checks DESIGN decision 8
		// ("promotion only replays the tail") in its worst single failure; ties
		// go to the node with the most actives, then n2 (not the lowest id, so
		// that another node evicts it).
		victimID, worstCold := "", -1
		for _, id := range []string{"n2", "n3", "n1"} {
			if len(perNode[id]) == 0 {
				continue
			}
			cold := len(perNode[id])
			for _, s := range []string{"n1", "n2", "n3"} {
				if s == id {
					continue
				}
				need := numPartitions/2 - len(perNode[s])
				warm := 0
				for _, p := range perNode[id] {
					if contains(standbyOf[p], s) {
						warm++
					}
				}
				cold -= max(0, min(need, warm))
			}
			if cold > worstCold || (cold == worstCold && len(perNode[id]) > len(perNode[victimID])) {
				victimID, worstCold = id, cold
			}
		}
		victim := c.worker(victimID)
		var survivors []*worker
		for _, w := range c.workers {
			if w != victim {
				survivors = append(survivors, w)
			}
		}
		lost := perNode[victimID]
		t.Logf("generation %d: actives %v, standbys %v; killing %s (active for %v; by the standby placement at least %d of them must go to a node without a standby copy)",
			before.Generation, perNode, standbyOf, victimID, lost, worstCold)

		committedBefore := c.committed()
		probes := probeKeys("kill")
		victim.proc.SignalT(t, syscall.SIGKILL)
		killed := time.Now()
		if _, sig := victim.proc.WaitT(t, 10*time.Second); sig != syscall.SIGKILL {
			t.Fatalf("%s: %s, want killed by SIGKILL", victimID, victim.proc.DescribeExit())
		}
		// Right after the kill: one probe record per partition.
		probeTruth := newTruth()
		if err := send(prod, probeTruth, probes); err != nil {
			t.Fatalf("produce the probes: %v", err)
		}
		endAtKill := c.endOffsets(c.events)
		changelogAtKill := c.endOffsets(c.changelog)

		// Failover time: from the kill until every probe reads 1 through the
		// survivors, i.e. every partition is processing again.
		pending := map[string]bool{}
		for _, k := range probes {
			pending[k] = true
		}
		var failover time.Duration
		deadline := killed.Add(90 * time.Second)
		for i := 0; len(pending) > 0; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("after %v, probes not processed yet: %v", time.Since(killed).Round(time.Millisecond), pending)
			}
			c.running(survivors)
			via := survivors[i%len(survivors)]
			for k := range pending {
				if v, ok, err := via.readKey(k); err == nil && ok && v >= 1 {
					delete(pending, k)
				}
			}
			if len(pending) == 0 {
				failover = time.Since(killed)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("FAILOVER on %s: %v from kill -9 of %s to every partition processing again (all %d probes read 1 via the survivors)",
			b.name, failover.Round(time.Millisecond), victimID, len(probes))
		logTimeline(t, killed, survivors, []string{"gossip: node dead", "removed a dead node", "partitions released",
			"partitions assigned", "promoted standby shard"})
		if out := os.Getenv("MEPHISTO_FAILOVER_OUT"); out != "" {
			if b.kafka != nil {
				out += ".kafka"
			}
			line := fmt.Sprintf("%.3f\n", failover.Seconds())
			if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
				t.Errorf("write MEPHISTO_FAILOVER_OUT: %v", err)
			} else {
				t.Logf("failover seconds written to %s", out)
			}
		}

		// Keep loading on the survivors for a while, then stop and let them
		// catch up.
		after := time.Now().Add(3 * time.Second)
		waitFor(t, 10*time.Second, "3s more load after the failover", func() (bool, string) {
			c.running(survivors)
			return time.Now().After(after), "loading"
		})
		ld.stop(t)
		want, failed := tr.snapshot()
		served := c.waitAllProcessed(90*time.Second, survivors, viaEach(survivors), want)

		// Nothing acknowledged is lost; what was counted twice was in flight.
		below, excess, _ := compare(served, want)
		if len(below) > 0 {
			t.Errorf("%d keys LOST acknowledged records after the kill: %v", len(below), below[:min(10, len(below))])
		}
		var inFlight int64 // on the victim's partitions
		for _, p := range lost {
			inFlight += endAtKill[p] - committedBefore[p]
		}
		excessOf := map[int32]int64{}
		for k, w := range want {
			if d := served[k] - w; d > 0 {
				excessOf[kafkaPartition(k)] += d
			}
		}
		var onLost, onOthers int64
		for p, e := range excessOf {
			if contains(lost, p) {
				onLost += e
			} else {
				onOthers += e
			}
		}
		t.Logf("EXCESS: %d records counted twice (%d on %s's partitions %v, %d on the others; per partition %v) out of %d acknowledged (%d sends failed); "+
			"bound: %d records of %s's partitions were not committed to Kafka at the kill",
			excess, onLost, victimID, lost, onOthers, excessOf, tr.total(), failed, inFlight, victimID)
		// The bound: a record is counted twice only if a node processed it and
		// its work was lost before the group's committed offset passed it. The
		// victim lost the records of its partitions between the committed
		// offsets (read just before the kill: at most what was committed at
		// the kill) and the end offsets (read just after it: at least what it
		// could have processed). Committed offsets reach Kafka by sarama's
		// auto-commit (every 1s) after each 100ms commit, so this is up to about a
		// second of the victim's share of the load. The survivors lose nothing:
		// they hand partitions over with a commit on revoke, so their
		// partitions must show no excess at all.
		if onLost > inFlight+failed {
			t.Errorf("excess %d on %s's partitions exceeds the %d records of them not committed at the kill (+%d failed sends)", onLost, victimID, inFlight, failed)
		}
		if onOthers > failed {
			t.Errorf("%d records of the survivors' partitions were counted twice (per partition %v): a clean hand-over (commit on revoke) should count none twice", onOthers, excessOf)
		}
		for k, n := range probeTruth.counts {
			v, ok, err := survivors[0].readKey(k)
			if err != nil || !ok || v != n {
				t.Errorf("probe %s reads %d (found %v, err %v), want %d", k, v, ok, err, n)
			}
		}

		// The survivors' view: 2 nodes, a later generation, every partition
		// active on a survivor with a standby on the other.
		survivorIDs := []string{survivors[0].id, survivors[1].id}
		var afterView clusterView
		for _, w := range survivors {
			v, err := w.cluster()
			if err != nil {
				t.Fatal(err)
			}
			if why := v.Check(survivorIDs, numPartitions); why != "" {
				t.Errorf("%s's /cluster after the failover: %s", w.id, why)
			}
			if v.Generation <= before.Generation {
				t.Errorf("%s's /cluster: generation %d, want > %d", w.id, v.Generation, before.Generation)
			}
			for _, p := range v.Partitions {
				if len(p.Standbys) != 1 || p.Standbys[0] == p.Active {
					t.Errorf("%s: partition %d: active %s standbys %v after the failover", w.id, p.Partition, p.Active, p.Standbys)
				}
			}
			afterView = v
		}

		// The promoted standbys replayed only their tail.
		newOwner := afterView.Actives()
		for _, p := range lost {
			owner := c.worker(newOwner[p])
			size := changelogAtKill[p]
			replayed, ok, err := owner.metric("mephisto_recovery_last_records",
				map[string]string{"table": countsTable, "partition": strconv.Itoa(int(p))})
			if err != nil || !ok {
				t.Errorf("partition %d: no mephisto_recovery_last_records on its new owner %s (err %v)", p, owner.id, err)
				continue
			}
			wasStandby := contains(standbyOf[p], owner.id)
			t.Logf("partition %d: %s → %s (standby there before: %v): replayed %v of %d changelog records (%.1f%%)",
				p, victimID, owner.id, wasStandby, replayed, size, 100*replayed/float64(max(1, size)))
			if size < 1000 {
				t.Errorf("partition %d: only %d changelog records: too few for the tail check to mean anything", p, size)
			}
			if replayed >= 0.1*float64(size) {
				t.Errorf("partition %d: its new owner %s replayed %v of %d changelog records: not only the tail (standby before: %v)",
					p, owner.id, replayed, size, wasStandby)
			}
		}
		var promoted bool
		for _, w := range survivors {
			promoted = promoted || strings.Contains(w.logs(), "promoted standby shard")
		}
		if !promoted {
			t.Errorf("no survivor logged %q", "promoted standby shard")
		}
		var evicted bool
		for _, w := range survivors {
			for _, line := range strings.Split(w.logs(), "\n") {
				if strings.Contains(line, "removed a dead node from the consumer group") && strings.Contains(line, "dead_node="+victimID) {
					evicted = true
					t.Logf("%s: %s", w.id, line)
				}
			}
		}
		if !evicted {
			t.Errorf("no survivor logged %q for %s", "removed a dead node from the consumer group", victimID)
		}
		c.checkChangelog(served)
	})
}

// TestRollingRestart: under continuous load, each worker in turn is
// stopped with SIGTERM (it must exit 0) and started again with the same
// node id, ports and data dir; the cluster must be whole and ready again
// before the next. Clean stops commit on revoke, so at the end every count
// must equal the truth exactly.
func TestRollingRestart(t *testing.T) {
	eachBroker(t, func(t *testing.T, b *broker) {
		c := newCluster(t, b, 3)
		prod := c.newProducer(t)
		tr := newTruth()
		keys := keysNamed("key", 500)
		preload(t, prod, tr, keys, 5_000, rand.New(rand.NewPCG(5, 6)))
		ld := startLoad(t, prod, tr, keys, 800)
		loadFor(t, c, 2*time.Second)
		gossipOK := true
		for _, w := range c.workers {
			before, err := c.worker(otherThan(w.id)).cluster()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			w.proc.SignalT(t, syscall.SIGTERM)
			if code, sig := w.proc.WaitT(t, 45*time.Second); code != 0 {
				t.Fatalf("%s after SIGTERM: exit code %d (signal %v), want 0", w.id, code, sig)
			}
			stopped := time.Since(start)
			w.start()
			v, d := c.waitFormed(60*time.Second, c.workers, false)
			t.Logf("RESTART %s: stopped cleanly in %v; all three ready again in one plan (generation %d, before %d) %v after the start",
				w.id, stopped.Round(time.Millisecond), v.Generation, before.Generation, d.Round(time.Millisecond))
			if moved := movedPartitions(before, v); len(moved) > 0 {
				t.Logf("partitions that changed owner across the restart of %s: %v", w.id, moved)
			}
			// Gossip must agree too, or nodes refuse to route reads to the
			// nodes they think are gone. Checked apart (and not fatally) so
			// that the counts are still checked if it does not.
			if why := c.gossipConverged(15*time.Second, c.workers); why != "" {
				gossipOK = false
				t.Errorf("after restarting %s with the same flags, gossip does not converge within 15s: %s", w.id, why)
				for _, x := range c.workers {
					if _, err := x.readAll(keys[:50]); err != nil {
						t.Logf("reads through %s fail: %v", x.id, err)
					}
				}
			}
			loadFor(t, c, time.Second)
		}
		ld.stop(t)
		want, failed := tr.snapshot()
		// Read through every node if gossip agrees by now (it does once every
		// node has restarted and rejoined the seed), else from each key's owner.
		readers := viaEach(c.workers)
		if why := c.gossipConverged(5*time.Second, c.workers); why != "" {
			t.Logf("gossip still split at the end (%s): reading each key from its owner", why)
			readers = []reader{viaOwners(c.workers)}
		} else if !gossipOK {
			t.Logf("gossip agrees again now that every node has restarted")
		}
		served := c.waitAllProcessed(90*time.Second, c.workers, readers, want)
		below, excess, exact := compare(served, want)
		t.Logf("EXCESS: %d over %d acknowledged records (%d sends failed)", excess, tr.total(), failed)
		if len(below) > 0 {
			t.Errorf("%d keys LOST acknowledged records: %v", len(below), below[:min(10, len(below))])
		}
		// At-least-once allows excess, but a clean stop drains every partition
		// and commits on revoke before the process exits (exit 0 checked), so
		// nothing is processed twice: exact is required (and observed: 0
		// records counted twice in every run so far).
		if !exact && excess > failed {
			t.Errorf("counts are not exact after clean restarts: %d records counted twice", excess)
		}
		c.checkChangelog(served)
	})
}

func otherThan(id string) string {
	if id == "n1" {
		return "n2"
	}
	return "n1"
}

// movedPartitions lists the partitions whose active differs between a and b.
func movedPartitions(a, b clusterView) []string {
	was := a.Actives()
	var out []string
	for p, id := range b.Actives() {
		if was[p] != id {
			out = append(out, fmt.Sprintf("%d: %s→%s", p, was[p], id))
		}
	}
	sort.Strings(out)
	return out
}

// TestGossipPartition: one node is cut off from gossip (tc drops its
// gossip port's packets) but not from Kafka. The others declare it dead
// and evict it from the consumer group; it keeps heartbeating Kafka, so it
// rejoins. Under load, no key may end below the truth and every node must
// always see exactly one active per partition; after healing, the three
// nodes agree again and the counts are the truth (plus what was counted
// twice, reported).
//
// It runs on kfake only: it passes on Apache Kafka too (eachBroker), but
// costs the tier another half minute.
func TestGossipPartition(t *testing.T) {
	requireTC(t)
	c := newCluster(t, kfake(), 3)
	prod := c.newProducer(t)
	tr := newTruth()
	keys := keysNamed("key", 500)
	preload(t, prod, tr, keys, 5_000, rand.New(rand.NewPCG(8, 9)))
	ld := startLoad(t, prod, tr, keys, 800)
	loadFor(t, c, 2*time.Second)

	cut := c.worker("n3")
	before, err := c.worker("n1").cluster()
	if err != nil {
		t.Fatal(err)
	}
	g := cutPort(t, cut.gossipPort())
	if reachable(cut.gossipPort(), 300*time.Millisecond) {
		t.Fatalf("the gossip port %d of %s still answers TCP after the cut (%s)", cut.gossipPort(), cut.id, g.recipe)
	}
	cutAt := time.Now()
	n1 := c.worker("n1")
	waitFor(t, 30*time.Second, "n1 evicts n3 from the consumer group", func() (bool, string) {
		c.running(c.workers)
		for _, line := range strings.Split(n1.logs(), "\n") {
			if strings.Contains(line, "removed a dead node from the consumer group") && strings.Contains(line, "dead_node=n3") {
				return true, ""
			}
		}
		return false, "not yet"
	})
	// It rejoins through Kafka: a plan of a later generation holds all
	// three again.
	waitFor(t, 60*time.Second, "n3 back in the consumer group (a plan with 3 nodes after the eviction)", func() (bool, string) {
		c.running(c.workers)
		v, err := n1.cluster()
		if err != nil {
			return false, err.Error()
		}
		return len(v.Nodes) == 3 && v.Generation > before.Generation,
			fmt.Sprintf("generation %d (before the cut %d), %d nodes", v.Generation, before.Generation, len(v.Nodes))
	})
	// Stay partitioned a while, watching that every node always sees
	// exactly one active per partition, and how reads fare.
	gens := map[string]map[int32]bool{}
	samples := 0
	probeOf := map[int32]string{} // a loaded key of every partition
	for _, k := range keys {
		if p := kafkaPartition(k); probeOf[p] == "" {
			probeOf[p] = k
		}
	}
	type readStat struct{ ok, failed int }
	reads := map[string]*readStat{} // "via n1 → active n3"
	until := time.Now().Add(8 * time.Second)
	for time.Now().Before(until) {
		c.running(c.workers)
		for _, w := range c.workers {
			v, err := w.cluster()
			if err != nil {
				t.Errorf("%s's /cluster while partitioned: %v", w.id, err)
				continue
			}
			if gens[w.id] == nil {
				gens[w.id] = map[int32]bool{}
			}
			gens[w.id][v.Generation] = true
			if why := v.OnePerPartition(numPartitions); why != "" {
				t.Errorf("%s's /cluster (generation %d) while partitioned: %s", w.id, v.Generation, why)
				continue
			}
			for _, p := range v.Partitions {
				what := fmt.Sprintf("via %s of partitions active on %s", w.id, p.Active)
				if reads[what] == nil {
					reads[what] = &readStat{}
				}
				if _, _, err := w.readKey(probeOf[p.Partition]); err != nil {
					reads[what].failed++
				} else {
					reads[what].ok++
				}
			}
			samples++
		}
		time.Sleep(200 * time.Millisecond)
	}
	evictions := 0
	for _, w := range c.workers {
		evictions += strings.Count(w.logs(), "removed a dead node from the consumer group")
	}
	t.Logf("partitioned for %v: generations seen per node %v over %d samples; %d evictions logged",
		time.Since(cutAt).Round(time.Millisecond), sortedGens(gens), samples, evictions)
	var readLines []string
	for what, st := range reads {
		readLines = append(readLines, fmt.Sprintf("%s: %d ok, %d failed", what, st.ok, st.failed))
	}
	sort.Strings(readLines)
	t.Logf("table reads while partitioned:\n\t%s", strings.Join(readLines, "\n\t"))

	g.heal()
	healed := time.Now()
	_, d := c.waitFormed(60*time.Second, c.workers, true)
	t.Logf("healed: all three alive, ready and in one generation %v after the heal", d.Round(time.Millisecond))
	loadFor(t, c, time.Second)
	ld.stop(t)
	want, failed := tr.snapshot()
	served := c.waitAllProcessed(90*time.Second, c.workers, viaEach(c.workers), want)
	below, excess, _ := compare(served, want)
	t.Logf("EXCESS: %d records counted twice over %d acknowledged (%d sends failed); healed %v ago",
		excess, tr.total(), failed, time.Since(healed).Round(time.Millisecond))
	if len(below) > 0 {
		t.Errorf("%d keys LOST acknowledged records: %v", len(below), below[:min(10, len(below))])
	}
	for _, w := range c.workers {
		v, err := w.cluster()
		if err != nil {
			t.Fatal(err)
		}
		if why := v.Check([]string{"n1", "n2", "n3"}, numPartitions); why != "" {
			t.Errorf("%s's /cluster at the end: %s", w.id, why)
		}
	}
	c.checkChangelog(served)
}

// loadFor lets the load run for d, failing if a process dies meanwhile.
func loadFor(t *testing.T, c *cluster, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		c.running(c.workers)
		time.Sleep(pollEvery)
	}
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func kafkaPartition(key string) int32 {
	return kafka.Partition([]byte(key), numPartitions)
}

func sortedGens(g map[string]map[int32]bool) map[string][]int32 {
	out := map[string][]int32{}
	for id, m := range g {
		for gen := range m {
			out[id] = append(out[id], gen)
		}
		sort.Slice(out[id], func(i, j int) bool { return out[id][i] < out[id][j] })
	}
	return out
}

var logTime = regexp.MustCompile(`^time=(\S+) `)

// logTimeline logs, for each survivor, when each of the events (log
// messages) first happened after t0.
func logTimeline(t *testing.T, t0 time.Time, ws []*worker, events []string) {
	t.Helper()
	var lines []string
	for _, w := range ws {
		seen := map[string]bool{}
		for _, line := range strings.Split(w.logs(), "\n") {
			m := logTime.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || at.Before(t0) {
				continue
			}
			for _, ev := range events {
				if !seen[ev] && strings.Contains(line, ev) {
					seen[ev] = true
					lines = append(lines, fmt.Sprintf("+%6dms %s: %s", at.Sub(t0).Milliseconds(), w.id, ev))
				}
			}
		}
	}
	sort.Strings(lines)
	t.Logf("timeline after the kill:\n\t%s", strings.Join(lines, "\n\t"))
}
