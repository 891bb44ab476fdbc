package eostest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// The chaos schedule and the bounds of the waits around it.
const (
	// chaosDuration is how long the nodes are killed and restarted while
	// the driver produces.
	chaosDuration = time.Minute
	// A node is killed every minKillEvery to maxKillEvery, and restarted
	// on its data dir up to maxDown later.
	minKillEvery = 2 * time.Second
	maxKillEvery = 5 * time.Second
	maxDown      = 2 * time.Second

	formTimeout    = 2 * time.Minute // three nodes, one cluster
	catchUpTimeout = 3 * time.Minute // the group's lag to 0 after the chaos
	tablesTimeout  = time.Minute     // every node serving the final values
)

var guarantees = []string{"exactly_once", "at_least_once"}

// TestChaos: three worker processes of the test app process a numbered
// input while, for chaosDuration, a random one is killed with SIGKILL
// every few seconds and restarted on its data dir; then the verifier
// reads every output read committed. Under exactly_once every input has
// exactly one echo, each key's aggregates are exactly the sequence an
// exact run produces, and the tables (over HTTP, through every node) and
// their changelog hold exactly the final aggregates. Under at_least_once
// nothing is lost; its duplicates are counted and logged. On kfake (a
// `mephisto broker` per run) and Apache Kafka (three brokers, shared).
func TestChaos(t *testing.T) {
	t.Parallel()
	t.Run("kfake", func(t *testing.T) {
		t.Parallel()
		for _, g := range guarantees {
			t.Run(g, func(t *testing.T) {
				t.Parallel()
				logDir := proctest.LogDir(t, "eostest")
				chaos(t, kfake(t, logDir), g, logDir)
			})
		}
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		k := sharedKafka.Get(t)
		for _, g := range guarantees {
			t.Run(g, func(t *testing.T) {
				t.Parallel()
				chaos(t, onKafka(t, k), g, proctest.LogDir(t, "eostest"))
			})
		}
	})
}

// chaos is one run: the cluster on b under guarantee g, the driver, the
// kills, the catch-up and the verdict.
func chaos(t *testing.T, b *broker, g, logDir string) {
	began := time.Now()
	c := newCluster(t, b, g, logDir)
	for _, n := range c.nodes {
		n.start()
	}
	c.waitFormed(formTimeout)
	formed := time.Since(began)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("seed %d (keys and kills)", seed)
	d := c.startDriver(keysSpread(), seed)
	kills, restarts := c.killLoop(rng)
	d.stop()
	t.Logf("driver: %d records sent in %v (%.0f/s), %d acknowledged, %d sends failed (last error: %v)",
		d.sent.Load(), d.took.Round(time.Millisecond), float64(d.sent.Load())/d.took.Seconds(), d.acked, len(d.failed), d.lastErr)

	caughtUp := time.Now()
	c.waitFormed(formTimeout)
	proctest.WaitForT(t, catchUpTimeout, "the group caught up with the input, every output transaction decided", func() (bool, string) {
		c.running()
		lag, err := c.lag()
		switch {
		case err != nil:
			return false, err.Error()
		case lag > 0:
			return false, fmt.Sprintf("group lag %d records", lag)
		}
		open, err := c.unsettled(c.echo, c.aggregates, c.changelog)
		if err != nil {
			return false, err.Error()
		}
		return open == "", "open: " + open
	})
	catchUp := time.Since(caughtUp)

	v := c.verify(d)
	exact := g == "exactly_once"
	tc, tablesErr := c.waitTables(v.final, exact)

	dups := v.echoDup.n + v.aggDup.n
	losses := v.echoLost.n + tc.below.n
	t.Logf("%s on %s: %d inputs over %d keys; %d kills, %d restarts in %v; outputs verified: %d echoes, %d aggregates, %d changelog records, %d table reads over HTTP; duplicates %d (echoes %d, aggregates %d); losses %d (echoes %d, tables %d); times: formed %v, caught up %v after the chaos, run %v",
		g, b.name, v.inputs, v.keys, kills, restarts, chaosDuration, v.echoes, v.aggregates, v.changelog, tc.reads,
		dups, v.echoDup.n, v.aggDup.n, losses, v.echoLost.n, tc.below.n,
		formed.Round(time.Millisecond), catchUp.Round(time.Millisecond), time.Since(began).Round(time.Second))
	t.Logf("error lines in the workers' logs: %s", c.errorLines())

	// Both guarantees: the input is the driver's, nothing acknowledged is
	// missing from it, and nothing is lost.
	check := func(what string, f findings) {
		t.Helper()
		if f.n > 0 {
			t.Errorf("%s: %v", what, f)
		}
	}
	report := func(what string, f findings) {
		t.Helper()
		t.Logf("%s: %v", what, f)
	}
	check("input records the driver did not write", v.badIn)
	check("acknowledged inputs missing from the input topic", v.missing)
	check("echoes of no input", v.echoBad)
	check("inputs without an echo (lost)", v.echoLost)
	if tablesErr != nil {
		t.Errorf("tables over HTTP: %v", tablesErr)
	}
	check("keys served with fewer inputs than they had (lost)", tc.below)
	if v.inputs == 0 {
		t.Errorf("no input was processed")
	}
	if exact {
		check("echoes beyond the first of an input (duplicates)", v.echoDup)
		check("keys whose aggregates are not the exact run's sequence", v.aggWrong)
		check("aggregates missing", v.aggLost)
		check("aggregates duplicated", v.aggDup)
		check("aggregates no exact run produces", v.aggOff)
		check("changelog values no exact run produces", v.clOff)
		check("changelog values going back", v.clBack)
		check("changelog not ending at the final aggregates", v.clLast)
		check("values served over HTTP that are not the final aggregates", tc.wrong)
		return
	}
	report("at_least_once: echoes beyond the first of an input (duplicates)", v.echoDup)
	report("at_least_once: keys whose aggregates are not the exact run's sequence", v.aggWrong)
	report("at_least_once: aggregates of the exact run missing (replays on over-counted state)", v.aggLost)
	report("at_least_once: aggregates duplicated", v.aggDup)
	report("at_least_once: aggregates no exact run produces (inputs counted twice)", v.aggOff)
	report("at_least_once: changelog values no exact run produces", v.clOff)
	report("at_least_once: changelog not ending at the final aggregates", v.clLast)
	report("at_least_once: values served over HTTP that are not the final aggregates", tc.wrong)
}

