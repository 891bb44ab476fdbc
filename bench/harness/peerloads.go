package harness

import (
	"context"
	"fmt"
)

// The peers' parts of the workloads. Each runs right after Mephisto's run
// r of the same workload, on the same broker and the same preloaded input,
// under an application id of its own (so a fresh consumer group and fresh
// changelogs), and is checked in Kafka before its figure counts.
//
// On the dev broker the harness creates Kafka Streams' internal topics
// (changelogs, the repartition topic) before Streams starts: kfake's
// answer to CreateTopics is one the Java admin client rejects (see
// bench/streams/.../KfakeAdmin.java). On Apache Kafka, Streams creates
// them itself, as it would for a user. Faust creates its own everywhere.

// countPeers: the count workload (a table counting events per key,
// changelogged), done by Kafka Streams (groupByKey().count()) and Faust (a
// Table incremented per event). Checked: the changelog's last count of
// every key is at least the key's count in the input, and they sum to N
// (more is reported as at-least-once replay).
func (h *harness) countPeers(ctx context.Context, row *Row, b *broker, kc *kclient, r int, hwm []int64, n, keys int) {
	h.runPeers(row, r, Peers, func(peer string, res *PeerResult) (runStats, error) {
		app := fmt.Sprintf("%s-%s-%d", peer, row.Workload, r)
		changelog := app + "-counts-changelog"
		if peer == peerStreams && b.kind == brokerKfake {
			if err := kc.createTopic(changelog, true); err != nil {
				return runStats{}, err
			}
		}
		p, err := h.startPeer(peerSpec{peer: peer, name: app, mode: "count", app: app, b: b})
		if err != nil {
			return runStats{}, err
		}
		defer func() { _ = p.Kill() }()
		s, _, err := h.peerRun(ctx, p, kc, app, "in", hwm, n)
		if err != nil {
			return s, err
		}
		_ = p.Kill() // its changelog is flushed before it commits: complete now
		enc := int64BE
		if peer == peerFaust {
			enc = decimalText
		}
		last, err := kc.readCounts(changelog, enc)
		if err != nil {
			return s, fmt.Errorf("read %s: %w", changelog, err)
		}
		extra, err := verifyCounts(last, n, keys)
		if err != nil {
			return s, fmt.Errorf("%s: %w", changelog, err)
		}
		if extra > 0 {
			res.note("run %d: the table counts %d events beyond N (at-least-once replay)", r, extra)
		}
		return s, nil
	})
}

// passPeers: the pass-through (same key, value upper-cased, to an output
// topic). Checked: the output holds every input key as often as the input
// does, every value upper-cased.
func (h *harness) passPeers(ctx context.Context, row *Row, b *broker, kc *kclient, r int, hwm []int64, n, keys int) {
	h.runPeers(row, r, Peers, func(peer string, res *PeerResult) (runStats, error) {
		app := fmt.Sprintf("%s-pass-%d", peer, r)
		out := app + "-out"
		if err := kc.createTopic(out, false); err != nil {
			return runStats{}, err
		}
		p, err := h.startPeer(peerSpec{peer: peer, name: app, mode: "pass", app: app, b: b, out: out})
		if err != nil {
			return runStats{}, err
		}
		defer func() { _ = p.Kill() }()
		s, _, err := h.peerRun(ctx, p, kc, app, "in", hwm, n)
		if err != nil {
			return s, err
		}
		_ = p.Kill() // it flushes its producer before it commits
		o := newPassOutput()
		if err := kc.readTopic(out, o.add); err != nil {
			return s, fmt.Errorf("read %s: %w", out, err)
		}
		extra, err := o.verify(n, keys, h.opts.ValueSize)
		if err != nil {
			return s, fmt.Errorf("%s: %w", out, err)
		}
		if extra > 0 {
			res.note("run %d: %d records beyond N in the output (at-least-once replay)", r, extra)
		}
		return s, nil
	})
}

