package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// What a ConnectError says went wrong (its Kind; errors.Is finds it).
var (
	// ErrUnreachable: no connection to the broker (refused, timed out, no
	// such host) or it broke for a reason that is not TLS or SASL.
	ErrUnreachable = errors.New("cannot connect")
	// ErrTLS: the TLS handshake failed — the broker's certificate is not
	// trusted or not valid for its name, the broker refused the client's
	// certificate, or one side does not speak TLS.
	ErrTLS = errors.New("TLS handshake failed")
	// ErrAuthentication: SASL authentication failed — wrong user name or
	// password, no such user for the mechanism, a mechanism the broker
	// does not offer, or the broker requires SASL and none is configured.
	ErrAuthentication = errors.New("SASL authentication failed")
)

// ConnectError is why a client could not connect to one broker: what
// failed (Kind), what that means (Cause) and what the operator should do
// (Hint). It never holds the password.
type ConnectError struct {
	// Broker is the address dialed.
	Broker string
	// Kind is ErrUnreachable, ErrTLS or ErrAuthentication.
	Kind error
	// Cause says what happened, in the operator's terms.
	Cause string
	// Hint says what to check or change, naming the flags.
	Hint string
	// Err is the error the client got.
	Err error
}

// Error reads "Kafka broker ADDR: KIND: CAUSE (ERR); HINT".
func (e *ConnectError) Error() string {
	return fmt.Sprintf("Kafka broker %s: %v: %s (%v); %s", e.Broker, e.Kind, e.Cause, e.Err, e.Hint)
}

// Unwrap returns Kind and Err, for errors.Is and errors.As.
func (e *ConnectError) Unwrap() []error { return []error{e.Kind, e.Err} }

// Misconfigured says whether the failure is one of TLS or SASL, which
// retrying does not mend until a setting changes on one side.
func (e *ConnectError) Misconfigured() bool { return e.Kind == ErrTLS || e.Kind == ErrAuthentication }

// Misconfigured says whether err holds a ConnectError of TLS or SASL.
func Misconfigured(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce) && ce.Misconfigured()
}

