package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/state"
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

// TestCorruptTableFile flips bytes inside a stopped worker's table files
// (.sst), as a failing disk would. Pebble opens them without reading their
// blocks; the next worker exits with status 1 on its first read of a
// damaged block, saying the state is corrupt and to run `reset` — not that
// the disk is full; the worker after it refuses to start, with the same
// advice, instead of crash-looping; after `reset` the tables are rebuilt
// from the changelogs, exactly.
func TestCorruptTableFile(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	dataDir := t.TempDir()
	events := makeEvents(2000, 36)
	truth := countKeys(events)
	runOnce(t, "worker-1", b.addr, dataDir, nil, events, truth)
	damaged := damageTables(t, filepath.Join(dataDir, "state"))
	t.Logf("damaged %v", damaged)

	w := startWorker(t, "worker-2", b.addr, dataDir, nil)
	waitFor(t, 60*time.Second, "worker-2 reads the damaged block and exits", func() (bool, string) {
		if w.Exited() {
			return true, ""
		}
		_, err := w.table("counts", keysOf(truth)) // reads the rows
		return false, fmt.Sprintf("still running (reading the table: %v)", err)
	})
	code, sig := w.WaitT(t, stopTimeout)
	if sig != 0 || code != 1 {
		t.Errorf("worker-2: %s, want exit status 1", w.DescribeExit())
	}
	log := w.Stderr()
	for _, word := range []string{"corrupt", "checksum", "reset", "changelogs"} {
		if !strings.Contains(log, word) {
			t.Errorf("worker-2's log does not mention %q:\n%s", word, lastLines(log, 5))
		}
	}
	if strings.Contains(log, "disk full") {
		t.Errorf("worker-2 blames a full disk for a checksum failure:\n%s", lastLines(log, 5))
	}
	t.Logf("worker-2 exited (%s):\n%s", w.DescribeExit(), lastLines(log, 1))

	// Not a crash loop: the next worker refuses at once.
	w3 := startWorker(t, "worker-3", b.addr, dataDir, nil)
	code, sig = w3.WaitT(t, 60*time.Second)
	if sig != 0 || code != 1 {
		t.Errorf("worker-3: %s, want exit status 1", w3.DescribeExit())
	}
	if log := w3.Stderr(); !strings.Contains(log, "corrupt") || !strings.Contains(log, "reset") {
		t.Errorf("worker-3 did not refuse with the reset advice:\n%s", lastLines(log, 5))
	}
	t.Logf("worker-3 refused to start (%s):\n%s", w3.DescribeExit(), lastLines(w3.Stderr(), 1))

	reset(t, dataDir)
	w4 := startWorker(t, "worker-4", b.addr, dataDir, nil)
	w4.waitReady(60 * time.Second)
	w4.waitTable(60*time.Second, "counts", truth)
}

// damageTables flushes a dead worker's store in dir into table files and
// flips bytes in the first data block of each: the next read of the
// worker's identity, offsets or rows fails its checksum. (It holds too few
// rows for them to have blocks of their own.)
func damageTables(t *testing.T, dir string) []string {
	t.Helper()
	st, err := state.Open(state.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open the dead worker's store: %v", err)
	}
	if err := st.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatalf("%s: no table file", dir)
	}
	for _, f := range ssts {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 16; i < 48 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ssts
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