// wordcountPeers: word count, by Kafka Streams: lines → flatMap to words
// keyed by word → the repartition topic "words" → count. Timed as
// Mephisto's: from "running" until the group has committed every line and
// then every word of the repartition topic. Checked: the changelog's count
// of every word is at least its true count.
func (h *harness) wordcountPeers(ctx context.Context, row *Row, b *broker, kc *kclient, r int, hwmLines []int64, lines int, truth map[string]int64, words int64) {
	h.runPeers(row, r, []string{peerStreams}, func(peer string, res *PeerResult) (runStats, error) {
		var s runStats
		app := fmt.Sprintf("%s-wordcount-%d", peer, r)
		repartition, changelog := app+"-words-repartition", app+"-word_counts-changelog"
		if b.kind == brokerKfake {
			if err := kc.createTopic(repartition, false); err != nil {
				return s, err
			}
			if err := kc.createTopic(changelog, true); err != nil {
				return s, err
			}
		}
		p, err := h.startPeer(peerSpec{peer: peer, name: app, mode: "wordcount", app: app, b: b, in: "lines"})
		if err != nil {
			return s, err
		}
		defer func() { _ = p.Kill() }()
		ev, err := p.waitEvent(ctx, "running", peerReadyTimeout)
		if err != nil {
			return s, err
		}
		if _, err := h.waitPeerCommitted(ctx, p, kc, app, "lines", hwmLines, lines); err != nil {
			return s, err
		}
		hwmWords, err := kc.highWatermarks(repartition)
		if err != nil {
			return s, err
		}
		if got := sum(hwmWords); got < words {
			return s, fmt.Errorf("%s holds %d records after every line was committed, want %d", repartition, got, words)
		}
		t1, err := h.waitPeerCommitted(ctx, p, kc, app, repartition, hwmWords, int(words))
		if err != nil {
			return s, err
		}
		st := readProcStats(p.Pid())
		_ = p.Kill()
		s.rate = float64(words) / t1.Sub(ev.time()).Seconds()
		s.rss, s.cpuPerEvent = st.PeakRSS, (st.CPU-ev.cpu()).Seconds()/float64(words)
		last, err := kc.readCounts(changelog, int64BE)
		if err != nil {
			return s, fmt.Errorf("read %s: %w", changelog, err)
		}
		extra, err := verifyWords(last, truth)
		if err != nil {
			return s, fmt.Errorf("%s: %w", changelog, err)
		}
		if extra > 0 {
			res.note("run %d: %d words counted beyond the truth (at-least-once replay)", r, extra)
		}
		return s, nil
	})
}

// restorePeer: the recover workloads, by Kafka Streams: the count
// topology started on an empty state dir over a changelog written the way
// recover writes Mephisto's (the same records, under Streams' changelog
// name), restored into its RocksDB store before the instance runs. Timed
// as Mephisto's replay: from the first partition's restore start to the
// last one's restore end (Streams' StateRestoreListener). Checked: once
// running, the store holds every key, its values summing to the records
// (each key's last value is its count). The same application id every
// run, as a static member, so that each run takes the last one's place at
// once, as Mephisto's recover does with its node id.
func (h *harness) restorePeer(ctx context.Context, row *Row, b *broker, kc *kclient, r, records, keys int) {
	h.runPeers(row, r, []string{peerStreams}, func(peer string, res *PeerResult) (runStats, error) {
		var s runStats
		app := peer + "-" + row.Workload
		changelog := app + "-counts-changelog"
		if r == 1 {
			// Uncompacted, as recover's own (see there).
			if err := kc.createTopic(changelog, false); err != nil {
				return s, err
			}
			if err := kc.preload(changelog, records, func(i int) record {
				return record{key: keyOf(i, keys), value: int64Value(int64(i/keys + 1))}
			}); err != nil {
				return s, err
			}
		}
		p, err := h.startPeer(peerSpec{peer: peer, name: fmt.Sprintf("%s-%d", app, r), mode: "restore", app: app, b: b, instance: app})
		if err != nil {
			return s, err
		}
		defer func() { _ = p.Kill() }()
		store, err := p.waitEvent(ctx, "store", peerReadyTimeout+peerCommitTimeout(records))
		if err != nil {
			return s, err
		}
		st := readProcStats(p.Pid())
		_ = p.Kill()
		var first, last, running peerEvent
		var restored int64
		for _, e := range p.events() {
			switch e.Event {
			case "restore_start":
				if first.Event == "" || e.TimeNs < first.TimeNs {
					first = e
				}
			case "restore_end":
				restored += e.Records
				if e.TimeNs > last.TimeNs {
					last = e
				}
			case "running":
				if running.Event == "" {
					running = e
				}
			}
		}
		if want := int64(min(keys, records)); store.Keys != want || store.Sum != int64(records) {
			return s, fmt.Errorf("the restored store holds %d keys summing to %d, want %d keys summing to %d", store.Keys, store.Sum, want, records)
		}
		if first.Event == "" || last.Event == "" || !last.time().After(first.time()) {
			return s, fmt.Errorf("no restore reported (start %+v, end %+v)", first, last)
		}
		replay := last.time().Sub(first.time())
		s.rate = float64(records) / replay.Seconds()
		s.rss, s.cpuPerEvent = st.PeakRSS, (last.cpu()-first.cpu()).Seconds()/float64(records)
		res.note("run %d: %d records restored in %.2fs, process start to RUNNING %.2fs", r, restored,
			replay.Seconds(), running.time().Sub(p.StartedAt()).Seconds())
		return s, nil
	})
}
