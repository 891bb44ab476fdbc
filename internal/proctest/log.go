package proctest

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Buffer is an io.Writer safe for concurrent use whose contents can be
// read while it is written.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns an info-level text logger that writes to t's log, and to
// every writer of also. Lines logged once t's cleanups run are dropped
// from t's log (a gossip goroutine may still log after its node has
// stopped, and t.Log after the test has completed panics); also still
// gets them.
func Logger(t TB, also ...io.Writer) *slog.Logger {
	w := &tWriter{t: t, also: also}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter writes each log record to t.Log and to also.
type tWriter struct {
	t    TB
	also []io.Writer

	mu   sync.Mutex
	done bool // t's cleanups have started: t.Log no more
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.mu.Lock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	w.mu.Unlock()
	for _, a := range w.also {
		if _, err := a.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
