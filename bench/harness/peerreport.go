package harness

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// peerTable writes the side-by-side table of the rows that have peers:
// Mephisto's median, the raw client's and each peer's, with Mephisto's
// ratio to each (a factor: 2.0× is twice the peer's rate). It reports
// whether it wrote anything.
func peerTable(w io.Writer, rows []*Row) bool {
	var peers []string
	for _, r := range rows {
		for _, p := range r.Peers {
			if !slices.Contains(peers, p.Peer) {
				peers = append(peers, p.Peer)
			}
		}
	}
	if len(peers) == 0 {
		return false
	}
	slices.SortStableFunc(peers, func(a, b string) int { return slices.Index(Peers, a) - slices.Index(Peers, b) })
	fmt.Fprintln(w)
	head := []string{"workload", "Mephisto (median)", "raw client (median)", "Mephisto ÷ raw"}
	names := []string{"Mephisto"}
	for _, p := range peers {
		head = append(head, peerTitle(p)+" (min / **median** / max)", "Mephisto ÷ "+peerTitle(p))
		names = append(names, peerTitle(p))
	}
	head = append(head, "peak RSS "+strings.Join(names, " / "), "CPU µs per event "+strings.Join(names, " / "))
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(head)))
	for _, r := range rows {
		if len(r.Peers) == 0 {
			continue
		}
		m := median(r.Mephisto)
		_, raw, ratio, _, _ := r.cells()
		cells := []string{r.Workload, medianCell(r.Mephisto, r.Unit, r.Failed), raw, ratio}
		rss := []string{mib(maxInt64(r.PeakRSS))}
		cpu := []string{cpuCell(r.CPUPerEvent)}
		for _, name := range peers {
			var p *PeerResult
			for _, q := range r.Peers {
				if q.Peer == name {
					p = q
				}
			}
			if p == nil {
				cells = append(cells, "—", "—")
				rss, cpu = append(rss, "—"), append(cpu, "—")
				continue
			}
			cells = append(cells, p.cell(r.Unit), factor(m, median(p.Values), r.HigherIsBetter))
			rss, cpu = append(rss, mib(maxInt64(p.PeakRSS))), append(cpu, cpuCell(p.CPUPerEvent))
		}
		cells = append(cells, strings.Join(rss, " / "), strings.Join(cpu, " / "))
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	return true
}

// cell renders a peer's result: min / median / max, or why there is none.
func (p *PeerResult) cell(unit string) string {
	switch {
	case p.Failed != "":
		return "FAILED (see the notes)"
	case len(p.Values) > 0:
		s := slices.Clone(p.Values)
		slices.Sort(s)
		return fmt.Sprintf("%s / **%s** / %s %s", num(s[0]), num(median(s)), num(s[len(s)-1]), unit)
	case p.Skipped != "":
		return "skipped: " + firstLine(p.Skipped)
	}
	return "—"
}

func medianCell(xs []float64, unit, failed string) string {
	if failed != "" {
		return "FAILED"
	}
	if len(xs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%s %s", num(median(xs)), unit)
}

func cpuCell(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", median(xs)*1e6)
}

// factor is Mephisto's median over a peer's as a factor ("2.31×"): how many
// times the peer's rate (or, lower being better, how many times faster).
func factor(m, p float64, higherIsBetter bool) string {
	if !(m > 0 && p > 0) {
		return "—"
	}
	if !higherIsBetter {
		m, p = p, m
	}
	return fmt.Sprintf("%.2f×", m/p)
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// hasPeers reports whether any row has a peer's result, skip or failure.
func (rep *Report) hasPeers() bool {
	for _, r := range rep.Rows {
		if len(r.Peers) > 0 {
			return true
		}
	}
	return false
}

// peerNotes renders the peers' notes of a row (runs, replays, skips,
// failures) for the notes list.
func (r *Row) peerNotes() string {
	var b strings.Builder
	for _, p := range r.Peers {
		var parts []string
		parts = append(parts, p.Notes...)
		if p.Failed != "" {
			parts = append(parts, fmt.Sprintf("FAILED: `%s`", strings.ReplaceAll(p.Failed, "\n", " ")))
		} else if p.Skipped != "" && len(p.Values) == 0 {
			parts = append(parts, "skipped: "+p.Skipped)
		} else if len(p.Values) > 0 {
			parts = append(parts, fmt.Sprintf("%d run(s), result checked in Kafka", len(p.Values)))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, " %s: %s.", peerTitle(p.Peer), strings.Join(parts, "; "))
		}
	}
	return b.String()
}

// peerConfig says how the peers were configured, for the footer.
func peerConfig(o Options) string {
	po := o.PeerOpts
	return fmt.Sprintf("Peers: Kafka Streams %s — num.stream.threads %d, commit.interval.ms %d, statestore.cache.max.bytes %s, "+
		"processing.guarantee at_least_once, producer acks=all and idempotent, RocksDB stores, JVM -Xmx%s; "+
		"Faust (faust-streaming, bench/faust/requirements.txt) — one worker, broker_commit_interval %gs, broker_commit_every 10,000 (its default), "+
		"at_least_once, store %s, in the first %d run(s) of each workload. Both are timed from their own 'running' report to the group's commit of the input's high watermarks; "+
		"their CPU per event counts that window only (Mephisto's counts its whole process).",
		streamsVersion, po.StreamsThreads, mephistoCommitInterval.Milliseconds(), mibBytes(po.StreamsCacheBytes), po.StreamsHeap,
		mephistoCommitInterval.Seconds(), po.FaustStore, po.FaustRuns)
}

func mibBytes(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
