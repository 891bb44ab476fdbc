package proctest

import (
	"errors"
	"net"
	"sync"
)

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out by this process: never twice
)

// FreeAddr returns a loopback address (127.0.0.1:port) whose port was free
// for TCP a moment ago and, with udp, for UDP too (memberlist gossips on
// both). A port is never handed out twice by one process, so children
// started one after the other do not collide.
func FreeAddr(udp bool) (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		if udp {
			u, err := net.ListenPacket("udp", addr)
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
			return addr, nil
		}
	}
	return "", errors.New("no free loopback port")
}

// FreeAddrT is FreeAddr failing the test.
func FreeAddrT(t TB, udp bool) string {
	t.Helper()
	addr, err := FreeAddr(udp)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return addr
}