// Probe connects to the brokers one after the other as a client
// configured by cfg does — TCP, the TLS handshake, ApiVersions, SASL
// authentication, one metadata request — with one connection per broker
// and no retry, until one of them answers. It returns nil then, or the
// ConnectError of each broker (joined). Clients call it before they start,
// so that a wrong password or an untrusted certificate is reported once,
// with its cause, instead of inside sarama's retries.
func Probe(brokers []string, cfg *sarama.Config) error {
	var errs []error
	for _, addr := range brokers {
		err := probeOne(addr, cfg)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func probeOne(addr string, cfg *sarama.Config) error {
	d := &probeDialer{timeout: cfg.Net.DialTimeout}
	if cfg.Net.TLS.Enable {
		d.tls = cfg.Net.TLS.Config
		if d.tls == nil {
			d.tls = &tls.Config{}
		}
	}
	pc := *cfg
	pc.Net.TLS.Enable = false // the dialer does the handshake, to tell its failure apart
	pc.Net.Proxy.Enable = true
	pc.Net.Proxy.Dialer = d
	pc.ClientID = cfg.ClientID + "-probe"
	b := sarama.NewBroker(addr)
	if err := b.Open(&pc); err != nil {
		return err // a configuration error
	}
	defer func() { _ = b.Close() }()
	_, err := b.Connected()
	if err == nil {
		_, err = b.GetMetadata(sarama.NewMetadataRequest(pc.Version, []string{}))
	}
	if err == nil {
		return nil
	}
	stage, lastKey := d.state()
	return classify(addr, cfg, stage, lastKey, err)
}

// The stages of a connection.
const (
	stageDial = iota
	stageTLS
	stageKafka
)

// probeDialer dials for Probe and remembers how far it got.
type probeDialer struct {
	timeout time.Duration
	tls     *tls.Config // nil: plaintext

	mu    sync.Mutex // guards the fields below
	stage int
	conn  *recordingConn
}

func (d *probeDialer) setStage(s int) {
	d.mu.Lock()
	d.stage = s
	d.mu.Unlock()
}

func (d *probeDialer) state() (stage int, lastKey int16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lastKey = -1
	if d.conn != nil {
		lastKey = d.conn.last()
	}
	return d.stage, lastKey
}

// Dial connects, shakes hands in TLS if configured, and returns a
// connection that notes the requests written.
func (d *probeDialer) Dial(network, addr string) (net.Conn, error) {
	timeout := d.timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	if d.tls != nil {
		d.setStage(stageTLS)
		cfg := d.tls.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	rc := &recordingConn{Conn: c, lastKey: -1}
	d.mu.Lock()
	d.stage, d.conn = stageKafka, rc
	d.mu.Unlock()
	return rc, nil
}

// recordingConn notes the API key of each Kafka request written to it.
type recordingConn struct {
	net.Conn

	mu      sync.Mutex // guards the fields below
	hdr     []byte     // the start of the request being written: size and API key
	skip    int        // bytes of the current request still to pass
	lastKey int16
}

// Write notes the requests in p and writes it.
func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for q := p; len(q) > 0; {
		if c.skip > 0 {
			n := min(c.skip, len(q))
			c.skip -= n
			q = q[n:]
			continue
		}
		n := min(6-len(c.hdr), len(q))
		c.hdr = append(c.hdr, q[:n]...)
		q = q[n:]
		if len(c.hdr) == 6 {
			size := int(binary.BigEndian.Uint32(c.hdr[:4]))
			c.lastKey = int16(binary.BigEndian.Uint16(c.hdr[4:6]))
			c.skip = size - 2
			c.hdr = c.hdr[:0]
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) last() int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastKey
}

// Kafka API keys Probe tells apart.
const (
	keyMetadata      = 3
	keySASLHandshake = 17
	keyApiVersions   = 18
	keySASLAuth      = 36
)

// classify turns the error of a probe that got to stage into a
// ConnectError.
func classify(addr string, cfg *sarama.Config, stage int, lastKey int16, err error) *ConnectError {
	ce := &ConnectError{Broker: addr, Err: err}
	sasl := cfg.Net.SASL.Enable
	mech, user := string(cfg.Net.SASL.Mechanism), cfg.Net.SASL.User
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		alert     tls.AlertError
	)
	switch {
	case stage == stageDial:
		ce.Kind, ce.Cause = ErrUnreachable, "no TCP connection"
		ce.Hint = "check --brokers, that the broker runs and that this host may reach it"
	case errors.As(err, &alert) && certAlert(alert) || certRefused(err):
		ce.Kind, ce.Cause = ErrTLS, "the broker refused this client's certificate"
		if cfg.Net.TLS.Config == nil || len(cfg.Net.TLS.Config.Certificates) == 0 {
			ce.Cause = "the broker requires a client certificate (mutual TLS) and none is configured"
		}
		ce.Hint = "give a client certificate signed by a CA the broker trusts with --kafka-tls-cert and --kafka-tls-key"
	case stage == stageTLS && errors.As(err, &unknownCA):
		ce.Kind, ce.Cause = ErrTLS, "the broker's certificate is not signed by a CA this client trusts"
		ce.Hint = "give the CA that signed the broker's certificate with --kafka-tls-ca (without it the system's CAs are trusted)"
	case stage == stageTLS && errors.As(err, &hostname):
		ce.Kind, ce.Cause = ErrTLS, fmt.Sprintf("the broker's certificate is not valid for the name %q", hostname.Host)
		ce.Hint = "connect by a name the certificate holds, or set --kafka-tls-server-name to one"
	case stage == stageTLS && errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		ce.Kind, ce.Cause = ErrTLS, "the broker's certificate has expired or is not valid yet"
		ce.Hint = "renew the broker's certificate (or check this host's clock)"
	case stage == stageTLS && errors.As(err, &record):
		ce.Kind, ce.Cause = ErrTLS, "the broker does not answer in TLS on this port (a plaintext listener?)"
		ce.Hint = "use the broker's TLS listener (SSL or SASL_SSL), or turn --kafka-tls off"
	case stage == stageTLS && (brokenConn(err) || timeout(err)):
		ce.Kind, ce.Cause = ErrTLS, "the broker did not complete the TLS handshake (a plaintext listener?)"
		ce.Hint = "use the broker's TLS listener (SSL or SASL_SSL), or turn --kafka-tls off"
	case stage == stageTLS:
		ce.Kind, ce.Cause = ErrTLS, "the handshake failed"
		ce.Hint = "check --kafka-tls-ca, --kafka-tls-cert and --kafka-tls-key against the broker's TLS listener"
	case errors.Is(err, sarama.ErrSASLAuthenticationFailed):
		ce.Kind, ce.Cause = ErrAuthentication, fmt.Sprintf("the broker rejected the credentials of user %q (%s)", user, mech)
		ce.Hint = authHint(mech)
	case errors.Is(err, sarama.ErrUnsupportedSASLMechanism):
		ce.Kind, ce.Cause = ErrAuthentication, fmt.Sprintf("the broker does not offer %s on this listener", mech)
		ce.Hint = "choose a mechanism the listener enables with --kafka-sasl-mechanism (" + strings.Join(SASLMechanisms, ", ") + ")"
	case sasl && (lastKey == keySASLHandshake || lastKey == keySASLAuth || strings.HasPrefix(err.Error(), "SCRAM")):
		ce.Kind = ErrAuthentication
		ce.Cause = fmt.Sprintf("the broker ended the connection while authenticating user %q with %s: wrong user name or password, or no such user for this mechanism", user, mech)
		ce.Hint = authHint(mech)
	case !sasl && lastKey == keyMetadata && brokenConn(err):
		ce.Kind, ce.Cause = ErrAuthentication, "the broker ended the connection at the first request after ApiVersions: it requires SASL authentication"
		ce.Hint = "set --kafka-sasl-mechanism, --kafka-sasl-user and MEPHISTO_KAFKA_SASL_PASSWORD"
	case !cfg.Net.TLS.Enable && lastKey == keyApiVersions && brokenConn(err):
		ce.Kind, ce.Cause = ErrTLS, "the broker ended the connection at the first request: its listener may expect TLS"
		ce.Hint = "add --kafka-tls (and --kafka-tls-ca) if the listener is SSL or SASL_SSL"
	default:
		ce.Kind, ce.Cause = ErrUnreachable, "the connection failed"
		ce.Hint = "check --brokers and the broker's log"
	}
	return ce
}

func authHint(mech string) string {
	return "check --kafka-sasl-user and the password (MEPHISTO_KAFKA_SASL_PASSWORD), and that the user exists on the brokers for " + mech
}

// certAlert says whether a TLS alert is the peer refusing a certificate.
func certAlert(a tls.AlertError) bool {
	switch a {
	case 42, 43, 44, 45, 46, 48, 49, 116: // bad, unsupported, revoked, expired, unknown certificate; unknown CA; access denied; certificate required
		return true
	}
	return false
}

// certRefused says whether err is the peer's TLS alert refusing the
// client's certificate (over TCP Go reports a received alert as a
// "remote error", not as a tls.AlertError).
func certRefused(err error) bool {
	msg := err.Error()
	for _, a := range []string{"bad certificate", "unsupported certificate", "revoked certificate", "expired certificate",
		"unknown certificate", "unknown certificate authority", "access denied", "certificate required"} {
		if strings.Contains(msg, "remote error: tls: "+a) {
			return true
		}
	}
	return false
}

func timeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// brokenConn says whether err is the connection ending under the client.
func brokenConn(err error) bool {
	var op *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &op) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// Summary returns the broker, kind and cause of each ConnectError in err
// (a Probe's), without the errors underneath, which vary from one attempt
// to the next when the cause does not ("EOF", "connection reset"): two
// failures alike have the same summary. Other errors give their text.
func Summary(err error) string {
	var parts []string
	var walk func(error)
	walk = func(e error) {
		if ce, ok := e.(*ConnectError); ok {
			parts = append(parts, fmt.Sprintf("%s: %v: %s", ce.Broker, ce.Kind, ce.Cause))
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		parts = append(parts, e.Error())
	}
	if err != nil {
		walk(err)
	}
	return strings.Join(parts, "; ")
}
