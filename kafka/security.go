package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// The SASL mechanisms a client can authenticate with (Security.SASLMechanism).
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// SASLMechanisms lists the mechanisms Security accepts, in the order the
// documentation gives them.
var SASLMechanisms = []string{SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512}

// Secret is a string that does not show itself: printed with any fmt verb,
// logged with slog or marshalled as text or JSON it reads "[redacted]" (""
// when empty). Convert it with string(s) where the value is needed.
type Secret string

const redacted = "[redacted]"

func (s Secret) show() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string { return s.show() }

// GoString returns the same as String, quoted, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.show()) }

// LogValue returns the same as String, for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.show()) }

// MarshalText returns the same as String, for encoding/json and friends.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.show()), nil }

// Format writes the same as String whatever the verb (%s, %v, %q, %x …).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "%q", s.show())
		return
	}
	_, _ = f.Write([]byte(s.show()))
}

// Security says how a client secures its connections to Kafka: TLS (the
// brokers' certificates verified against a CA, optionally with a client
// certificate for mutual TLS) and SASL authentication (PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512). The zero value is plaintext without
// authentication. Each field is a flag of the app binary, named in the
// comment; Security.Net checks and loads it.
type Security struct {
	// TLS encrypts the connections (--kafka-tls).
	TLS bool
	// CAFile is a PEM file of the CAs that sign the brokers' certificates
	// (--kafka-tls-ca); "" trusts the system's CAs, what managed Kafka
	// services need.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate (mutual TLS;
	// --kafka-tls-cert, --kafka-tls-key). Both or neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates are verified
	// against (--kafka-tls-server-name); "" uses the host of each address
	// dialed.
	ServerName string
	// TLSConfig, when set, is the TLS configuration to start from (a
	// program's own certificates, from a vault, say); CAFile, CertFile and
	// ServerName are added to a copy of it. Setting it implies TLS.
	TLSConfig *tls.Config

	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, or "" for
	// no SASL (--kafka-sasl-mechanism).
	SASLMechanism string
	// SASLUser and SASLPassword are the credentials SASL authenticates with
	// (--kafka-sasl-user, --kafka-sasl-password or better its environment
	// variable MEPHISTO_KAFKA_SASL_PASSWORD). The password is never
	// logged or printed.
	SASLUser     string
	SASLPassword Secret
}

// tlsOn says whether the connections use TLS.
func (s Security) tlsOn() bool { return s.TLS || s.TLSConfig != nil }

