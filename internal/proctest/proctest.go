// Package proctest holds what the process-level test suites share: child
// processes with their output in files (Proc), ports for them, waiting on
// conditions with a deadline, and the HTTP probes of a node (/readyz,
// /cluster and the checks of its plan).
package proctest

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out by this process: never twice
)

// FreePort returns a loopback port free for TCP and, with udp, for UDP too
// (memberlist listens on both). A port is never handed out twice by one
// process, so children started one after the other do not collide.
func FreePort(t testing.TB, udp bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		if udp {
			u, err := net.ListenPacket("udp", l.Addr().String())
			if err != nil {
				ok = false
			} else {
				_ = u.Close()
			}
		}
		_ = l.Close()
		portsMu.Lock()
		if ports[port] {
			ok = false
		}
		if ok {
			ports[port] = true
		}
		portsMu.Unlock()
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// Loopback returns 127.0.0.1:port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// PollEvery is how often WaitFor checks its condition.
const PollEvery = 25 * time.Millisecond

// WaitFor polls cond until it holds, failing the test after timeout with
// the condition's last reason, and returns how long it took.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			d := time.Since(start)
			t.Logf("%s: after %v", what, d.Round(time.Millisecond))
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(PollEvery)
	}
}
