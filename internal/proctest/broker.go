package proctest

import (
	"fmt"
	"regexp"
	"time"
)

// ListeningRE matches the line `mephisto broker` prints on stdout once it
// listens (the newline: the line is whole).
var ListeningRE = regexp.MustCompile(`broker listening on (\S+) cluster-id (\S+)\n`)

// WaitListening waits up to timeout until p, a `mephisto broker`, prints
// that it listens, and returns the address and the cluster id it prints.
func (p *Proc) WaitListening(timeout time.Duration) (addr, clusterID string, err error) {
	m, err := p.WaitStdout(ListeningRE, timeout)
	if err != nil {
		return "", "", err
	}
	return m[1], m[2], nil
}

// WaitListeningT is WaitListening failing the test; with want != "" the
// address printed must be want.
func (p *Proc) WaitListeningT(t TB, timeout time.Duration, want string) (addr, clusterID string) {
	t.Helper()
	addr, clusterID, err := p.WaitListening(timeout)
	if err == nil && want != "" && addr != want {
		err = fmt.Errorf("%s listens on %s, want %s", p.Name(), addr, want)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return addr, clusterID
}
