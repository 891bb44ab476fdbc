package systest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireRefused runs a worker on dataDir and requires it to exit non-zero,
// without serving, with an error naming every one of words.
func requireRefused(t *testing.T, name, brokers, dataDir string, env []string, words ...string) {
	t.Helper()
	w := startWorker(t, name, brokers, dataDir, env)
	code, sig := w.WaitT(t, 60*time.Second)
	if sig != 0 || code == 0 {
		t.Errorf("%s: %s, want a non-zero exit status", name, w.DescribeExit())
	}
	log := w.Stderr()
	for _, word := range words {
		if !strings.Contains(log, word) {
			t.Errorf("%s: its error does not mention %q:\n%s", name, word, lastLines(log, 5))
		}
	}
	t.Logf("%s refused to start (%s):\n%s", name, w.DescribeExit(), lastLines(log, 1))
}

// reset runs `testapp reset --data-dir dataDir` and requires success.
func reset(t *testing.T, dataDir string) {
	t.Helper()
	r := runCmd(t, "reset", nil, testappBin, "reset", "--data-dir", dataDir)
	if r.Code != 0 {
		t.Fatalf("reset --data-dir %s: exit status %d\nstdout: %s\nstderr: %s", dataDir, r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("reset: %s", strings.TrimSpace(r.Stdout))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runOnce runs a worker on dataDir until it has counted events, then stops
// it cleanly.
func runOnce(t *testing.T, name, brokers, dataDir string, env []string, events []*record, truth map[string]int64) {
	t.Helper()
	w := startWorker(t, name, brokers, dataDir, env)
	w.waitReady(60 * time.Second)
	if len(events) > 0 {
		p := newProducer(t, brokers)
		p.mustSend("events", events)
		p.close()
	}
	w.waitTable(60*time.Second, "counts", truth)
	w.StopT(t, stopTimeout)
}

// TestDataDirOfAnotherApp: a data dir written by another app is refused
// with a message naming both apps and the `reset` command; after `reset` the
// worker starts and rebuilds its tables from its own changelogs.
func TestDataDirOfAnotherApp(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	dataDir := t.TempDir()
	other := []string{"SYSTEST_APP_NAME=otherapp"}
	events := makeEvents(1000, 30)
	truth := countKeys(events)
	runOnce(t, "otherapp-worker", b.addr, dataDir, other, events, truth) // otherapp counts the events into its own table

	requireRefused(t, "systest-worker", b.addr, dataDir, nil, "reset", `"otherapp"`, `"systest"`)
	reset(t, dataDir)
	// systest has never run: its table is empty until it processes the
	// events (its own consumer group starts from the beginning).
	runOnce(t, "systest-worker-2", b.addr, dataDir, nil, nil, truth)
	requireRefused(t, "otherapp-worker-2", b.addr, dataDir, other, "reset")
}

// TestDataDirOfAnotherCluster: a data dir written against another Kafka
// cluster is refused with a message naming both cluster ids and `reset`;
// after `reset` the worker starts on the new cluster.
func TestDataDirOfAnotherCluster(t *testing.T) {
	t.Parallel()
	b1 := newBroker(t)
	dataDir := t.TempDir()
	events := makeEvents(1000, 31)
	runOnce(t, "worker-1", b1.addr, dataDir, nil, events, countKeys(events))
	b1.StopT(t, stopTimeout)

	b2 := startBroker(t, "broker-2", freeAddr(t), t.TempDir())
	if b2.clusterID == b1.clusterID {
		t.Fatalf("two fresh brokers share cluster id %s", b1.clusterID)
	}
	requireRefused(t, "worker-2", b2.addr, dataDir, nil, "reset", b1.clusterID, b2.clusterID)
	reset(t, dataDir)
	more := makeEvents(500, 32)
	runOnce(t, "worker-3", b2.addr, dataDir, nil, more, countKeys(more))
}

// TestCorruptDataDir damages a stopped worker's Pebble store: the next
// worker is refused with a clear error that points at `reset`; `reset`
// wipes the store, and the next worker rebuilds the tables from the
// changelogs, exactly.
func TestCorruptDataDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, manifest string)
	}{
		{"truncated-manifest", func(t *testing.T, manifest string) {
			if err := os.Truncate(manifest, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbled-manifest", func(t *testing.T, manifest string) {
			b, err := os.ReadFile(manifest)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(manifest, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		// Pebble's manifest marker (its CURRENT file in older formats)
		// names a MANIFEST that is gone.
		{"missing-manifest", func(t *testing.T, manifest string) {
			if err := os.Remove(manifest); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t)
			dataDir := t.TempDir()
			events := makeEvents(2000, 33)
			truth := countKeys(events)
			runOnce(t, "worker-1", b.addr, dataDir, nil, events, truth)

			manifest := currentManifest(t, filepath.Join(dataDir, "state"))
			tc.damage(t, manifest)
			t.Logf("damaged %s", manifest)
			requireRefused(t, "worker-2", b.addr, dataDir, nil, "reset", "corrupt")
			reset(t, dataDir)

			w := startWorker(t, "worker-3", b.addr, dataDir, nil)
			w.waitReady(60 * time.Second)
			w.waitTable(60*time.Second, "counts", truth)
		})
	}
}

// currentManifest returns the MANIFEST file Pebble's marker (or, in older
// formats, CURRENT) points at.
func currentManifest(t *testing.T, dir string) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, "CURRENT")); err == nil {
		return filepath.Join(dir, strings.TrimSpace(string(b)))
	}
	markers, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if len(markers) != 1 {
		t.Fatalf("%s: want one manifest marker, found %v", dir, markers)
	}
	name := filepath.Base(markers[0])
	i := strings.Index(name, "MANIFEST-")
	if i < 0 {
		t.Fatalf("manifest marker %s names no MANIFEST", name)
	}
	return filepath.Join(dir, name[i:])
}
