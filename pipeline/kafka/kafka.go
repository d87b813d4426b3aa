package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

// Config says how to reach the brokers.
type Config struct {
	Brokers []string `yaml:"brokers"`
	// ClientID names this process to the brokers.
	ClientID string `yaml:"client_id"`
	// Partitions and ReplicationFactor are used when the runtime creates a
	// missing topic.
	Partitions        int `yaml:"partitions"`
	ReplicationFactor int `yaml:"replication_factor"`
	// BatchTimeout bounds how long the producer waits to fill a batch. kafka-go
	// defaults to one second, far too slow for a pipeline of small hops. The
	// runtime writes a batch's outputs in one synchronous call, so they join
	// one batch within microseconds and a longer linger only adds latency:
	// 1ms (the default) against 5ms took a query's round trip over the
	// embedded broker from about 12.8 to 4.3 ms (vidx bench, query_kafka_*).
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// DialTimeout bounds connection set-up.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// StartupTimeout is how long a starting process waits for the brokers
	// to answer before it gives up with an error (default 2m): a stage
	// started while Kafka restarts waits rather than exits.
	StartupTimeout time.Duration `yaml:"startup_timeout"`
	// TLS and SASL secure every connection: consumers, producers, admin
	// clients and taps.
	TLS  TLSConfig  `yaml:"tls"`
	SASL SASLConfig `yaml:"sasl"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = "vidx"
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = time.Millisecond
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = 2 * time.Minute
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: at least one broker address is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka: broker %q is not host:port: %w", b, err)
		}
	}
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		return errors.New("kafka: partitions and replication_factor must be at least 1")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	return c.SASL.Validate()
}

// NewWriter returns a producer that waits for every in-sync replica, so an
// acknowledged write survives a broker loss, and that sends small batches
// promptly. The topic is set per message.
func NewWriter(c Config) *kafkago.Writer {
	c = c.WithDefaults()
	return &kafkago.Writer{
		Addr:         kafkago.TCP(c.Brokers...),
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: c.BatchTimeout,
		// The writer's own retries cover leader changes; the runtime retries
		// on top with its own backoff and never commits before success.
		MaxAttempts:     5,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		Transport:       c.transport(),
	}
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are
// left as they are.
func EnsureTopics(ctx context.Context, c Config, topics ...string) error {
	c = c.WithDefaults()
	client := c.client()
	req := &kafkago.CreateTopicsRequest{}
	seen := map[string]bool{}
	for _, t := range topics {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		req.Topics = append(req.Topics, kafkago.TopicConfig{
			Topic:             t,
			NumPartitions:     c.Partitions,
			ReplicationFactor: c.ReplicationFactor,
		})
	}
	if len(req.Topics) == 0 {
		return nil
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return pipeline.Retryable(fmt.Errorf("kafka: create topics: %w", err))
	}
	return topicErrors("create topics", resp.Errors)
}

// client returns a client for admin and metadata requests. It, transport
// and dialer are the one place connection settings are applied.
func (c Config) client() *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Timeout: c.DialTimeout, Transport: c.transport()}
}

// transport carries producer and client connections.
func (c Config) transport() *kafkago.Transport {
	t := &kafkago.Transport{ClientID: c.ClientID, DialTimeout: c.DialTimeout}
	tc, m, err := c.security()
	if err != nil {
		t.Dial = failingDial(err)
		return t
	}
	t.TLS, t.SASL = tc, m
	return t
}

// dialer opens consumer connections.
func (c Config) dialer() *kafkago.Dialer {
	d := &kafkago.Dialer{ClientID: c.ClientID, Timeout: c.DialTimeout, DualStack: true}
	tc, m, err := c.security()
	if err != nil {
		d.DialFunc = failingDial(err)
		return d
	}
	d.TLS, d.SASLMechanism = tc, m
	return d
}

// kafkaLogger routes kafka-go's chatter to slog at debug level and its
// errors at warn level.
type kafkaLogger struct {
	log   *slog.Logger
	level slog.Level
}

func (l kafkaLogger) Printf(format string, args ...any) {
	l.log.Log(context.Background(), l.level, fmt.Sprintf(format, args...))
}

func toKafkaHeaders(h map[string]string) []kafkago.Header {
	if len(h) == 0 {
		return nil
	}
	out := make([]kafkago.Header, 0, len(h))
	for k, v := range h {
		out = append(out, kafkago.Header{Key: k, Value: []byte(v)})
	}
	return out
}

func fromKafkaMessage(m kafkago.Message) pipeline.Message {
	var h map[string]string
	if len(m.Headers) > 0 {
		h = make(map[string]string, len(m.Headers))
		for _, kh := range m.Headers {
			h[kh.Key] = string(kh.Value)
		}
	}
	return pipeline.Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Headers:   h,
		Time:      m.Time,
	}
}

// AwaitTopics creates the missing topics as EnsureTopics does, waiting up
// to StartupTimeout for unreachable brokers and saying so every time it
// tries; a refusal by a broker that answers (bad settings, no rights) is
// returned at once.
func AwaitTopics(ctx context.Context, c Config, log *slog.Logger, topics ...string) error {
	return awaitBrokers(ctx, c, log, func(ctx context.Context) error { return EnsureTopics(ctx, c, topics...) })
}

// AwaitCompactedTopics is AwaitTopics for EnsureCompactedTopics.
func AwaitCompactedTopics(ctx context.Context, c Config, log *slog.Logger, topics ...string) error {
	return awaitBrokers(ctx, c, log, func(ctx context.Context) error { return EnsureCompactedTopics(ctx, c, topics...) })
}

// awaitBrokers runs fn until it succeeds, fails for a reason other than
// unreachable brokers, or StartupTimeout passes.
func awaitBrokers(ctx context.Context, c Config, log *slog.Logger, fn func(context.Context) error) error {
	c = c.WithDefaults()
	deadline := time.Now().Add(c.StartupTimeout)
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || pipeline.Classify(err) != pipeline.ClassRetryable || ctx.Err() != nil {
			return err
		}
		// The admin client reports a refused handshake as an unavailable
		// broker; a plain connection says what was refused.
		if perr := c.probe(ctx); perr != nil && settingsError(perr) {
			return fmt.Errorf("kafka: brokers %v refused the connection settings (check kafka.tls and kafka.sasl): %w", c.Brokers, perr)
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("kafka: brokers %v unreachable for %s: %w", c.Brokers, c.StartupTimeout, err)
		}
		log.Warn("kafka not reachable yet; waiting", "brokers", c.Brokers, "attempt", attempt, "retry_in", wait, "err", err)
		if pipeline.Sleep(ctx, wait) != nil {
			return ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// topicErrors joins CreateTopics' per-topic errors, ignoring topics that
// exist already; the result is retryable when every error is one a broker
// gives while it starts or moves leadership.
func topicErrors(what string, errs map[string]error) error {
	var msgs []string
	temporary := true
	for topic, terr := range errs {
		if terr == nil || errors.Is(terr, kafkago.TopicAlreadyExists) {
			continue
		}
		msgs = append(msgs, fmt.Sprintf("%s: %v", topic, terr))
		var ke kafkago.Error
		if !errors.As(terr, &ke) || !ke.Temporary() {
			temporary = false
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	err := fmt.Errorf("kafka: %s: %s", what, strings.Join(msgs, "; "))
	if temporary {
		return pipeline.Retryable(err)
	}
	return err
}

// probe opens and closes one connection to each broker, with the TLS
// handshake and SASL authentication of every other connection; it returns
// the first failure.
func (c Config) probe(ctx context.Context) error {
	d := c.dialer()
	for _, b := range c.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			return err
		}
		conn.Close()
	}
	return nil
}

// settingsError reports errors that waiting cannot cure: credentials,
// rights or TLS settings the brokers refuse.
func settingsError(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafkago.SASLAuthenticationFailed, kafkago.UnsupportedSASLMechanism, kafkago.IllegalSASLState,
			kafkago.TopicAuthorizationFailed, kafkago.ClusterAuthorizationFailed, kafkago.GroupAuthorizationFailed:
			return true
		}
	}
	var (
		header   tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &header) || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, c Config) error {
	c = c.WithDefaults()
	client := c.client()
	if _, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{}}); err != nil {
		return fmt.Errorf("kafka: brokers %v unreachable: %w", c.Brokers, err)
	}
	return nil
}
