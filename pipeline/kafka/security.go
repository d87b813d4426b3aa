package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// TLSConfig encrypts broker connections and optionally authenticates this
// client with a certificate (mutual TLS).
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates;
	// empty uses the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this client's PEM certificate and key, for
	// brokers that require client certificates. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked against the broker certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks. Test clusters only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLConfig authenticates this client to the brokers. Put the password in
// VIDX_KAFKA_SASL_PASSWORD rather than the configuration file.
type SASLConfig struct {
	// Mechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

const redacted = "[REDACTED]"

// String never shows the password, so a logged or printed configuration
// does not leak it.
func (c SASLConfig) String() string {
	if c.Mechanism == "" {
		return "{none}"
	}
	pw := ""
	if c.Password != "" {
		pw = redacted
	}
	return fmt.Sprintf("{mechanism:%s username:%s password:%s}", c.Mechanism, c.Username, pw)
}

// GoString covers %#v, which would otherwise print every field verbatim.
func (c SASLConfig) GoString() string { return "pipeline.SASLConfig" + c.String() }

// LogValue keeps the password out of structured logs.
func (c SASLConfig) LogValue() slog.Value {
	pw := ""
	if c.Password != "" {
		pw = redacted
	}
	return slog.GroupValue(slog.String("mechanism", c.Mechanism), slog.String("username", c.Username), slog.String("password", pw))
}

// Validate checks the mechanism and that credentials are present.
func (c SASLConfig) Validate() error {
	switch strings.ToUpper(c.Mechanism) {
	case "":
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q is not supported (want %s, %s or %s)", c.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if c.Username == "" || c.Password == "" {
		return fmt.Errorf("kafka.sasl: mechanism %s needs username and password", c.Mechanism)
	}
	_, err := c.mechanism()
	return err
}

// mechanism builds kafka-go's SASL mechanism; nil when SASL is off.
func (c SASLConfig) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(c.Mechanism) {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if strings.ToUpper(c.Mechanism) == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %s: %w", c.Mechanism, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported", c.Mechanism)
}

// Validate loads the files so a bad path fails at start-up, not on the
// first connection.
func (c TLSConfig) Validate() error {
	_, err := c.config()
	return err
}

// config builds the tls.Config; nil when TLS is off.
func (c TLSConfig) config() (*tls.Config, error) {
	if !c.Enabled {
		if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
			return nil, errors.New("kafka.tls: ca_file, cert_file or key_file set but tls.enabled is false")
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in for test clusters
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("kafka.tls: cert_file and key_file go together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: cert_file %s / key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// security resolves TLS and SASL for a connection factory.
func (c Config) security() (*tls.Config, sasl.Mechanism, error) {
	tc, err := c.TLS.config()
	if err != nil {
		return nil, nil, err
	}
	m, err := c.SASL.mechanism()
	if err != nil {
		return nil, nil, err
	}
	return tc, m, nil
}

// failingDial reports a configuration error on every connection attempt.
// Validate catches such errors at start-up; this keeps constructors that
// cannot return an error from silently connecting without security.
func failingDial(err error) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, err }
}

// Dialer returns a kafka-go dialer with this configuration's TLS and SASL
// settings, for code that builds its own kafka-go readers.
func (c Config) Dialer() *kafkago.Dialer { return c.WithDefaults().dialer() }
