package actors

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// RemoteTLS is mutual TLS on the links between nodes' actor systems (the
// gRPC transport of PID messages and table reads): every node presents
// its certificate, and accepts a peer — dialing it or dialed by it — only
// if the peer's certificate is signed by CA. So a process without a
// certificate of the cluster's CA can neither send a message to a grain
// nor receive one. The files are PEM.
type RemoteTLS struct {
	// Cert and Key are this node's certificate and its key; the
	// certificate must be valid for the host other nodes dial (its
	// advertised actor address) or for ServerName.
	Cert, Key string
	// CA signs every node's certificate (and should sign nothing else:
	// whoever holds a certificate it signed is a node of the cluster).
	CA string
	// ServerName, if set, is the name a node verifies its peers'
	// certificates against instead of the host it dials: one name in
	// every node's certificate, for clusters whose addresses change.
	ServerName string
}

// Enabled says whether any file is set.
func (c RemoteTLS) Enabled() bool { return c.Cert != "" || c.Key != "" || c.CA != "" }

// Check reports a missing file, named by its flag.
func (c RemoteTLS) Check() error {
	if !c.Enabled() {
		if c.ServerName != "" {
			return errors.New("--actor-tls-server-name needs --actor-tls-cert, --actor-tls-key and --actor-tls-ca")
		}
		return nil
	}
	var errs []error
	for _, f := range []struct{ flag, v string }{{"--actor-tls-cert", c.Cert}, {"--actor-tls-key", c.Key}, {"--actor-tls-ca", c.CA}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is missing: mutual TLS between nodes needs --actor-tls-cert, --actor-tls-key and --actor-tls-ca", f.flag))
		}
	}
	return errors.Join(errs...)
}

// Load reads the files and returns the server and client TLS
// configurations of mutual TLS.
func (c RemoteTLS) Load() (server, client *tls.Config, err error) {
	if err := c.Check(); err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("--actor-tls-cert %s / --actor-tls-key %s: %w", c.Cert, c.Key, err)
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("--actor-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("--actor-tls-ca: %s holds no PEM certificate", c.CA)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS13}
	return server, client, nil
}

// refusingCreds are a server's TLS credentials that log, at most once a
// minute, the connections they refuse.
type refusingCreds struct {
	credentials.TransportCredentials
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex // guards the fields below
	last    time.Time  // when a refusal was last logged
	refused int        // refusals since
}

func newRefusingCreds(c *tls.Config, log *slog.Logger) *refusingCreds {
	return &refusingCreds{TransportCredentials: credentials.NewTLS(c), log: log, every: time.Minute}
}

// ServerHandshake shakes hands and logs a refusal.
func (c *refusingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil && c.log != nil {
		c.mu.Lock()
		c.refused++
		now := time.Now()
		logIt := c.last.IsZero() || now.Sub(c.last) >= c.every
		n := c.refused
		if logIt {
			c.last, c.refused = now, 0
		}
		c.mu.Unlock()
		if logIt {
			c.log.Warn("actor transport: refused a connection that did not pass mutual TLS (a process without a certificate of the cluster's CA?); logged at most once a minute",
				"from", conn.RemoteAddr().String(), "err", err, "refused", n)
		}
	}
	return nc, info, err
}

// Clone keeps the logging.
func (c *refusingCreds) Clone() credentials.TransportCredentials {
	return &refusingCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log, every: c.every}
}
