package mephisto

import (
	"crypto/tls"

	"github.com/mephistohq/mephisto/kafka"
)

// Secret is a string that does not show itself: printed with any fmt verb,
// logged or marshalled it reads "[redacted]" ("" when empty), so that a
// Config holding a password can be printed or logged whole.
type Secret = kafka.Secret

// The SASL mechanisms of WithKafkaSASL and --kafka-sasl-mechanism.
const (
	SASLPlain       = kafka.SASLPlain       // PLAIN: user and password in the clear inside TLS (Confluent Cloud's API keys)
	SASLSCRAMSHA256 = kafka.SASLSCRAMSHA256 // SCRAM-SHA-256: a challenge and response, the password never sent
	SASLSCRAMSHA512 = kafka.SASLSCRAMSHA512 // SCRAM-SHA-512: the same with SHA-512 (MSK, Aiven)
)

// WithKafkaTLS turns TLS on the connections to Kafka on or off (default
// off; flag --kafka-tls). With TLS on and no WithKafkaTLSCA the brokers'
// certificates are verified against the system's CAs, which is what
// managed Kafka services need.
func WithKafkaTLS(on bool) Option { return func(c *Config) { c.KafkaTLS = on } }

// WithKafkaTLSCA sets the PEM file of the CAs that sign the brokers'
// certificates (default "": the system's CAs; flag --kafka-tls-ca).
func WithKafkaTLSCA(file string) Option { return func(c *Config) { c.KafkaTLSCA = file } }

// WithKafkaTLSCert sets the client certificate and its key (PEM files) for
// brokers that authenticate clients by certificate: mutual TLS (default
// none; flags --kafka-tls-cert, --kafka-tls-key).
func WithKafkaTLSCert(certFile, keyFile string) Option {
	return func(c *Config) { c.KafkaTLSCert, c.KafkaTLSKey = certFile, keyFile }
}

// WithKafkaTLSServerName sets the name the brokers' certificates are
// verified against (default "": the host of each address dialed; flag
// --kafka-tls-server-name).
func WithKafkaTLSServerName(name string) Option {
	return func(c *Config) { c.KafkaTLSServerName = name }
}

// WithKafkaTLSConfig sets a TLS configuration to start from, for programs
// that hold their certificates in memory (default nil; no flag). It turns
// TLS on; WithKafkaTLSCA, WithKafkaTLSCert and WithKafkaTLSServerName are
// added to a copy of it.
func WithKafkaTLSConfig(cfg *tls.Config) Option { return func(c *Config) { c.KafkaTLSConfig = cfg } }

// WithKafkaSASL authenticates to Kafka with SASL: mechanism is SASLPlain,
// SASLSCRAMSHA256 or SASLSCRAMSHA512 (default: no SASL; flags
// --kafka-sasl-mechanism, --kafka-sasl-user, --kafka-sasl-password, the
// password better from the environment variable
// MEPHISTO_KAFKA_SASL_PASSWORD). The password is never logged.
func WithKafkaSASL(mechanism, user, password string) Option {
	return func(c *Config) {
		c.KafkaSASLMechanism, c.KafkaSASLUser, c.KafkaSASLPassword = mechanism, user, Secret(password)
	}
}

// kafkaSecurity returns the Kafka security settings.
func (c Config) kafkaSecurity() kafka.Security {
	return kafka.Security{
		TLS: c.KafkaTLS, CAFile: c.KafkaTLSCA, CertFile: c.KafkaTLSCert, KeyFile: c.KafkaTLSKey,
		ServerName: c.KafkaTLSServerName, TLSConfig: c.KafkaTLSConfig,
		SASLMechanism: c.KafkaSASLMechanism, SASLUser: c.KafkaSASLUser, SASLPassword: c.KafkaSASLPassword,
	}
}