// killLoop kills a random node with SIGKILL every minKillEvery to
// maxKillEvery and restarts it on its data dir up to maxDown later, for
// chaosDuration; it returns how many kills and restarts it made.
func (c *cluster) killLoop(rng *rand.Rand) (kills, restarts int) {
	t := c.t
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	end := time.Now().Add(chaosDuration)
	for time.Now().Before(end) {
		c.pace(between(minKillEvery, maxKillEvery), nil)
		victim := c.nodes[rng.IntN(len(c.nodes))]
		active := "its view unavailable"
		if view, err := proctest.Cluster(victim.web); err == nil {
			var ps []string
			for p, id := range view.Actives() {
				if id == victim.id {
					ps = append(ps, fmt.Sprint(p))
				}
			}
			slices.Sort(ps)
			active = fmt.Sprintf("active for partitions [%s] in its view of generation %d", strings.Join(ps, " "), view.Generation)
		}
		pid := victim.proc.Pid()
		victim.kill()
		kills++
		t.Logf("kill -9 %s (%s, pid %d, %s)", victim.proc.Name(), victim.id, pid, active)
		c.pace(between(0, maxDown), victim)
		victim.start()
		restarts++
	}
	return kills, restarts
}

// pace lets d pass on the chaos schedule (it waits for no condition),
// failing the test as soon as a process other than down has exited.
func (c *cluster) pace(d time.Duration, down *node) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, _ = proctest.Poll(ctx, proctest.PollEvery, d+time.Second, "the chaos schedule", func() (bool, string, error) {
		procs := []*proctest.Proc{}
		if c.b.proc != nil {
			procs = append(procs, c.b.proc)
		}
		for _, n := range c.nodes {
			if n != down {
				procs = append(procs, n.proc)
			}
		}
		if err := proctest.Running(procs...); err != nil {
			c.t.Fatalf("during the chaos: %v", err)
		}
		return false, "", nil
	})
}

// waitTables waits until every node serves every key of final: exactly
// (exact), or with at least as many inputs as the key had (at least
// once), and returns the last check. The error says why it gave up.
func (c *cluster) waitTables(final map[string]Aggregate, exact bool) (tableCheck, error) {
	var tc tableCheck
	what := "every node serving every key's final aggregate"
	if !exact {
		what = "every node serving every key with all its inputs"
	}
	_, err := proctest.Poll(context.Background(), 100*time.Millisecond, tablesTimeout, what, func() (bool, string, error) {
		c.running()
		var err error
		if tc, err = c.checkTables(final); err != nil {
			return false, err.Error(), nil
		}
		if exact {
			return tc.wrong.n == 0, tc.wrong.String(), nil
		}
		return tc.below.n == 0, tc.below.String(), nil
	})
	return tc, err
}

// errorLines counts the lines logged at level ERROR by every incarnation
// of every node, and quotes the first.
func (c *cluster) errorLines() string {
	n, first := 0, ""
	for _, nd := range c.nodes {
		for _, p := range nd.procs {
			for _, line := range strings.Split(p.Stderr(), "\n") {
				if strings.Contains(line, "level=ERROR") {
					if n++; first == "" {
						first = p.Name() + ": " + line
					}
				}
			}
		}
	}
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, first: %s", n, first)
}