// Check reports every inconsistent setting, each named by its flag.
func (s Security) Check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !s.tlsOn() {
		for _, f := range []struct{ flag, v string }{
			{"--kafka-tls-ca", s.CAFile}, {"--kafka-tls-cert", s.CertFile}, {"--kafka-tls-key", s.KeyFile}, {"--kafka-tls-server-name", s.ServerName},
		} {
			if f.v != "" {
				bad("%s is set but --kafka-tls is off: add --kafka-tls (or drop %s)", f.flag, f.flag)
			}
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		bad("--kafka-tls-cert and --kafka-tls-key go together (a client certificate and its key): give both or neither")
	}
	switch s.SASLMechanism {
	case "":
		if s.SASLUser != "" || s.SASLPassword != "" {
			bad("--kafka-sasl-user or --kafka-sasl-password is set but --kafka-sasl-mechanism is not: add --kafka-sasl-mechanism %s", strings.Join(SASLMechanisms, "|"))
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if s.SASLUser == "" {
			bad("--kafka-sasl-mechanism %s needs --kafka-sasl-user", s.SASLMechanism)
		}
		if s.SASLPassword == "" {
			bad("--kafka-sasl-mechanism %s needs a password: set MEPHISTO_KAFKA_SASL_PASSWORD (or --kafka-sasl-password)", s.SASLMechanism)
		}
	default:
		bad("--kafka-sasl-mechanism must be %s, got %q", strings.Join(SASLMechanisms, ", "), s.SASLMechanism)
	}
	return errors.Join(errs...)
}

// Enabled says whether any of TLS and SASL is on.
func (s Security) Enabled() bool { return s.tlsOn() || s.SASLMechanism != "" }

// String describes the settings for the operator, without the password:
// "plaintext", "TLS (CA ca.pem, client certificate client.pem)", "TLS,
// SASL SCRAM-SHA-512 as alice" …
func (s Security) String() string {
	var parts []string
	if s.tlsOn() {
		var d []string
		if s.CAFile != "" {
			d = append(d, "CA "+s.CAFile)
		} else if s.TLSConfig == nil || s.TLSConfig.RootCAs == nil {
			d = append(d, "system CAs")
		}
		if s.CertFile != "" {
			d = append(d, "client certificate "+s.CertFile)
		}
		if s.ServerName != "" {
			d = append(d, "server name "+s.ServerName)
		}
		parts = append(parts, "TLS ("+strings.Join(d, ", ")+")")
	}
	if s.SASLMechanism != "" {
		parts = append(parts, "SASL "+s.SASLMechanism+" as "+s.SASLUser)
	}
	if len(parts) == 0 {
		return "plaintext"
	}
	return strings.Join(parts, ", ")
}

// Net is a Security made ready for sarama: checked, its certificates
// loaded. Build it once (Security.Net) and hand it to every config
// constructor (ClientConfig and the ones built on it), so that every
// client of a process connects alike. A nil *Net is plaintext without
// authentication.
type Net struct {
	sec Security
	tls *tls.Config // nil without TLS
}

// Net checks s, loads its certificates and returns the Net every client
// config takes. Its errors name the flag and the file.
func (s Security) Net() (*Net, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	n := &Net{sec: s}
	if !s.tlsOn() {
		return n, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		c = s.TLSConfig.Clone()
	}
	if s.CAFile != "" {
		pool, err := LoadCAs(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-tls-ca: %w", err)
		}
		c.RootCAs = pool
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-tls-cert %s / --kafka-tls-key %s: %w", s.CertFile, s.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if s.ServerName != "" {
		c.ServerName = s.ServerName
	}
	n.tls = c
	return n, nil
}

// LoadCAs reads a PEM file of CA certificates into a pool.
func LoadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// Security returns the settings n was made from.
func (n *Net) Security() Security {
	if n == nil {
		return Security{}
	}
	return n.sec
}

// String describes n as Security.String does.
func (n *Net) String() string { return n.Security().String() }

// LogValue describes n for slog, as String.
func (n *Net) LogValue() slog.Value { return slog.StringValue(n.String()) }

// Apply sets cfg's TLS and SASL settings from n and returns cfg. Nil n
// leaves cfg plaintext without authentication.
func (n *Net) Apply(cfg *sarama.Config) *sarama.Config {
	if n == nil {
		return cfg
	}
	if n.tls != nil {
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = n.tls
	}
	if m := n.sec.SASLMechanism; m != "" {
		cfg.Net.SASL.Enable = true
		cfg.Net.SASL.Handshake = true
		cfg.Net.SASL.Mechanism = sarama.SASLMechanism(m)
		cfg.Net.SASL.User = n.sec.SASLUser
		cfg.Net.SASL.Password = string(n.sec.SASLPassword)
		switch m {
		case SASLSCRAMSHA256:
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
		case SASLSCRAMSHA512:
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
		}
	}
	return cfg
}

// scramClient is a SCRAM conversation as sarama drives it (a
// sarama.SCRAMClient), on github.com/xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

// Begin starts a conversation for user.
func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		// The error names what failed to prepare, never the password.
		return fmt.Errorf("SCRAM: %w", err)
	}
	c.conv = cl.NewConversation()
	return nil
}

// Step answers the server's challenge.
func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

// Done says whether the conversation is over.
func (c *scramClient) Done() bool { return c.conv.Done() }
